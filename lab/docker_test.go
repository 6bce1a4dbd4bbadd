package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func needDockerRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	// Every machine of the project and CI install docker.io and
	// busybox-static: a missing tool is a failure, not a skip.
	if err := checkDockerTools(); err != nil {
		t.Fatal(err)
	}
}

// dockerPrefix is unique per test process and short: the daemons' socket
// paths live under it and unix socket paths are limited to 108 bytes.
func dockerPrefix(tag string) string { return fmt.Sprintf("vx%s%d", tag, os.Getpid()%100000) }

// downAndCheck removes the lab and fails the test if anything is left.
func downAndCheck(t *testing.T, prefix string) {
	t.Helper()
	if err := Down(prefix); err != nil {
		t.Errorf("Down(%s): %v", prefix, err)
	}
	if left := DockerLeftovers(prefix); len(left) > 0 {
		t.Errorf("left behind after Down(%s):\n  %s", prefix, strings.Join(left, "\n  "))
	}
}

// TestDockerLab brings the swarm lab up once and checks it from every side;
// the last subtest tears it down and checks that nothing is left. Cleanup
// tears it down too when a subtest fails first.
func TestDockerLab(t *testing.T) {
	needDockerRoot(t)
	prefix := dockerPrefix("l")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if _, err := os.Stat(StatePath(prefix)); err == nil {
			downAndCheck(t, prefix)
		}
	})
	start := time.Now()
	l, err := UpDocker(ctx, Config{Prefix: prefix}, func(s string) {
		t.Logf("%6.2fs up: %s", time.Since(start).Seconds(), s)
	})
	if err != nil {
		t.Fatalf("UpDocker: %v", err)
	}
	t.Logf("docker lab up in %.1fs", time.Since(start).Seconds())

	t.Run("State", func(t *testing.T) {
		st, err := readState(prefix)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Docker || st.Layout != DockerLayout {
			t.Errorf("state: docker=%v layout=%s", st.Docker, st.Layout)
		}
		for _, r := range allRoles {
			ns, ok := st.Namespaces[r]
			if !ok {
				t.Errorf("role %s not recorded", r)
				continue
			}
			if _, err := os.Stat(ns.Path); err != nil {
				t.Errorf("role %s: %v", r, err)
			}
		}
		id := l.DockerNetworkID()
		for _, r := range []Role{RoleOV1, RoleOV2} {
			if want := "1-" + id[:10]; l.NS(r) != want {
				t.Errorf("%s = %q, want Docker's overlay sandbox %q", r, l.NS(r), want)
			}
		}
		if l.VNI() < 4096 {
			t.Errorf("VNI %d: not read from the network", l.VNI())
		}
		out, err := exec.Command("ip", "-n", l.NS(RoleN1), "-d", "link", "show").CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), "vxlan id") {
			t.Errorf("a vxlan device sits in the node namespace; Docker puts it in the sandbox:\n%s", out)
		}
		vx, err := exec.Command("nsenter", "--net="+l.NSPath(RoleOV1), "ip", "-d", "link", "show", "vxlan0").CombinedOutput()
		if err != nil {
			t.Fatalf("vxlan0 in %s: %v: %s", l.NS(RoleOV1), err, vx)
		}
		if want := fmt.Sprintf("vxlan id %d ", l.VNI()); !strings.Contains(string(vx), want) {
			t.Errorf("vxlan0 in %s: no %q in\n%s", l.NS(RoleOV1), want, vx)
		}
	})

	t.Run("DockerExecPing", func(t *testing.T) {
		name, node := l.ContainerName(RoleC1)
		out, err := exec.CommandContext(ctx, dockerCLI, "--host", l.DockerHost(node), "exec", name,
			"ping", "-c", "3", "-W", "2", l.ContainerIP(RoleC2)).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "3 packets received") {
			t.Fatalf("docker exec c1 ping c2: %v\n%s", err, out)
		}
	})

	t.Run("Probes", func(t *testing.T) {
		if err := l.Send(ctx, Probe{Kind: ProbePing}); err != nil {
			t.Errorf("ping: %v", err)
		}
		if err := l.Send(ctx, Probe{Kind: ProbePing, PayloadSize: BigPayload}); err != nil {
			t.Errorf("full-MTU ping: %v", err)
		}
		if err := l.Send(ctx, Probe{Kind: ProbeTCP, Port: ListenPort}); err != nil {
			t.Errorf("tcp %d: %v", ListenPort, err)
		}
		err := l.Send(ctx, Probe{Kind: ProbeTCP, Port: ListenPort + 1})
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("tcp %d (no listener): %v, want connection refused", ListenPort+1, err)
		}
	})

	t.Run("Faults", func(t *testing.T) {
		for _, f := range []Fault{FaultNode2InputDrop, FaultSwitchDrop} {
			if err := l.SetFault(f, true); err != nil {
				t.Fatalf("%s on: %v", f, err)
			}
			err := l.Send(ctx, Probe{Kind: ProbePing})
			if offErr := l.SetFault(f, false); offErr != nil {
				t.Fatalf("%s off: %v", f, offErr)
			}
			if !errors.Is(err, ErrLoss) {
				t.Errorf("%s: ping gave %v, want %v", f, err, ErrLoss)
			}
			if err := l.Send(ctx, Probe{Kind: ProbePing}); err != nil {
				t.Errorf("after %s off: %v", f, err)
			}
		}
		tcp := Probe{Kind: ProbeTCP, Port: ListenPort}
		if err := l.SetFault(FaultNoListener, true); err != nil {
			t.Fatalf("no-listener on: %v", err)
		}
		err := l.Send(ctx, tcp)
		if offErr := l.SetFault(FaultNoListener, false); offErr != nil {
			t.Fatalf("no-listener off: %v", offErr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("no-listener: %v, want connection refused", err)
		}
		if err := l.Send(ctx, tcp); err != nil {
			t.Errorf("after no-listener off: %v", err)
		}
	})

	t.Run("Teardown", func(t *testing.T) {
		downAndCheck(t, prefix)
		// libnetwork's load-balancer files land outside the lab's dirs.
		if p := "/var/lib/docker/network/files/lb_" + l.DockerNetworkID(); fileExists(p) {
			t.Errorf("left behind: %s", p)
		}
	})
}

// TestDockerUpFailureCleansUp makes Up fail after a daemon was killed with
// containers running, as a crash would leave it, and checks that Down
// still removes everything: container processes, containerd, shims, mounts.
func TestDockerUpFailureCleansUp(t *testing.T) {
	needDockerRoot(t)
	prefix := dockerPrefix("f")
	t.Cleanup(func() {
		if len(DockerLeftovers(prefix)) > 0 {
			_ = Down(prefix)
		}
	})
	injected := errors.New("injected failure")
	testHookStep = func(step string) error {
		if !strings.HasPrefix(step, "starting container c1") {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(DockerDir(prefix), "n1", "dockerd.pid"))
		if err != nil {
			return err
		}
		var pid int
		fmt.Sscan(string(b), &pid)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return err
		}
		return injected
	}
	t.Cleanup(func() { testHookStep = nil })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := UpDocker(ctx, Config{Prefix: prefix}, func(s string) { t.Log("up: " + s) })
	if !errors.Is(err, injected) {
		t.Fatalf("UpDocker: %v, want the injected failure", err)
	}
	if left := DockerLeftovers(prefix); len(left) > 0 {
		t.Errorf("left behind after a failed up:\n  %s", strings.Join(left, "\n  "))
	}
}

func TestDockerNeedsFreePrefix(t *testing.T) {
	needDockerRoot(t)
	prefix := dockerPrefix("p")
	if err := claim(prefix); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Down(prefix) })
	_, err := UpDocker(context.Background(), Config{Prefix: prefix}, nil)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("UpDocker on a claimed prefix: %v", err)
	}
}
