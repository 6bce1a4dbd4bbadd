package topo

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nsState is one namespace held open for the length of a discovery: the
// namespace fd stays open because other namespaces' netnsids are resolved
// against it.
type nsState struct {
	ns    NetNS
	fd    netns.NsHandle
	h     *netlink.Handle
	links []netlink.Link
	byIdx map[int]netlink.Link
	addrs map[int][]string
	// ids maps a netnsid, which is only meaningful inside this namespace,
	// to the inode of the namespace it names.
	ids map[int]uint32
}

func (s *nsState) close() {
	if s.h != nil {
		s.h.Close()
	}
	if s.fd.IsOpen() {
		s.fd.Close()
	}
}

// dumpRetries bounds retries of netlink dumps that the kernel interrupted
// because the table changed underneath (NLM_F_DUMP_INTR).
const dumpRetries = 3

// Discover reads every interface of the given namespaces and classifies
// them into hops. Namespaces that cannot be opened (gone since they were
// listed, or never there) are skipped; it fails only when none could be.
func Discover(nss []NetNS) (*Topology, error) {
	states, err := openNamespaces(nss)
	defer func() {
		for _, s := range states {
			s.close()
		}
	}()
	if err != nil {
		return nil, err
	}
	resolveNetNSIDs(states)

	d := &discovery{
		states: states,
		byIno:  make(map[uint32]*nsState, len(states)),
		index:  make(map[Key]int),
	}
	for _, s := range states {
		d.byIno[s.ns.Inode] = s
	}
	d.collect()
	d.markNICs()
	d.classifyVeths()
	d.assignNodes()

	t := NewTopology(d.hops)
	t.nss = make([]NetNS, 0, len(states))
	for _, s := range states {
		t.nss = append(t.nss, s.ns)
	}
	return t, nil
}

// Namespaces returns the namespaces the topology was discovered in, with
// their inodes: the set a tracer filters on.
func (t *Topology) Namespaces() []NetNS {
	if t == nil {
		return nil
	}
	return slices.Clone(t.nss)
}

func openNamespaces(nss []NetNS) ([]*nsState, error) {
	var (
		states []*nsState
		errs   []error
		seen   = make(map[uint32]bool)
	)
	for _, ns := range nss {
		s, err := openNamespace(ns)
		if err != nil {
			slog.Debug("skipping network namespace", "netns", ns.DisplayName(), "path", ns.Path, "err", err)
			errs = append(errs, err)
			continue
		}
		if seen[s.ns.Inode] {
			s.close()
			continue
		}
		seen[s.ns.Inode] = true
		states = append(states, s)
	}
	if len(states) == 0 && len(nss) > 0 {
		return nil, fmt.Errorf("discovering hops: no namespace could be read: %w", errors.Join(errs...))
	}
	return states, nil
}

func openNamespace(ns NetNS) (_ *nsState, err error) {
	if ns.Path == "" {
		return nil, fmt.Errorf("opening netns %s: no path", ns.DisplayName())
	}
	fd, err := netns.GetFromPath(ns.Path)
	if err != nil {
		return nil, fmt.Errorf("opening netns %s: %w", ns.Path, err)
	}
	s := &nsState{ns: ns, fd: fd}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	ino, err := netnsInodeFd(int(fd), ns.Path)
	if err != nil {
		return nil, err
	}
	// A /proc/PID path can point somewhere else once the PID is reused.
	if ns.Inode != 0 && ns.Inode != ino {
		return nil, fmt.Errorf("opening netns %s: %s now opens netns %d, not %d", ns.DisplayName(), ns.Path, ino, ns.Inode)
	}
	s.ns.Inode = ino
	if s.h, err = netlink.NewHandleAt(fd, unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("opening netlink in netns %s: %w", ns.DisplayName(), err)
	}
	if s.links, err = retryDump(s.h.LinkList); err != nil {
		return nil, fmt.Errorf("listing links in netns %s: %w", ns.DisplayName(), err)
	}
	sort.Slice(s.links, func(i, j int) bool { return s.links[i].Attrs().Index < s.links[j].Attrs().Index })
	s.byIdx = make(map[int]netlink.Link, len(s.links))
	for _, l := range s.links {
		s.byIdx[l.Attrs().Index] = l
	}
	s.addrs = make(map[int][]string)
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return s.h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("listing addresses in netns %s: %w", ns.DisplayName(), err)
	}
	for _, a := range addrs {
		// Link-local IPv6 addresses are on every interface and say
		// nothing about the overlay.
		if a.IPNet != nil && !a.IPNet.IP.IsLinkLocalUnicast() {
			s.addrs[a.LinkIndex] = append(s.addrs[a.LinkIndex], a.IPNet.String())
		}
	}
	return s, nil
}

// retryDump repeats a netlink dump that the kernel flagged as interrupted;
// after the last try the partial answer is better than none.
func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	for i := 0; ; i++ {
		v, err := f()
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			if i < dumpRetries {
				continue
			}
			return v, nil
		}
		return v, err
	}
}

// resolveNetNSIDs fills each namespace's netnsid map. An id is local to the
// namespace that assigned it, so namespace A is asked for the id it gives
// every other namespace B, and only for the ids A's links actually use.
func resolveNetNSIDs(states []*nsState) {
	for _, a := range states {
		need := make(map[int]bool)
		for _, l := range a.links {
			if id := l.Attrs().NetNsID; id >= 0 {
				need[id] = true
			}
		}
		a.ids = make(map[int]uint32, len(need))
		for _, b := range states {
			if len(a.ids) == len(need) {
				break
			}
			if b == a {
				continue
			}
			id, err := a.h.GetNetNsIdByFd(int(b.fd))
			if err != nil || id < 0 || !need[id] {
				continue
			}
			a.ids[id] = b.ns.Inode
		}
	}
}

type discovery struct {
	states []*nsState
	byIno  map[uint32]*nsState
	hops   []Hop
	index  map[Key]int
	// vxlans are the indexes of the vxlan hops, with their netlink links.
	vxlans []vxlanRef
	// defaults are, per namespace, the devices its default routes leave by.
	defaults map[uint32]map[int]bool
}

type vxlanRef struct {
	hop  int
	link *netlink.Vxlan
}

func (d *discovery) hop(netns uint32, ifindex int) *Hop {
	i, ok := d.index[Key{NetNS: netns, Ifindex: uint32(ifindex)}]
	if !ok {
		return nil
	}
	return &d.hops[i]
}

// peerInode maps a link's IFLA_LINK_NETNSID to an inode; no id means the
// other end (or the vxlan socket) is in the link's own namespace.
func (s *nsState) peerInode(id int) uint32 {
	if id < 0 {
		return s.ns.Inode
	}
	return s.ids[id] // 0: a namespace outside the scope
}

func (d *discovery) collect() {
	for _, s := range d.states {
		for _, l := range s.links {
			a := l.Attrs()
			if a.Flags&net.FlagLoopback != 0 {
				continue
			}
			h := Hop{
				Ifname:   a.Name,
				Ifindex:  uint32(a.Index),
				Kind:     KindOther,
				NetNS:    s.ns,
				MTU:      a.MTU,
				LinkType: l.Type(),
				Addrs:    s.addrs[a.Index],
			}
			if len(a.HardwareAddr) > 0 {
				h.MAC = a.HardwareAddr.String()
			}
			if m, ok := s.byIdx[a.MasterIndex]; ok && a.MasterIndex != 0 {
				h.Master = m.Attrs().Name
			}
			switch l := l.(type) {
			case *netlink.Veth:
				h.PeerIfindex = uint32(a.ParentIndex)
				h.PeerNetNS = s.peerInode(a.NetNsID)
			case *netlink.Bridge:
				h.Kind = KindBridge
			case *netlink.Vxlan:
				h.Kind = KindVXLAN
				d.fillVXLAN(s, l, &h)
				d.vxlans = append(d.vxlans, vxlanRef{hop: len(d.hops), link: l})
			}
			d.index[h.Key()] = len(d.hops)
			d.hops = append(d.hops, h)
		}
	}
}

func (d *discovery) fillVXLAN(s *nsState, l *netlink.Vxlan, h *Hop) {
	vni := uint32(l.VxlanId)
	h.VNI = &vni
	h.Port = uint16(l.Port)
	if l.SrcAddr != nil && !l.SrcAddr.IsUnspecified() {
		h.Local = l.SrcAddr.String()
	}
	if l.Group != nil && !l.Group.IsUnspecified() {
		h.Remote = l.Group.String()
	}
	h.NodeNetNS = s.peerInode(l.NetNsID)

	fdb, err := retryDump(func() ([]netlink.Neigh, error) { return s.h.NeighList(l.Index, unix.AF_BRIDGE) })
	if err != nil {
		slog.Debug("listing vxlan fdb", "netns", s.ns.DisplayName(), "dev", l.Name, "err", err)
	}
	for _, n := range fdb {
		// Entries without a dst are the bridge's own; only those that
		// point at a VTEP say where a MAC is tunnelled to.
		if n.IP == nil || n.IP.IsUnspecified() {
			continue
		}
		e := FDBEntry{MAC: n.HardwareAddr.String(), Dst: n.IP.String()}
		if !slices.Contains(h.FDB, e) {
			h.FDB = append(h.FDB, e)
		}
	}

	// Docker's vxlan0 answers ARP itself (proxy) from the entries on the
	// device, flannel's routes through it: either way the entries are on
	// the vxlan device. A bridge master's entries are the local side.
	devs := []int{l.Index}
	if l.MasterIndex != 0 {
		devs = append(devs, l.MasterIndex)
	}
	for _, dev := range devs {
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			ns, err := retryDump(func() ([]netlink.Neigh, error) { return s.h.NeighList(dev, fam) })
			if err != nil {
				slog.Debug("listing neighbours", "netns", s.ns.DisplayName(), "ifindex", dev, "err", err)
				continue
			}
			for _, n := range ns {
				if n.IP == nil || n.State&netlink.NUD_NOARP != 0 {
					continue
				}
				e := Neigh{IP: n.IP.String(), State: neighState(n.State)}
				if len(n.HardwareAddr) > 0 {
					e.MAC = n.HardwareAddr.String()
				}
				h.Neigh = append(h.Neigh, e)
			}
		}
	}
}

func neighState(st int) string {
	names := []struct {
		bit  int
		name string
	}{
		{netlink.NUD_PERMANENT, "permanent"},
		{netlink.NUD_REACHABLE, "reachable"},
		{netlink.NUD_STALE, "stale"},
		{netlink.NUD_DELAY, "delay"},
		{netlink.NUD_PROBE, "probe"},
		{netlink.NUD_FAILED, "failed"},
		{netlink.NUD_INCOMPLETE, "incomplete"},
	}
	var out []string
	for _, n := range names {
		if st&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, ",")
}

// VTEPs returns the remote tunnel endpoints a vxlan hop sends to: its FDB
// destinations and its remote/group address.
func (h *Hop) VTEPs() []string {
	var out []string
	for _, e := range h.FDB {
		if !slices.Contains(out, e.Dst) {
			out = append(out, e.Dst)
		}
	}
	if h.Remote != "" && !slices.Contains(out, h.Remote) {
		out = append(out, h.Remote)
	}
	return out
}

// markNICs finds the underlay interfaces: in each vxlan's node namespace,
// where the routes to its VTEPs leave; and in any namespace, a physical
// device that a default route leaves by.
func (d *discovery) markNICs() {
	for _, v := range d.vxlans {
		vh := &d.hops[v.hop]
		node, ok := d.byIno[vh.NodeNetNS]
		if !ok {
			continue
		}
		vteps := vh.VTEPs()
		for _, vtep := range vteps {
			ip := net.ParseIP(vtep)
			dev := v.link.VtepDevIndex
			if dev == 0 {
				routes, err := node.h.RouteGet(ip)
				if err != nil || len(routes) == 0 {
					slog.Debug("no route to vtep", "netns", node.ns.DisplayName(), "vtep", vtep, "err", err)
					continue
				}
				dev = routes[0].LinkIndex
			}
			d.markNIC(node.ns.Inode, dev, vtep)
		}
		if v.link.VtepDevIndex != 0 && len(vteps) == 0 {
			d.markNIC(node.ns.Inode, v.link.VtepDevIndex, "")
		}
	}

	d.defaults = make(map[uint32]map[int]bool)
	for _, s := range d.states {
		routes, err := retryDump(func() ([]netlink.Route, error) { return s.h.RouteList(nil, netlink.FAMILY_ALL) })
		if err != nil {
			slog.Debug("listing routes", "netns", s.ns.DisplayName(), "err", err)
			continue
		}
		devs := make(map[int]bool)
		for _, r := range routes {
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			if r.LinkIndex != 0 {
				devs[r.LinkIndex] = true
			}
			for _, nh := range r.MultiPath {
				devs[nh.LinkIndex] = true
			}
		}
		d.defaults[s.ns.Inode] = devs
		for dev := range devs {
			if l, ok := s.byIdx[dev]; ok && isPhysical(s, l) {
				d.markNIC(s.ns.Inode, dev, "")
			}
		}
	}

	// A vxlan with no VTEP yet (a one-node swarm, peers not learnt) still
	// sends to unknown peers by the node's default route: without a better
	// answer that is the node's NIC, physical or not (a node namespace's
	// uplink is usually a veth).
	for _, v := range d.vxlans {
		node := d.hops[v.hop].NodeNetNS
		if d.hasNIC(node) {
			continue
		}
		for dev := range d.defaults[node] {
			d.markNIC(node, dev, "")
		}
	}
}

func (d *discovery) hasNIC(netns uint32) bool {
	for i := range d.hops {
		if d.hops[i].Kind == KindNIC && d.hops[i].NetNS.Inode == netns {
			return true
		}
	}
	return false
}

func (d *discovery) markNIC(netns uint32, ifindex int, peer string) {
	h := d.hop(netns, ifindex)
	if h == nil || h.Kind == KindVXLAN {
		return
	}
	h.Kind = KindNIC
	if peer != "" && !slices.Contains(h.Peers, peer) {
		h.Peers = append(h.Peers, peer)
	}
}

// isPhysical tells a device backed by hardware (or a hypervisor's virtual
// hardware). The kernel reports the parent bus device in any namespace; the
// sysfs fallback only holds for the namespace /sys was mounted in, which is
// checked by matching the ifindex.
func isPhysical(s *nsState, l netlink.Link) bool {
	a := l.Attrs()
	if a.ParentDev != "" {
		return true
	}
	if l.Type() != "device" {
		return false
	}
	self, err := CurrentNetNSInode()
	if err != nil || self != s.ns.Inode {
		return false
	}
	dir := filepath.Join("/sys/class/net", a.Name)
	b, err := os.ReadFile(filepath.Join(dir, "ifindex"))
	if err != nil {
		return false
	}
	if idx, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || idx != a.Index {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, "device"))
	return err == nil
}

// classifyVeths tells container-side veth ends from their host/sandbox
// peers. The sandbox end is the one on a bridge (Docker, bridge CNIs) or in
// a namespace that routes into a vxlan device (flannel without a bridge);
// the other end of such a veth is the container's.
func (d *discovery) classifyVeths() {
	holdsVXLAN := make(map[uint32]bool)
	for _, v := range d.vxlans {
		holdsVXLAN[d.hops[v.hop].NetNS.Inode] = true
	}
	var sides []int
	for i := range d.hops {
		h := &d.hops[i]
		if h.LinkType != "veth" || h.Kind != KindOther {
			continue
		}
		onBridge := false
		if h.Master != "" {
			if m := d.masterOf(h); m != nil && (m.LinkType == "bridge" || m.LinkType == "openvswitch") {
				onBridge = true
			}
		}
		// A namespace's default route does not lead into a container: in
		// the flannel layout that veth is the node's uplink.
		uplink := d.defaults[h.NetNS.Inode][int(h.Ifindex)]
		if onBridge || (holdsVXLAN[h.NetNS.Inode] && !uplink) {
			h.Kind = KindVeth
			sides = append(sides, i)
		}
	}
	for _, i := range sides {
		h := &d.hops[i]
		p := d.hop(h.PeerNetNS, int(h.PeerIfindex))
		if p != nil && p.Kind == KindOther && p.LinkType == "veth" {
			p.Kind = KindContainer
		}
	}
}

func (d *discovery) masterOf(h *Hop) *Hop {
	for i := range d.hops {
		m := &d.hops[i]
		if m.NetNS.Inode == h.NetNS.Inode && m.Ifname == h.Master {
			return m
		}
	}
	return nil
}

// assignNodes works out which node namespace each namespace belongs to: a
// sandbox holding a vxlan belongs to the vxlan's socket namespace, a
// namespace with an underlay NIC is a node itself, and a container belongs
// to the node of its veth peer.
func (d *discovery) assignNodes() {
	node := make(map[uint32]uint32)
	for _, v := range d.vxlans {
		h := &d.hops[v.hop]
		if _, ok := node[h.NetNS.Inode]; !ok && h.NodeNetNS != 0 {
			node[h.NetNS.Inode] = h.NodeNetNS
		}
	}
	for _, h := range d.hops {
		if h.Kind == KindNIC || h.Kind == KindVeth || h.Kind == KindBridge {
			if _, ok := node[h.NetNS.Inode]; !ok {
				node[h.NetNS.Inode] = h.NetNS.Inode
			}
		}
	}
	for _, h := range d.hops {
		if h.Kind != KindContainer {
			continue
		}
		if _, ok := node[h.NetNS.Inode]; ok {
			continue
		}
		if n, ok := node[h.PeerNetNS]; ok {
			node[h.NetNS.Inode] = n
		}
	}
	for i := range d.hops {
		h := &d.hops[i]
		n, ok := node[h.NetNS.Inode]
		if h.Kind == KindVXLAN {
			n, ok = h.NodeNetNS, h.NodeNetNS != 0
		}
		if !ok {
			continue
		}
		h.NodeNetNS = n
		h.Node = d.nameOf(n)
	}
}

func (d *discovery) nameOf(ino uint32) string {
	if s, ok := d.byIno[ino]; ok {
		return s.ns.DisplayName()
	}
	return NetNS{Inode: ino}.DisplayName()
}
