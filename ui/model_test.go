package ui

import (
	"go/parser"
	"go/token"
	"math"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
)

func nicKey(hops []topo.Hop) topo.Key { return hops[4].Key() }

func TestRateFromCounterDeltas(t *testing.T) {
	hops := dockerHops()
	m := newModel(modelConfig{})
	c := Counters{Hops: map[topo.Key]HopCounters{}}
	k := hops[0].Key()

	m.tick(t0, hops, c)
	if r := m.snapshot(t0).Hops[0].Rate; r != 0 {
		t.Fatalf("rate after one poll = %v, want 0", r)
	}
	// 200ms ticks: 100 rx + 100 tx per tick is 1000 packets/s.
	now := t0
	for i := 1; i <= 5; i++ {
		now = now.Add(200 * time.Millisecond)
		c.Hops[k] = HopCounters{RxSeen: uint64(i * 100), TxSeen: uint64(i * 100)}
		m.tick(now, hops, c)
		if r := m.snapshot(now).Hops[0].Rate; math.Abs(r-1000) > 0.001 {
			t.Fatalf("tick %d: rate = %v, want 1000", i, r)
		}
	}
	// The counter stops: the rate falls to zero within the window.
	for range 5 {
		now = now.Add(200 * time.Millisecond)
		m.tick(now, hops, c)
	}
	s := m.snapshot(now)
	if r := s.Hops[0].Rate; r != 0 {
		t.Fatalf("rate after the counter stopped = %v, want 0", r)
	}
	if s.Hops[0].Total != 1000 {
		t.Fatalf("total = %d, want 1000", s.Hops[0].Total)
	}
	// A reset (re-scoped trace) is not a huge negative or wrapped rate.
	now = now.Add(200 * time.Millisecond)
	c.Hops[k] = HopCounters{RxSeen: 3}
	m.tick(now, hops, c)
	if r := m.snapshot(now).Hops[0].Rate; r != 0 {
		t.Fatalf("rate right after a reset = %v, want 0", r)
	}
	now = now.Add(time.Second)
	c.Hops[k] = HopCounters{RxSeen: 53}
	m.tick(now, hops, c)
	if r := m.snapshot(now).Hops[0].Rate; math.Abs(r-50) > 0.001 {
		t.Fatalf("rate after a reset = %v, want 50", r)
	}
}

func TestEventsRate(t *testing.T) {
	m := newModel(modelConfig{})
	m.tick(t0, nil, Counters{Events: 1000})
	m.tick(t0.Add(time.Second), nil, Counters{Events: 3000, LostKernel: 7, LostUser: 2, Scope: "node"})
	s := m.snapshot(t0.Add(time.Second))
	if s.EventsRate != 2000 || s.Counters.LostKernel != 7 || s.Counters.LostUser != 2 || s.Counters.Scope != "node" {
		t.Fatalf("events rate %v, counters %+v", s.EventsRate, s.Counters)
	}
}

func TestFlowAggregation(t *testing.T) {
	hops := dockerHops()
	m := newModel(modelConfig{})
	m.tick(t0, hops, Counters{})
	// Every echo request has a new sequence number but is the same flow.
	m.addPackets([]*journey.Packet{icmpDropped(hops, 1), icmpDropped(hops, 2), udpLeft(hops, 40000)}, t0)
	last := icmpDropped(hops, 3)
	m.addPackets([]*journey.Packet{udpLeft(hops, 40000), last, tcpDelivered(hops)}, t0.Add(time.Second))

	s := m.snapshot(t0.Add(time.Second))
	if len(s.Flows) != 3 {
		t.Fatalf("%d flows, want 3: %+v", len(s.Flows), s.Flows)
	}
	// Default sort: drops first.
	icmp := s.Flows[0]
	if icmp.Key.Proto != 1 || icmp.Packets != 3 || icmp.Drops != 3 || icmp.Verdict != journey.Dropped ||
		icmp.LastReason != "NETFILTER_DROP" || icmp.Latest != last || !icmp.First.Equal(t0) {
		t.Fatalf("icmp flow = %+v", icmp)
	}
	if icmp.Key.Sport != 7 || icmp.Key.Dport != 0 {
		t.Fatalf("icmp key keeps the id and drops the sequence: %+v", icmp.Key)
	}
	udp := s.Flows[1]
	if udp.Key.Proto != 17 || udp.Packets != 2 || udp.Drops != 0 || udp.Verdict != journey.LeftNode || udp.Key.VNI != 4097 {
		t.Fatalf("udp flow = %+v", udp)
	}
	if s.Packets != 6 {
		t.Fatalf("packets = %d, want 6", s.Packets)
	}
	if p, ok := m.latest(icmp.Key); !ok || p != last {
		t.Fatalf("latest = %v %v", p, ok)
	}
}

func TestFlowTableLRUBound(t *testing.T) {
	hops := dockerHops()
	m := newModel(modelConfig{MaxFlows: 3})
	m.tick(t0, hops, Counters{})
	now := t0
	for _, port := range []uint16{1, 2, 3, 1, 4, 5} { // 1 is refreshed before 4 and 5 arrive
		now = now.Add(time.Second)
		m.addPackets([]*journey.Packet{udpLeft(hops, port)}, now)
	}
	s := m.snapshot(now)
	if s.Evictions != 2 || len(s.Flows) != 3 {
		t.Fatalf("evictions %d, flows %d; want 2 and 3", s.Evictions, len(s.Flows))
	}
	var ports []string
	sortFlows(s.Flows, sortSeen, true)
	for _, f := range s.Flows {
		ports = append(ports, strconv.Itoa(int(f.Key.Sport)))
	}
	if got := strings.Join(ports, ","); got != "5,4,1" {
		t.Fatalf("flows kept = %s, want 5,4,1 (2 and 3 were least recently seen)", got)
	}
}

func TestSortFlows(t *testing.T) {
	hops := dockerHops()
	m := newModel(modelConfig{})
	m.tick(t0, hops, Counters{})
	m.addPackets([]*journey.Packet{udpLeft(hops, 2), udpLeft(hops, 2), udpLeft(hops, 2)}, t0)
	m.addPackets([]*journey.Packet{icmpDropped(hops, 1)}, t0.Add(time.Second))
	m.addPackets([]*journey.Packet{tcpDelivered(hops), udpLeft(hops, 1), udpLeft(hops, 1)}, t0.Add(2*time.Second))
	order := func() string {
		var out []string
		for _, f := range m.snapshot(t0.Add(3 * time.Second)).Flows {
			out = append(out, protoName(f.Key.Proto)+":"+strconv.Itoa(int(f.Key.Sport)))
		}
		return strings.Join(out, " ")
	}
	want := []struct{ col, order string }{
		{"drops", "icmp:7 udp:2 udp:1 tcp:5201"},
		{"pkts", "udp:2 udp:1 icmp:7 tcp:5201"},
		{"age", "udp:1 tcp:5201 icmp:7 udp:2"},
		{"source", "udp:1 udp:2 icmp:7 tcp:5201"},
		{"destination", "tcp:5201 icmp:7 udp:1 udp:2"},
	}
	for i, w := range want {
		if i > 0 {
			m.cycleSort()
		}
		if m.sortCol.String() != w.col {
			t.Fatalf("sort column %s, want %s", m.sortCol, w.col)
		}
		if got := order(); got != w.order {
			t.Errorf("sorted by %s: %s, want %s", w.col, got, w.order)
		}
	}
	m.reverseSort()
	if got := order(); got != "udp:1 udp:2 icmp:7 tcp:5201" {
		t.Errorf("destination reversed: %s", got)
	}
}

func TestDisplayFilter(t *testing.T) {
	hops := dockerHops()
	m := newModel(modelConfig{})
	m.tick(t0, hops, Counters{})
	m.addPackets([]*journey.Packet{icmpDropped(hops, 1), udpLeft(hops, 40000), tcpDelivered(hops)}, t0)

	cases := []struct {
		filter       string
		flows, drops int
	}{
		{"", 3, 1},
		{"udp", 1, 0},
		{"NETFILTER", 1, 1},
		{"10.0.1.4:5201", 2, 0}, // udp to it, tcp from it
		{"10.0.1.3:40000", 1, 0},
		{"icmp 10.0.1.3", 1, 1},
		{"vxlab-n1", 0, 1}, // drops match on the namespace too
		{"nf_hook_slow", 0, 1},
		{"vni 4097 !icmp", 2, 0},
		{"delivered", 1, 0},
		{"nothing-like-this", 0, 0},
	}
	for _, c := range cases {
		m.setFilter(c.filter)
		s := m.snapshot(t0)
		if len(s.Flows) != c.flows || len(s.Drops) != c.drops {
			t.Errorf("filter %q: %d flows, %d drops; want %d, %d", c.filter, len(s.Flows), len(s.Drops), c.flows, c.drops)
		}
		if s.FlowsAll != 3 || s.DropsAll != 1 {
			t.Errorf("filter %q changed the totals: %d %d", c.filter, s.FlowsAll, s.DropsAll)
		}
	}
}

func TestPauseFreezesViews(t *testing.T) {
	hops := dockerHops()
	m := newModel(modelConfig{})
	c := Counters{Hops: map[topo.Key]HopCounters{}, Events: 10}
	m.tick(t0, hops, c)
	m.addPackets([]*journey.Packet{udpLeft(hops, 1)}, t0)
	m.setPaused(true, t0)

	now := t0.Add(time.Second)
	c.Hops[nicKey(hops)] = HopCounters{TxSeen: 50, Dropped: 5, TopReason: "NETFILTER_DROP", TopReasonCount: 5}
	c.Events = 500
	m.tick(now, hops, c)
	m.addPackets([]*journey.Packet{icmpDropped(hops, 1), udpLeft(hops, 2)}, now)
	s := m.snapshot(now)
	if !s.Paused || len(s.Flows) != 1 || len(s.Drops) != 0 || s.Hops[4].Drops != 0 {
		t.Fatalf("paused views changed: paused=%v flows=%d drops=%d nic drops=%d", s.Paused, len(s.Flows), len(s.Drops), s.Hops[4].Drops)
	}
	// Counting goes on, and the status bar stays live.
	if s.Packets != 3 || s.EventsRate != 490 {
		t.Fatalf("paused counting: packets %d events/s %v", s.Packets, s.EventsRate)
	}
	// The filter still applies to the frozen rows.
	m.setFilter("icmp")
	if s := m.snapshot(now); len(s.Flows) != 0 {
		t.Fatalf("filter on frozen rows: %d flows", len(s.Flows))
	}
	m.setFilter("")
	if m.togglePause(now) {
		t.Fatal("toggle did not resume")
	}
	s = m.snapshot(now)
	if s.Paused || len(s.Flows) != 3 || len(s.Drops) != 1 || s.Hops[4].Drops != 5 {
		t.Fatalf("resumed views: flows=%d drops=%d nic drops=%d", len(s.Flows), len(s.Drops), s.Hops[4].Drops)
	}
}

func TestDropsRing(t *testing.T) {
	hops := dockerHops()
	m := newModel(modelConfig{MaxDrops: 3})
	m.tick(t0, hops, Counters{})
	for i := 1; i <= 5; i++ {
		m.addPackets([]*journey.Packet{icmpDropped(hops, uint16(i)), udpLeft(hops, 9)}, t0.Add(time.Duration(i)*time.Second))
	}
	s := m.snapshot(t0.Add(5 * time.Second))
	if len(s.Drops) != 3 || s.DropsTotal != 5 {
		t.Fatalf("%d drops kept of %d; want 3 of 5", len(s.Drops), s.DropsTotal)
	}
	for i, want := range []uint16{5, 4, 3} {
		d := s.Drops[i]
		if d.Packet.Inner.Dport != want || !d.At.Equal(t0.Add(time.Duration(want)*time.Second)) {
			t.Errorf("drop %d is seq %d at %v, want seq %d", i, d.Packet.Inner.Dport, d.At, want)
		}
		if d.Hop != "eth0 (NIC)" || d.NetNS != "vxlab-n1" || d.Reason != "NETFILTER_DROP" || d.Location != "nf_hook_slow+0xa5" {
			t.Errorf("drop %d = %+v", i, d)
		}
	}
}

func TestRedWhileDropping(t *testing.T) {
	hops := dockerHops()
	m := newModel(modelConfig{DropHold: 3 * time.Second})
	k := nicKey(hops)
	c := Counters{Hops: map[topo.Key]HopCounters{k: {Dropped: 10}}}
	m.tick(t0, hops, c)
	if m.snapshot(t0).Hops[4].Dropping {
		t.Fatal("drops counted before the first poll turned the hop red")
	}
	now := t0.Add(time.Second)
	c.Hops[k] = HopCounters{Dropped: 11}
	m.tick(now, hops, c)
	if s := m.snapshot(now); !s.Hops[4].Dropping || s.Hops[3].Dropping || !s.Chain[4].Dropping {
		t.Fatalf("nic not red after a new drop: %+v", s.Hops[4])
	}
	// Still red within the hold time, no longer after it.
	now = now.Add(2900 * time.Millisecond)
	m.tick(now, hops, c)
	if !m.snapshot(now).Hops[4].Dropping {
		t.Fatal("red expired early")
	}
	now = now.Add(200 * time.Millisecond)
	m.tick(now, hops, c)
	if m.snapshot(now).Hops[4].Dropping {
		t.Fatal("red did not expire")
	}
	// A dropped packet turns its hop red even before the counters move.
	m.addPackets([]*journey.Packet{icmpDropped(hops, 1)}, now)
	if !m.snapshot(now).Hops[4].Dropping {
		t.Fatal("a dropped packet did not turn its hop red")
	}
}

func TestPathChain(t *testing.T) {
	hops := dockerHops()
	hops[1].Blind = true
	hops[2].Gone = true
	m := newModel(modelConfig{})
	m.tick(t0, hops, Counters{})
	var texts []string
	for _, n := range m.snapshot(t0).Chain {
		texts = append(texts, n.Text)
	}
	want := "eth0 [vxlab-c1] → veth0 (blind) → br0 (gone) → vxlan0 (VNI 4097) → eth0 (NIC) → [peer 10.99.2.2]"
	if got := strings.Join(texts, " → "); got != want {
		t.Fatalf("chain\n got %s\nwant %s", got, want)
	}
}

func TestDetailLines(t *testing.T) {
	hops := dockerHops()
	p := icmpDropped(hops, 3)
	got := strings.Join(detailLines(p, hops), "\n")
	for _, want := range []string{
		"flow     icmp 10.0.1.3 id 7 → 10.0.1.4  VNI 4097",
		"outer    udp 10.99.1.2:53211 → 10.99.2.2:4789",
		"verdict  DROPPED at eth0 (NIC) [vxlab-n1]: NETFILTER_DROP (nf_hook_slow+0xa5)",
		"steps    6 in 33.5µs",
		"    4  +15.2µs    +5.4µs     vxlan0 (VNI 4097)      vxlab-ov1      tx      len 134 encap VNI 4097",
		"    6  +33.5µs    +2.5µs     eth0 (NIC)             vxlab-n1       drop    NETFILTER_DROP nf_hook_slow+0xa5",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("detail lacks %q:\n%s", want, got)
		}
	}
}

// A packet parked for ARP says for which address in its journey.
func TestDetailLinesNeighWait(t *testing.T) {
	hops := dockerHops()
	p := icmpDropped(hops, 3)
	p.Steps[1].Dir = journey.DirNeigh
	p.Steps[1].NextHop = netip.MustParseAddr("10.0.1.4").As4()
	got := strings.Join(detailLines(p, hops), "\n")
	if !strings.Contains(got, "neigh   len 84 awaiting ARP for 10.0.1.4") {
		t.Errorf("detail lacks the wait for ARP:\n%s", got)
	}
}

func TestFormatting(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 9999: "9999", 12345: "12.3k", 1_000_000: "1M", 2_500_000_000: "2.5G"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %s, want %s", n, got, want)
		}
	}
	for ns, want := range map[uint64]string{850: "850ns", 15200: "15.2µs", 2_345_678: "2.35ms", 1_500_000_000: "1.500s"} {
		if got := span(ns); got != want {
			t.Errorf("span(%d) = %s, want %s", ns, got, want)
		}
	}
}

// The models must stay usable without a terminal.
func TestModelsDoNotImportTview(t *testing.T) {
	files, err := filepath.Glob("model*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no model files: %v", err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			if p := strings.Trim(imp.Path.Value, `"`); strings.Contains(p, "tview") || strings.Contains(p, "tcell") {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}

func BenchmarkAddPacketsChurn(b *testing.B) {
	hops := dockerHops()
	m := newModel(modelConfig{MaxFlows: 1024})
	m.tick(t0, hops, Counters{})
	pool := make([]*journey.Packet, 4096)
	for i := range pool {
		if i%10 == 0 {
			pool[i] = icmpDropped(hops, uint16(i))
		} else {
			pool[i] = udpLeft(hops, uint16(i))
		}
	}
	batch := make([]*journey.Packet, 256)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		for j := range batch {
			batch[j] = pool[(i+j)%len(pool)]
		}
		m.addPackets(batch, t0)
	}
}
