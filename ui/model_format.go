package ui

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/report"
	"github.com/vxtrace/vxtrace/topo"
)

// protoName names an IP protocol as the CLI and the JSON do; "-" when no
// IP header was parsed.
func protoName(p uint8) string {
	if p == 0 {
		return "-"
	}
	return report.ProtoName(p)
}

func isICMP(p uint8) bool { return p == 1 || p == 58 }

// hasPorts says whether Sport/Dport mean ports for this protocol.
func hasPorts(p uint8) bool { return p == 6 || p == 17 || p == 132 }

// endpoint renders one side of a flow: address and port, or the ICMP echo
// identifier on the source side.
func endpoint(a netip.Addr, port uint16, proto uint8, src bool) string {
	if !a.IsValid() {
		return "-"
	}
	switch {
	case hasPorts(proto):
		return netip.AddrPortFrom(a, port).String()
	case isICMP(proto) && src && port != 0:
		return a.String() + " id " + strconv.Itoa(int(port))
	}
	return a.String()
}

// count renders a counter compactly so columns stay narrow.
func count(n uint64) string {
	switch {
	case n < 10_000:
		return strconv.FormatUint(n, 10)
	case n < 1_000_000:
		return trimZero(fmt.Sprintf("%.1f", float64(n)/1e3)) + "k"
	case n < 1_000_000_000:
		return trimZero(fmt.Sprintf("%.1f", float64(n)/1e6)) + "M"
	}
	return trimZero(fmt.Sprintf("%.1f", float64(n)/1e9)) + "G"
}

func rate(r float64) string {
	if r < 0.05 {
		return "0"
	}
	if r < 10 {
		return trimZero(fmt.Sprintf("%.1f", r))
	}
	return count(uint64(r + 0.5))
}

func trimZero(s string) string { return strings.TrimSuffix(s, ".0") }

// span renders a duration in nanoseconds the way the CLI does: short units,
// three significant digits.
func span(ns uint64) string {
	switch {
	case ns < 1_000:
		return strconv.FormatUint(ns, 10) + "ns"
	case ns < 1_000_000:
		return fmt.Sprintf("%.1fµs", float64(ns)/1e3)
	case ns < 1_000_000_000:
		return fmt.Sprintf("%.2fms", float64(ns)/1e6)
	}
	return fmt.Sprintf("%.3fs", float64(ns)/1e9)
}

func nsName(ns topo.NetNS) string {
	if ns.Name != "" {
		return ns.Name
	}
	if ns.Inode == 0 {
		return "-"
	}
	return "ns:" + strconv.FormatUint(uint64(ns.Inode), 10)
}

// hopLabel is how the path pane names a hop, e.g. "vxlan0 (VNI 4097)".
func hopLabel(h *topo.Hop) string {
	switch h.Kind {
	case topo.KindContainer:
		return h.Ifname + " [" + nsName(h.NetNS) + "]"
	case topo.KindVXLAN:
		if h.VNI != nil {
			return fmt.Sprintf("%s (VNI %d)", h.Ifname, *h.VNI)
		}
	case topo.KindNIC:
		return h.Ifname + " (NIC)"
	}
	return h.Ifname
}

// peersOf finds the remote VTEPs the path leads to, for the last node of the
// drawn chain.
func peersOf(hops []topo.Hop) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for i := range hops {
		if hops[i].Kind == topo.KindNIC {
			for _, p := range hops[i].Peers {
				add(p)
			}
		}
	}
	if len(out) > 0 {
		return out
	}
	for i := range hops {
		if hops[i].Kind == topo.KindVXLAN {
			add(hops[i].Remote)
			for _, f := range hops[i].FDB {
				add(f.Dst)
			}
		}
	}
	return out
}

func verdictText(v journey.Verdict) string {
	switch v {
	case journey.Dropped:
		return "DROPPED"
	case journey.LeftNode:
		return "left node"
	case "":
		return "-"
	}
	return string(v)
}

// hopIndex resolves hop IDs and namespace inodes to names for one snapshot.
type hopIndex struct {
	byID map[int]*topo.Hop
	ns   map[uint32]topo.NetNS
}

func newHopIndex(hops []topo.Hop) hopIndex {
	x := hopIndex{byID: make(map[int]*topo.Hop, len(hops)), ns: make(map[uint32]topo.NetNS)}
	for i := range hops {
		x.byID[hops[i].ID] = &hops[i]
		x.ns[hops[i].NetNS.Inode] = hops[i].NetNS
	}
	return x
}

func (x hopIndex) nsName(inode uint32) string {
	if ns, ok := x.ns[inode]; ok {
		return nsName(ns)
	}
	return nsName(topo.NetNS{Inode: inode})
}

func (x hopIndex) stepLabel(s *journey.Step) string {
	if h, ok := x.byID[s.HopID]; ok && s.HopID >= 0 {
		return hopLabel(h)
	}
	if s.Ifname != "" {
		return s.Ifname
	}
	return "if" + strconv.FormatUint(uint64(s.Ifindex), 10)
}

func (x hopIndex) dropHop(d *journey.Drop) string {
	if h, ok := x.byID[d.HopID]; ok && d.HopID >= 0 {
		return hopLabel(h)
	}
	if d.Ifname != "" {
		return d.Ifname
	}
	return "-"
}

// detailLines renders a packet's journey hop by hop, like `vxtrace trace`.
// It is plain text: the view escapes it and colours the drop.
func detailLines(p *journey.Packet, hops []topo.Hop) []string {
	if p == nil {
		return []string{"no packet"}
	}
	x := newHopIndex(hops)
	k := keyOf(p)
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	flow := fmt.Sprintf("%s %s → %s", protoName(k.Proto),
		endpoint(k.Src, k.Sport, k.Proto, true), endpoint(k.Dst, k.Dport, k.Proto, false))
	if k.VNI != 0 {
		flow += fmt.Sprintf("  VNI %d", k.VNI)
	}
	add("flow     %s", flow)
	pkt := fmt.Sprintf("packet   %#016x  ipid %d", p.ID, p.IPID)
	if isICMP(p.Inner.Proto) {
		pkt += fmt.Sprintf("  icmp type %d seq %d", p.Inner.L4Info, p.Inner.Dport)
	}
	add("%s", pkt)
	if p.Encap && p.Outer.Src.IsValid() {
		add("outer    %s %s → %s", protoName(p.Outer.Proto),
			endpoint(p.Outer.Src, p.Outer.Sport, p.Outer.Proto, true),
			endpoint(p.Outer.Dst, p.Outer.Dport, p.Outer.Proto, false))
	}
	v := "verdict  " + verdictText(p.Verdict)
	if d := p.Drop; d != nil {
		v += " at " + x.dropHop(d) + " [" + x.nsName(d.NetNS) + "]: " + orDash(d.Reason)
		if d.Location != "" {
			v += " (" + d.Location + ")"
		}
	} else if h, ok := x.byID[p.LastHop]; ok && p.LastHop >= 0 {
		v += ", last seen at " + hopLabel(h)
	}
	add("%s", v)
	var total uint64
	if n := len(p.Steps); n > 0 {
		total = p.Steps[n-1].Time
	}
	add("steps    %d in %s", len(p.Steps), span(total))
	add("")
	add("  %3s  %-10s %-10s %-22s %-14s %-7s %s", "#", "TIME", "+DELTA", "HOP", "NAMESPACE", "DIR", "")
	var prev uint64
	for i := range p.Steps {
		s := &p.Steps[i]
		delta := ""
		if i > 0 {
			delta = "+" + span(s.Time-prev)
		}
		prev = s.Time
		extra := ""
		if s.Len != 0 {
			extra = fmt.Sprintf("len %d", s.Len)
		}
		if s.Encap {
			extra = strings.TrimSpace(extra + fmt.Sprintf(" encap VNI %d", s.VNI))
		}
		if s.Dir == "drop" && p.Drop != nil {
			extra = strings.TrimSpace(p.Drop.Reason + " " + p.Drop.Location)
		}
		if s.Derived {
			// No probe saw it here; the correlator filled the hop in.
			extra = strings.TrimSpace(extra + " (inferred)")
		}
		if a := s.NextHopAddr(); a.IsValid() {
			extra = strings.TrimSpace(extra + " awaiting ARP for " + a.String())
		}
		add("  %3d  %-10s %-10s %-22s %-14s %-7s %s", i+1, "+"+span(s.Time), delta,
			x.stepLabel(s), x.nsName(s.NetNS), s.Dir, extra)
	}
	if p.EventsOmitted > 0 {
		add("  … %d more events not recorded (step limit)", p.EventsOmitted)
	}
	for i := range out {
		out[i] = strings.TrimRight(out[i], " ")
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
