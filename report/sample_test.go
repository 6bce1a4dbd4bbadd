package report

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
	"github.com/vxtrace/vxtrace/tracer"
)

// The test topology is the lab's docker layout.
const (
	nsC1 = 4026530001 + iota
	nsOv1
	nsN1
	nsSw
	nsN2
	nsOv2
	nsC2
)

func u32(v uint32) *uint32 { return &v }

func labHops() []topo.Hop {
	ns := func(inode uint32, name string) topo.NetNS { return topo.NetNS{Inode: inode, Name: name} }
	return []topo.Hop{
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindContainer, NetNS: ns(nsC1, "c1"), MTU: 1450},
		{Ifname: "veth0", Ifindex: 5, Kind: topo.KindVeth, NetNS: ns(nsOv1, "ov1"), MTU: 1450, Master: "br0"},
		{Ifname: "br0", Ifindex: 3, Kind: topo.KindBridge, NetNS: ns(nsOv1, "ov1"), MTU: 1450},
		{Ifname: "vxlan0", Ifindex: 4, Kind: topo.KindVXLAN, NetNS: ns(nsOv1, "ov1"), MTU: 1450, Master: "br0", VNI: u32(4097), Port: 4789},
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindNIC, NetNS: ns(nsN1, "n1"), MTU: 1500},
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindNIC, NetNS: ns(nsN2, "n2"), MTU: 1500},
		{Ifname: "vxlan0", Ifindex: 4, Kind: topo.KindVXLAN, NetNS: ns(nsOv2, "ov2"), MTU: 1450, Master: "br0", VNI: u32(4097), Port: 4789},
		{Ifname: "br0", Ifindex: 3, Kind: topo.KindBridge, NetNS: ns(nsOv2, "ov2"), MTU: 1450},
		{Ifname: "veth0", Ifindex: 5, Kind: topo.KindVeth, NetNS: ns(nsOv2, "ov2"), MTU: 1450, Master: "br0"},
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindContainer, NetNS: ns(nsC2, "c2"), MTU: 1450},
	}
}

type fakeNamer struct{}

func (fakeNamer) DropReason(code uint32) string {
	switch code {
	case 2:
		return "NOT_SPECIFIED"
	case 6:
		return "NETFILTER_DROP"
	}
	return fmt.Sprintf("reason_%d", code)
}

func (fakeNamer) Symbol(addr uint64) string {
	if addr == 0xffffffffc0a015a3 {
		return "nft_do_chain+0x5a3"
	}
	return fmt.Sprintf("0x%x", addr)
}

var (
	icmpEcho = tracer.Tuple{Family: 4, Proto: 1, L4Info: 8, Src: netip.MustParseAddr("10.0.1.3"),
		Dst: netip.MustParseAddr("10.0.1.4"), Sport: 7, Dport: 1}
	tcpSyn = tracer.Tuple{Family: 4, Proto: 6, L4Info: 0x02, Src: netip.MustParseAddr("10.0.1.3"),
		Dst: netip.MustParseAddr("10.0.1.4"), Sport: 41234, Dport: 80}
	udp6 = tracer.Tuple{Family: 6, Proto: 17, Src: netip.MustParseAddr("fd00::3"),
		Dst: netip.MustParseAddr("fd00::4"), Sport: 5353, Dport: 53}
	vtep = tracer.Tuple{Family: 4, Proto: 17, Src: netip.MustParseAddr("10.99.1.2"),
		Dst: netip.MustParseAddr("10.99.2.2"), Sport: 51000, Dport: 4789}
)

type hopEv struct {
	tus     uint64
	hook    tracer.Hook
	netns   uint32
	ifindex uint32
	encap   bool
}

// events turns a compact path into events of packet fp.
func events(fp uint64, inner tracer.Tuple, steps []hopEv) []tracer.Event {
	var out []tracer.Event
	for _, s := range steps {
		e := tracer.Event{Time: 5_000_000_000 + fp*1_000_000 + s.tus*100, FP: fp, NetNS: s.netns, Ifindex: s.ifindex,
			Len: 84, Hook: s.hook, Flags: tracer.FlagParsed, Inner: inner, IPID: uint16(0x1000 + fp)}
		if s.encap {
			e.Flags |= tracer.FlagEncap
			e.VNI, e.Outer, e.Len = 4097, vtep, 134
		}
		if s.hook == tracer.HookDrop {
			e.Reason, e.Location = 6, 0xffffffffc0a015a3
		}
		out = append(out, e)
	}
	return out
}

var fullPath = []hopEv{
	{0, tracer.HookTx, nsC1, 2, false},
	{12, tracer.HookRx, nsOv1, 5, false},
	{25, tracer.HookTx, nsOv1, 4, false},
	{61, tracer.HookTx, nsN1, 2, true},
	{70, tracer.HookRx, nsSw, 2, true},
	{75, tracer.HookTx, nsSw, 3, true},
	{90, tracer.HookRx, nsN2, 2, true},
	{130, tracer.HookRx, nsOv2, 4, false},
	{142, tracer.HookTx, nsOv2, 5, false},
	{150, tracer.HookRx, nsC2, 2, false},
	{171, tracer.HookConsume, nsC2, 2, false},
}

// journeys runs hand-built events through the real correlator: delivered
// (ICMP across both nodes), dropped at n2's firewall with no device on the
// drop, a TCP SYN that left the node, an IPv6 UDP packet that vanished, and
// a looping packet with more events than MaxSteps.
func journeys(t testing.TB) []*journey.Packet {
	t.Helper()
	var evs []tracer.Event
	evs = append(evs, events(1, icmpEcho, fullPath)...)
	dropped := append(append([]hopEv{}, fullPath[:7]...), hopEv{95, tracer.HookDrop, 0, 0, true})
	evs = append(evs, events(2, icmpEcho, dropped)...)
	evs = append(evs, events(3, tcpSyn, fullPath[:4])...)
	evs = append(evs, events(4, udp6, fullPath[:3])...)
	var loop []hopEv
	for i := range 16 {
		loop = append(loop, hopEv{uint64(i), tracer.HookTx, nsSw, 3, true})
	}
	evs = append(evs, events(5, tcpSyn, loop)...)

	c := journey.New(journey.Options{Hops: topo.NewTopology(labHops()), Namer: fakeNamer{}, MaxSteps: 14})
	for i := range evs {
		c.Add(&evs[i])
	}
	var out []*journey.Packet
	c.Flush(func(p *journey.Packet) { out = append(out, p.Clone()) })
	if len(out) != 5 {
		t.Fatalf("correlator gave %d packets, want 5", len(out))
	}
	return out
}

var (
	started = time.Date(2025, 1, 2, 15, 4, 5, 1, time.UTC)
	ended   = started.Add(2500 * time.Millisecond)
)

func sampleFilter() Filter {
	return Filter{
		Src: "10.0.1.3/32", Dst: "10.0.1.4/32", OuterSrc: "10.99.1.0/24", OuterDst: "10.99.2.0/24",
		Proto: "icmp", Port: 80, VNI: u32(4097),
		NetNS: []topo.NetNS{{Inode: nsN1, Name: "n1"}, {Inode: nsN2}},
	}
}

func sampleCounts() []HopCount {
	return []HopCount{
		{Key: topo.Key{NetNS: nsC1, Ifindex: 2}, Seen: 5},
		{Key: topo.Key{NetNS: nsN2, Ifindex: 2}, Seen: 5, Dropped: 2, Reasons: map[uint32]uint64{6: 2}},
		{Key: topo.Key{NetNS: nsSw, Ifindex: 3}, Seen: 4, Dropped: 1, Reasons: map[uint32]uint64{2: 1}},
		{Key: topo.Key{NetNS: nsSw, Ifindex: 2}, Seen: 4},
	}
}

// sampleDoc is a document built the way the CLI builds one.
func sampleDoc(t testing.TB, maxPackets int) *Doc {
	t.Helper()
	r := NewRecorder(Options{Node: "lab-host", Started: started, Filter: sampleFilter(), MaxPackets: maxPackets, Namer: fakeNamer{}})
	for _, p := range journeys(t) {
		r.Add(p)
	}
	hops := topo.NewTopology(labHops()).Hops
	return r.Doc(End{Ended: ended, Hops: hops, Counts: sampleCounts(), Lost: LostEvents{Kernel: 3, User: 1}})
}

// filled returns a value of type T with every field set to something
// non-zero, recursively, so that every omitempty key shows in its JSON. New
// fields appear without this test changing, and the docs test then insists
// that docs/json.md describes them.
func filled[T any]() T {
	var v T
	fill(reflect.ValueOf(&v).Elem())
	return v
}

func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem())
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	}
}

// BenchmarkFillForLine is the per-packet conversion a trace that prints
// lines makes (its journeys' steps are cold by then in a flood; here they
// are warm, so this is the floor).
func BenchmarkFillForLine(b *testing.B) {
	ps := journeys(b)
	var out Packet
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		FillForLine(ps[i%len(ps)], &out)
		i++
	}
}
