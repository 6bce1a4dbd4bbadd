package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxtrace/vxtrace/internal/leakcheck"
	"github.com/vxtrace/vxtrace/lab"
	"github.com/vxtrace/vxtrace/report"
	"github.com/vxtrace/vxtrace/topo"
)

// Docker end-to-end tests: the real binary against a real two-node Docker
// Swarm (lab.UpDocker), with --container doing all the discovery. Each trace
// is scoped the way one node's tracer is in a real cluster, so node 1's view
// of a packet must end where the packet leaves node 1.
//
// One swarm serves every subtest: bringing it up is the slow part, and the
// subtests only switch faults on and off and add throwaway containers.

func TestDockerE2E(t *testing.T) {
	requireRoot(t)
	l := upDockerLab(t)
	t.Run("Healthy", func(t *testing.T) { testDockerHealthy(t, l) })
	t.Run("ToContainerOnOtherNode", func(t *testing.T) { testDockerToRemote(t, l) })
	t.Run("Node2InputDrop", func(t *testing.T) { testDockerNode2InputDrop(t, l) })
	t.Run("NoListener", func(t *testing.T) { testDockerNoListener(t, l) })
	t.Run("MissingFDB", func(t *testing.T) { testDockerOverlayFault(t, l, lab.FaultMissingFDB, lab.RoleC1) })
	t.Run("MissingNeigh", func(t *testing.T) { testDockerOverlayFault(t, l, lab.FaultMissingNeigh, lab.RoleC1) })
	t.Run("WrongVNI", func(t *testing.T) { testDockerOverlayFault(t, l, lab.FaultWrongVNI, lab.RoleC2) })
	t.Run("Topology", func(t *testing.T) { testDockerTopology(t, l) })
	t.Run("Errors", func(t *testing.T) { testDockerErrors(t, l) })
	t.Run("ServiceLoadBalancing", func(t *testing.T) { testDockerServiceLB(t, l) })
	t.Run("ContainerRestarts", func(t *testing.T) { testDockerContainerRestarts(t, l) })
	t.Run("ContainerStops", func(t *testing.T) { testDockerContainerStops(t, l) })
	// Last: it leaves node 1 without a daemon.
	t.Run("DaemonGoes", func(t *testing.T) { testDockerDaemonGoes(t, l) })
}

// upDockerLab brings up the swarm. Its teardown is registered before
// anything can fail, and checks that nothing of the lab is left.
func upDockerLab(t *testing.T) *lab.Lab {
	t.Helper()
	prefix := fmt.Sprintf("vxde%d", os.Getpid()%1000)
	// A crashed run that had the same PID may have left its lab.
	_ = lab.Down(prefix)
	var l *lab.Lab
	t.Cleanup(func() {
		var err error
		if l != nil {
			err = l.Down() // also reaps the listener process it started
		} else {
			err = lab.Down(prefix)
		}
		if err != nil {
			t.Errorf("docker lab down: %v", err)
		}
		if left := lab.DockerLeftovers(prefix); len(left) > 0 {
			t.Errorf("left behind by docker lab %s:\n  %s", prefix, strings.Join(left, "\n  "))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	var err error
	l, err = lab.UpDocker(ctx, lab.Config{Prefix: prefix}, func(s string) {
		t.Logf("%6.2fs lab: %s", time.Since(start).Seconds(), s)
	})
	if err != nil {
		t.Fatalf("docker lab up: %v", err)
	}
	t.Logf("docker lab %s up in %.1fs: VNI %d, c1 %s on %s, c2 %s on %s", prefix, time.Since(start).Seconds(),
		l.VNI(), l.ContainerIP(lab.RoleC1), l.NS(lab.RoleN1), l.ContainerIP(lab.RoleC2), l.NS(lab.RoleN2))
	return l
}

// side is one container of the lab with the daemon that runs it.
type side struct {
	name, host, ip string
	ns, ov, node   string // namespace names: container, overlay sandbox, node
}

func dockerSide(l *lab.Lab, r lab.Role) side {
	name, node := l.ContainerName(r)
	ov := lab.RoleOV1
	if node == lab.RoleN2 {
		ov = lab.RoleOV2
	}
	return side{name: name, host: l.DockerHost(node), ip: l.ContainerIP(r),
		ns: l.NS(r), ov: l.NS(ov), node: l.NS(node)}
}

func hopOf(d *report.Doc, id int) *topo.Hop {
	for i := range d.Hops {
		if d.Hops[i].ID == id {
			return &d.Hops[i]
		}
	}
	return nil
}

func hopIs(d *report.Doc, id int, ns, ifname string, kind topo.Kind) bool {
	h := hopOf(d, id)
	return h != nil && h.NetNS.Name == ns && h.Ifname == ifname && (kind == "" || h.Kind == kind)
}

func describeHop(d *report.Doc, id int) string {
	if h := hopOf(d, id); h != nil {
		return fmt.Sprintf("%s/%s (%s)", h.NetNS.Name, h.Ifname, h.Kind)
	}
	return fmt.Sprintf("hop %d (not in the topology)", id)
}

// checkScope fails unless the trace watched exactly the namespaces of one
// node's side of the overlay, and reported nothing from anywhere else.
func checkScope(t *testing.T, run traceRun, s side) {
	t.Helper()
	var got []string
	in := map[uint32]bool{}
	for _, ns := range run.doc.Filter.NetNS {
		got = append(got, ns.Name)
		in[ns.Inode] = true
	}
	want := []string{s.ns, s.ov, s.node}
	if !slices.Equal(got, want) {
		t.Errorf("scope of --container %s: %v, want %v", s.name, got, want)
	}
	for _, p := range run.doc.Packets {
		for _, e := range p.Events {
			if !in[e.NetNS] {
				t.Errorf("packet %s (%s): %s event in namespace %d (%s), outside the scope of %s's node",
					p.ID, p.Verdict, e.Dir, e.NetNS, e.Ifname, s.name)
			}
		}
	}
}

func logVerdicts(t *testing.T, what string, run traceRun) {
	t.Helper()
	for _, line := range strings.Split(run.stdout, "\n") {
		if strings.Contains(line, "verdict:") {
			t.Logf("%s: %s", what, strings.TrimSpace(line))
		}
	}
}

// dockerCLI runs Debian's docker client against one node's daemon.
func dockerCLI(t *testing.T, host string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/docker", append([]string{"--host", host}, args...)...)
	// Keep the CLI's config out of root's home.
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// throwaway starts a container on node 1's overlay that the test removes.
func throwaway(t *testing.T, l *lab.Lab, name string, net string) {
	t.Helper()
	host := l.DockerHost(lab.RoleN1)
	removeLater(t, host, name)
	dockerCLI(t, host, "run", "--detach", "--name", name, "--network", net, lab.DockerImage, "sleep", "1000000000")
}

// removeLater removes a container when the test ends, whether or not it
// still exists (l.Down would too, but the lab outlives the subtest).
func removeLater(t *testing.T, host, name string) {
	cfg := t.TempDir()
	t.Cleanup(func() {
		cmd := exec.Command("/usr/bin/docker", "--host", host, "rm", "--force", name)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+cfg)
		_ = cmd.Run()
	})
}

// runVX runs the binary to its end; env is added to the environment.
func runVX(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, vxtraceBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("vxtrace %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

// bgTrace is a `vxtrace trace` running in the background.
type bgTrace struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	jsonPath       string
	done           chan error
	earlyCode      int // exit code when vxtrace ended before attaching
}

// startTrace starts `vxtrace trace args...` and waits until it is attached.
// Unlike trace, it returns (with ok false) as soon as vxtrace exits before
// attaching, so that a refused flag is reported at once.
func startTrace(t *testing.T, args []string) (b *bgTrace, ok bool) {
	t.Helper()
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	b = &bgTrace{jsonPath: filepath.Join(dir, "trace.json"), done: make(chan error, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	b.cmd = exec.CommandContext(ctx, vxtraceBin, append([]string{"trace", "--json", b.jsonPath, "--ready-file", ready}, args...)...)
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return b, true
		}
		select {
		case err := <-b.done:
			b.earlyCode = exitCodeOf(err)
			return b, false
		case <-deadline:
			b.cmd.Process.Kill()
			<-b.done
			t.Fatalf("vxtrace never became ready\nstderr:\n%s", b.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wait waits up to d for vxtrace to exit by itself; it returns the exit
// code, or -1 if vxtrace had to be killed.
func (b *bgTrace) wait(d time.Duration) int {
	select {
	case err := <-b.done:
		return exitCodeOf(err)
	case <-time.After(d):
		b.cmd.Process.Kill()
		<-b.done
		return -1
	}
}

func exitCodeOf(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// testDockerHealthy: one ping c1 -> c2, watched at once by node 1's tracer
// (scoped by --container c1 on node 1's daemon) and node 2's (--container c2
// on node 2's daemon, destination given as --to c2).
func testDockerHealthy(t *testing.T, l *lab.Lab) {
	c1, c2 := dockerSide(l, lab.RoleC1), dockerSide(l, lab.RoleC2)
	before := leakcheck.Snapshot(t, labPaths(l)...)
	ctx := context.Background()
	var view2 traceRun
	view1 := trace(t, []string{"--container", c1.name, "--docker-host", c1.host, "--dst", c2.ip, "--proto", "icmp", "--count", "1"},
		func() error {
			view2 = trace(t, []string{"--container", c2.name, "--docker-host", c2.host, "--to", c2.name, "--proto", "icmp", "--count", "1"},
				func() error { return lab.Ping(ctx, l.NSPath(lab.RoleC1), c2.ip, 1, 0) })
			return nil
		})
	logVerdicts(t, "healthy, node 1's view", view1)
	logVerdicts(t, "healthy, node 2's view", view2)

	t.Run("Node1View", func(t *testing.T) {
		run := view1
		p := onePacket(t, run, 0)
		if p.Verdict != "left_node" {
			t.Errorf("verdict %s, want left_node\n%s", p.Verdict, run.stdout)
		}
		if !hopIs(run.doc, p.LastHop, c1.node, lab.NodeNIC, topo.KindNIC) {
			t.Errorf("last hop %s, want node 1's NIC %s/%s", describeHop(run.doc, p.LastHop), c1.node, lab.NodeNIC)
		}
		if p.VNI == nil || *p.VNI != l.VNI() {
			t.Errorf("VNI %v, want the network's %d", p.VNI, l.VNI())
		}
		if first := firstCrossing(&p); first.Dir != "tx" || !hopIs(run.doc, first.Hop, c1.ns, "eth0", topo.KindContainer) {
			t.Errorf("journey does not start with c1's eth0 sending it\n%s", run.stdout)
		}
		var encap bool
		for _, e := range p.Events {
			if e.Encap && e.Dir == "tx" && hopIs(run.doc, e.Hop, c1.node, lab.NodeNIC, topo.KindNIC) && e.VNI != nil && *e.VNI == l.VNI() {
				encap = true
			}
		}
		if !encap {
			t.Errorf("no encapsulated tx with VNI %d at %s/%s\n%s", l.VNI(), c1.node, lab.NodeNIC, run.stdout)
		}
		checkScope(t, run, c1)
	})

	t.Run("Node2View", func(t *testing.T) {
		run := view2
		if run.code != 0 {
			t.Fatalf("exit %d\n%s", run.code, run.stderr)
		}
		if want := c2.ip + "/32"; run.doc.Filter.Dst != want {
			t.Errorf("--to %s: filter dst %q, want %q", c2.name, run.doc.Filter.Dst, want)
		}
		if len(run.doc.Packets) != 1 {
			t.Fatalf("%d packets, want 1\n%s", len(run.doc.Packets), run.stdout)
		}
		p := run.doc.Packets[0]
		if p.Verdict != "delivered" {
			t.Errorf("verdict %s, want delivered\n%s", p.Verdict, run.stdout)
		}
		if !hopIs(run.doc, p.LastHop, c2.ns, "eth0", topo.KindContainer) {
			t.Errorf("last hop %s, want c2's %s/eth0", describeHop(run.doc, p.LastHop), c2.ns)
		}
		if len(p.Events) == 0 || p.Events[0].Dir != "rx" || !p.Events[0].Encap ||
			!hopIs(run.doc, p.Events[0].Hop, c2.node, lab.NodeNIC, topo.KindNIC) {
			t.Errorf("journey does not start with node 2's NIC receiving it encapsulated\n%s", run.stdout)
		}
		if p.VNI == nil || *p.VNI != l.VNI() {
			t.Errorf("VNI %v, want the network's %d", p.VNI, l.VNI())
		}
		checkScope(t, run, c2)
	})

	if view1.doc != nil && view2.doc != nil && len(view1.doc.Packets) == 1 && len(view2.doc.Packets) == 1 &&
		view1.doc.Packets[0].ID != view2.doc.Packets[0].ID {
		t.Errorf("the two views traced different packets: %s and %s", view1.doc.Packets[0].ID, view2.doc.Packets[0].ID)
	}
	leakcheck.Check(t, before, labPaths(l)...)
}

// testDockerToRemote: --to names a container that runs on the other node.
// Node 1's daemon runs only c1, but the swarm tells every node the names and
// addresses of the overlay's endpoints (what makes `ping c2` work in c1), so
// the name must resolve where the trace runs.
func testDockerToRemote(t *testing.T, l *lab.Lab) {
	c1, c2 := dockerSide(l, lab.RoleC1), dockerSide(l, lab.RoleC2)
	before := leakcheck.Snapshot(t, labPaths(l)...)
	b, ok := startTrace(t, []string{"--container", c1.name, "--docker-host", c1.host, "--to", c2.name,
		"--proto", "icmp", "--count", "1"})
	if !ok {
		t.Fatalf("--container %s --to %s (c2 runs on node 2) on node 1's daemon: exit %d before attaching: %s",
			c1.name, c2.name, b.earlyCode, strings.TrimSpace(b.stderr.String()))
	}
	_ = lab.Ping(context.Background(), l.NSPath(lab.RoleC1), c2.ip, 1, 0)
	if code := b.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, b.stderr.String())
	}
	f, err := os.Open(b.jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := report.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if want := c2.ip + "/32"; doc.Filter.Dst != want {
		t.Errorf("--to %s: filter dst %q, want %q", c2.name, doc.Filter.Dst, want)
	}
	if len(doc.Packets) != 1 || doc.Packets[0].Verdict != "left_node" {
		t.Errorf("want one packet that left node 1\n%s", b.stdout.String())
	}
	leakcheck.Check(t, before, labPaths(l)...)
}

// testDockerNode2InputDrop: node 2's INPUT chain drops UDP 4789. Node 2's
// tracer sees the encapsulated packet die at its NIC; node 1's sees it
// leave, as in a real cluster where node 1 cannot see node 2's kernel.
func testDockerNode2InputDrop(t *testing.T, l *lab.Lab) {
	c1, c2 := dockerSide(l, lab.RoleC1), dockerSide(l, lab.RoleC2)
	exp, err := l.Expect(lab.FaultNode2InputDrop)
	if err != nil {
		t.Fatal(err)
	}
	before := leakcheck.Snapshot(t, labPaths(l)...)
	if err := l.SetFault(lab.FaultNode2InputDrop, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.SetFault(lab.FaultNode2InputDrop, false); err != nil {
			t.Errorf("clearing fault: %v", err)
		}
	})
	ctx := context.Background()
	var view1 traceRun
	view2 := trace(t, []string{"--container", c2.name, "--docker-host", c2.host, "--dst", c2.ip, "--proto", "icmp", "--count", "1", "--fail-on-drop"},
		func() error {
			view1 = trace(t, []string{"--container", c1.name, "--docker-host", c1.host, "--dst", c2.ip, "--proto", "icmp", "--count", "1"},
				func() error { return l.Send(ctx, exp.Probe) })
			return nil
		})
	logVerdicts(t, "node2-input-drop-4789, node 2's view", view2)
	logVerdicts(t, "node2-input-drop-4789, node 1's view", view1)

	t.Run("Node2View", func(t *testing.T) {
		run := view2
		if run.code != 1 {
			t.Errorf("exit %d with --fail-on-drop and a drop, want 1\n%s", run.code, run.stderr)
		}
		if len(run.doc.Packets) != 1 {
			t.Fatalf("%d packets, want 1\n%s", len(run.doc.Packets), run.stdout)
		}
		p := run.doc.Packets[0]
		if p.Verdict != exp.Verdict || p.Drop == nil {
			t.Fatalf("verdict %s, want %s\n%s", p.Verdict, exp.Verdict, run.stdout)
		}
		if p.Drop.Reason != exp.Reason {
			t.Errorf("reason %s, want %s", p.Drop.Reason, exp.Reason)
		}
		if !strings.HasPrefix(p.Drop.Location, exp.Location+"+") {
			t.Errorf("location %s, want %s+...", p.Drop.Location, exp.Location)
		}
		if exp.NS != c2.node || exp.Ifname != lab.NodeNIC {
			t.Fatalf("the lab expects the drop at %s/%s, not at node 2's NIC", exp.NS, exp.Ifname)
		}
		if !hopIs(run.doc, p.Drop.Hop, c2.node, lab.NodeNIC, topo.KindNIC) {
			t.Errorf("drop hop %s, want node 2's NIC %s/%s\n%s", describeHop(run.doc, p.Drop.Hop), c2.node, lab.NodeNIC, run.stdout)
		}
		checkScope(t, run, c2)
	})

	t.Run("Node1View", func(t *testing.T) {
		run := view1
		p := onePacket(t, run, 0)
		if p.Verdict != "left_node" || !hopIs(run.doc, p.LastHop, c1.node, lab.NodeNIC, topo.KindNIC) {
			t.Errorf("verdict %s at %s, want left_node at node 1's NIC %s/%s\n%s",
				p.Verdict, describeHop(run.doc, p.LastHop), c1.node, lab.NodeNIC, run.stdout)
		}
		checkScope(t, run, c1)
	})

	if len(view1.doc.Packets) == 1 && len(view2.doc.Packets) == 1 && view1.doc.Packets[0].ID != view2.doc.Packets[0].ID {
		t.Errorf("the two views traced different packets: %s and %s", view1.doc.Packets[0].ID, view2.doc.Packets[0].ID)
	}
	leakcheck.Check(t, before, labPaths(l)...)
}

// testDockerNoListener: TCP to c2:8080 with nothing listening. Node 2's
// tracer, scoped to c2, sees the SYN die in c2 (NO_SOCKET) and the RST
// start from c2's eth0.
func testDockerNoListener(t *testing.T, l *lab.Lab) {
	c2 := dockerSide(l, lab.RoleC2)
	exp, err := l.Expect(lab.FaultNoListener)
	if err != nil {
		t.Fatal(err)
	}
	before := leakcheck.Snapshot(t, labPaths(l)...)
	if err := l.SetFault(lab.FaultNoListener, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.SetFault(lab.FaultNoListener, false); err != nil {
			t.Errorf("restarting the listener: %v", err)
		}
	})
	var sendErr error
	run := trace(t, []string{"--container", c2.name, "--docker-host", c2.host, "--proto", "tcp", "--port", fmt.Sprint(exp.Probe.Port), "--count", "2"},
		func() error { sendErr = l.Send(context.Background(), exp.Probe); return sendErr })
	logVerdicts(t, "no-listener, node 2's view", run)
	if sendErr == nil || !strings.Contains(sendErr.Error(), "refused") {
		t.Errorf("connect to c2:%d: %v, want connection refused", exp.Probe.Port, sendErr)
	}
	if run.code != 0 {
		t.Fatalf("exit %d\n%s", run.code, run.stderr)
	}
	var syn, rst *report.Packet
	for i := range run.doc.Packets {
		p := &run.doc.Packets[i]
		switch {
		case p.Inner.TCPFlags == "SYN":
			syn = p
		case strings.Contains(p.Inner.TCPFlags, "RST"):
			rst = p
		}
	}
	if syn == nil || rst == nil {
		t.Fatalf("want the SYN and the RST, got %d packets\n%s", len(run.doc.Packets), run.stdout)
	}
	if syn.Verdict != exp.Verdict || syn.Drop == nil || syn.Drop.Reason != exp.Reason {
		t.Errorf("SYN: verdict %s drop %+v, want %s %s\n%s", syn.Verdict, syn.Drop, exp.Verdict, exp.Reason, run.stdout)
	} else if !hopIs(run.doc, syn.Drop.Hop, c2.ns, "eth0", topo.KindContainer) {
		t.Errorf("SYN dropped at %s, want c2's %s/eth0", describeHop(run.doc, syn.Drop.Hop), c2.ns)
	}
	if rst.Inner.Src != c2.ip {
		t.Errorf("RST from %s, want c2 %s", rst.Inner.Src, c2.ip)
	}
	if first := firstCrossing(rst); first.Dir != "tx" || !hopIs(run.doc, first.Hop, c2.ns, "eth0", topo.KindContainer) {
		t.Errorf("RST not first seen sent by c2's %s/eth0\n%s", c2.ns, run.stdout)
	}
	if rst.Verdict != "left_node" || !hopIs(run.doc, rst.LastHop, c2.node, lab.NodeNIC, topo.KindNIC) {
		t.Errorf("RST: verdict %s at %s, want left_node at node 2's NIC\n%s", rst.Verdict, describeHop(run.doc, rst.LastHop), run.stdout)
	}
	checkScope(t, run, c2)
	leakcheck.Check(t, before, labPaths(l)...)
}

// testDockerTopology: the chain that --container c1 resolves to, in text
// and in JSON, against what Docker built.
func testDockerTopology(t *testing.T, l *lab.Lab) {
	c1, c2 := dockerSide(l, lab.RoleC1), dockerSide(l, lab.RoleC2)
	netVNI := dockerCLI(t, c1.host, "network", "inspect", "--format",
		`{{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}`, lab.DockerNetwork)
	if netVNI != fmt.Sprint(l.VNI()) {
		t.Fatalf("network %s has VNI %q, the lab says %d", lab.DockerNetwork, netVNI, l.VNI())
	}
	c2MAC := l.ContainerMAC(lab.RoleC2)

	text, stderr, code := runVX(t, nil, "topology", "--container", c1.name, "--docker-host", c1.host)
	if code != 0 {
		t.Fatalf("topology: exit %d: %s", code, stderr)
	}
	t.Logf("vxtrace topology --container %s:\n%s", c1.name, text)
	for _, want := range []string{
		"netns " + c1.ns, "netns " + c1.ov, "netns " + c1.node,
		" br0 ", " vxlan0 ", fmt.Sprintf("vni %s ", netVNI), "port 4789",
		"fdb   " + c2MAC + " → " + lab.N2IP, "vteps " + lab.N2IP,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("topology text lacks %q", want)
		}
	}
	if !strings.HasPrefix(c1.ov, "1-") {
		t.Errorf("overlay sandbox %q is not Docker's 1-<network id>", c1.ov)
	}

	// With a destination, vxlan0 shows only the entries that carry it.
	narrow, stderr, code := runVX(t, nil, "topology", "--container", c1.name, "--docker-host", c1.host, "--to", c2.ip)
	if code != 0 {
		t.Fatalf("topology --to %s: exit %d: %s", c2.ip, code, stderr)
	}
	wantEntries := []string{"│ neigh " + c2.ip + " → " + c2MAC, "│ fdb   " + c2MAC + " → " + lab.N2IP}
	var entries []string
	for _, line := range strings.Split(narrow, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "│ fdb") || strings.HasPrefix(line, "│ neigh") {
			entries = append(entries, line)
		}
	}
	if len(entries) != 2 || !strings.HasPrefix(entries[0], wantEntries[0]) || entries[1] != wantEntries[1] {
		t.Errorf("topology --to %s: vxlan0 entries %q, want only %q", c2.ip, entries, wantEntries)
	}

	// JSON, with the daemon given by DOCKER_HOST this time.
	js, stderr, code := runVX(t, []string{"DOCKER_HOST=" + c1.host}, "topology", "--container", c1.name, "--json")
	if code != 0 {
		t.Fatalf("topology --json: exit %d: %s", code, stderr)
	}
	var doc struct {
		Schema string     `json:"schema"`
		Hops   []topo.Hop `json:"hops"`
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		t.Fatalf("topology --json: %v\n%s", err, js)
	}
	find := func(ns, ifname string) *topo.Hop {
		for i := range doc.Hops {
			if doc.Hops[i].NetNS.Name == ns && doc.Hops[i].Ifname == ifname {
				return &doc.Hops[i]
			}
		}
		return nil
	}
	var chain []string
	for _, h := range doc.Hops {
		chain = append(chain, h.NetNS.Name+"/"+h.Ifname)
	}
	want := []string{c1.ns + "/eth0", c1.ov + "/br0", c1.ov + "/vxlan0", c1.node + "/" + lab.NodeNIC}
	for _, w := range want {
		if !slices.Contains(chain, w) {
			t.Errorf("topology --json chain %v lacks %s", chain, w)
		}
	}
	if h := find(c1.ns, "eth0"); h != nil && (h.Kind != topo.KindContainer || h.MTU != 1450) {
		t.Errorf("c1 eth0: kind %s mtu %d, want container 1450", h.Kind, h.MTU)
	}
	if h := find(c1.ov, "br0"); h != nil && h.Kind != topo.KindBridge {
		t.Errorf("br0: kind %s, want bridge", h.Kind)
	}
	if h := find(c1.ov, "vxlan0"); h != nil {
		if h.Kind != topo.KindVXLAN || h.VNI == nil || fmt.Sprint(*h.VNI) != netVNI || h.Port != lab.VXLANPort || h.Master != "br0" {
			t.Errorf("vxlan0: kind %s vni %v port %d master %q, want vxlan %s %d br0", h.Kind, h.VNI, h.Port, h.Master, netVNI, lab.VXLANPort)
		}
		if !slices.Contains(h.FDB, topo.FDBEntry{MAC: c2MAC, Dst: lab.N2IP}) {
			t.Errorf("vxlan0 FDB %v lacks %s -> %s (c2 behind node 2)", h.FDB, c2MAC, lab.N2IP)
		}
		var neigh bool
		for _, n := range h.Neigh {
			neigh = neigh || (n.IP == c2.ip && n.MAC == c2MAC)
		}
		if !neigh {
			t.Errorf("vxlan0 neighbours %v lack %s -> %s", h.Neigh, c2.ip, c2MAC)
		}
	}
	if h := find(c1.node, lab.NodeNIC); h != nil && (h.Kind != topo.KindNIC || !slices.Contains(h.Peers, lab.N2IP)) {
		t.Errorf("NIC: kind %s peers %v, want nic with VTEP %s", h.Kind, h.Peers, lab.N2IP)
	}
	if len(doc.Hops) > 0 && doc.Hops[len(doc.Hops)-1].Kind != topo.KindNIC {
		t.Errorf("chain %v does not end at the NIC", chain)
	}
}

// testDockerErrors: each refusal is exit 2, one line on stderr, no JSON and
// nothing attached.
func testDockerErrors(t *testing.T, l *lab.Lab) {
	c1 := dockerSide(l, lab.RoleC1)
	stopped := l.Prefix() + "-stopped"
	created := l.Prefix() + "-created"
	nonet := l.Prefix() + "-nonet"
	throwaway(t, l, stopped, lab.DockerNetwork)
	dockerCLI(t, c1.host, "stop", "--time", "0", stopped)
	throwaway(t, l, nonet, "none")
	removeLater(t, c1.host, created)
	dockerCLI(t, c1.host, "create", "--name", created, "--network", lab.DockerNetwork, lab.DockerImage, "sleep", "1")

	unknown := l.Prefix() + "-nosuch"
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"UnknownContainer", nil, []string{"trace", "--container", unknown, "--docker-host", c1.host}, `no such container "` + unknown + `"`},
		{"StoppedContainer", nil, []string{"trace", "--container", stopped, "--docker-host", c1.host}, `container "` + stopped + `" is not running (state exited)`},
		{"CreatedContainer", nil, []string{"trace", "--container", created, "--docker-host", c1.host}, `container "` + created + `" is not running (state created)`},
		{"NoNetwork", nil, []string{"trace", "--container", nonet, "--docker-host", c1.host}, `container "` + nonet + `" is on no network`},
		{"DaemonUnreachable", nil, []string{"trace", "--container", c1.name, "--docker-host", "unix:///nonexistent.sock"}, "cannot reach the Docker daemon at unix:///nonexistent.sock"},
		{"DaemonUnreachableFromEnv", []string{"DOCKER_HOST=unix:///nonexistent.sock"}, []string{"trace", "--container", c1.name}, "cannot reach the Docker daemon at unix:///nonexistent.sock"},
		{"ToWithoutContainer", nil, []string{"trace", "--to", "c2"}, "--to needs --container"},
		{"ToUnknown", nil, []string{"trace", "--container", c1.name, "--docker-host", c1.host, "--to", unknown}, "--to " + unknown},
		{"TopologyUnknownContainer", nil, []string{"topology", "--container", unknown, "--docker-host", c1.host}, `no such container "` + unknown + `"`},
		{"TopologyStoppedContainer", nil, []string{"topology", "--container", stopped, "--docker-host", c1.host}, "is not running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := leakcheck.Snapshot(t, labPaths(l)...)
			args := tc.args
			jsonPath := filepath.Join(t.TempDir(), "trace.json")
			if args[0] == "trace" {
				args = append(args, "--json", jsonPath, "-q")
			}
			stdout, stderr, code := runVX(t, tc.env, args...)
			msg := strings.TrimSpace(stderr)
			t.Logf("exit %d: %s", code, msg)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "vxtrace: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("stderr %q, want one line with %q", stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if _, err := os.Stat(jsonPath); err == nil {
				t.Errorf("a refused trace wrote %s", jsonPath)
			}
			leakcheck.Check(t, before, labPaths(l)...)
		})
	}
}

// testDockerContainerStops: the traced container goes away mid-trace. vxtrace
// must notice by itself, say so, write a valid document and detach.
func testDockerContainerStops(t *testing.T, l *lab.Lab) {
	host := l.DockerHost(lab.RoleN1)
	for _, how := range []struct{ name, want string }{
		{"stop", "stopped (state exited)"},
		{"rm", ""}, // stopped or removed, whichever the poll sees first
	} {
		t.Run(how.name, func(t *testing.T) {
			name := fmt.Sprintf("%s-%s", l.Prefix(), how.name)
			throwaway(t, l, name, lab.DockerNetwork)
			before := leakcheck.Snapshot(t, labPaths(l)...)
			b, ok := startTrace(t, []string{"--container", name, "--docker-host", host})
			if !ok {
				t.Fatalf("exit %d before attaching: %s", b.earlyCode, b.stderr.String())
			}
			if how.name == "stop" {
				dockerCLI(t, host, "stop", "--time", "0", name)
			} else {
				dockerCLI(t, host, "rm", "--force", name)
			}
			gone := time.Now()
			code := b.wait(20 * time.Second)
			took := time.Since(gone)
			msg := strings.TrimSpace(b.stderr.String())
			t.Logf("after docker %s: exit %d in %v: %s", how.name, code, took.Round(10*time.Millisecond), lastLine(msg))
			if code == -1 {
				t.Fatalf("vxtrace still tracing 20s after the container went away\nstderr:\n%s", msg)
			}
			if code != 0 && code != 1 {
				t.Errorf("exit %d, want 0 or 1", code)
			}
			if took > 8*time.Second {
				t.Errorf("took %v to notice", took)
			}
			line := lastLine(msg)
			if !strings.Contains(line, "container "+name+" ") || !strings.Contains(line, "ending the trace") ||
				!strings.Contains(line, how.want) {
				t.Errorf("last stderr line %q does not say that %s went away (%q)", line, name, how.want)
			}
			f, err := os.Open(b.jsonPath)
			if err != nil {
				t.Fatalf("no JSON document: %v", err)
			}
			defer f.Close()
			doc, err := report.Read(f)
			if err != nil {
				t.Fatalf("reading the JSON document: %v", err)
			}
			if len(doc.Filter.NetNS) == 0 || doc.Ended.Before(doc.Started) {
				t.Errorf("document: scope %v, %v .. %v", doc.Filter.NetNS, doc.Started, doc.Ended)
			}
			leakcheck.Check(t, before, labPaths(l)...)
		})
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// testDockerOverlayFault breaks Docker's own overlay devices (an FDB entry
// gone on node 1, the VNI changed on node 2) and traces from the node where
// the drop happens, scoped by --container.
func testDockerOverlayFault(t *testing.T, l *lab.Lab, f lab.Fault, from lab.Role) {
	view := dockerSide(l, from)
	c2 := dockerSide(l, lab.RoleC2)
	exp, err := l.Expect(f)
	if err != nil {
		t.Fatal(err)
	}
	before := leakcheck.Snapshot(t, labPaths(l)...)
	if err := l.SetFault(f, true); err != nil {
		t.Fatal(err)
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			_ = l.SetFault(f, false)
		}
	})
	ctx := context.Background()
	run := trace(t, []string{"--container", view.name, "--docker-host", view.host, "--dst", c2.ip, "--proto", "icmp", "--count", "1"},
		func() error { return l.Send(ctx, exp.Probe) })
	logVerdicts(t, string(f)+", "+view.name+"'s node", run)
	if len(run.doc.Packets) != 1 {
		t.Fatalf("%d packets, want 1\n%s\n%s", len(run.doc.Packets), run.stdout, run.stderr)
	}
	p := run.doc.Packets[0]
	if p.Verdict != exp.Verdict || p.Drop == nil {
		t.Fatalf("verdict %s, want %s\n%s", p.Verdict, exp.Verdict, run.stdout)
	}
	if p.Drop.Reason != exp.Reason || !strings.HasPrefix(p.Drop.Location, exp.Location+"+") {
		t.Errorf("dropped %s at %s, want %s at %s+...", p.Drop.Reason, p.Drop.Location, exp.Reason, exp.Location)
	}
	if !hopIs(run.doc, p.Drop.Hop, exp.NS, exp.Ifname, "") {
		t.Errorf("drop hop %s, want %s/%s\n%s", describeHop(run.doc, p.Drop.Hop), exp.NS, exp.Ifname, run.stdout)
	}
	leakcheck.Check(t, before, labPaths(l)...)

	// Switching the fault off gives Docker's overlay back: c1 reaches c2.
	if err := l.SetFault(f, false); err != nil {
		t.Fatal(err)
	}
	restored = true
	if err := lab.Ping(ctx, l.NSPath(lab.RoleC1), c2.ip, 2, 0); err != nil {
		t.Fatalf("overlay not restored after %s off: %v", f, err)
	}
}

// testDockerContainerRestarts restarts the traced container mid-trace. Its
// namespace and veth are new after the restart: the trace must say the old
// hops are gone, attach to the new ones, and follow a ping sent after the
// restart from the new namespace, without ending.
func testDockerContainerRestarts(t *testing.T, l *lab.Lab) {
	c1, c2 := dockerSide(l, lab.RoleC1), dockerSide(l, lab.RoleC2)
	dockerCmd := func(args ...string) error {
		out, err := exec.Command("/usr/bin/docker", append([]string{"-H", c1.host}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("docker %v: %v: %s", args, err, out)
		}
		return nil
	}
	ping := func() error { return dockerCmd("exec", c1.name, "ping", "-c", "1", "-W", "2", c2.ip) }
	var sendErr error
	run := trace(t, []string{"--container", c1.name, "--docker-host", c1.host, "--dst", c2.ip, "--proto", "icmp", "--duration", "14s"},
		func() error {
			if err := ping(); err != nil {
				sendErr = err
				return err
			}
			if err := dockerCmd("restart", "-t", "0", c1.name); err != nil {
				sendErr = err
				return err
			}
			// The session re-discovers every 2s.
			time.Sleep(5 * time.Second)
			sendErr = ping()
			return sendErr
		})
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	t.Logf("stderr:\n%s", run.stderr)
	if !strings.Contains(run.stderr, "is gone") || !strings.Contains(run.stderr, "new hop") {
		t.Errorf("the trace did not report the restart's hop changes:\n%s", run.stderr)
	}
	if strings.Contains(run.stderr, "ending the trace") {
		t.Errorf("a restart ended the trace:\n%s", run.stderr)
	}
	// Echo requests from c1, in time order: the first sent from the old
	// container hop (gone now), the last from the hop attached after the
	// restart. Hops, not namespace inodes: the kernel may give the new
	// namespace the old one's inode.
	var senders []*topo.Hop
	for _, p := range run.doc.Packets {
		first := firstCrossing(&p)
		if first.Dir != "tx" {
			continue
		}
		if h := hopOf(run.doc, first.Hop); h != nil && h.Kind == topo.KindContainer {
			senders = append(senders, h)
			if p.Verdict != "left_node" {
				t.Errorf("packet %s: verdict %s, want left_node", p.ID, p.Verdict)
			}
		}
	}
	if len(senders) < 2 {
		t.Fatalf("want pings from before and after the restart, got %d\n%s", len(senders), run.stdout)
	}
	first, last := senders[0], senders[len(senders)-1]
	if first.ID == last.ID || !first.Gone || last.Gone {
		t.Fatalf("senders: first hop %d (gone %v), last hop %d (gone %v); want the old hop gone and a new live one\n%s",
			first.ID, first.Gone, last.ID, last.Gone, run.stdout)
	}
}

// testDockerServiceLB: a two-replica swarm service reached through its VIP.
// Docker balances it with IPVS and firewall marks in c1's namespace; with
// vxtrace attached to that namespace the marks must be untouched and both
// replicas must still answer.
func testDockerServiceLB(t *testing.T, l *lab.Lab) {
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		// Swarm's VIPs are IPVS; without it no service is reachable by its
		// VIP, traced or not. Marks surviving the tracer are covered by
		// TestReliabilityPassive.
		t.Skip("this kernel has no IPVS (CONFIG_IP_VS): swarm VIP load balancing cannot run here")
	}
	c1 := dockerSide(l, lab.RoleC1)
	docker := func(args ...string) (string, error) {
		out, err := exec.Command("/usr/bin/docker", append([]string{"-H", c1.host}, args...)...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("docker %v: %v: %s", args, err, out)
		}
		return string(out), nil
	}
	const svc = "vxlb"
	if _, err := docker("service", "create", "--detach", "--no-resolve-image", "--name", svc, "--replicas", "2",
		"--network", "vxnet", "--endpoint-mode", "vip", "vxlab/busybox:1", "nc", "-ll", "-p", "8080", "-e", "hostname"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docker("service", "rm", svc) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := docker("service", "ps", svc, "--filter", "desired-state=running", "--format", "{{.CurrentState}}")
		if strings.Count(out, "Running") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service %s never ran 2 replicas:\n%s", svc, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// answers asks the service 12 times through its VIP and returns the
	// replicas that answered.
	answers := func() (map[string]int, error) {
		got := map[string]int{}
		for i := 0; i < 12; i++ {
			out, err := docker("exec", c1.name, "nc", "-w", "2", svc, "8080")
			if err != nil {
				return got, err
			}
			if name := strings.TrimSpace(out); name != "" {
				got[name]++
			}
		}
		return got, nil
	}
	// The VIP needs a moment after the tasks run.
	var base map[string]int
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		if base, err = answers(); err == nil && len(base) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("without vxtrace the service is not balanced: %v %v", base, err)
		}
	}
	var traced map[string]int
	run := trace(t, []string{"--container", c1.name, "--docker-host", c1.host, "--proto", "tcp", "--port", "8080", "--duration", "8s"},
		func() error {
			traced, err = answers()
			return err
		})
	if err != nil {
		t.Fatalf("with vxtrace attached: %v", err)
	}
	t.Logf("replicas answering: without vxtrace %v, with %v; %d packets traced", base, traced, len(run.doc.Packets))
	if len(traced) != 2 || traced[firstKey(traced)]+traced[secondKey(traced)] != 12 {
		t.Fatalf("with vxtrace attached the service answered %v, want 12 answers from 2 replicas", traced)
	}
	if len(run.doc.Packets) == 0 {
		t.Fatal("the trace saw none of the service's packets")
	}
}

func firstKey(m map[string]int) string {
	for k := range m {
		return k
	}
	return ""
}

func secondKey(m map[string]int) string {
	first := firstKey(m)
	for k := range m {
		if k != first {
			return k
		}
	}
	return ""
}

// testDockerDaemonGoes kills node 1's dockerd under a --container trace.
// Without live-restore the daemon takes its containers down with it: the
// trace must say the daemon is unreachable, keep running on what it knew,
// report the container's hops gone, and end with a valid document.
func testDockerDaemonGoes(t *testing.T, l *lab.Lab) {
	c1 := dockerSide(l, lab.RoleC1)
	pid := 0
	for _, p := range l.State().Processes {
		if p.What == "dockerd" && p.Role == lab.RoleN1 {
			pid = p.PID
		}
	}
	if pid == 0 {
		t.Fatal("no dockerd recorded for node 1")
	}
	start := time.Now()
	run := trace(t, []string{"--container", c1.name, "--docker-host", c1.host, "--duration", "8s"},
		func() error { return syscall.Kill(pid, syscall.SIGKILL) })
	t.Logf("exit %d after %v; stderr:\n%s", run.code, time.Since(start).Round(time.Millisecond), run.stderr)
	if run.code != 0 {
		t.Fatalf("exit %d", run.code)
	}
	if !strings.Contains(run.stderr, "Docker daemon unreachable") {
		t.Errorf("the trace did not say the daemon went away")
	}
	if run.doc == nil || run.doc.Schema != report.Schema {
		t.Fatal("no valid document")
	}
}
