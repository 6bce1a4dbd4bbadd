package lab

import (
	"context"
	"fmt"
)

// node is one side of the overlay, with the addressing of its layout.
type node struct {
	n, ov, c Role
	vtepIP   string
	vtepMAC  string // the vxlan device's MAC
	cIP      string
	cMAC     string
	// flannel-layout only.
	subnet   string // the node's /24
	vtepAddr string // 10.0.N.0, held by vxlan100, the remote side's gateway
	gw       string // 10.0.N.1, the container's gateway, held by the veth peer
	vethName string // the container veth's node-side name
}

const (
	dockerVXLAN  = "vxlan0"
	flannelVXLAN = "vxlan100"
	dockerBridge = "br0"
	dockerVeth   = "veth0" // sandbox side of the container veth
)

// Fixed MACs keep FDB and neighbour entries (and test expectations)
// deterministic; 02:42 + IP is what Docker itself derives.
func nodes(layout Layout) (n1, n2 node) {
	n1 = node{n: RoleN1, ov: RoleOV1, c: RoleC1, vtepIP: N1IP, vtepMAC: "0e:58:0a:63:01:02"}
	n2 = node{n: RoleN2, ov: RoleOV2, c: RoleC2, vtepIP: N2IP, vtepMAC: "0e:58:0a:63:02:02"}
	switch layout {
	case FlannelLayout:
		n1.cIP, n1.cMAC = "10.0.1.3", "02:42:0a:00:01:03"
		n2.cIP, n2.cMAC = "10.0.2.4", "02:42:0a:00:02:04"
		n1.subnet, n1.vtepAddr, n1.gw, n1.vethName = "10.0.1.0/24", "10.0.1.0", "10.0.1.1", "vethc1"
		n2.subnet, n2.vtepAddr, n2.gw, n2.vethName = "10.0.2.0/24", "10.0.2.0", "10.0.2.1", "vethc2"
	default:
		n1.cIP, n1.cMAC = "10.0.1.3", "02:42:0a:00:01:03"
		n2.cIP, n2.cMAC = "10.0.1.4", "02:42:0a:00:01:04"
	}
	return n1, n2
}

// sides returns a node and its remote peer.
func (l *Lab) sides(n Role) (local, remote node) {
	n1, n2 := nodes(l.st.Layout)
	if n == RoleN1 {
		return n1, n2
	}
	return n2, n1
}

func (l *Lab) addNS(ctx context.Context, r Role) (string, error) {
	name := NSName(l.st.Prefix, r)
	if err := newNS(ctx, name); err != nil {
		return "", err
	}
	l.st.Namespaces[r] = Namespace{Name: name, Path: nsPath(name)}
	return name, nil
}

func (l *Lab) buildDocker(ctx context.Context) error {
	l.st.VXLANDev = dockerVXLAN
	for _, nr := range []Role{RoleN1, RoleN2} {
		me, _ := l.sides(nr)
		l.st.ContainerIPs[me.c] = me.cIP
		l.st.ContainerMACs[me.c] = me.cMAC
		ov, err := l.addNS(ctx, me.ov)
		if err != nil {
			return err
		}
		c, err := l.addNS(ctx, me.c)
		if err != nil {
			return err
		}
		mtu := fmt.Sprint(OverlayMTU)
		if err := ip(ctx, ov, "link", "add", dockerBridge, "mtu", mtu, "type", "bridge"); err != nil {
			return fmt.Errorf("creating bridge %s/%s: %w", ov, dockerBridge, err)
		}
		if err := ip(ctx, ov, "link", "set", dockerBridge, "up"); err != nil {
			return fmt.Errorf("bringing up %s/%s: %w", ov, dockerBridge, err)
		}
		if err := ip(ctx, c, "link", "add", "eth0", "mtu", mtu, "address", me.cMAC, "type", "veth",
			"peer", "name", dockerVeth, "mtu", mtu, "netns", ov); err != nil {
			return fmt.Errorf("creating veth %s/eth0 - %s/%s: %w", c, ov, dockerVeth, err)
		}
		if err := ip(ctx, ov, "link", "set", dockerVeth, "master", dockerBridge, "up"); err != nil {
			return fmt.Errorf("attaching %s/%s to %s: %w", ov, dockerVeth, dockerBridge, err)
		}
		if err := configContainer(ctx, c, me.cIP, ""); err != nil {
			return err
		}
		if err := l.dockerVTEP(ctx, nr); err != nil {
			return err
		}
	}
	return nil
}

// dockerVTEP (re)creates a node's vxlan0 the way Docker's overlay driver
// does: born in the node namespace, where its UDP socket stays, then moved
// into the sandbox and enslaved to br0. It honours the faults that shape
// the device (wrong-vni, missing-fdb, missing-neigh), so a fault can be
// toggled by rebuilding.
func (l *Lab) dockerVTEP(ctx context.Context, nr Role) error {
	me, _ := l.sides(nr)
	n, ov := NSName(l.st.Prefix, me.n), NSName(l.st.Prefix, me.ov)
	vni := l.vniFor(nr)
	if ip(ctx, ov, "link", "show", dockerVXLAN) == nil {
		if err := ip(ctx, ov, "link", "del", dockerVXLAN); err != nil {
			return fmt.Errorf("deleting %s/%s: %w", ov, dockerVXLAN, err)
		}
	}
	// proxy: vxlan0 answers ARP from its neighbour table, as Docker's does;
	// without it the container's ARP request would be flooded to a device
	// with no default remote and dropped.
	if err := ip(ctx, n, "link", "add", dockerVXLAN, "address", me.vtepMAC, "mtu", fmt.Sprint(OverlayMTU),
		"type", "vxlan", "id", fmt.Sprint(vni), "local", me.vtepIP, "dstport", fmt.Sprint(VXLANPort),
		"nolearning", "proxy"); err != nil {
		return fmt.Errorf("creating %s in %s: %w", dockerVXLAN, n, err)
	}
	if err := ip(ctx, n, "link", "set", dockerVXLAN, "netns", ov); err != nil {
		_ = ip(ctx, n, "link", "del", dockerVXLAN)
		return fmt.Errorf("moving %s from %s to %s: %w", dockerVXLAN, n, ov, err)
	}
	if err := ip(ctx, ov, "link", "set", dockerVXLAN, "master", dockerBridge, "up"); err != nil {
		return fmt.Errorf("attaching %s/%s to %s: %w", ov, dockerVXLAN, dockerBridge, err)
	}
	if !(nr == RoleN1 && l.faultOn(FaultMissingFDB)) {
		if err := l.addFDB(ctx, nr); err != nil {
			return err
		}
	}
	if !(nr == RoleN1 && l.faultOn(FaultMissingNeigh)) {
		if err := l.addNeigh(ctx, nr); err != nil {
			return err
		}
	}
	return nil
}

// fdbEntry is the FDB entry a node's vxlan device needs to reach the
// remote side: the remote container's MAC (docker-layout, L2 overlay) or
// the remote vxlan100's MAC (flannel-layout, routed overlay).
func (l *Lab) fdbEntry(nr Role) (ns, dev, mac, dst string) {
	me, peer := l.sides(nr)
	if l.st.Layout == DockerLayout {
		return NSName(l.st.Prefix, me.ov), dockerVXLAN, peer.cMAC, peer.vtepIP
	}
	return NSName(l.st.Prefix, me.n), flannelVXLAN, peer.vtepMAC, peer.vtepIP
}

func (l *Lab) addFDB(ctx context.Context, nr Role) error {
	ns, dev, mac, dst := l.fdbEntry(nr)
	if err := bridgeCmd(ctx, ns, "fdb", "replace", mac, "dev", dev, "dst", dst, "self", "permanent"); err != nil {
		return fmt.Errorf("adding FDB entry %s -> %s on %s/%s: %w", mac, dst, ns, dev, err)
	}
	return nil
}

func (l *Lab) delFDB(ctx context.Context, nr Role) error {
	ns, dev, mac, dst := l.fdbEntry(nr)
	if err := bridgeCmd(ctx, ns, "fdb", "del", mac, "dev", dev, "dst", dst, "self"); err != nil {
		return fmt.Errorf("deleting FDB entry %s -> %s on %s/%s: %w", mac, dst, ns, dev, err)
	}
	return nil
}

// neighEntry is the permanent neighbour entry a node's vxlan device holds
// for the remote side: the remote container, which vxlan0 answers ARP for
// (docker-layout), or the remote vxlan100's address, the next hop of the
// route to the remote /24 (flannel-layout).
func (l *Lab) neighEntry(nr Role) (ns, dev, addr, mac string) {
	me, peer := l.sides(nr)
	if l.st.Layout == DockerLayout {
		return NSName(l.st.Prefix, me.ov), dockerVXLAN, peer.cIP, peer.cMAC
	}
	return NSName(l.st.Prefix, me.n), flannelVXLAN, peer.vtepAddr, peer.vtepMAC
}

// addNeigh replaces rather than adds: switching missing-neigh off finds the
// entry flannel-layout's node made while it tried to resolve the address.
func (l *Lab) addNeigh(ctx context.Context, nr Role) error {
	ns, dev, addr, mac := l.neighEntry(nr)
	if err := ip(ctx, ns, "neigh", "replace", addr, "lladdr", mac, "dev", dev, "nud", "permanent"); err != nil {
		return fmt.Errorf("adding neighbour %s on %s/%s: %w", addr, ns, dev, err)
	}
	return nil
}

func (l *Lab) delNeigh(ctx context.Context, nr Role) error {
	ns, dev, addr, _ := l.neighEntry(nr)
	if err := ip(ctx, ns, "neigh", "del", addr, "dev", dev); err != nil {
		return fmt.Errorf("deleting neighbour %s on %s/%s: %w", addr, ns, dev, err)
	}
	return nil
}

// flushPeerNeigh empties c1's neighbour cache for c2 (docker-layout, where
// c1 resolves c2 itself), so that c1's next packet to c2 asks again.
func (l *Lab) flushPeerNeigh(ctx context.Context) error {
	c1, dst := l.NS(RoleC1), l.ContainerIP(RoleC2)
	if err := ip(ctx, c1, "neigh", "flush", "to", dst, "dev", "eth0"); err != nil {
		return fmt.Errorf("flushing neighbour %s in %s: %w", dst, c1, err)
	}
	return nil
}

func (l *Lab) vniFor(nr Role) uint32 {
	if nr == RoleN2 && l.faultOn(FaultWrongVNI) {
		return WrongVNI
	}
	return l.st.VNI
}

// configContainer addresses a container's eth0 and brings it up.
func configContainer(ctx context.Context, c, cIP, gw string) error {
	if err := ip(ctx, c, "addr", "add", cIP+"/24", "dev", "eth0"); err != nil {
		return fmt.Errorf("addressing %s/eth0: %w", c, err)
	}
	if err := ip(ctx, c, "link", "set", "eth0", "up"); err != nil {
		return fmt.Errorf("bringing up %s/eth0: %w", c, err)
	}
	if gw != "" {
		if err := ip(ctx, c, "route", "add", "default", "via", gw); err != nil {
			return fmt.Errorf("adding default route in %s: %w", c, err)
		}
	}
	return nil
}

func (l *Lab) buildFlannel(ctx context.Context) error {
	l.st.VXLANDev = flannelVXLAN
	for _, nr := range []Role{RoleN1, RoleN2} {
		me, _ := l.sides(nr)
		l.st.ContainerIPs[me.c] = me.cIP
		l.st.ContainerMACs[me.c] = me.cMAC
		n := NSName(l.st.Prefix, nr)
		c, err := l.addNS(ctx, me.c)
		if err != nil {
			return err
		}
		if err := sysctl(ctx, n, "net.ipv4.ip_forward=1"); err != nil {
			return fmt.Errorf("enabling forwarding in %s: %w", n, err)
		}
		mtu := fmt.Sprint(OverlayMTU)
		if err := ip(ctx, c, "link", "add", "eth0", "mtu", mtu, "address", me.cMAC, "type", "veth",
			"peer", "name", me.vethName, "mtu", mtu, "netns", n); err != nil {
			return fmt.Errorf("creating veth %s/eth0 - %s/%s: %w", c, n, me.vethName, err)
		}
		// The gateway as a /32 on the veth peer: the node answers the
		// container's ARP for it without needing a bridge (flannel would
		// have cni0 here; seed 003's plan 1 routes instead).
		if err := ip(ctx, n, "addr", "add", me.gw+"/32", "dev", me.vethName); err != nil {
			return fmt.Errorf("addressing %s/%s: %w", n, me.vethName, err)
		}
		if err := ip(ctx, n, "link", "set", me.vethName, "up"); err != nil {
			return fmt.Errorf("bringing up %s/%s: %w", n, me.vethName, err)
		}
		if err := configContainer(ctx, c, me.cIP, me.gw); err != nil {
			return err
		}
		if err := ip(ctx, n, "route", "add", me.cIP+"/32", "dev", me.vethName); err != nil {
			return fmt.Errorf("routing %s to %s/%s: %w", me.cIP, n, me.vethName, err)
		}
		if err := l.flannelVTEP(ctx, nr); err != nil {
			return err
		}
	}
	return nil
}

// flannelVTEP (re)creates a node's vxlan100 with what flannel programs for
// the remote node: an onlink route to the remote /24 via the remote
// vxlan100 address, a permanent neighbour entry for that address and an FDB
// entry sending its MAC to the remote VTEP.
func (l *Lab) flannelVTEP(ctx context.Context, nr Role) error {
	me, peer := l.sides(nr)
	n := NSName(l.st.Prefix, nr)
	if ip(ctx, n, "link", "show", flannelVXLAN) == nil {
		if err := ip(ctx, n, "link", "del", flannelVXLAN); err != nil {
			return fmt.Errorf("deleting %s/%s: %w", n, flannelVXLAN, err)
		}
	}
	if err := ip(ctx, n, "link", "add", flannelVXLAN, "address", me.vtepMAC, "mtu", fmt.Sprint(OverlayMTU),
		"type", "vxlan", "id", fmt.Sprint(l.vniFor(nr)), "local", me.vtepIP,
		"dstport", fmt.Sprint(VXLANPort), "nolearning"); err != nil {
		return fmt.Errorf("creating %s in %s: %w", flannelVXLAN, n, err)
	}
	if err := ip(ctx, n, "addr", "add", me.vtepAddr+"/32", "dev", flannelVXLAN); err != nil {
		return fmt.Errorf("addressing %s/%s: %w", n, flannelVXLAN, err)
	}
	if err := ip(ctx, n, "link", "set", flannelVXLAN, "up"); err != nil {
		return fmt.Errorf("bringing up %s/%s: %w", n, flannelVXLAN, err)
	}
	if err := ip(ctx, n, "route", "add", peer.subnet, "via", peer.vtepAddr, "dev", flannelVXLAN, "onlink"); err != nil {
		return fmt.Errorf("routing %s via %s/%s: %w", peer.subnet, n, flannelVXLAN, err)
	}
	if !(nr == RoleN1 && l.faultOn(FaultMissingNeigh)) {
		if err := l.addNeigh(ctx, nr); err != nil {
			return err
		}
	}
	if !(nr == RoleN1 && l.faultOn(FaultMissingFDB)) {
		if err := l.addFDB(ctx, nr); err != nil {
			return err
		}
	}
	return nil
}

// rebuildVTEP recreates a node's vxlan device for the current faults.
func (l *Lab) rebuildVTEP(ctx context.Context, nr Role) error {
	if l.st.Layout == DockerLayout {
		return l.dockerVTEP(ctx, nr)
	}
	return l.flannelVTEP(ctx, nr)
}
