package report

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
)

// TextOptions configure the text renderer.
type TextOptions struct {
	Color bool // ANSI colours for verdicts; off unless the user asks
}

// Text renders packets and summaries for a terminal.
type Text struct {
	w    io.Writer
	o    TextOptions
	hops map[int]topo.Hop
	ns   map[uint32]string // namespace inode -> name
}

// NewText renders to w; SetHops tells it the names of hops and namespaces.
func NewText(w io.Writer, o TextOptions) *Text {
	return &Text{w: w, o: o, hops: map[int]topo.Hop{}, ns: map[uint32]string{}}
}

// SetHops replaces the hop table. Call it again when the topology grows.
func (t *Text) SetHops(hops []topo.Hop) {
	t.hops = make(map[int]topo.Hop, len(hops))
	t.ns = make(map[uint32]string)
	for _, h := range hops {
		t.hops[h.ID] = h
		if h.NetNS.Name != "" {
			t.ns[h.NetNS.Inode] = h.NetNS.Name
		}
	}
}

// WriteText renders a whole document: every packet, then the summary.
func WriteText(w io.Writer, d *Doc, o TextOptions) error {
	t := NewText(w, o)
	t.SetHops(d.Hops)
	for i := range d.Packets {
		if err := t.Packet(&d.Packets[i]); err != nil {
			return err
		}
	}
	return t.Summary(d)
}

func (t *Text) nsName(inode uint32) string {
	if n, ok := t.ns[inode]; ok {
		return n
	}
	if inode == 0 {
		return "-"
	}
	return "ns:" + strconv.FormatUint(uint64(inode), 10)
}

// appendHopLabel appends "netns/ifname", from the hop table when the hop is
// known.
func (t *Text) appendHopLabel(b []byte, hop int, netns uint32, ifname string) []byte {
	if h, ok := t.hops[hop]; ok && hop >= 0 {
		netns, ifname = h.NetNS.Inode, h.Ifname
	} else if ifname == "" {
		ifname = "-"
	}
	switch n, ok := t.ns[netns]; {
	case ok:
		b = append(b, n...)
	case netns == 0:
		b = append(b, '-')
	default:
		b = append(b, "ns:"...)
		b = strconv.AppendUint(b, uint64(netns), 10)
	}
	b = append(b, '/')
	return append(b, ifname...)
}

// Duration formats nanoseconds the way the step lines show them.
func Duration(ns uint64) string {
	switch {
	case ns < 1_000:
		return strconv.FormatUint(ns, 10) + "ns"
	case ns < 1_000_000:
		return strconv.FormatFloat(float64(ns)/1e3, 'f', 1, 64) + "µs"
	case ns < 1_000_000_000:
		return strconv.FormatFloat(float64(ns)/1e6, 'f', 3, 64) + "ms"
	}
	return strconv.FormatFloat(float64(ns)/1e9, 'f', 3, 64) + "s"
}

// Header is the packet's first line: id, inner tuple, VNI.
func Header(p *Packet) string { return string(AppendHeader(nil, p)) }

// AppendHeader appends Header's line to dst: a trace prints one per packet,
// at up to hundreds of thousands a second, so it builds the line without
// fmt and without allocating.
func AppendHeader(b []byte, p *Packet) []byte {
	b = append(b, "packet "...)
	b = append(b, p.ID...)
	in := &p.Inner
	b = append(b, "  "...)
	if in.Src == "" {
		b = append(b, "(no IP header)"...)
	} else {
		b = append(b, in.Proto...)
		b = append(b, ' ')
		b = appendEndpoint(b, in.Src, in.Sport)
		b = append(b, " > "...)
		b = appendEndpoint(b, in.Dst, in.Dport)
	}
	switch {
	case in.ICMPType != nil && in.ICMPID != nil:
		b = append(b, ' ')
		b = append(b, icmpName(in.Proto, *in.ICMPType)...)
		b = append(b, " id="...)
		b = strconv.AppendUint(b, uint64(*in.ICMPID), 10)
		b = append(b, " seq="...)
		b = strconv.AppendUint(b, uint64(deref(in.ICMPSeq)), 10)
	case in.ICMPType != nil:
		b = append(b, ' ')
		b = append(b, icmpName(in.Proto, *in.ICMPType)...)
	}
	if in.TCPFlags != "" {
		b = append(b, " ["...)
		b = append(b, in.TCPFlags...)
		b = append(b, ']')
	}
	if in.IPID != nil {
		b = append(b, " ip_id=0x"...)
		const hex = "0123456789abcdef"
		v := *in.IPID
		b = append(b, hex[v>>12&0xf], hex[v>>8&0xf], hex[v>>4&0xf], hex[v&0xf])
	}
	if p.VNI != nil {
		b = append(b, "  vni "...)
		b = strconv.AppendUint(b, uint64(*p.VNI), 10)
	}
	if o := p.Outer; o != nil {
		b = append(b, " ("...)
		b = append(b, o.Src...)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(o.Sport), 10)
		b = append(b, " > "...)
		b = append(b, o.Dst...)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(o.Dport), 10)
		b = append(b, ')')
	}
	return b
}

func deref[T any](p *T) T {
	var z T
	if p == nil {
		return z
	}
	return *p
}

func appendEndpoint(b []byte, addr string, port *uint16) []byte {
	if port == nil {
		return append(b, addr...)
	}
	v6 := strings.Contains(addr, ":")
	if v6 {
		b = append(b, '[')
	}
	b = append(b, addr...)
	if v6 {
		b = append(b, ']')
	}
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(*port), 10)
}

func icmpName(proto string, typ uint8) string {
	switch {
	case proto == "icmp" && typ == 8, proto == "icmpv6" && typ == 128:
		return "echo-request"
	case proto == "icmp" && typ == 0, proto == "icmpv6" && typ == 129:
		return "echo-reply"
	case proto == "icmp" && typ == 3, proto == "icmpv6" && typ == 1:
		return "unreachable"
	case proto == "icmpv6" && typ == 2:
		return "packet-too-big"
	case proto == "icmp" && typ == 11, proto == "icmpv6" && typ == 3:
		return "time-exceeded"
	}
	return "type=" + strconv.Itoa(int(typ))
}

// pad left-aligns s to width runes (µ is two bytes, one column).
func pad(s string, width int) string {
	if n := utf8.RuneCountInString(s); n < width {
		return s + strings.Repeat(" ", width-n)
	}
	return s
}

func padLeft(s string, width int) string {
	if n := utf8.RuneCountInString(s); n < width {
		return strings.Repeat(" ", width-n) + s
	}
	return s
}

const (
	ansiReset  = "\x1b[0m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

func (t *Text) verdictWord(v string) string {
	if !t.o.Color {
		return v
	}
	c := ansiYellow
	switch journey.Verdict(v) {
	case journey.Delivered:
		c = ansiGreen
	case journey.Dropped:
		c = ansiRed
	case journey.LeftNode:
		c = ansiCyan
	}
	return c + v + ansiReset
}

// VerdictLine is e.g. "verdict: dropped NETFILTER_DROP at
// nft_do_chain+0x5a3 (hop n2/eth0)".
func (t *Text) VerdictLine(p *Packet) string { return string(t.AppendVerdictLine(nil, p)) }

// AppendVerdictLine appends VerdictLine's line to dst, without fmt.
func (t *Text) AppendVerdictLine(b []byte, p *Packet) []byte {
	b = append(b, "verdict: "...)
	b = append(b, t.verdictWord(p.Verdict)...)
	if d := p.Drop; d != nil {
		b = append(b, ' ')
		b = append(b, d.Reason...)
		b = append(b, " at "...)
		b = append(b, d.Location...)
		b = append(b, " (hop "...)
		b = t.appendHopLabel(b, d.Hop, d.NetNS, d.Ifname)
		return append(b, ')')
	}
	// The hop of the last step on it, for its namespace when it is unknown.
	var last *Event
	for i := len(p.Events) - 1; i >= 0; i-- {
		e := &p.Events[i]
		if e.Hop == p.LastHop && (e.Dir != journey.DirConsume || last == nil) {
			last = e
			if e.Dir != journey.DirConsume {
				break
			}
		}
	}
	if journey.Verdict(p.Verdict) == journey.Vanished {
		// Still parked when its wait ran out (ARP retries set longer
		// than the correlator waits, or NDP): the wait is the lead.
		if last != nil && last.Dir == journey.DirNeigh {
			b = append(b, " (waiting for ARP"...)
			if last.NextHop != "" {
				b = append(b, " for "...)
				b = append(b, last.NextHop...)
			}
			b = append(b, " at hop "...)
			b = t.appendHopLabel(b, last.Hop, last.NetNS, last.Ifname)
			return append(b, ')')
		}
		b = append(b, " (last seen at hop "...)
	} else {
		b = append(b, " (hop "...)
	}
	if last != nil {
		b = t.appendHopLabel(b, last.Hop, last.NetNS, last.Ifname)
	} else {
		b = t.appendHopLabel(b, p.LastHop, 0, "")
	}
	return append(b, ')')
}

// Packet renders one packet: header, one line per step, verdict.
func (t *Text) Packet(p *Packet) error {
	// Columns: time, netns, ifname, dir, len; then free-form extras.
	type row struct {
		cells [5]string
		extra string
	}
	rows := make([]row, len(p.Events))
	var widths [5]int
	for i, e := range p.Events {
		ifname := e.Ifname
		if ifname == "" {
			ifname = "-"
		}
		r := row{cells: [5]string{
			"+" + Duration(e.TNS),
			t.nsName(e.NetNS),
			ifname,
			e.Dir,
			strconv.FormatUint(uint64(e.Len), 10),
		}}
		var extra []string
		if e.Encap {
			if e.VNI != nil {
				extra = append(extra, "encap vni="+strconv.FormatUint(uint64(*e.VNI), 10))
			} else {
				extra = append(extra, "encap")
			}
		}
		if e.Derived {
			extra = append(extra, "(inferred)")
		}
		if e.Dir == journey.DirNeigh {
			// The wait is the news: ARP (or NDP) for this address had
			// no answer yet, and the packet is held until it has.
			if e.NextHop != "" {
				extra = append(extra, "awaiting ARP for "+e.NextHop)
			} else {
				extra = append(extra, "awaiting the next hop's address")
			}
		}
		r.extra = strings.Join(extra, " ")
		rows[i] = r
		for c, s := range r.cells {
			widths[c] = max(widths[c], utf8.RuneCountInString(s))
		}
	}
	var b strings.Builder
	b.WriteString(Header(p))
	b.WriteByte('\n')
	for _, r := range rows {
		c := r.cells
		line := "  " + padLeft(c[0], widths[0]) + "  " + pad(c[1], widths[1]) + "  " + pad(c[2], widths[2]) +
			"  " + pad(c[3], widths[3]) + "  " + padLeft(c[4], widths[4])
		if r.extra != "" {
			line += "  " + r.extra
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	if p.EventsOmitted > 0 {
		fmt.Fprintf(&b, "  ... %d more events not recorded\n", p.EventsOmitted)
	}
	b.WriteString("  ")
	b.WriteString(t.VerdictLine(p))
	b.WriteString("\n\n")
	_, err := io.WriteString(t.w, b.String())
	return err
}

// Summary renders the per-hop table, the verdict counts and lost events.
func (t *Text) Summary(d *Doc) error {
	var b strings.Builder
	head := []string{"HOP", "NETNS", "IFNAME", "KIND", "SEEN", "DROPPED", "DROP REASONS"}
	rightAligned := []bool{true, false, false, false, true, true, false}
	rows := [][]string{head}
	for _, h := range d.Summary.PerHop {
		kind := "-"
		if hop, ok := t.hops[h.Hop]; ok && h.Hop >= 0 {
			kind = string(hop.Kind)
		}
		id := "-"
		if h.Hop >= 0 {
			id = strconv.Itoa(h.Hop)
		}
		ifname := h.Ifname
		if ifname == "" {
			ifname = "-"
		}
		rows = append(rows, []string{id, t.nsName(h.NetNS), ifname, kind,
			strconv.FormatUint(h.Seen, 10), strconv.FormatUint(h.Dropped, 10), reasonList(h.DropReasons)})
	}
	widths := make([]int, len(head))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	b.WriteString("per-hop summary (kernel counters)\n")
	for _, r := range rows {
		var cells []string
		for i, c := range r {
			switch {
			case rightAligned[i]:
				cells = append(cells, padLeft(c, widths[i]))
			case i == len(r)-1:
				cells = append(cells, c) // no trailing blanks
			default:
				cells = append(cells, pad(c, widths[i]))
			}
		}
		b.WriteString("  " + strings.TrimRight(strings.Join(cells, "  "), " ") + "\n")
	}
	v := d.Summary.Verdicts
	fmt.Fprintf(&b, "\npackets: %d (%s %d, %s %d, %s %d, %s %d)",
		d.Summary.Packets,
		t.verdictWord("delivered"), v.Delivered, t.verdictWord("dropped"), v.Dropped,
		t.verdictWord("left_node"), v.LeftNode, t.verdictWord("vanished"), v.Vanished)
	if d.PacketsOmitted > 0 {
		fmt.Fprintf(&b, "; %d not kept in the document", d.PacketsOmitted)
	}
	l := d.LostEvents
	fmt.Fprintf(&b, "\nlost events: %d (kernel %d, user %d)\n", l.Total, l.Kernel, l.User)
	_, err := io.WriteString(t.w, b.String())
	return err
}

// reasonList is "NETFILTER_DROP=5 NO_SOCKET=1", most frequent first.
func reasonList(m map[string]uint64) string {
	type kv struct {
		k string
		n uint64
	}
	var l []kv
	for k, n := range m {
		l = append(l, kv{k, n})
	}
	slices.SortFunc(l, func(a, b kv) int { return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.k, b.k)) })
	var parts []string
	for _, e := range l {
		parts = append(parts, e.k+"="+strconv.FormatUint(e.n, 10))
	}
	return strings.Join(parts, " ")
}
