package topo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// prefix keeps this process's namespaces apart from other test binaries'
// labs running in parallel.
var prefix = fmt.Sprintf("tpt%d", os.Getpid())

func TestMain(m *testing.M) {
	code := m.Run()
	// Every test tears down with t.Cleanup; this catches a cleanup that
	// silently did not work.
	if ents, err := os.ReadDir(RunNetNSDir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				fmt.Fprintf(os.Stderr, "left behind: %s/%s\n", RunNetNSDir, e.Name())
				exec.Command("ip", "netns", "del", e.Name()).Run()
				code = 1
			}
		}
	}
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// addNS creates a named namespace that is deleted when the test ends,
// whether it passes or not.
func addNS(t *testing.T, name string) NetNS {
	t.Helper()
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("deleting netns %s: %v %s", name, err, out)
		}
	})
	run(t, "ip", "netns", "add", name)
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	ns, err := ResolveNetNS(name)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// startIn runs a long sleep in a new or given namespace and stops it at the
// end of the test.
func startIn(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", args, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// unshare and ip netns exec switch namespace before exec'ing sleep.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); err == nil && strings.TrimSpace(string(b)) == "sleep" {
			return cmd
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%v did not reach sleep", args)
	return nil
}

func mustHop(t *testing.T, topo *Topology, ns NetNS, name string) *Hop {
	t.Helper()
	h, ok := topo.ByName(ns.Inode, name)
	if !ok {
		t.Fatalf("no hop %s in %s", name, ns.Name)
	}
	return h
}

func wantKind(t *testing.T, h *Hop, k Kind) {
	t.Helper()
	if h.Kind != k {
		t.Errorf("%s/%s: kind %s, want %s", h.NetNS.Name, h.Ifname, h.Kind, k)
	}
}

type dockerLab struct {
	node, peer, sb, c NetNS
}

// buildDockerLayout builds one node of Docker's overlay layout: the vxlan
// device is created in the node namespace and moved into the sandbox, so
// its UDP socket stays in the node.
func buildDockerLayout(t *testing.T, p string) dockerLab {
	l := dockerLab{
		node: addNS(t, p+"-n"),
		peer: addNS(t, p+"-p"),
		sb:   addNS(t, p+"-sb"),
		c:    addNS(t, p+"-c"),
	}
	n, pe, sb, c := l.node.Name, l.peer.Name, l.sb.Name, l.c.Name
	run(t, "ip", "-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", pe)
	run(t, "ip", "-n", n, "addr", "add", "10.99.1.2/24", "dev", "eth0")
	run(t, "ip", "-n", n, "link", "set", "eth0", "up")
	run(t, "ip", "-n", pe, "addr", "add", "10.99.1.1/24", "dev", "eth0")
	run(t, "ip", "-n", pe, "link", "set", "eth0", "up")
	run(t, "ip", "-n", n, "route", "add", "10.99.2.0/24", "via", "10.99.1.1")

	run(t, "ip", "-n", n, "link", "add", "vxlan0", "type", "vxlan", "id", "4097", "local", "10.99.1.2",
		"dstport", "4789", "proxy", "nolearning")
	run(t, "ip", "-n", n, "link", "set", "vxlan0", "netns", sb)
	run(t, "ip", "-n", sb, "link", "add", "br0", "mtu", "1450", "type", "bridge")
	run(t, "ip", "-n", sb, "addr", "add", "10.0.1.1/24", "dev", "br0")
	run(t, "ip", "-n", sb, "link", "set", "vxlan0", "mtu", "1450", "master", "br0", "up")
	run(t, "ip", "-n", sb, "link", "set", "br0", "up")
	run(t, "ip", "-n", c, "link", "add", "eth0", "mtu", "1450", "type", "veth", "peer", "name", "veth0", "mtu", "1450", "netns", sb)
	run(t, "ip", "-n", sb, "link", "set", "veth0", "master", "br0", "up")
	run(t, "ip", "-n", c, "addr", "add", "10.0.1.3/24", "dev", "eth0")
	run(t, "ip", "-n", c, "link", "set", "eth0", "up")
	run(t, "bridge", "-n", sb, "fdb", "add", "02:42:0a:00:01:04", "dev", "vxlan0", "dst", "10.99.2.2", "self", "permanent")
	run(t, "ip", "-n", sb, "neigh", "add", "10.0.1.4", "lladdr", "02:42:0a:00:01:04", "dev", "vxlan0", "nud", "permanent")
	return l
}

func TestDiscoverDockerLayout(t *testing.T) {
	needRoot(t)
	l := buildDockerLayout(t, prefix+"d")
	topo, err := Discover([]NetNS{l.node, l.peer, l.sb, l.c})
	if err != nil {
		t.Fatal(err)
	}
	checkDockerLayout(t, topo, l)

	t.Run("format", func(t *testing.T) {
		path := topo.PathFrom(l.c.Inode)
		var b bytes.Buffer
		if err := topo.Format(&b, path); err != nil {
			t.Fatal(err)
		}
		t.Logf("\n%s", b.String())
		for _, want := range []string{
			fmt.Sprintf("netns %s [%d]", l.c.Name, l.c.Inode),
			fmt.Sprintf("netns %s [%d]", l.sb.Name, l.sb.Inode),
			"vni 4097", "port 4789", "local 10.99.1.2",
			fmt.Sprintf("udp socket in node %s [%d]", l.node.Name, l.node.Inode),
			"fdb   02:42:0a:00:01:04 → 10.99.2.2",
			"neigh 10.0.1.4 → 02:42:0a:00:01:04 permanent",
			"vteps 10.99.2.2",
			"veth peer veth0",
		} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("format lacks %q", want)
			}
		}

		b.Reset()
		topo.FormatTo(&b, path, net.ParseIP("10.0.1.9"))
		if !strings.Contains(b.String(), "neigh none for 10.0.1.9") || strings.Contains(b.String(), "fdb   02:42") {
			t.Errorf("FormatTo(10.0.1.9) should report the missing neighbour only:\n%s", b.String())
		}

		js, err := json.Marshal(path)
		if err != nil {
			t.Fatal(err)
		}
		var back []Hop
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatal(err)
		}
		if len(back) != 5 || back[3].VNI == nil || *back[3].VNI != 4097 || back[3].Port != 4789 || back[0].NetNS.Name != l.c.Name {
			t.Errorf("json round trip: %s", js)
		}
	})

	t.Run("refresh", func(t *testing.T) {
		// No dummy driver in this kernel: a bridge is as good a new link.
		run(t, "ip", "-n", l.sb.Name, "link", "add", "dummy0", "type", "bridge")
		ch, err := topo.Refresh()
		if err != nil {
			t.Fatal(err)
		}
		if len(ch.Added) != 1 || ch.Added[0].Ifname != "dummy0" || len(ch.Gone) != 0 {
			t.Fatalf("after adding dummy0: %+v", ch)
		}
		id := ch.Added[0].ID
		run(t, "ip", "-n", l.sb.Name, "link", "del", "dummy0")
		ch, err = topo.Refresh()
		if err != nil {
			t.Fatal(err)
		}
		if len(ch.Gone) != 1 || ch.Gone[0].ID != id || !topo.Hops[id].Gone || len(ch.Added) != 0 {
			t.Fatalf("after deleting dummy0: %+v", ch)
		}
		if ch, err = topo.Refresh(); err != nil || !ch.Empty() {
			t.Fatalf("a refresh with no change: %+v, %v", ch, err)
		}
	})
}

func checkDockerLayout(t *testing.T, topo *Topology, l dockerLab) {
	t.Helper()
	ceth := mustHop(t, topo, l.c, "eth0")
	veth := mustHop(t, topo, l.sb, "veth0")
	br := mustHop(t, topo, l.sb, "br0")
	vx := mustHop(t, topo, l.sb, "vxlan0")
	nic := mustHop(t, topo, l.node, "eth0")
	peer := mustHop(t, topo, l.peer, "eth0")

	wantKind(t, ceth, KindContainer)
	wantKind(t, veth, KindVeth)
	wantKind(t, br, KindBridge)
	wantKind(t, vx, KindVXLAN)
	wantKind(t, nic, KindNIC)
	wantKind(t, peer, KindOther)

	if ceth.MTU != 1450 {
		t.Errorf("container eth0 mtu %d", ceth.MTU)
	}
	if ceth.PeerNetNS != l.sb.Inode || ceth.PeerIfindex != veth.Ifindex {
		t.Errorf("container eth0 peer = %d/%d, want %d/%d", ceth.PeerNetNS, ceth.PeerIfindex, l.sb.Inode, veth.Ifindex)
	}
	if veth.PeerNetNS != l.c.Inode || veth.PeerIfindex != ceth.Ifindex {
		t.Errorf("veth0 peer = %d/%d, want %d/%d", veth.PeerNetNS, veth.PeerIfindex, l.c.Inode, ceth.Ifindex)
	}
	if veth.Master != "br0" || vx.Master != "br0" {
		t.Errorf("masters: veth0 %q, vxlan0 %q", veth.Master, vx.Master)
	}
	if vx.VNI == nil || *vx.VNI != 4097 || vx.Port != 4789 || vx.Local != "10.99.1.2" {
		t.Errorf("vxlan0: vni %v port %d local %q", vx.VNI, vx.Port, vx.Local)
	}
	if vx.NodeNetNS != l.node.Inode || vx.Node != l.node.Name {
		t.Errorf("vxlan0 node = %q [%d], want %q [%d]", vx.Node, vx.NodeNetNS, l.node.Name, l.node.Inode)
	}
	if !slices.Contains(vx.FDB, FDBEntry{MAC: "02:42:0a:00:01:04", Dst: "10.99.2.2"}) {
		t.Errorf("vxlan0 fdb %+v", vx.FDB)
	}
	if !slices.ContainsFunc(vx.Neigh, func(n Neigh) bool { return n.IP == "10.0.1.4" && n.MAC == "02:42:0a:00:01:04" }) {
		t.Errorf("vxlan0 neigh %+v", vx.Neigh)
	}
	if !slices.Equal(nic.Peers, []string{"10.99.2.2"}) {
		t.Errorf("nic peers %v", nic.Peers)
	}
	for _, h := range []*Hop{ceth, veth, br, vx, nic} {
		if h.Node != l.node.Name || h.NodeNetNS != l.node.Inode {
			t.Errorf("%s/%s: node %q [%d], want %q", h.NetNS.Name, h.Ifname, h.Node, h.NodeNetNS, l.node.Name)
		}
	}
	for _, h := range topo.Hops {
		if h.Ifname == "lo" {
			t.Errorf("lo in %s was not skipped", h.NetNS.Name)
		}
		// Only a namespace held by a process alone (another test's
		// container, say) has no name to give.
		if h.NetNS.Name == "" && !strings.HasPrefix(h.NetNS.Path, "/proc/") {
			t.Errorf("hop %s [%d] has no namespace name", h.Ifname, h.NetNS.Inode)
		}
	}

	path := topo.PathFrom(l.c.Inode)
	want := []*Hop{ceth, veth, br, vx, nic}
	if !slices.Equal(path, want) {
		t.Errorf("PathFrom(container) = %s, want %s", pathString(path), pathString(want))
	}
	if p := topo.PathFrom(l.peer.Inode); p != nil {
		t.Errorf("PathFrom(a namespace without container) = %s", pathString(p))
	}
}

func pathString(p []*Hop) string {
	var s []string
	for _, h := range p {
		s = append(s, fmt.Sprintf("%s/%s(%s)", h.NetNS.Name, h.Ifname, h.Kind))
	}
	return strings.Join(s, " → ")
}

// TestDiscoverEverything runs discovery on every namespace of the machine,
// which changes underneath it when other tests run, and must still find
// this test's layout as it is.
func TestDiscoverEverything(t *testing.T) {
	needRoot(t)
	l := buildDockerLayout(t, prefix+"e")
	nss, err := ListNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	topo, err := Discover(nss)
	if err != nil {
		t.Fatal(err)
	}
	checkDockerLayout(t, topo, l)
	if len(topo.Namespaces()) < 4 {
		t.Errorf("namespaces %v", topo.Namespaces())
	}
}

func TestDiscoverFlannelLayout(t *testing.T) {
	needRoot(t)
	p := prefix + "f"
	node, peer, c := addNS(t, p+"-n"), addNS(t, p+"-p"), addNS(t, p+"-c")
	n := node.Name
	run(t, "ip", "-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer.Name)
	run(t, "ip", "-n", n, "addr", "add", "10.98.1.2/24", "dev", "eth0")
	run(t, "ip", "-n", n, "link", "set", "eth0", "up")
	run(t, "ip", "-n", peer.Name, "addr", "add", "10.98.1.1/24", "dev", "eth0")
	run(t, "ip", "-n", peer.Name, "link", "set", "eth0", "up")
	run(t, "ip", "-n", n, "route", "add", "default", "via", "10.98.1.1")
	run(t, "ip", "-n", n, "link", "add", "vxlan100", "type", "vxlan", "id", "100", "local", "10.98.1.2",
		"dev", "eth0", "dstport", "4789", "nolearning")
	run(t, "ip", "-n", n, "addr", "add", "10.1.0.0/32", "dev", "vxlan100")
	run(t, "ip", "-n", n, "link", "set", "vxlan100", "up")
	run(t, "ip", "-n", n, "route", "add", "10.1.1.0/24", "via", "10.1.1.0", "dev", "vxlan100", "onlink")
	run(t, "ip", "-n", n, "neigh", "add", "10.1.1.0", "lladdr", "0e:e6:e6:5d:c2:da", "dev", "vxlan100", "nud", "permanent")
	run(t, "bridge", "-n", n, "fdb", "append", "0e:e6:e6:5d:c2:da", "dev", "vxlan100", "dst", "10.98.2.2")
	run(t, "ip", "-n", c.Name, "link", "add", "eth0", "type", "veth", "peer", "name", "vethc1", "netns", n)
	run(t, "ip", "-n", c.Name, "addr", "add", "10.1.0.5/32", "dev", "eth0")
	run(t, "ip", "-n", c.Name, "link", "set", "eth0", "up")
	run(t, "ip", "-n", n, "link", "set", "vethc1", "up")
	run(t, "ip", "-n", n, "route", "add", "10.1.0.5/32", "dev", "vethc1")

	topo, err := Discover([]NetNS{node, peer, c})
	if err != nil {
		t.Fatal(err)
	}
	ceth := mustHop(t, topo, c, "eth0")
	veth := mustHop(t, topo, node, "vethc1")
	vx := mustHop(t, topo, node, "vxlan100")
	nic := mustHop(t, topo, node, "eth0")
	wantKind(t, ceth, KindContainer)
	wantKind(t, veth, KindVeth)
	wantKind(t, vx, KindVXLAN)
	wantKind(t, nic, KindNIC)
	wantKind(t, mustHop(t, topo, peer, "eth0"), KindOther)

	if ceth.PeerNetNS != node.Inode || ceth.PeerIfindex != veth.Ifindex || veth.PeerNetNS != c.Inode || veth.PeerIfindex != ceth.Ifindex {
		t.Errorf("veth pair: eth0 → %d/%d, vethc1 → %d/%d", ceth.PeerNetNS, ceth.PeerIfindex, veth.PeerNetNS, veth.PeerIfindex)
	}
	if vx.VNI == nil || *vx.VNI != 100 || vx.NodeNetNS != node.Inode || vx.Node != node.Name {
		t.Errorf("vxlan100: vni %v node %q [%d]", vx.VNI, vx.Node, vx.NodeNetNS)
	}
	if !slices.Contains(vx.FDB, FDBEntry{MAC: "0e:e6:e6:5d:c2:da", Dst: "10.98.2.2"}) {
		t.Errorf("vxlan100 fdb %+v", vx.FDB)
	}
	if !slices.Equal(nic.Peers, []string{"10.98.2.2"}) {
		t.Errorf("nic peers %v", nic.Peers)
	}
	if ceth.Node != node.Name {
		t.Errorf("container node %q", ceth.Node)
	}
	path := topo.PathFrom(c.Inode)
	if want := []*Hop{ceth, veth, vx, nic}; !slices.Equal(path, want) {
		t.Errorf("PathFrom(container) = %s, want %s", pathString(path), pathString(want))
	}
	var b bytes.Buffer
	topo.FormatTo(&b, path, net.ParseIP("10.1.1.7"))
	t.Logf("\n%s", b.String())
	if !strings.Contains(b.String(), "neigh 10.1.1.0 → 0e:e6:e6:5d:c2:da") {
		t.Errorf("routed vxlan should show its entries:\n%s", b.String())
	}
}

func TestListNamespaces(t *testing.T) {
	needRoot(t)
	a, b := addNS(t, prefix+"l-a"), addNS(t, prefix+"l-b")
	// A process inside a named namespace must not make it appear twice.
	inA := startIn(t, "ip", "netns", "exec", a.Name, "sleep", "60")
	// A namespace held only by a process has no name.
	anon := startIn(t, "unshare", "--net", "sleep", "60")
	anonPath := fmt.Sprintf("/proc/%d/ns/net", anon.Process.Pid)
	anonIno, err := NetNSInode(anonPath)
	if err != nil {
		t.Fatal(err)
	}
	if ino, _ := NetNSInode(fmt.Sprintf("/proc/%d/ns/net", inA.Process.Pid)); ino != a.Inode {
		t.Fatalf("sleep in %s is in netns %d, want %d", a.Name, ino, a.Inode)
	}

	nss, err := ListNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[uint32]bool)
	byIno := make(map[uint32]NetNS)
	for _, ns := range nss {
		if seen[ns.Inode] {
			t.Errorf("netns %d listed twice", ns.Inode)
		}
		seen[ns.Inode] = true
		byIno[ns.Inode] = ns
	}
	for _, want := range []NetNS{a, b} {
		got, ok := byIno[want.Inode]
		if !ok || got.Name != want.Name {
			t.Errorf("netns %s [%d]: got %+v", want.Name, want.Inode, got)
		}
	}
	if got, ok := byIno[anonIno]; !ok || got.Name != "" {
		t.Errorf("anonymous netns %d: got %+v (found %v)", anonIno, got, ok)
	} else if ino, err := NetNSInode(got.Path); err != nil || ino != anonIno {
		t.Errorf("anonymous netns path %q opens %d, %v", got.Path, ino, err)
	}
	initIno, err := InitNetNSInode()
	if err != nil {
		t.Fatal(err)
	}
	if nss[0].Inode != initIno || nss[0].Name != HostName {
		t.Errorf("first namespace %+v, want host [%d]", nss[0], initIno)
	}
	self, err := CurrentNetNSInode()
	if err != nil {
		t.Fatal(err)
	}
	if !seen[self] {
		t.Errorf("own netns %d not listed", self)
	}

	// An extra directory (a dockerd --exec-root's netns) names namespaces
	// that have no other bind mount.
	dir := t.TempDir()
	mnt := filepath.Join(dir, "1-6ttr438f3y")
	if err := os.WriteFile(mnt, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	run(t, "mount", "--bind", anonPath, mnt)
	nss, err = ListNamespaces(dir)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(nss, func(ns NetNS) bool { return ns.Inode == anonIno })
	if i < 0 || nss[i].Name != "1-6ttr438f3y" || nss[i].Path != mnt {
		t.Errorf("netns in extra dir: %+v", nss[i])
	}
}

func TestResolveNetNS(t *testing.T) {
	needRoot(t)
	a := addNS(t, prefix+"r-a")
	if a.Path != filepath.Join(RunNetNSDir, a.Name) || a.Inode == 0 {
		t.Errorf("by name: %+v", a)
	}
	byPath, err := ResolveNetNS(a.Path)
	if err != nil || byPath.Inode != a.Inode || byPath.Name != a.Name {
		t.Errorf("by path: %+v, %v", byPath, err)
	}
	host, err := ResolveNetNS(HostName)
	if initIno, _ := InitNetNSInode(); err != nil || host.Inode != initIno {
		t.Errorf("host: %+v, %v", host, err)
	}

	regular := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(regular, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for arg, want := range map[string]string{
		regular:                    "not a namespace",
		prefix + "r-missing":       "no namespace of that name",
		"/proc/self/ns/uts":        "a uts namespace, not a network namespace",
		"/nonexistent/netns/x":     "no such file",
		"":                         "empty name",
		filepath.Join(t.TempDir()): "not a namespace",
	} {
		_, err := ResolveNetNS(arg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ResolveNetNS(%q) = %v, want an error with %q", arg, err, want)
		}
	}
}

func TestDiscoverSkipsMissing(t *testing.T) {
	needRoot(t)
	a := addNS(t, prefix+"s-a")
	topo, err := Discover([]NetNS{{Name: "gone", Path: "/run/netns/" + prefix + "s-gone"}, a})
	if err != nil {
		t.Fatal(err)
	}
	if ns := topo.Namespaces(); len(ns) != 1 || ns[0].Inode != a.Inode {
		t.Errorf("namespaces %+v", ns)
	}
	if _, err := Discover([]NetNS{{Name: "gone", Path: "/run/netns/" + prefix + "s-gone"}}); err == nil {
		t.Error("Discover with no readable namespace should fail")
	}
}
