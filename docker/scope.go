package docker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vxtrace/vxtrace/topo"
)

// NodeScope is what one node's tracer watches for a container: the
// container's namespace, the sandboxes its veth peers live in (the overlay
// sandbox EXEC_ROOT/netns/1-<net id> with br0 and vxlan0), and the node
// namespace dockerd runs in (bridges such as docker0 and docker_gwbridge,
// the VXLAN UDP socket, the NIC).
type NodeScope struct {
	Container Container
	Daemon    Daemon
	// NetNS lists the namespaces to trace: the container's first, then its
	// peers' sandboxes, then the node's. Names are Docker's (the sandbox
	// key, "1-6ttr438f3y") or, for the node, its /var/run/netns name.
	NetNS []topo.NetNS
	Node  topo.NetNS
	Links []Link
	IPs   []netip.Addr
	// Topology holds every hop of NetNS; Path is the chain a packet
	// leaving the container crosses on this node (container veth, sandbox
	// veth, br0, vxlan0, NIC for an overlay; veth and bridge for a bridge
	// network).
	Topology *topo.Topology
	Path     []*topo.Hop
}

// Link is one veth of the container and where its other end is.
type Link struct {
	Network     string // the endpoint's network, "" if no endpoint matched
	Ifname      string
	Ifindex     int
	MTU         int
	MAC         string
	Peer        topo.NetNS // zero when the peer's namespace was not found
	PeerIfindex int
	PeerIfname  string
	PeerMaster  string // the bridge the peer is a port of (br0, docker0, docker_gwbridge)
}

// ContainerNetNS returns the container's own namespace.
func (s *NodeScope) ContainerNetNS() topo.NetNS { return s.NetNS[0] }

// Sandboxes returns the namespaces between the container and the node.
func (s *NodeScope) Sandboxes() []topo.NetNS {
	var out []topo.NetNS
	for _, n := range s.NetNS[1:] {
		if n.Inode != s.Node.Inode {
			out = append(out, n)
		}
	}
	return out
}

// Scope finds the namespaces to trace for a running container on the node of
// eng's daemon. The veth peers are found by their IFLA_LINK_NETNSID, matched
// against the namespaces in dockerd's EXEC_ROOT/netns and the node's own.
func Scope(ctx context.Context, eng Engine, nameOrID string) (*NodeScope, error) {
	c, err := eng.Container(ctx, nameOrID)
	if err != nil {
		return nil, err
	}
	if !c.Running {
		return nil, fmt.Errorf("container %q is %w (state %s)", nameOrID, ErrNotRunning, c.State)
	}
	if !onNetwork(c) {
		return nil, fmt.Errorf("container %q is %w (network mode %q)", nameOrID, ErrNoNetwork, c.NetworkMode)
	}
	d, err := eng.Daemon(ctx)
	if err != nil {
		return nil, err
	}
	s := &NodeScope{Container: c, Daemon: d, IPs: c.IPs()}

	nodeIno, err := nsInode(d.NetNS)
	if err != nil {
		return nil, fmt.Errorf("opening the node namespace %s: %w", d.NetNS, err)
	}
	s.Node = topo.NetNS{Inode: nodeIno, Name: nodeName(nodeIno), Path: d.NetNS}
	if p := bindMount(nodeIno); p != "" {
		// A bind mount outlives dockerd restarts; /proc/PID does not.
		s.Node.Path = p
	}

	cns, err := containerNetNS(c, d)
	if err != nil {
		return nil, err
	}
	if cns.Inode == nodeIno || c.NetworkMode == "host" {
		// Host networking: the container's namespace is the node's.
		s.NetNS = []topo.NetNS{s.Node}
		return s, s.discover()
	}
	s.NetNS = append(s.NetNS, cns)

	cands := candidates(d, s.Node)
	links, err := vethPeers(cns, cands)
	if err != nil {
		return nil, err
	}
	for i := range links {
		links[i].Network = endpointOf(c, links[i])
		if links[i].Network == "" && links[i].PeerMaster == "docker_gwbridge" {
			// Swarm's egress endpoint is not one of the container's networks.
			links[i].Network = "docker_gwbridge"
		}
	}
	s.Links = links

	seen := map[uint32]bool{cns.Inode: true, nodeIno: true}
	add := func(n topo.NetNS) {
		if n.Inode != 0 && !seen[n.Inode] {
			seen[n.Inode] = true
			s.NetNS = append(s.NetNS, n)
		}
	}
	for _, l := range links {
		add(l.Peer)
	}
	// Should a peer not be found (no nsid assigned yet), an overlay
	// network's sandbox is still where Docker puts it.
	for _, e := range c.Endpoints {
		if e.Driver != "overlay" || len(e.NetworkID) < 10 {
			continue
		}
		for _, n := range cands {
			if n.Name == "1-"+e.NetworkID[:10] {
				add(n)
			}
		}
	}
	s.NetNS = append(s.NetNS, s.Node)
	return s, s.discover()
}

func (s *NodeScope) discover() error {
	t, err := topo.Discover(s.NetNS)
	if err != nil {
		return fmt.Errorf("discovering hops of container %q: %w", s.Container.Name, err)
	}
	s.Topology = t
	s.Path = t.PathFrom(s.NetNS[0].Inode)
	return nil
}

func onNetwork(c Container) bool {
	if c.NetworkMode == "host" {
		return true
	}
	for _, e := range c.Endpoints {
		if e.Driver != "null" && e.Network != "none" && (e.IP.IsValid() || e.IPv6.IsValid()) {
			return true
		}
	}
	return false
}

func containerNetNS(c Container, d Daemon) (topo.NetNS, error) {
	var tried []string
	if c.SandboxKey != "" {
		p := d.Path(c.SandboxKey)
		if ino, err := nsInode(p); err == nil {
			return topo.NetNS{Inode: ino, Name: filepath.Base(c.SandboxKey), Path: p}, nil
		}
		tried = append(tried, p)
	}
	if c.Pid > 0 {
		p := fmt.Sprintf("/proc/%d/ns/net", c.Pid)
		if ino, err := nsInode(p); err == nil {
			name := filepath.Base(c.SandboxKey)
			if c.SandboxKey == "" {
				name = shortID(c.ID)
			}
			return topo.NetNS{Inode: ino, Name: name, Path: p}, nil
		}
		tried = append(tried, p)
	}
	return topo.NetNS{}, fmt.Errorf("opening the network namespace of container %q: none of %s opens", c.Name, strings.Join(tried, ", "))
}

// candidates lists the namespaces a container's veth peers can be in.
func candidates(d Daemon, node topo.NetNS) []topo.NetNS {
	out := []topo.NetNS{node}
	dir := d.Path(filepath.Join(d.ExecRoot, "netns"))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		ino, err := nsInode(p)
		if err != nil || ino == node.Inode {
			continue
		}
		out = append(out, topo.NetNS{Inode: ino, Name: e.Name(), Path: p})
	}
	return out
}

// vethPeers lists the container's veths with the namespace of each peer. The
// container's namespace knows each peer namespace by an nsid of its own
// (IFLA_LINK_NETNSID); asking it for the nsid of each candidate matches them.
func vethPeers(cns topo.NetNS, cands []topo.NetNS) ([]Link, error) {
	h, closeH, err := handleAt(cns.Path)
	if err != nil {
		return nil, fmt.Errorf("opening container namespace %s: %w", cns.Name, err)
	}
	defer closeH()
	ls, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links in %s: %w", cns.Name, err)
	}
	byID := map[int]topo.NetNS{}
	for _, c := range cands {
		fd, err := netns.GetFromPath(c.Path)
		if err != nil {
			continue
		}
		id, err := h.GetNetNsIdByFd(int(fd))
		fd.Close()
		if err == nil && id >= 0 {
			byID[id] = c
		}
	}
	var out []Link
	for _, l := range ls {
		a := l.Attrs()
		if l.Type() != "veth" {
			continue
		}
		lk := Link{Ifname: a.Name, Ifindex: a.Index, MTU: a.MTU, MAC: a.HardwareAddr.String(), PeerIfindex: a.ParentIndex}
		if a.NetNsID >= 0 {
			if p, ok := byID[a.NetNsID]; ok {
				lk.Peer = p
				lk.PeerIfname, lk.PeerMaster = peerLink(p.Path, a.ParentIndex)
			}
		}
		out = append(out, lk)
	}
	return out, nil
}

func handleAt(path string) (*netlink.Handle, func(), error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, nil, err
	}
	h, err := netlink.NewHandleAt(ns)
	ns.Close()
	if err != nil {
		return nil, nil, err
	}
	return h, h.Close, nil
}

// peerLink names the interface at index in a namespace, and its master.
func peerLink(nsPath string, index int) (name, master string) {
	h, closeH, err := handleAt(nsPath)
	if err != nil {
		return "", ""
	}
	defer closeH()
	l, err := h.LinkByIndex(index)
	if err != nil {
		return "", ""
	}
	if m := l.Attrs().MasterIndex; m > 0 {
		if ml, err := h.LinkByIndex(m); err == nil {
			master = ml.Attrs().Name
		}
	}
	return l.Attrs().Name, master
}

func endpointOf(c Container, l Link) string {
	for _, e := range c.Endpoints {
		if e.MAC != "" && strings.EqualFold(e.MAC, l.MAC) {
			return e.Network
		}
	}
	return ""
}

// nodeName names the node namespace: its /var/run/netns name if it has one
// (as the labs' nodes do), "host" if it is the init namespace, else
// "dockerd".
func nodeName(ino uint32) string {
	if p := bindMount(ino); p != "" {
		return filepath.Base(p)
	}
	if i, err := topo.InitNetNSInode(); err == nil && i == ino {
		return topo.HostName
	}
	return "dockerd"
}

func bindMount(ino uint32) string {
	const dir = "/var/run/netns"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if i, err := nsInode(p); err == nil && i == ino {
			return p
		}
	}
	return ""
}

// namedAs reports whether a container called name answers to arg: its name,
// or a swarm task's name without the task ID ("web.1" for web.1.<task id>).
func namedAs(name, arg string) bool {
	return name == arg || strings.HasPrefix(name, arg+".")
}

// Resolve turns a --to argument into addresses: an IP as it is, or a
// container name or ID into the container's addresses.
//
// networkIDs are overlays whose other nodes' containers may be named too.
func Resolve(ctx context.Context, eng Engine, arg string, networkIDs ...string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(arg); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if eng == nil {
		return nil, fmt.Errorf("resolving %q: not an IP address, and no Docker daemon to ask", arg)
	}
	c, err := eng.Container(ctx, arg)
	// Docker also takes arg as an ID prefix: "c2" finds a local container
	// whose ID starts with c2 when no local container is named c2. A
	// container named c2 on another node of the overlay is what was meant,
	// as a name beats an ID prefix in Docker's own lookup.
	byIDPrefix := err == nil && !namedAs(c.Name, arg)
	if errors.Is(err, ErrNotFound) || byIDPrefix {
		// A container on another node of one of the overlays is known to
		// this node's network database.
		for _, nid := range networkIDs {
			peers, perr := eng.Peers(ctx, nid)
			if perr != nil {
				continue
			}
			for _, p := range peers {
				if p.IP.IsValid() && namedAs(p.Name, arg) {
					return []netip.Addr{p.IP}, nil
				}
			}
		}
		if !byIDPrefix {
			return nil, fmt.Errorf("resolving %q: not an IP address, and %w", arg, err)
		}
	}
	if err != nil {
		return nil, err
	}
	if !c.Running {
		return nil, fmt.Errorf("container %q is %w (state %s)", arg, ErrNotRunning, c.State)
	}
	ips := c.IPs()
	if len(ips) == 0 {
		return nil, fmt.Errorf("container %q is %w with an address (network mode %q): give an IP", arg, ErrNoNetwork, c.NetworkMode)
	}
	return ips, nil
}
