package docker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxtrace/vxtrace/docker"
	"github.com/vxtrace/vxtrace/lab"
	"github.com/vxtrace/vxtrace/topo"
)

const dockerCLI = "/usr/bin/docker"

func inode(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	return uint32(st.Ino)
}

func cli(ctx context.Context, t *testing.T, host string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, dockerCLI, append([]string{"--host", host}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func open(ctx context.Context, t *testing.T, host string) docker.Engine {
	t.Helper()
	e, err := docker.Open(ctx, host)
	if err != nil {
		t.Fatalf("Open(%s): %v", host, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func findNS(s *docker.NodeScope, name string) (topo.NetNS, bool) {
	for _, n := range s.NetNS {
		if n.Name == name {
			return n, true
		}
	}
	return topo.NetNS{}, false
}

func hopIn(s *docker.NodeScope, ino uint32, ifname string) *topo.Hop {
	h, ok := s.Topology.ByName(ino, ifname)
	if !ok {
		return nil
	}
	return h
}

func kinds(path []*topo.Hop) []topo.Kind {
	var out []topo.Kind
	for _, h := range path {
		out = append(out, h.Kind)
	}
	return out
}

// TestDocker runs every check against one real two-node swarm (lab
// UpDocker), brought up once; the last subtest tears it down and checks that
// nothing is left. Cleanup tears it down too when something fails first.
func TestDocker(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	prefix := fmt.Sprintf("vxd%d", os.Getpid()%100000)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if len(lab.DockerLeftovers(prefix)) > 0 {
			if err := lab.Down(prefix); err != nil {
				t.Errorf("Down: %v", err)
			}
		}
	})
	start := time.Now()
	l, err := lab.UpDocker(ctx, lab.Config{Prefix: prefix}, func(s string) {
		t.Logf("%6.2fs up: %s", time.Since(start).Seconds(), s)
	})
	if err != nil {
		t.Fatalf("UpDocker: %v", err)
	}
	h1, h2 := l.DockerHost(lab.RoleN1), l.DockerHost(lab.RoleN2)
	netID := l.DockerNetworkID()
	c1IP, c2IP := netip.MustParseAddr(l.ContainerIP(lab.RoleC1)), netip.MustParseAddr(l.ContainerIP(lab.RoleC2))

	t.Run("Engine", func(t *testing.T) {
		e := open(ctx, t, h1)
		cs, err := e.Containers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(cs, func(c docker.Container) bool { return c.Name == "c1" && c.Running }) {
			t.Fatalf("Containers on n1: %+v, want a running c1", cs)
		}
		c, err := e.Container(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		if c.Pid <= 0 || c.SandboxKey == "" || len(c.Endpoints) != 1 {
			t.Fatalf("c1: %+v", c)
		}
		ep := c.Endpoints[0]
		if ep.Network != lab.DockerNetwork || ep.NetworkID != netID || ep.Driver != "overlay" || ep.IP != c1IP ||
			ep.MAC != l.ContainerMAC(lab.RoleC1) || ep.VNI != l.VNI() || ep.PrefixLen != 24 {
			t.Errorf("c1's endpoint: %+v, want %s (%s) overlay %s %s VNI %d", ep, lab.DockerNetwork, netID, c1IP, l.ContainerMAC(lab.RoleC1), l.VNI())
		}
		byID, err := e.Container(ctx, c.ID[:6])
		if err != nil || byID.Name != "c1" {
			t.Errorf("Container(ID prefix): %+v, %v", byID, err)
		}
	})

	t.Run("DockerHostEnv", func(t *testing.T) {
		t.Setenv("DOCKER_HOST", h2)
		e := open(ctx, t, "")
		if e.Host() != h2 {
			t.Errorf("Host() = %s, want DOCKER_HOST %s", e.Host(), h2)
		}
		if _, err := e.Container(ctx, "c2"); err != nil {
			t.Errorf("c2 through DOCKER_HOST: %v", err)
		}
		// An explicit host wins over DOCKER_HOST.
		e1 := open(ctx, t, h1)
		if _, err := e1.Container(ctx, "c1"); err != nil {
			t.Errorf("c1 through the explicit host: %v", err)
		}
	})

	t.Run("Daemon", func(t *testing.T) {
		for _, node := range []lab.Role{lab.RoleN1, lab.RoleN2} {
			e := open(ctx, t, l.DockerHost(node))
			d, err := e.Daemon(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ns, err := e.NodeNetNS(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := inode(t, ns), inode(t, l.NSPath(node)); got != want {
				t.Errorf("%s: NodeNetNS %s is netns %d, want %s's %d", node, ns, got, l.NS(node), want)
			}
			if init, err := topo.InitNetNSInode(); err != nil || inode(t, ns) == init {
				t.Errorf("%s: NodeNetNS is the init namespace (%v)", node, err)
			}
			if want := lab.DockerDir(prefix) + "/" + string(node) + "/exec"; d.ExecRoot != want {
				t.Errorf("%s: ExecRoot %s, want %s", node, d.ExecRoot, want)
			}
			if d.APIVersion != "1.41" {
				t.Logf("negotiated API %s", d.APIVersion)
			}
		}
	})

	t.Run("ScopeOverlay", func(t *testing.T) {
		e := open(ctx, t, h1)
		s, err := docker.Scope(ctx, e, "c1")
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for _, n := range s.NetNS {
			fmt.Fprintf(&buf, "netns %-14s inode %d  %s\n", n.Name, n.Inode, n.Path)
		}
		for _, lk := range s.Links {
			fmt.Fprintf(&buf, "link %s@%d (%s) -> %s/%s master %s\n", lk.Ifname, lk.Ifindex, lk.Network, lk.Peer.Name, lk.PeerIfname, lk.PeerMaster)
		}
		if err := s.Topology.FormatTo(&buf, s.Path, c2IP.AsSlice()); err != nil {
			t.Fatal(err)
		}
		t.Logf("scope of c1:\n%s", buf.String())

		cns := s.ContainerNetNS()
		if cns.Inode != inode(t, l.NSPath(lab.RoleC1)) {
			t.Errorf("container netns %+v, want c1's %s", cns, l.NSPath(lab.RoleC1))
		}
		sbName := "1-" + netID[:10]
		sb, ok := findNS(s, sbName)
		if !ok {
			t.Fatalf("no overlay sandbox %s in scope %+v", sbName, s.NetNS)
		}
		if sb.Inode != inode(t, l.NSPath(lab.RoleOV1)) {
			t.Errorf("sandbox %+v is not the lab's ov1 %s", sb, l.NSPath(lab.RoleOV1))
		}
		if br := hopIn(s, sb.Inode, "br0"); br == nil || br.Kind != topo.KindBridge {
			t.Errorf("br0 in %s: %+v", sbName, br)
		}
		vx := hopIn(s, sb.Inode, "vxlan0")
		if vx == nil || vx.Kind != topo.KindVXLAN || vx.VNI == nil || *vx.VNI != l.VNI() {
			t.Errorf("vxlan0 in %s: %+v, want VNI %d", sbName, vx, l.VNI())
		}
		if s.Node.Name != l.NS(lab.RoleN1) || s.Node.Inode != inode(t, l.NSPath(lab.RoleN1)) {
			t.Errorf("node netns %+v, want %s", s.Node, l.NS(lab.RoleN1))
		}
		if nic := hopIn(s, s.Node.Inode, lab.NodeNIC); nic == nil || nic.Kind != topo.KindNIC {
			t.Errorf("NIC %s in %s: %+v", lab.NodeNIC, s.Node.Name, nic)
		}
		want := []topo.Kind{topo.KindContainer, topo.KindVeth, topo.KindBridge, topo.KindVXLAN, topo.KindNIC}
		if got := kinds(s.Path); !slices.Equal(got, want) {
			t.Errorf("path kinds %v, want %v", got, want)
		} else if last := s.Path[len(s.Path)-1]; last.NetNS.Inode != s.Node.Inode || last.Ifname != lab.NodeNIC {
			t.Errorf("path ends at %s/%s, want %s/%s", last.NetNS.Name, last.Ifname, s.Node.Name, lab.NodeNIC)
		}
		if !slices.Contains(s.IPs, c1IP) {
			t.Errorf("IPs %v, want %s", s.IPs, c1IP)
		}
		// Swarm also gives c1 a docker_gwbridge leg, whose peer is in the node.
		if !slices.ContainsFunc(s.Links, func(lk docker.Link) bool {
			return lk.Network == "docker_gwbridge" && lk.Peer.Inode == s.Node.Inode
		}) {
			t.Errorf("no docker_gwbridge link in %+v", s.Links)
		}
	})

	t.Run("ScopeNode2", func(t *testing.T) {
		e := open(ctx, t, h2)
		s, err := docker.Scope(ctx, e, "c2")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := findNS(s, "1-"+netID[:10]); !ok || s.Node.Name != l.NS(lab.RoleN2) {
			t.Errorf("c2's scope %+v", s.NetNS)
		}
		if len(s.Path) == 0 || s.Path[len(s.Path)-1].Kind != topo.KindNIC {
			t.Errorf("c2's path %v", kinds(s.Path))
		}
	})

	t.Run("ScopeBridge", func(t *testing.T) {
		cli(ctx, t, h1, "run", "--detach", "--name", "onbridge", lab.DockerImage, "sleep", "1000000")
		e := open(ctx, t, h1)
		s, err := docker.Scope(ctx, e, "onbridge")
		if err != nil {
			t.Fatal(err)
		}
		if len(s.NetNS) != 2 || s.NetNS[1].Inode != s.Node.Inode {
			t.Errorf("bridge scope %+v, want the container's and the node's", s.NetNS)
		}
		want := []topo.Kind{topo.KindContainer, topo.KindVeth, topo.KindBridge}
		if got := kinds(s.Path); len(got) < 3 || !slices.Equal(got[:3], want) || s.Path[2].Ifname != "docker0" {
			t.Errorf("bridge path %v (%+v), want %v through docker0", got, s.Path, want)
		}
		if s.Container.Endpoints[0].Bridge != "docker0" {
			t.Errorf("endpoint %+v, want bridge docker0", s.Container.Endpoints[0])
		}
	})

	t.Run("Ping", func(t *testing.T) {
		out := cli(ctx, t, h1, "exec", "c1", "ping", "-c", "3", "-W", "2", c2IP.String())
		if !strings.Contains(out, "3 packets received") {
			t.Errorf("docker exec c1 ping c2:\n%s", out)
		}
	})

	t.Run("Resolve", func(t *testing.T) {
		e := open(ctx, t, h1)
		got, err := docker.Resolve(ctx, e, "c1")
		if err != nil || !slices.Equal(got, []netip.Addr{c1IP}) {
			t.Errorf("Resolve(c1) = %v, %v; want %s", got, err, c1IP)
		}
		got, err = docker.Resolve(ctx, e, c2IP.String())
		if err != nil || !slices.Equal(got, []netip.Addr{c2IP}) {
			t.Errorf("Resolve(%s) = %v, %v", c2IP, got, err)
		}
		if _, err := docker.Resolve(ctx, e, "nosuch"); !errors.Is(err, docker.ErrNotFound) {
			t.Errorf("Resolve(nosuch): %v, want ErrNotFound", err)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		cli(ctx, t, h1, "create", "--name", "stopped", "--network", lab.DockerNetwork, lab.DockerImage, "sleep", "1000000")
		cli(ctx, t, h1, "run", "--detach", "--name", "nonet", "--network", "none", lab.DockerImage, "sleep", "1000000")
		e := open(ctx, t, h1)
		cases := []struct {
			name string
			want error
			text string
		}{
			{"nosuch", docker.ErrNotFound, `no such container "nosuch" on the Docker daemon at ` + h1},
			{"c2", docker.ErrNotFound, `"c2"`}, // it runs on the other node
			{"stopped", docker.ErrNotRunning, `container "stopped" is not running (state created)`},
			{"nonet", docker.ErrNoNetwork, `container "nonet" is on no network`},
		}
		// "c2" is also hex: Docker resolves it as an ID prefix when the ID
		// of a container on this node happens to start with it, and the
		// answer is then about that container (running, stopped, or on
		// no network).
		ids := strings.Fields(cli(ctx, t, h1, "ps", "--all", "--quiet", "--no-trunc"))
		idPrefix := func(name string) bool {
			return slices.ContainsFunc(ids, func(id string) bool { return strings.HasPrefix(id, name) })
		}
		for _, c := range cases {
			sc, err := docker.Scope(ctx, e, c.name)
			if c.name == "c2" && idPrefix(c.name) {
				// sc is nil when that container cannot be traced.
				if err == nil {
					t.Logf("Scope(c2) resolved an ID prefix: container %s", sc.Container.Name)
				} else {
					t.Logf("Scope(c2) resolved an ID prefix: %v", err)
				}
				continue
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Scope(%s): %v; want %v saying %q on one line", c.name, err, c.want, c.text)
			}
		}
		bogus := "unix://" + t.TempDir() + "/docker.sock"
		_, err := docker.Open(ctx, bogus)
		if !errors.Is(err, docker.ErrUnreachable) || !strings.Contains(err.Error(), "DOCKER_HOST") ||
			!strings.Contains(err.Error(), bogus) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Open(%s): %v; want a one-line ErrUnreachable naming the host and DOCKER_HOST", bogus, err)
		}
		t.Logf("unreachable: %v", err)
	})

	t.Run("Teardown", func(t *testing.T) {
		if err := lab.Down(prefix); err != nil {
			t.Errorf("Down: %v", err)
		}
		if left := lab.DockerLeftovers(prefix); len(left) > 0 {
			t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
		}
		// The daemon is gone now: the engine reports it, once, clearly.
		if _, err := docker.Open(ctx, h1); !errors.Is(err, docker.ErrUnreachable) {
			t.Errorf("Open after Down: %v, want ErrUnreachable", err)
		}
	})
}
