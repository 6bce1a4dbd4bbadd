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

// hopLabel is "netns/ifname", from the hop table when the hop is known.
func (t *Text) hopLabel(hop int, netns uint32, ifname string) string {
	if h, ok := t.hops[hop]; ok && hop >= 0 {
		return t.nsName(h.NetNS.Inode) + "/" + h.Ifname
	}
	if ifname == "" {
		ifname = "-"
	}
	return t.nsName(netns) + "/" + ifname
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
func Header(p *Packet) string {
	var b strings.Builder
	b.WriteString("packet ")
	b.WriteString(p.ID)
	in := &p.Inner
	b.WriteString("  ")
	if in.Src == "" {
		b.WriteString("(no IP header)")
	} else {
		b.WriteString(in.Proto)
		b.WriteByte(' ')
		b.WriteString(endpoint(in.Src, in.Sport))
		b.WriteString(" > ")
		b.WriteString(endpoint(in.Dst, in.Dport))
	}
	switch {
	case in.ICMPType != nil && in.ICMPID != nil:
		fmt.Fprintf(&b, " %s id=%d seq=%d", icmpName(in.Proto, *in.ICMPType), *in.ICMPID, deref(in.ICMPSeq))
	case in.ICMPType != nil:
		fmt.Fprintf(&b, " %s", icmpName(in.Proto, *in.ICMPType))
	}
	if in.TCPFlags != "" {
		fmt.Fprintf(&b, " [%s]", in.TCPFlags)
	}
	if in.IPID != nil {
		fmt.Fprintf(&b, " ip_id=%#04x", *in.IPID)
	}
	if p.VNI != nil {
		fmt.Fprintf(&b, "  vni %d", *p.VNI)
	}
	if o := p.Outer; o != nil {
		fmt.Fprintf(&b, " (%s:%d > %s:%d)", o.Src, o.Sport, o.Dst, o.Dport)
	}
	return b.String()
}

func deref[T any](p *T) T {
	var z T
	if p == nil {
		return z
	}
	return *p
}

func endpoint(addr string, port *uint16) string {
	if port == nil {
		return addr
	}
	if strings.Contains(addr, ":") {
		return "[" + addr + "]:" + strconv.Itoa(int(*port))
	}
	return addr + ":" + strconv.Itoa(int(*port))
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
func (t *Text) VerdictLine(p *Packet) string {
	var b strings.Builder
	b.WriteString("verdict: ")
	b.WriteString(t.verdictWord(p.Verdict))
	if d := p.Drop; d != nil {
		fmt.Fprintf(&b, " %s at %s (hop %s)", d.Reason, d.Location, t.hopLabel(d.Hop, d.NetNS, d.Ifname))
		return b.String()
	}
	// The hop of the last step on it, for its namespace when it is unknown.
	label := ""
	for i := len(p.Events) - 1; i >= 0; i-- {
		e := &p.Events[i]
		if e.Hop == p.LastHop && (e.Dir != journey.DirConsume || label == "") {
			label = t.hopLabel(e.Hop, e.NetNS, e.Ifname)
			if e.Dir != journey.DirConsume {
				break
			}
		}
	}
	if label == "" {
		label = t.hopLabel(p.LastHop, 0, "")
	}
	if journey.Verdict(p.Verdict) == journey.Vanished {
		fmt.Fprintf(&b, " (last seen at hop %s)", label)
	} else {
		fmt.Fprintf(&b, " (hop %s)", label)
	}
	return b.String()
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
