// Package report owns vxtrace's output: the JSON document
// (schema vxtrace.trace/v1, described in docs/json.md), the JSONL stream of
// packets, atomic file writes, and the text the CLI prints.
package report

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
	"github.com/vxtrace/vxtrace/tracer"
)

// Schema names this version of the document. Adding optional fields keeps
// it; any other change makes a new version.
const Schema = "vxtrace.trace/v1"

// Doc is one trace: what was traced, where, and what happened to each
// packet.
type Doc struct {
	Schema         string     `json:"schema"`
	Node           string     `json:"node"`
	Started        time.Time  `json:"started"`
	Ended          time.Time  `json:"ended"`
	Filter         Filter     `json:"filter"`
	Hops           []topo.Hop `json:"hops"`
	Packets        []Packet   `json:"packets"`
	PacketsOmitted int        `json:"packets_omitted"`
	Summary        Summary    `json:"summary"`
	LostEvents     LostEvents `json:"lost_events"`
}

// Filter echoes what the trace matched on. Empty fields matched anything.
type Filter struct {
	Src      string       `json:"src,omitempty"` // CIDR, inner (or only) header
	Dst      string       `json:"dst,omitempty"`
	OuterSrc string       `json:"outer_src,omitempty"` // CIDR, VTEP header
	OuterDst string       `json:"outer_dst,omitempty"`
	Proto    string       `json:"proto,omitempty"`
	Port     uint16       `json:"port,omitempty"`
	VNI      *uint32      `json:"vni,omitempty"`
	NetNS    []topo.NetNS `json:"netns,omitempty"` // empty: every namespace
}

// Packet is one packet's journey.
type Packet struct {
	ID            string  `json:"id"` // fingerprint, 16 hex digits
	Inner         Inner   `json:"inner"`
	VNI           *uint32 `json:"vni,omitempty"`
	Outer         *Outer  `json:"outer,omitempty"`
	Events        []Event `json:"events"`
	EventsOmitted uint32  `json:"events_omitted,omitempty"`
	Verdict       string  `json:"verdict"`
	LastHop       int     `json:"last_hop"`
	Drop          *Drop   `json:"drop,omitempty"`

	// fill is what FillFromJourney's pointers point into, reused with
	// the Packet; Clone leaves it behind.
	fill *fillStore
}

// fillStore keeps a flooded trace's conversions free of allocations: the
// values the optional fields point to, and the address strings already
// formatted.
type fillStore struct {
	ports    [5]uint16 // sport, dport, IP id, ICMP id, ICMP sequence
	icmpType uint8
	vni      uint32
	outer    Outer
	drop     Drop
	vnis     []uint32 // the events'
	addrs    map[netip.Addr]string
	// recent answers before addrs: a flow's four addresses come with
	// every one of its packets, and hashing them was a twentieth of a
	// flooded trace's CPU.
	recent [4]addrName
	next   uint8
	id     [16]byte // Packet.ID's bytes
}

type addrName struct {
	a netip.Addr
	s string
}

// maxAddrNames bounds the address cache: a trace of many hosts starts it
// over rather than keep every address it ever saw.
const maxAddrNames = 4096

func (f *fillStore) addr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	for i := range f.recent {
		if f.recent[i].a == a {
			return f.recent[i].s
		}
	}
	s, ok := f.addrs[a]
	if !ok {
		if len(f.addrs) >= maxAddrNames {
			clear(f.addrs)
		}
		s = a.String()
		f.addrs[a] = s
	}
	f.recent[f.next%uint8(len(f.recent))] = addrName{a, s}
	f.next++
	return s
}

// Inner is the overlay packet's headers (or the only ones). Pointer fields
// are set where they apply to the protocol, so a zero stays visible.
type Inner struct {
	Src      string  `json:"src,omitempty"`
	Dst      string  `json:"dst,omitempty"`
	Proto    string  `json:"proto,omitempty"`
	Sport    *uint16 `json:"sport,omitempty"`
	Dport    *uint16 `json:"dport,omitempty"`
	IPID     *uint16 `json:"ip_id,omitempty"`
	ICMPID   *uint16 `json:"icmp_id,omitempty"`
	ICMPSeq  *uint16 `json:"icmp_seq,omitempty"`
	ICMPType *uint8  `json:"icmp_type,omitempty"`
	TCPFlags string  `json:"tcp_flags,omitempty"`
}

// Outer is the VTEP header of an encapsulated packet.
type Outer struct {
	Src   string `json:"src"`
	Dst   string `json:"dst"`
	Sport uint16 `json:"sport"`
	Dport uint16 `json:"dport"`
}

// Event is one step of a journey.
type Event struct {
	TNS     uint64  `json:"t_ns"`
	Hop     int     `json:"hop"`
	Ifname  string  `json:"ifname"`
	NetNS   uint32  `json:"netns"`
	Dir     string  `json:"dir"`
	What    string  `json:"what"`
	Encap   bool    `json:"encap"`
	VNI     *uint32 `json:"vni,omitempty"`
	Len     uint32  `json:"len"`
	Derived bool    `json:"derived,omitempty"`
	// NextHop: dir "neigh", the IPv4 address whose link-layer address the
	// packet waits for.
	NextHop string `json:"next_hop,omitempty"`
}

// Drop says where and why the kernel dropped the packet.
type Drop struct {
	Reason     string `json:"reason"`
	ReasonCode uint32 `json:"reason_code"`
	Location   string `json:"location"`
	Hop        int    `json:"hop"`
	Ifname     string `json:"ifname"`
	NetNS      uint32 `json:"netns"`
}

// Summary is complete even when packets were omitted or events lost: the
// per-hop figures come from in-kernel counters.
type Summary struct {
	Packets  int           `json:"packets"`
	Verdicts VerdictCounts `json:"verdicts"`
	PerHop   []HopSummary  `json:"per_hop"`
}

// VerdictCounts counts packets by verdict.
type VerdictCounts struct {
	Delivered int `json:"delivered"`
	Dropped   int `json:"dropped"`
	LeftNode  int `json:"left_node"`
	Vanished  int `json:"vanished"`
}

// HopSummary is one hop's kernel counters.
type HopSummary struct {
	Hop         int               `json:"hop"`
	Ifname      string            `json:"ifname"`
	NetNS       uint32            `json:"netns"`
	Seen        uint64            `json:"seen"`
	Dropped     uint64            `json:"dropped"`
	DropReasons map[string]uint64 `json:"drop_reasons"`
}

// LostEvents counts events that never reached the correlator.
type LostEvents struct {
	Kernel uint64 `json:"kernel"` // ring buffer reserve failures
	User   uint64 `json:"user"`   // dropped by the reader or its queue
	Total  uint64 `json:"total"`
}

// HopCount is the tracer's in-kernel counters for one interface.
type HopCount struct {
	Key     topo.Key
	Seen    uint64
	Dropped uint64
	Reasons map[uint32]uint64 // drop reason code -> packets
}

// What names a step direction for people.
func What(dir string) string {
	switch dir {
	case journey.DirRx:
		return "received"
	case journey.DirTx:
		return "sent"
	case journey.DirDrop:
		return "dropped"
	case journey.DirConsume:
		return "consumed"
	case journey.DirFwd:
		return "forwarded"
	case journey.DirTCIn:
		return "seen at tc ingress"
	case journey.DirTCOut:
		return "seen at tc egress"
	case journey.DirNeigh:
		return "waiting for the next hop's address"
	}
	return dir
}

// ProtoName names an IP protocol number; unnamed ones are decimal.
func ProtoName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	case 47:
		return "gre"
	}
	return strconv.Itoa(int(p))
}

var tcpFlagNames = [...]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

// TCPFlags spells TCP flags as "SYN|ACK".
func TCPFlags(f uint8) string { return tcpFlagStrings[f] }

// tcpFlagStrings: every TCP packet of a flood is printed with its flags.
var tcpFlagStrings = func() (t [256]string) {
	for f := range t {
		var b strings.Builder
		for i, n := range tcpFlagNames {
			if f&(1<<i) != 0 {
				if b.Len() > 0 {
					b.WriteByte('|')
				}
				b.WriteString(n)
			}
		}
		t[f] = b.String()
	}
	return t
}()

// PacketID formats a fingerprint as the document's packet id.
func PacketID(fp uint64) string {
	var b [16]byte
	encodeID(&b, fp)
	return string(b[:])
}

// encodeID: every traced packet gets an id (fmt's boxing and parsing were
// a tenth of a flooded trace's CPU).
func encodeID(b *[16]byte, fp uint64) {
	var raw [8]byte
	binary.BigEndian.PutUint64(raw[:], fp)
	hex.Encode(b[:], raw[:])
}

// packetID is PacketID in the fill's own bytes: a string per packet was
// nearly all that a flooded trace allocated in the end, and so what made
// its collector run (its Packet shares them like the rest of the fill, and
// Clone copies them).
func (f *fillStore) packetID(fp uint64) string {
	encodeID(&f.id, fp)
	return unsafe.String(&f.id[0], len(f.id))
}

func isEcho(t tracer.Tuple) bool {
	switch {
	case t.Proto == 1 && (t.L4Info == 8 || t.L4Info == 0):
		return true
	case t.Proto == 58 && (t.L4Info == 128 || t.L4Info == 129):
		return true
	}
	return false
}

func inner(t tracer.Tuple, ipid uint16, f *fillStore) Inner {
	var in Inner
	if t.Family == 0 {
		return in
	}
	in.Src, in.Dst, in.Proto = f.addr(t.Src), f.addr(t.Dst), ProtoName(t.Proto)
	if t.Family == 4 {
		f.ports[2] = ipid
		in.IPID = &f.ports[2]
	}
	switch t.Proto {
	case 6, 17, 132:
		f.ports[0], f.ports[1] = t.Sport, t.Dport
		in.Sport, in.Dport = &f.ports[0], &f.ports[1]
		if t.Proto == 6 {
			in.TCPFlags = TCPFlags(t.L4Info)
		}
	case 1, 58:
		f.icmpType = t.L4Info
		in.ICMPType = &f.icmpType
		if isEcho(t) {
			f.ports[3], f.ports[4] = t.Sport, t.Dport
			in.ICMPID, in.ICMPSeq = &f.ports[3], &f.ports[4]
		}
	}
	return in
}

// FromJourney converts a journey to its document form. It copies
// everything, so it may be called inside a correlator's emit.
func FromJourney(p *journey.Packet) Packet {
	var out Packet
	FillFromJourney(p, &out)
	return out.Clone()
}

// FillFromJourney is FromJourney into out, reusing its Events array and
// what its optional fields point to: under a flood a trace converts every
// packet to print it, and fresh memory per packet was most of what the
// trace allocated (and the collector's work). Whoever keeps out beyond the
// next call must clone it (Packet.Clone).
func FillFromJourney(p *journey.Packet, out *Packet) { fillFromJourney(p, out, true) }

// FillForLine is FillFromJourney for the one-line form (Text.AppendVerdictLine
// and AppendHeader): of the events it keeps only those at the packet's last
// hop, which are all that line reads. A flood's trace that prints lines and
// keeps no more packets converts each this way (that and the recent
// addresses of fillStore saved 7 % of its CPU, side by side).
func FillForLine(p *journey.Packet, out *Packet) { fillFromJourney(p, out, false) }

func fillFromJourney(p *journey.Packet, out *Packet, all bool) {
	f := out.fill
	if f == nil {
		f = &fillStore{addrs: make(map[netip.Addr]string)}
	}
	events := out.Events[:0]
	if cap(events) < len(p.Steps) {
		events = make([]Event, len(p.Steps))
	}
	if cap(f.vnis) < len(p.Steps) {
		f.vnis = make([]uint32, len(p.Steps))
	}
	*out = Packet{
		ID:            f.packetID(p.ID),
		Inner:         inner(p.Inner, p.IPID, f),
		Events:        events[:len(p.Steps)],
		EventsOmitted: p.EventsOmitted,
		Verdict:       string(p.Verdict),
		LastHop:       p.LastHop,
		fill:          f,
	}
	if p.Encap {
		f.vni = p.VNI
		f.outer = Outer{Src: f.addr(p.Outer.Src), Dst: f.addr(p.Outer.Dst), Sport: p.Outer.Sport, Dport: p.Outer.Dport}
		out.VNI, out.Outer = &f.vni, &f.outer
	}
	n := 0
	for i := range p.Steps {
		// By pointer: a copy of each 96-byte step, even of one skipped,
		// was a third of this function in a flood's profile.
		s := &p.Steps[i]
		if !all && s.HopID != p.LastHop {
			continue
		}
		e := Event{
			TNS:     s.Time,
			Hop:     s.HopID,
			Ifname:  s.Ifname,
			NetNS:   s.NetNS,
			Dir:     s.Dir,
			What:    What(s.Dir),
			Encap:   s.Encap,
			Len:     s.Len,
			Derived: s.Derived,
		}
		if a := s.NextHopAddr(); a.IsValid() {
			e.NextHop = a.String()
		}
		if s.Encap {
			f.vnis[n] = s.VNI
			e.VNI = &f.vnis[n]
		}
		out.Events[n] = e
		n++
	}
	out.Events = out.Events[:n]
	if d := p.Drop; d != nil {
		f.drop = Drop{Reason: d.Reason, ReasonCode: d.Code, Location: d.Location, Hop: d.HopID, Ifname: d.Ifname, NetNS: d.NetNS}
		out.Drop = &f.drop
	}
}

// Clone copies p so that it shares nothing that a later FillFromJourney
// into p writes: the events, the id's bytes, and whatever the pointer
// fields point to.
func (p Packet) Clone() Packet {
	p.fill = nil
	p.ID = strings.Clone(p.ID)
	p.Events = slices.Clone(p.Events)
	for i := range p.Events {
		p.Events[i].VNI = clonePtr(p.Events[i].VNI)
	}
	p.VNI, p.Outer, p.Drop = clonePtr(p.VNI), clonePtr(p.Outer), clonePtr(p.Drop)
	in := &p.Inner
	in.Sport, in.Dport, in.IPID = clonePtr(in.Sport), clonePtr(in.Dport), clonePtr(in.IPID)
	in.ICMPID, in.ICMPSeq, in.ICMPType = clonePtr(in.ICMPID), clonePtr(in.ICMPSeq), clonePtr(in.ICMPType)
	return p
}

func clonePtr[T any](v *T) *T {
	if v == nil {
		return nil
	}
	c := *v
	return &c
}
