package topo

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
)

// PathFrom returns the hop chain an overlay packet leaving the container
// namespace netns crosses: the container's interface, its veth peer, the
// bridge (if any), the vxlan device and the underlay NIC of the vxlan's
// node. With several container interfaces (e.g. an overlay eth0 and
// docker_gwbridge's eth1) the first that reaches a vxlan device wins. It
// returns nil when netns holds no container interface.
func (t *Topology) PathFrom(netns uint32) []*Hop {
	if t == nil {
		return nil
	}
	var first []*Hop
	for i := range t.Hops {
		h := &t.Hops[i]
		if h.NetNS.Inode != netns || h.Kind != KindContainer {
			continue
		}
		p := t.PathFromHop(h)
		if slices.ContainsFunc(p, func(h *Hop) bool { return h.Kind == KindVXLAN }) {
			return p
		}
		if first == nil {
			first = p
		}
	}
	return first
}

// PathFromHop returns the chain starting at one interface, normally a
// container's, for callers that know which endpoint they want.
func (t *Topology) PathFromHop(start *Hop) []*Hop {
	if t == nil || start == nil {
		return nil
	}
	path := []*Hop{start}
	cur := start
	if start.PeerIfindex != 0 {
		if p, ok := t.Lookup(start.PeerNetNS, start.PeerIfindex); ok {
			path = append(path, p)
			cur = p
		}
	}
	var vx *Hop
	if cur.Master != "" {
		if b, ok := t.ByName(cur.NetNS.Inode, cur.Master); ok && b.Kind == KindBridge {
			path = append(path, b)
			cur = b
			vx = t.find(func(h *Hop) bool {
				return h.Kind == KindVXLAN && h.NetNS.Inode == b.NetNS.Inode && h.Master == b.Ifname
			})
		}
	}
	if vx == nil {
		// Routed overlay (flannel): no bridge port, the node routes the
		// packet into a vxlan device of the same namespace.
		vx = t.find(func(h *Hop) bool {
			return h.Kind == KindVXLAN && h.NetNS.Inode == cur.NetNS.Inode && h.Master == ""
		})
	}
	var nic *Hop
	if vx != nil {
		path = append(path, vx)
		nic = t.nicFor(vx)
	} else {
		nic = t.find(func(h *Hop) bool { return h.Kind == KindNIC && h.NetNS.Inode == cur.NetNS.Inode })
	}
	if nic != nil {
		path = append(path, nic)
	}
	return path
}

func (t *Topology) find(f func(*Hop) bool) *Hop {
	for i := range t.Hops {
		if f(&t.Hops[i]) {
			return &t.Hops[i]
		}
	}
	return nil
}

// nicFor is the NIC of the vxlan's node that its VTEPs are routed through,
// or any NIC of that node when none is known to be.
func (t *Topology) nicFor(vx *Hop) *Hop {
	vteps := vx.VTEPs()
	var fallback *Hop
	for i := range t.Hops {
		h := &t.Hops[i]
		if h.Kind != KindNIC || h.NetNS.Inode != vx.NodeNetNS || h.Gone {
			continue
		}
		for _, p := range h.Peers {
			if slices.Contains(vteps, p) {
				return h
			}
		}
		if fallback == nil {
			fallback = h
		}
	}
	return fallback
}

// Format writes path for a person: one block per namespace, one line per
// hop, with what explains where a packet goes next (veth peer, bridge,
// VNI and port, FDB and neighbour entries, the VTEPs behind the NIC).
func (t *Topology) Format(w io.Writer, path []*Hop) error {
	return t.FormatTo(w, path, nil)
}

// maxEntries caps FDB and neighbour lines per device when no destination
// narrows them; a large overlay has thousands.
const maxEntries = 16

// vxlanOverhead is what VXLAN over IPv4 adds: outer IP, UDP, VXLAN and the
// inner Ethernet header.
const vxlanOverhead = 50

// FormatTo is Format that keeps, on vxlan hops, only the neighbour entry
// of dst and the FDB entry of its MAC, and says when either is missing. A
// nil dst shows every entry.
func (t *Topology) FormatTo(w io.Writer, path []*Hop, dst net.IP) error {
	bw := bufio.NewWriter(w)
	var lastNS uint32
	var innerMTU int
	for i, h := range path {
		if i == 0 || h.NetNS.Inode != lastNS {
			node := ""
			switch {
			case h.NodeNetNS == h.NetNS.Inode && h.NodeNetNS != 0:
				node = "  (node)"
			case h.Node != "":
				node = "  (node " + h.Node + ")"
			}
			fmt.Fprintf(bw, "netns %s [%d]%s\n", h.NetNS.DisplayName(), h.NetNS.Inode, node)
			lastNS = h.NetNS.Inode
		}
		fmt.Fprintf(bw, "  [%d] %-14s %-9s if%-4d mtu %-5d", h.ID, h.Ifname, h.Kind, h.Ifindex, h.MTU)
		var extra []string
		if h.Master != "" {
			extra = append(extra, "master "+h.Master)
		}
		if h.Kind == KindVXLAN {
			if h.VNI != nil {
				extra = append(extra, fmt.Sprintf("vni %d", *h.VNI))
			}
			extra = append(extra, fmt.Sprintf("port %d", h.Port))
			if h.Local != "" {
				extra = append(extra, "local "+h.Local)
			}
			if h.Remote != "" {
				extra = append(extra, "remote "+h.Remote)
			}
		} else {
			extra = append(extra, h.Addrs...)
		}
		if h.Kind == KindContainer && h.MAC != "" {
			extra = append(extra, h.MAC)
		}
		if h.Gone {
			extra = append(extra, "GONE")
		}
		if h.Blind {
			extra = append(extra, "BLIND")
		}
		fmt.Fprintf(bw, " %s\n", strings.Join(extra, "  "))

		switch h.Kind {
		case KindContainer, KindVeth:
			if innerMTU == 0 || h.MTU < innerMTU {
				innerMTU = h.MTU
			}
			// The veth end after a container only points back at it.
			backToPrev := i > 0 && path[i-1].Key() == (Key{NetNS: h.PeerNetNS, Ifindex: h.PeerIfindex})
			if h.PeerIfindex != 0 && !backToPrev {
				peer := fmt.Sprintf("if%d", h.PeerIfindex)
				if p, ok := t.Lookup(h.PeerNetNS, h.PeerIfindex); ok {
					peer = p.Ifname + " (" + peer + ")"
				}
				fmt.Fprintf(bw, "       │ veth peer %s in %s\n", peer, t.nsLabel(h.PeerNetNS))
			}
		case KindVXLAN:
			if innerMTU == 0 || h.MTU < innerMTU {
				innerMTU = h.MTU
			}
			if h.NodeNetNS != 0 && h.NodeNetNS != h.NetNS.Inode {
				fmt.Fprintf(bw, "       │ udp socket in node %s\n", t.nsLabel(h.NodeNetNS))
			}
			writeEntries(bw, h, dst)
		case KindNIC:
			if len(h.Peers) > 0 {
				fmt.Fprintf(bw, "       │ vteps %s\n", strings.Join(h.Peers, ", "))
			}
			if innerMTU > 0 && h.MTU < innerMTU+vxlanOverhead {
				fmt.Fprintf(bw, "       ! mtu %d is below %d (overlay mtu %d + %d of vxlan): encapsulated full-size packets do not fit\n",
					h.MTU, innerMTU+vxlanOverhead, innerMTU, vxlanOverhead)
			}
		}
	}
	return bw.Flush()
}

func (t *Topology) nsLabel(ino uint32) string {
	if ino == 0 {
		return "a namespace outside the scope"
	}
	name := NetNS{Inode: ino}.DisplayName()
	for i := range t.Hops {
		if t.Hops[i].NetNS.Inode == ino {
			name = t.Hops[i].NetNS.DisplayName()
			break
		}
	}
	for _, ns := range t.nss {
		if ns.Inode == ino {
			name = ns.DisplayName()
		}
	}
	if strings.HasPrefix(name, "netns:[") {
		return name
	}
	return fmt.Sprintf("%s [%d]", name, ino)
}

func writeEntries(w io.Writer, h *Hop, dst net.IP) {
	if dst == nil {
		for i, e := range h.FDB {
			if i == maxEntries {
				fmt.Fprintf(w, "       │ fdb   … %d more\n", len(h.FDB)-i)
				break
			}
			fmt.Fprintf(w, "       │ fdb   %s → %s\n", e.MAC, e.Dst)
		}
		for i, n := range h.Neigh {
			if i == maxEntries {
				fmt.Fprintf(w, "       │ neigh … %d more\n", len(h.Neigh)-i)
				break
			}
			fmt.Fprintf(w, "       │ neigh %s\n", formatNeigh(n))
		}
		return
	}
	var macs []string
	for _, n := range h.Neigh {
		if ip := net.ParseIP(n.IP); ip != nil && ip.Equal(dst) {
			fmt.Fprintf(w, "       │ neigh %s\n", formatNeigh(n))
			if n.MAC != "" {
				macs = append(macs, n.MAC)
			}
		}
	}
	if len(macs) == 0 {
		if h.Master == "" {
			// A routed vxlan resolves the route's next hop, not dst: the
			// entry that matters is not known here, so show them all.
			writeEntries(w, h, nil)
			return
		}
		fmt.Fprintf(w, "       │ neigh none for %s\n", dst)
	}
	for _, mac := range macs {
		found := false
		for _, e := range h.FDB {
			if strings.EqualFold(e.MAC, mac) {
				fmt.Fprintf(w, "       │ fdb   %s → %s\n", e.MAC, e.Dst)
				found = true
			}
		}
		if !found {
			fmt.Fprintf(w, "       │ fdb   none for %s\n", mac)
		}
	}
}

func formatNeigh(n Neigh) string {
	mac := n.MAC
	if mac == "" {
		mac = "(no lladdr)"
	}
	s := n.IP + " → " + mac
	if n.State != "" {
		s += " " + n.State
	}
	return s
}
