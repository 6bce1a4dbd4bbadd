package journey

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/vxtrace/vxtrace/topo"
	"github.com/vxtrace/vxtrace/tracer"
)

// Namespace inodes of the test topology: the docker layout of the lab.
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

// labTopology is the docker layout: c1 eth0 -> ov1 veth0 (br0 port) -> br0
// -> vxlan0 -> n1 eth0 -> sw -> n2 eth0 -> ov2 vxlan0 -> br0 -> veth0 ->
// c2 eth0.
func labTopology() *topo.Topology {
	ns := func(inode uint32, name string) topo.NetNS { return topo.NetNS{Inode: inode, Name: name} }
	return topo.NewTopology([]topo.Hop{
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindContainer, NetNS: ns(nsC1, "c1")},                                            // 0
		{Ifname: "veth0", Ifindex: 5, Kind: topo.KindVeth, NetNS: ns(nsOv1, "ov1"), Master: "br0"},                               // 1
		{Ifname: "br0", Ifindex: 3, Kind: topo.KindBridge, NetNS: ns(nsOv1, "ov1")},                                              // 2
		{Ifname: "vxlan0", Ifindex: 4, Kind: topo.KindVXLAN, NetNS: ns(nsOv1, "ov1"), Master: "br0", VNI: u32(4097), Port: 4789}, // 3
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindNIC, NetNS: ns(nsN1, "n1")},                                                  // 4
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindNIC, NetNS: ns(nsN2, "n2")},                                                  // 5
		{Ifname: "vxlan0", Ifindex: 4, Kind: topo.KindVXLAN, NetNS: ns(nsOv2, "ov2"), Master: "br0", VNI: u32(4097), Port: 4789}, // 6
		{Ifname: "br0", Ifindex: 3, Kind: topo.KindBridge, NetNS: ns(nsOv2, "ov2")},                                              // 7
		{Ifname: "veth0", Ifindex: 5, Kind: topo.KindVeth, NetNS: ns(nsOv2, "ov2"), Master: "br0"},                               // 8
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindContainer, NetNS: ns(nsC2, "c2")},                                            // 9
	})
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

func (fakeNamer) Symbol(addr uint64) string { return fmt.Sprintf("sym_%x", addr) }

var (
	innerICMP = tracer.Tuple{Family: 4, Proto: 1, L4Info: 8, Src: netip.MustParseAddr("10.0.1.3"),
		Dst: netip.MustParseAddr("10.0.1.4"), Sport: 7, Dport: 1}
	outerUDP = tracer.Tuple{Family: 4, Proto: 17, Src: netip.MustParseAddr("10.99.1.2"),
		Dst: netip.MustParseAddr("10.99.2.2"), Sport: 51000, Dport: 4789}
)

// ev builds one event of packet fp at time t (µs).
func ev(fp uint64, tus uint64, hook tracer.Hook, netns, ifindex uint32, encap bool) tracer.Event {
	e := tracer.Event{Time: 1_000_000_000 + tus*1000, FP: fp, NetNS: netns, Ifindex: ifindex,
		Len: 84, Hook: hook, Flags: tracer.FlagParsed, Inner: innerICMP, IPID: 0x1234}
	if encap {
		e.Flags |= tracer.FlagEncap
		e.VNI = 4097
		e.Outer = outerUDP
		e.Len = 134
	}
	return e
}

// path is c1 -> c2 across both nodes, one event per hook.
func path(fp uint64) []tracer.Event {
	return []tracer.Event{
		ev(fp, 0, tracer.HookTx, nsC1, 2, false),
		ev(fp, 1, tracer.HookRx, nsOv1, 5, false),
		ev(fp, 2, tracer.HookTx, nsOv1, 4, false),
		ev(fp, 3, tracer.HookTx, nsN1, 2, true),
		ev(fp, 4, tracer.HookRx, nsSw, 2, true),
		ev(fp, 5, tracer.HookTx, nsSw, 3, true),
		ev(fp, 6, tracer.HookRx, nsN2, 2, true),
		ev(fp, 7, tracer.HookRx, nsOv2, 4, false),
		ev(fp, 8, tracer.HookTx, nsOv2, 5, false),
		ev(fp, 9, tracer.HookRx, nsC2, 2, false),
		ev(fp, 10, tracer.HookConsume, nsC2, 2, false),
	}
}

func dropEv(fp uint64, tus uint64, netns, ifindex, reason uint32, loc uint64) tracer.Event {
	e := ev(fp, tus, tracer.HookDrop, netns, ifindex, false)
	e.Reason, e.Location = reason, loc
	return e
}

// run feeds events to a new correlator and flushes it.
func run(t *testing.T, opts Options, evs []tracer.Event) []*Packet {
	t.Helper()
	if opts.Hops == nil {
		opts.Hops = labTopology()
	}
	c := New(opts)
	for i := range evs {
		c.Add(&evs[i])
	}
	var out []*Packet
	c.Flush(func(p *Packet) { out = append(out, p.Clone()) })
	if s := c.Stats(); s.Open != 0 {
		t.Fatalf("open after flush = %d", s.Open)
	}
	return out
}

type stepView struct {
	hop     int
	ifname  string
	dir     string
	derived bool
}

func view(p *Packet) []stepView {
	var v []stepView
	for _, s := range p.Steps {
		v = append(v, stepView{s.HopID, s.Ifname, s.Dir, s.Derived})
	}
	return v
}

func TestDeliveredAcrossNodes(t *testing.T) {
	out := run(t, Options{Namer: fakeNamer{}}, path(0xabc))
	if len(out) != 1 {
		t.Fatalf("got %d packets, want 1", len(out))
	}
	p := out[0]
	want := []stepView{
		{0, "eth0", "tx", false},
		{1, "veth0", "rx", false},
		{2, "br0", "fwd", true},
		{3, "vxlan0", "tx", false},
		{4, "eth0", "tx", false},
		{-1, "if2", "rx", false},
		{-1, "if3", "tx", false},
		{5, "eth0", "rx", false},
		{6, "vxlan0", "rx", false},
		{7, "br0", "fwd", true},
		{8, "veth0", "tx", false},
		{9, "eth0", "rx", false},
		{9, "eth0", "consume", false},
	}
	if got := view(p); !slices.Equal(got, want) {
		t.Fatalf("steps:\n got %v\nwant %v", got, want)
	}
	if p.Verdict != Delivered || p.LastHop != 9 || p.Drop != nil {
		t.Errorf("verdict %s last hop %d drop %v, want delivered 9 nil", p.Verdict, p.LastHop, p.Drop)
	}
	if !p.Encap || p.VNI != 4097 || p.Outer != outerUDP || p.Inner != innerICMP || p.IPID != 0x1234 {
		t.Errorf("packet headers: encap %v vni %d outer %+v inner %+v ipid %x", p.Encap, p.VNI, p.Outer, p.Inner, p.IPID)
	}
	if p.ID != 0xabc || p.First != 1_000_000_000 || p.Last != 1_000_010_000 {
		t.Errorf("id %x first %d last %d", p.ID, p.First, p.Last)
	}
	// The derived step takes the time of the tx it precedes.
	if s := p.Steps[2]; s.Time != 2000 || s.Mono != 1_000_002_000 || s.Kind != topo.KindBridge || s.NetNS != nsOv1 || s.Ifindex != 3 {
		t.Errorf("derived step %+v", s)
	}
	for i, s := range p.Steps {
		if s.Time != s.Mono-p.First {
			t.Errorf("step %d: time %d, mono-first %d", i, s.Time, s.Mono-p.First)
		}
	}
	if s := p.Steps[4]; !s.Encap || s.VNI != 4097 || s.Len != 134 {
		t.Errorf("nic step %+v, want encap vni 4097", s)
	}
}

func TestVerdicts(t *testing.T) {
	const fp = 7
	full := path(fp)
	tests := []struct {
		name     string
		evs      []tracer.Event
		verdict  Verdict
		lastHop  int
		drop     *Drop
		numSteps int
	}{
		{"delivered", full, Delivered, 9, nil, 13},
		{"delivered without consume", full[:10], Delivered, 9, nil, 12},
		{
			// The no-listener case: the container got it, the stack then
			// dropped it (NO_SOCKET). Its final fate decides: dropped.
			"delivered then dropped",
			append(slices.Clone(full[:10]), dropEv(fp, 11, nsC2, 2, 3, 0xffffffff81aa0000)),
			Dropped, 9, &Drop{Reason: "reason_3", Code: 3, Location: "sym_ffffffff81aa0000", HopID: 9, Ifname: "eth0", NetNS: nsC2}, 13,
		},
		{
			"dropped at n2 firewall, no device",
			append(slices.Clone(full[:7]), dropEv(fp, 7, 0, 0, 6, 0xffffffffc0a01234)),
			Dropped, 5,
			&Drop{Reason: "NETFILTER_DROP", Code: 6, Location: "sym_ffffffffc0a01234", HopID: 5, Ifname: "eth0", NetNS: nsN2},
			9,
		},
		{
			"dropped at switch, unknown device",
			append(slices.Clone(full[:5]), dropEv(fp, 5, nsSw, 2, 2, 0x10)),
			Dropped, -1,
			&Drop{Reason: "NOT_SPECIFIED", Code: 2, Location: "sym_10", HopID: -1, Ifname: "if2", NetNS: nsSw},
			7,
		},
		{
			"left node then freed by the NIC",
			append(slices.Clone(full[:4]), ev(fp, 4, tracer.HookConsume, nsN1, 2, true)),
			LeftNode, 4, nil, 6,
		},
		{"left node", full[:4], LeftNode, 4, nil, 5},
		{"vanished in the sandbox", full[:3], Vanished, 3, nil, 4},
		{"vanished at the switch", full[:5], Vanished, -1, nil, 6},
		{
			"local socket: rx then consume",
			[]tracer.Event{ev(fp, 0, tracer.HookRx, nsN1, 2, false), ev(fp, 1, tracer.HookConsume, nsN1, 2, false)},
			Delivered, 4, nil, 2,
		},
		{
			"consume after tx is not delivery",
			[]tracer.Event{ev(fp, 0, tracer.HookTx, nsOv1, 4, false), ev(fp, 1, tracer.HookConsume, nsOv1, 4, false)},
			Vanished, 3, nil, 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := run(t, Options{Namer: fakeNamer{}}, tt.evs)
			if len(out) != 1 {
				t.Fatalf("got %d packets, want 1", len(out))
			}
			p := out[0]
			if p.Verdict != tt.verdict || p.LastHop != tt.lastHop {
				t.Errorf("verdict %s last hop %d, want %s %d", p.Verdict, p.LastHop, tt.verdict, tt.lastHop)
			}
			if len(p.Steps) != tt.numSteps {
				t.Errorf("%d steps, want %d: %v", len(p.Steps), tt.numSteps, view(p))
			}
			switch {
			case tt.drop == nil && p.Drop != nil:
				t.Errorf("drop %+v, want none", *p.Drop)
			case tt.drop != nil && p.Drop == nil:
				t.Errorf("no drop, want %+v", *tt.drop)
			case tt.drop != nil && *p.Drop != *tt.drop:
				t.Errorf("drop %+v, want %+v", *p.Drop, *tt.drop)
			}
		})
	}
}

func TestDropWithoutNamer(t *testing.T) {
	evs := []tracer.Event{ev(1, 0, tracer.HookTx, nsC1, 2, false), dropEv(1, 1, nsC1, 2, 77, 0xffffffff81000010)}
	p := run(t, Options{}, evs)[0]
	if p.Drop == nil || p.Drop.Reason != "reason_77" || p.Drop.Location != "0xffffffff81000010" || p.Drop.HopID != 0 {
		t.Fatalf("drop %+v", p.Drop)
	}
}

func TestDecide(t *testing.T) {
	st := func(dir string, kind topo.Kind, hop int) Step {
		return Step{Dir: dir, Kind: kind, HopID: hop, Ifindex: 1}
	}
	derived := st(DirFwd, topo.KindBridge, 2)
	derived.Derived = true
	tests := []struct {
		name    string
		steps   []Step
		verdict Verdict
		idx     int
	}{
		{"empty", nil, Vanished, -1},
		{"only consume", []Step{st(DirConsume, "", -1)}, Vanished, 0},
		{"rx at container", []Step{st(DirTx, topo.KindVeth, 1), st(DirRx, topo.KindContainer, 9)}, Delivered, 1},
		{"tc ingress at container", []Step{st(DirTCIn, topo.KindContainer, 9)}, Delivered, 0},
		{"tx at container is not delivery", []Step{st(DirTx, topo.KindContainer, 0)}, Vanished, 0},
		{"consume after rx", []Step{st(DirRx, topo.KindNIC, 4), st(DirConsume, "", 4)}, Delivered, 0},
		{"consume after derived after rx", []Step{st(DirRx, topo.KindVeth, 1), derived, st(DirConsume, "", -1)}, Delivered, 0},
		{"consume after tx", []Step{st(DirTx, topo.KindVeth, 1), st(DirConsume, "", 1)}, Vanished, 0},
		{"drop", []Step{st(DirRx, topo.KindNIC, 5), st(DirDrop, "", 5)}, Dropped, 1},
		{"last drop decides", []Step{st(DirDrop, "", 1), st(DirRx, topo.KindNIC, 5), st(DirDrop, "", 5)}, Dropped, 2},
		{"container beats an earlier drop", []Step{st(DirDrop, "", 1), st(DirRx, topo.KindContainer, 9)}, Delivered, 1},
		{"drop after the container decides", []Step{st(DirRx, topo.KindContainer, 9), st(DirDrop, "", 9)}, Dropped, 1},
		{"drop after the container, then a derived step", []Step{st(DirRx, topo.KindContainer, 9), st(DirDrop, "", 9), derived}, Dropped, 1},
		{"tx nic", []Step{st(DirTx, topo.KindVXLAN, 3), st(DirTx, topo.KindNIC, 4)}, LeftNode, 1},
		{"tc egress nic", []Step{st(DirTCOut, topo.KindNIC, 4)}, LeftNode, 0},
		{"tx nic then consume", []Step{st(DirTx, topo.KindNIC, 4), st(DirConsume, "", 4)}, LeftNode, 0},
		{"tx nic then seen again", []Step{st(DirTx, topo.KindNIC, 4), st(DirRx, topo.KindOther, -1)}, Vanished, 1},
		{"rx nic is not leaving", []Step{st(DirRx, topo.KindNIC, 5)}, Vanished, 0},
		{"fwd last", []Step{st(DirRx, topo.KindVeth, 1), derived}, Vanished, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, i := Decide(tt.steps)
			if v != tt.verdict || i != tt.idx {
				t.Errorf("Decide = %s, %d; want %s, %d", v, i, tt.verdict, tt.idx)
			}
		})
	}
}

func TestOutOfOrder(t *testing.T) {
	want := run(t, Options{Namer: fakeNamer{}}, path(1))[0]
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		evs := path(1)
		// Per-CPU buffers: each event may be late by up to 3 positions.
		for i := len(evs) - 1; i > 0; i-- {
			j := max(0, i-rng.IntN(4))
			evs[i], evs[j] = evs[j], evs[i]
		}
		got := run(t, Options{Namer: fakeNamer{}}, evs)[0]
		if !slices.Equal(got.Steps, want.Steps) || got.Verdict != want.Verdict || got.First != want.First {
			t.Fatalf("order %v:\n got %v %s\nwant %v %s", times(evs), view(got), got.Verdict, view(want), want.Verdict)
		}
	}
}

func times(evs []tracer.Event) []uint64 {
	var ts []uint64
	for _, e := range evs {
		ts = append(ts, (e.Time-1_000_000_000)/1000)
	}
	return ts
}

func TestExpireTimeoutAndGrace(t *testing.T) {
	c := New(Options{Hops: labTopology(), Timeout: time.Second, Grace: 50 * time.Millisecond})
	full := path(1)
	// fp 1 ends with an outcome (delivered); fp 2 is still on its way.
	for i := range full {
		c.Add(&full[i])
	}
	open := path(2)[:3]
	for i := range open {
		c.Add(&open[i])
	}
	last := full[len(full)-1].Time
	var got []uint64
	emit := func(p *Packet) { got = append(got, p.ID) }

	c.Expire(last+uint64(49*time.Millisecond), emit)
	if len(got) != 0 {
		t.Fatalf("emitted %v before the grace period", got)
	}
	c.Expire(last+uint64(50*time.Millisecond), emit)
	if !slices.Equal(got, []uint64{1}) {
		t.Fatalf("after grace emitted %v, want [1]", got)
	}
	c.Expire(last+uint64(999*time.Millisecond), emit)
	if len(got) != 1 {
		t.Fatalf("emitted %v before the timeout", got)
	}
	c.Expire(last+uint64(time.Second), emit)
	if !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("after timeout emitted %v, want [1 2]", got)
	}
	if s := c.Stats(); s.Open != 0 || s.Emitted != 2 || s.Events != uint64(len(full)+3) {
		t.Errorf("stats %+v", s)
	}
}

// A later step can take a settled journey back: left the NIC, then seen on
// the switch. It then waits for the full timeout and is judged on all steps.
func TestSettledJourneyMovesOn(t *testing.T) {
	c := New(Options{Hops: labTopology(), Timeout: time.Second, Grace: 50 * time.Millisecond})
	evs := path(1)[:5]
	for i := range evs {
		c.Add(&evs[i])
	}
	last := evs[4].Time
	var got []*Packet
	emit := func(p *Packet) { got = append(got, p.Clone()) }
	c.Expire(last+uint64(100*time.Millisecond), emit)
	if len(got) != 0 {
		t.Fatalf("emitted %s after grace; the packet moved on after the NIC", got[0].Verdict)
	}
	c.Expire(last+uint64(time.Second), emit)
	if len(got) != 1 || got[0].Verdict != Vanished {
		t.Fatalf("got %d packets, want one vanished", len(got))
	}
}

func TestEviction(t *testing.T) {
	var evicted []*Packet
	c := New(Options{Hops: labTopology(), MaxJourneys: 2, OnEvict: func(p *Packet) { evicted = append(evicted, p.Clone()) }})
	a, b, d := path(1), path(2), path(3)
	c.Add(&a[0]) // fp 1: oldest
	c.Add(&b[0])
	c.Add(&a[1]) // touching fp 1 makes fp 2 the oldest
	c.Add(&d[0]) // evicts fp 2
	if len(evicted) != 1 || evicted[0].ID != 2 || evicted[0].Verdict != Vanished || evicted[0].LastHop != 0 {
		t.Fatalf("evicted %v", evicted)
	}
	if s := c.Stats(); s.Open != 2 || s.Evicted != 1 || s.Emitted != 0 || s.Peak != 2 {
		t.Errorf("stats %+v", s)
	}
	var ids []uint64
	c.Flush(func(p *Packet) { ids = append(ids, p.ID) })
	if !slices.Equal(ids, []uint64{1, 3}) {
		t.Errorf("flushed %v, want [1 3]", ids)
	}
	// Without OnEvict the journey is counted and discarded.
	c = New(Options{MaxJourneys: 1})
	c.Add(&a[0])
	c.Add(&b[0])
	if s := c.Stats(); s.Open != 1 || s.Evicted != 1 {
		t.Errorf("stats %+v", s)
	}
	// A late free pushed out is no packet either: neither handed over
	// nor counted as one.
	evicted = nil
	c = New(Options{Hops: labTopology(), MaxJourneys: 1, OnEvict: func(p *Packet) { evicted = append(evicted, p.Clone()) }})
	free := a[len(a)-1]
	c.Add(&free)
	c.Add(&b[0])
	if s := c.Stats(); len(evicted) != 0 || s.Evicted != 0 || s.LateFrees != 1 || s.Peak != 1 {
		t.Errorf("a late free evicted: handed %d, stats %+v", len(evicted), s)
	}
}

func TestFlushOrderAndReuse(t *testing.T) {
	c := New(Options{Hops: labTopology()})
	late, early := path(10), path(20)
	for i := range early {
		early[i].Time -= 500_000
	}
	for i := range late {
		c.Add(&late[i])
		c.Add(&early[i])
	}
	var kept *Packet
	var ids []uint64
	c.Flush(func(p *Packet) {
		ids = append(ids, p.ID)
		if kept == nil {
			kept = p.Clone()
		}
	})
	if !slices.Equal(ids, []uint64{20, 10}) {
		t.Fatalf("flush order %v, want first sighting order [20 10]", ids)
	}
	// Recycled storage must not show through the clone.
	want := slices.Clone(kept.Steps)
	other := []tracer.Event{ev(99, 0, tracer.HookRx, nsN2, 2, true), dropEv(99, 1, nsN2, 2, 6, 1)}
	for i := range other {
		c.Add(&other[i])
	}
	var dropped *Packet
	c.Flush(func(p *Packet) { dropped = p.Clone() })
	if !slices.Equal(kept.Steps, want) || kept.ID != 20 {
		t.Errorf("clone changed after reuse")
	}
	if dropped.Verdict != Dropped || dropped.Drop == nil || len(dropped.Steps) != 2 {
		t.Errorf("reused journey: verdict %s drop %v steps %v", dropped.Verdict, dropped.Drop, view(dropped))
	}
}

func TestMaxSteps(t *testing.T) {
	out := run(t, Options{MaxSteps: 4}, path(1))
	p := out[0]
	// 4 observed steps plus the derived bridge step.
	if len(p.Steps) != 5 || p.EventsOmitted != 7 || p.Last != 1_000_010_000 {
		t.Fatalf("steps %d omitted %d last %d", len(p.Steps), p.EventsOmitted, p.Last)
	}
}

func TestMaxStepsKeepsTheDrop(t *testing.T) {
	var evs []tracer.Event
	for i := range 10 {
		evs = append(evs, ev(1, uint64(i), tracer.HookTx, nsSw, 3, true))
	}
	evs = append(evs, dropEv(1, 10, nsSw, 3, 6, 0x10))
	p := run(t, Options{MaxSteps: 4, Namer: fakeNamer{}}, evs)[0]
	if len(p.Steps) != 4 || p.EventsOmitted != 7 || p.Verdict != Dropped || p.Drop == nil || p.Drop.Reason != "NETFILTER_DROP" {
		t.Fatalf("steps %v omitted %d verdict %s drop %+v", view(p), p.EventsOmitted, p.Verdict, p.Drop)
	}
}

func TestBridgeNotDerived(t *testing.T) {
	tests := []struct {
		name string
		evs  []tracer.Event
	}{
		// The bridge passed it up to its own device: br0 has a real rx.
		{"local delivery through br0", []tracer.Event{
			ev(1, 0, tracer.HookRx, nsOv1, 5, false),
			ev(1, 1, tracer.HookRx, nsOv1, 3, false),
		}},
		{"tx on the bridge itself", []tracer.Event{
			ev(1, 0, tracer.HookRx, nsOv1, 5, false),
			ev(1, 1, tracer.HookTx, nsOv1, 3, false),
		}},
		{"tx in another namespace", []tracer.Event{
			ev(1, 0, tracer.HookRx, nsOv1, 5, false),
			ev(1, 1, tracer.HookTx, nsN1, 2, false),
		}},
		{"rx on a port with no bridge hop", []tracer.Event{
			ev(1, 0, tracer.HookRx, nsN1, 2, false),
			ev(1, 1, tracer.HookTx, nsN1, 7, false),
		}},
		{"hairpin on the same port", []tracer.Event{
			ev(1, 0, tracer.HookRx, nsOv1, 5, false),
			ev(1, 1, tracer.HookTx, nsOv1, 5, false),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := run(t, Options{}, tt.evs)[0]
			for _, s := range p.Steps {
				if s.Derived {
					t.Fatalf("derived a step: %v", view(p))
				}
			}
		})
	}
}

func TestBridgeAcrossTC(t *testing.T) {
	evs := []tracer.Event{
		ev(1, 0, tracer.HookRx, nsOv1, 5, false),
		ev(1, 1, tracer.HookTCIngress, nsOv1, 5, false),
		ev(1, 2, tracer.HookTCEgress, nsOv1, 4, false),
		ev(1, 3, tracer.HookTx, nsOv1, 4, false),
	}
	p := run(t, Options{}, evs)[0]
	want := []stepView{
		{1, "veth0", "rx", false},
		{1, "veth0", "tc_in", false},
		{2, "br0", "fwd", true},
		{3, "vxlan0", "tc_out", false},
		{3, "vxlan0", "tx", false},
	}
	if got := view(p); !slices.Equal(got, want) {
		t.Fatalf("steps:\n got %v\nwant %v", got, want)
	}
}

func TestUnknownInterface(t *testing.T) {
	evs := []tracer.Event{ev(1, 0, tracer.HookRx, 42, 17, false), dropEv(1, 1, 0, 0, 2, 0)}
	p := run(t, Options{}, evs)[0]
	if s := p.Steps[0]; s.HopID != -1 || s.Ifname != "if17" || s.Kind != "" {
		t.Errorf("unknown step %+v", s)
	}
	if s := p.Steps[1]; s.HopID != -1 || s.Ifname != "" {
		t.Errorf("deviceless drop step %+v", s)
	}
	if p.Drop == nil || p.Drop.Ifname != "if17" || p.Drop.NetNS != 42 {
		t.Errorf("drop %+v, want attributed to if17", p.Drop)
	}
}

// BenchmarkAdd is the steady state: packets of 11 events each, expired as
// they complete, journeys and step slices recycled.
func BenchmarkAdd(b *testing.B) {
	tmpl := path(0)
	c := New(Options{Hops: labTopology(), Namer: fakeNamer{}})
	emitted := 0
	emit := func(*Packet) { emitted++ }
	var e tracer.Event
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		pkt := uint64(i / len(tmpl))
		e = tmpl[i%len(tmpl)]
		e.FP = pkt + 1
		e.Time += pkt * uint64(time.Millisecond)
		c.Add(&e)
		i++
		if i%(64*len(tmpl)) == 0 {
			c.Expire(e.Time, emit)
		}
	}
	b.ReportMetric(float64(c.Stats().Open), "open")
}

// The correlator caches hop lookups: a hop the topology gains later (a
// refresh found it) names the events that come after, and an Add that moves
// the hops does not leave the cache pointing at the old ones.
func TestHopFoundLater(t *testing.T) {
	tp := labTopology()
	c := New(Options{Hops: tp})
	var out []*Packet
	emit := func(p *Packet) { out = append(out, p.Clone()) }
	e := ev(1, 0, tracer.HookRx, 42, 17, false)
	c.Add(&e)
	c.Flush(emit)
	for i := range 64 { // enough Adds to move the Hops array
		tp.Add(topo.Hop{Ifname: fmt.Sprintf("late%d", i), Ifindex: 100 + uint32(i), NetNS: topo.NetNS{Inode: 43}})
	}
	tp.Add(topo.Hop{Ifname: "veth9", Ifindex: 17, Kind: topo.KindVeth, NetNS: topo.NetNS{Inode: 42}})
	e = ev(2, 0, tracer.HookRx, 42, 17, false)
	c.Add(&e)
	known := ev(2, 1, tracer.HookTx, nsOv1, 4, false)
	c.Add(&known)
	c.Flush(emit)
	if len(out) != 2 {
		t.Fatalf("got %d packets, want 2", len(out))
	}
	if s := out[0].Steps[0]; s.Ifname != "if17" || s.HopID != -1 {
		t.Errorf("before the hop was known: %+v", s)
	}
	if s := out[1].Steps[0]; s.Ifname != "veth9" || s.HopID != len(tp.Hops)-1 {
		t.Errorf("after the hop was added: %+v", s)
	}
	if s := out[1].Steps[1]; s.Ifname != "vxlan0" || s.HopID != 3 {
		t.Errorf("a known hop after the Adds: %+v", s)
	}
}

// A journey is on the settled list exactly when Decide gives it an
// outcome, after every event, however the events come (out of order, on
// unknown interfaces, beyond MaxSteps): touch skips Decide where a step
// cannot change an open journey's outcome.
func TestListFollowsDecide(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	hooks := []tracer.Hook{tracer.HookRx, tracer.HookTx, tracer.HookDrop, tracer.HookConsume, tracer.HookTCIngress, tracer.HookTCEgress, tracer.HookBrForward, tracer.HookNeigh}
	ifs := []struct{ ns, idx uint32 }{{nsC1, 2}, {nsOv1, 5}, {nsOv1, 4}, {nsN1, 2}, {nsN2, 2}, {nsOv2, 4}, {nsC2, 2}, {42, 17}}
	settled := 0
	for round := range 2000 {
		c := New(Options{Hops: labTopology(), MaxSteps: 8})
		fp := uint64(round + 1)
		for i := range 1 + rng.IntN(12) {
			f := ifs[rng.IntN(len(ifs))]
			// Mostly rising times, some late.
			tus := uint64(30+i*10) - uint64(rng.IntN(2))*uint64(rng.IntN(30))
			e := ev(fp, tus, hooks[rng.IntN(len(hooks))], f.ns, f.idx, false)
			c.Add(&e)
			j := c.byFP.get(fp)
			v, _ := Decide(c.stepsOf(j))
			if onSettled := j.list == &c.settled; onSettled != (v != Vanished) {
				t.Fatalf("round %d event %d: on settled list %v, Decide says %s; steps %v", round, i, onSettled, v, view(&j.Packet))
			}
			if v != Vanished {
				settled++
			}
		}
	}
	if settled == 0 {
		t.Fatal("no journey was ever settled: the test proves nothing")
	}
}

// deriveBridgesOneByOne inserts the bridges' steps as deriveBridges first
// did, one slices.Insert at a time: the one-pass insertion must give the
// same steps.
func deriveBridgesOneByOne(c *Correlator, steps []Step) []Step {
	for i := 0; i < len(steps); i++ {
		if k, fwd, ok := c.bridgeAfter(steps, i); ok {
			steps = slices.Insert(steps, k, fwd)
			i = k
		}
	}
	return steps
}

func TestDeriveBridgesMatchesOneByOne(t *testing.T) {
	tp := labTopology()
	c := New(Options{Hops: tp})
	rng := rand.New(rand.NewPCG(5, 6))
	dirs := []string{DirRx, DirTx, DirTCIn, DirTCOut, DirConsume}
	ifs := []topo.Key{{NetNS: nsOv1, Ifindex: 5}, {NetNS: nsOv1, Ifindex: 4}, {NetNS: nsOv1, Ifindex: 3},
		{NetNS: nsOv2, Ifindex: 5}, {NetNS: nsOv2, Ifindex: 4}, {NetNS: nsC1, Ifindex: 2}, {NetNS: 42, Ifindex: 9}}
	derived := 0
	for round := range 5000 {
		var steps []Step
		for i := range 1 + rng.IntN(14) {
			k := ifs[rng.IntN(len(ifs))]
			s := Step{Time: uint64(i), Mono: uint64(1000 + i), HopID: -1, NetNS: k.NetNS, Ifindex: k.Ifindex,
				Dir: dirs[rng.IntN(len(dirs))], Encap: rng.IntN(2) == 0, VNI: uint32(rng.IntN(3)), Len: uint32(60 + i)}
			if h, ok := tp.Lookup(k.NetNS, k.Ifindex); ok {
				s.HopID, s.Ifname, s.Kind = h.ID, h.Ifname, h.Kind
			}
			steps = append(steps, s)
		}
		want := deriveBridgesOneByOne(c, slices.Clone(steps))
		got := c.deriveBridges(slices.Clone(steps))
		if !slices.Equal(got, want) {
			t.Fatalf("round %d:\n got %v\nwant %v", round, got, want)
		}
		derived += len(want) - len(steps)
	}
	if derived < 100 {
		t.Fatalf("only %d bridge steps derived: the test proves little", derived)
	}
}

// A socket that reads a packet after the grace period frees it after its
// journey was emitted: that free is the packet's late end, not a packet
// that vanished in the container (they were a tenth of a slow reader's
// packets). A late drop stays a packet: it says why the data never reached
// the application.
func TestLateFreeIsNoPacket(t *testing.T) {
	c := New(Options{Hops: labTopology(), Timeout: time.Second, Grace: 50 * time.Millisecond})
	full := path(1)
	delivered, consume := full[:len(full)-1], full[len(full)-1]
	for i := range delivered {
		c.Add(&delivered[i])
	}
	var got []*Packet
	emit := func(p *Packet) { got = append(got, p.Clone()) }
	last := delivered[len(delivered)-1].Time
	c.Expire(last+uint64(60*time.Millisecond), emit)
	consume.Time = last + uint64(200*time.Millisecond)
	c.Add(&consume)
	late := dropEv(1, 0, nsC2, 2, 3, 0xffff1000)
	late.FP = 2 // another packet of the socket, purged at its close
	late.Time = consume.Time
	c.Add(&late)
	c.Expire(consume.Time+uint64(2*time.Second), emit)
	if len(got) != 2 || got[0].ID != 1 || got[0].Verdict != Delivered || got[1].ID != 2 || got[1].Verdict != Dropped {
		for _, p := range got {
			t.Logf("packet %d: %s %v", p.ID, p.Verdict, view(p))
		}
		t.Fatalf("got %d packets, want packet 1 delivered and packet 2 dropped", len(got))
	}
	if s := c.Stats(); s.Emitted != 2 || s.LateFrees != 1 || s.Open != 0 {
		t.Errorf("stats %+v, want 2 emitted and 1 late free", s)
	}

	// Flush applies the same rule.
	c.Add(&consume)
	c.Flush(emit)
	if len(got) != 2 || c.Stats().LateFrees != 2 {
		t.Errorf("flush: %d packets, %d late frees; want 2 and 2", len(got), c.Stats().LateFrees)
	}
}

// The kernel sends a packet's headers in a few records only: the journey
// takes the inner and outer headers from whichever events carry them.
func TestHeadersFromTheRecordsThatCarryThem(t *testing.T) {
	evs := path(1)
	for i := range evs {
		if i != 0 && i != 4 { // the first record, and the second encapsulated one
			evs[i].Inner, evs[i].Outer = tracer.Tuple{}, tracer.Tuple{}
		}
	}
	evs[0].Outer = tracer.Tuple{}
	out := run(t, Options{}, evs)
	if len(out) != 1 {
		t.Fatalf("%d packets", len(out))
	}
	p := out[0]
	if p.Inner != innerICMP || !p.Encap || p.VNI != 4097 || p.Outer != outerUDP {
		t.Fatalf("inner %+v encap %v vni %d outer %+v", p.Inner, p.Encap, p.VNI, p.Outer)
	}
}

// The correlator keeps the latest event's journey at hand; once that
// journey is emitted (and its storage recycled, its ID zeroed) an event of
// the same fingerprint, 0 included, starts a journey of its own.
func TestLastJourneyAfterEmit(t *testing.T) {
	for _, fp := range []uint64{0, 7} {
		c := New(Options{Hops: labTopology()})
		p := path(fp)
		c.Add(&p[0])
		n := 0
		c.Flush(func(*Packet) { n++ })
		c.Add(&p[1])
		if s := c.Stats(); n != 1 || s.Open != 1 {
			t.Fatalf("fp %d: %d emitted, %d open after an event of the emitted packet, want 1 and 1", fp, n, s.Open)
		}
		var steps []int
		c.Flush(func(q *Packet) { steps = append(steps, len(q.Steps)) })
		if !slices.Equal(steps, []int{1}) {
			t.Errorf("fp %d: the second journey has steps %v, want [1]", fp, steps)
		}
	}
}

// The pool grows in slabs until a quarter of MaxJourneys were made, then
// to MaxJourneys at once, and never past it: a flood's memory reaches its
// bound early instead of stepping up with each new peak.
func TestPoolReachesItsBoundOnce(t *testing.T) {
	const bound = 4096
	c := New(Options{Hops: labTopology(), MaxJourneys: bound})
	open := func(from, n uint64) {
		for fp := from; fp < from+n; fp++ {
			e := ev(fp, 1, tracer.HookTx, 1, 1, false)
			c.Add(&e)
		}
	}
	open(1, journeySlab)
	if c.made != journeySlab {
		t.Fatalf("after %d journeys made %d, want one slab (%d)", journeySlab, c.made, journeySlab)
	}
	open(journeySlab+1, 1)
	if c.made != 2*journeySlab {
		t.Fatalf("made %d, want two slabs", c.made)
	}
	open(2*journeySlab+1, bound/4-2*journeySlab)
	if c.made != bound {
		t.Fatalf("past a quarter of the bound made %d, want %d", c.made, bound)
	}
	// Past the bound journeys are evicted and reused: nothing more made,
	// and nothing allocated.
	fp := uint64(1 << 20)
	if a := testing.AllocsPerRun(4*bound, func() {
		fp++
		e := ev(fp, 1, tracer.HookTx, 1, 1, false)
		c.Add(&e)
	}); a != 0 {
		t.Errorf("%v allocations per new journey at the bound", a)
	}
	if s := c.Stats(); c.made != bound || s.Open != bound || s.Evicted == 0 {
		t.Errorf("made %d, stats %+v", c.made, s)
	}
}

// mayDecide reads the event's hook; it must say what the rule says of the
// step's direction (Decide's own terms), for every hook and kind.
func TestMayDecideFollowsTheRule(t *testing.T) {
	kinds := []topo.Kind{topo.KindContainer, topo.KindVeth, topo.KindBridge, topo.KindVXLAN, topo.KindNIC, topo.KindOther, ""}
	for h := tracer.Hook(0); h < 16; h++ {
		dir := h.String()
		for _, k := range kinds {
			want := dir == DirDrop || dir == DirConsume || inbound(dir) || (outbound(dir) && k == topo.KindNIC)
			if got := mayDecide(h, whereOf(k)); got != want {
				t.Errorf("mayDecide(%s, %q) = %v, the rule says %v", dir, k, got, want)
			}
		}
	}
}

// Only a journey whose every recorded step is a free after use is a late
// free; one other step makes it a packet.
func TestLateFreeFlag(t *testing.T) {
	c := New(Options{Hops: labTopology()})
	frees := ev(1, 1, tracer.HookConsume, 1, 1, false)
	c.Add(&frees)
	c.Add(&frees)
	other := path(2)
	for i := range other {
		c.Add(&other[i])
	}
	var ids []uint64
	c.Flush(func(p *Packet) { ids = append(ids, p.ID) })
	if s := c.Stats(); !slices.Equal(ids, []uint64{2}) || s.LateFrees != 1 {
		t.Errorf("emitted %v, stats %+v; want packet 2 only and one late free", ids, s)
	}
	// The pool's journey is reused without the last one's flag.
	c.Add(&frees)
	ids = nil
	c.Flush(func(p *Packet) { ids = append(ids, p.ID) })
	if s := c.Stats(); len(ids) != 0 || s.LateFrees != 2 {
		t.Errorf("a reused journey of frees emitted %v, stats %+v", ids, s)
	}
}

// A journey keeps its steps small until emit: the size is what makes emit
// read a third of the cache lines, and the pool half as big.
func TestKeptStepSize(t *testing.T) {
	if n, full := unsafe.Sizeof(step{}), unsafe.Sizeof(Step{}); n > 40 || 2*n > full {
		t.Fatalf("a kept step is %d bytes (a Step %d): want at most 40", n, full)
	}
}

// A packet parked while its next hop's address resolves is held for
// NeighWait, not Timeout: its drop when ARP fails (3 s later by default)
// ends the same journey, and a wait that resolves goes on as usual.
func TestNeighWaitHoldsJourney(t *testing.T) {
	const sec = 1_000_000 // tus per second
	nh := netip.MustParseAddr("10.0.1.4").As4()
	neigh := func(fp, tus uint64) tracer.Event {
		e := ev(fp, tus, tracer.HookNeigh, nsOv1, 4, false)
		e.Location = uint64(nh[0]) | uint64(nh[1])<<8 | uint64(nh[2])<<16 | uint64(nh[3])<<24
		return e
	}
	c := New(Options{Hops: labTopology(), Timeout: time.Second, NeighWait: 5 * time.Second})
	var out []*Packet
	emit := func(p *Packet) { out = append(out, p.Clone()) }
	at := func(tus uint64) uint64 { return 1_000_000_000 + tus*1000 }

	// 1: parked, then dropped when resolution fails.
	for _, e := range []tracer.Event{
		ev(1, 0, tracer.HookTx, nsC1, 2, false),
		ev(1, 10, tracer.HookRx, nsOv1, 5, false),
		neigh(1, 20),
		// 2: parked, then never heard of again.
		neigh(2, 30),
		// 3: parked, resolved 2.5 s later, then sent.
		ev(3, 40, tracer.HookTx, nsC1, 2, false),
		neigh(3, 50),
	} {
		c.Add(&e)
	}
	c.Expire(at(2*sec), emit)
	if len(out) != 0 {
		t.Fatalf("after 2 s, %d packets emitted while parked (timeout 1 s, neighbour wait 5 s): %v", len(out), view(out[0]))
	}
	for _, e := range []tracer.Event{
		ev(3, 2_500_050, tracer.HookTx, nsOv1, 4, false),
		ev(1, 3*sec+20, tracer.HookDrop, nsOv1, 4, false),
	} {
		c.Add(&e)
	}
	c.Expire(at(3*sec+200_000), emit)
	if len(out) != 1 || out[0].ID != 1 || out[0].Verdict != Dropped {
		t.Fatalf("after the drop: %d packets %+v, want packet 1 dropped", len(out), out)
	}
	s := out[0].Steps
	if len(s) != 4 || s[2].Dir != DirNeigh || s[2].NextHopAddr().String() != "10.0.1.4" || s[2].Ifname != "vxlan0" {
		t.Errorf("packet 1 steps %v (neigh step %+v): want tx, rx, neigh for 10.0.1.4 at vxlan0, drop", view(out[0]), s[2])
	}
	out = nil
	// Packet 3 went on when its neighbour resolved: back under Timeout.
	c.Expire(at(4*sec), emit)
	if len(out) != 1 || out[0].ID != 3 {
		t.Fatalf("at 4 s: %+v, want packet 3 (last seen at 2.5 s, timeout 1 s)", out)
	}
	out = nil
	c.Expire(at(5*sec), emit)
	if len(out) != 0 {
		t.Fatalf("packet 2 emitted before its neighbour wait ended: %+v", out)
	}
	c.Expire(at(5*sec+100), emit)
	if len(out) != 1 || out[0].ID != 2 || out[0].Verdict != Vanished {
		t.Fatalf("after the neighbour wait: %+v, want packet 2 vanished", out)
	}
}

// Every packet's steps are written out at emit, in a flood hundreds of
// thousands a second: a field added to Step goes in its padding, or is
// worth its bytes (the next hop as a netip.Addr made it 128).
func TestStepSize(t *testing.T) {
	if n := unsafe.Sizeof(Step{}); n > 96 {
		t.Errorf("Step is %d bytes, was 96", n)
	}
}
