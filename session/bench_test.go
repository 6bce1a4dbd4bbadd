package session

import (
	"encoding/binary"
	"testing"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
	"github.com/vxtrace/vxtrace/tracer"
)

// Benchmarks for issue 5, goal P6: the user-space cost per event after the
// ring-buffer read (tracer.BenchmarkRingReadDecode measures the read).
// Events are raw vx_event records of UDP packets crossing the lab's docker
// layout, 11 per packet (5 transmits, 5 receives, the final consume), as a
// trace-all run of the bench sees them.
//
//	go test ./session -run '^$' -bench . -benchmem

// Namespace inodes of the synthetic lab.
const (
	nsC1 = 4026531001 + iota
	nsOv1
	nsN1
	nsSw
	nsN2
	nsOv2
	nsC2
)

func benchTopology() *topo.Topology {
	vni := uint32(4097)
	ns := func(inode uint32, name string) topo.NetNS { return topo.NetNS{Inode: inode, Name: name} }
	return topo.NewTopology([]topo.Hop{
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindContainer, NetNS: ns(nsC1, "c1")},
		{Ifname: "veth0", Ifindex: 5, Kind: topo.KindVeth, NetNS: ns(nsOv1, "ov1"), Master: "br0"},
		{Ifname: "br0", Ifindex: 3, Kind: topo.KindBridge, NetNS: ns(nsOv1, "ov1")},
		{Ifname: "vxlan0", Ifindex: 4, Kind: topo.KindVXLAN, NetNS: ns(nsOv1, "ov1"), Master: "br0", VNI: &vni, Port: 4789},
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindNIC, NetNS: ns(nsN1, "n1")},
		{Ifname: "to-n1", Ifindex: 2, Kind: topo.KindOther, NetNS: ns(nsSw, "sw")},
		{Ifname: "to-n2", Ifindex: 3, Kind: topo.KindOther, NetNS: ns(nsSw, "sw")},
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindNIC, NetNS: ns(nsN2, "n2")},
		{Ifname: "vxlan0", Ifindex: 4, Kind: topo.KindVXLAN, NetNS: ns(nsOv2, "ov2"), Master: "br0", VNI: &vni, Port: 4789},
		{Ifname: "br0", Ifindex: 3, Kind: topo.KindBridge, NetNS: ns(nsOv2, "ov2")},
		{Ifname: "veth0", Ifindex: 5, Kind: topo.KindVeth, NetNS: ns(nsOv2, "ov2"), Master: "br0"},
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindContainer, NetNS: ns(nsC2, "c2")},
	})
}

// hopEvent is one sighting on the path.
type hopEvent struct {
	hook    tracer.Hook
	netns   uint32
	ifindex uint32
	encap   bool
}

var benchPath = []hopEvent{
	{tracer.HookTx, nsC1, 2, false},
	{tracer.HookRx, nsOv1, 5, false},
	{tracer.HookTx, nsOv1, 4, false},
	{tracer.HookTx, nsN1, 2, true},
	{tracer.HookRx, nsSw, 2, true},
	{tracer.HookTx, nsSw, 3, true},
	{tracer.HookRx, nsN2, 2, true},
	{tracer.HookRx, nsOv2, 4, false},
	{tracer.HookTx, nsOv2, 5, false},
	{tracer.HookRx, nsC2, 2, false},
	{tracer.HookConsume, nsC2, 2, false},
}

// putTuple writes a vx_tuple at b (IPv4 UDP).
func putTuple(b []byte, src, dst [4]byte, sport, dport uint16) {
	copy(b[0:4], src[:])
	copy(b[16:20], dst[:])
	binary.LittleEndian.PutUint16(b[32:], sport)
	binary.LittleEndian.PutUint16(b[34:], dport)
	b[36] = 17
	b[37] = 4
}

// rawEvents lays out the records of n packets, each crossing benchPath,
// 5 us apart, with packet i's fingerprint base+i.
func rawEvents(n int) []byte {
	per := len(benchPath)
	out := make([]byte, n*per*tracer.EventSize)
	for i := range n {
		for k, h := range benchPath {
			b := out[(i*per+k)*tracer.EventSize:][:tracer.EventSize]
			le := binary.LittleEndian
			le.PutUint64(b[0:], uint64(i)*10000+uint64(k)*300)
			le.PutUint64(b[8:], 0xffff888000000000+uint64(i%512)*256)
			le.PutUint64(b[16:], uint64(i))
			le.PutUint32(b[32:], h.netns)
			le.PutUint32(b[36:], h.ifindex)
			le.PutUint32(b[40:], 92)
			le.PutUint16(b[52:], uint16(i))
			b[54] = byte(h.hook)
			b[55] = tracer.FlagParsed
			putTuple(b[56:], [4]byte{10, 0, 1, 3}, [4]byte{10, 0, 1, 4}, 40000, 5201)
			if h.encap {
				b[55] |= tracer.FlagEncap
				le.PutUint32(b[48:], 4097)
				le.PutUint32(b[40:], 142)
				putTuple(b[96:], [4]byte{10, 99, 1, 2}, [4]byte{10, 99, 2, 2}, 51000, 4789)
			}
		}
	}
	return out
}

// feeder replays raw records forever: every pass over the window shifts
// times and fingerprints so that each pass is new packets, as a live ring.
type feeder struct {
	raw    []byte
	events int
	i      int
	pass   uint64
	span   uint64 // time covered by one pass
}

func newFeeder(packets int) *feeder {
	raw := rawEvents(packets)
	return &feeder{raw: raw, events: len(raw) / tracer.EventSize, span: uint64(packets) * 10000}
}

// next decodes the next record into e, as the reader does.
func (f *feeder) next(e *tracer.Event) {
	b := f.raw[f.i*tracer.EventSize:][:tracer.EventSize]
	if err := tracer.DecodeEvent(b, e); err != nil {
		panic(err)
	}
	e.Time += 1_000_000_000 + f.pass*f.span
	e.FP += f.pass << 32
	f.i++
	if f.i == f.events {
		f.i = 0
		f.pass++
	}
}

// BenchmarkDecodeCorrelate is decode + correlate per event, with the
// verdicts emitted as the session emits them (Expire every batch of 256).
func BenchmarkDecodeCorrelate(b *testing.B) {
	f := newFeeder(4096)
	c := journey.New(journey.Options{Hops: benchTopology()})
	var delivered, other uint64
	emit := func(p *journey.Packet) {
		if p.Verdict == journey.Delivered {
			delivered++
		} else {
			other++
		}
	}
	var e tracer.Event
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		f.next(&e)
		c.Add(&e)
		if n++; n%256 == 0 {
			c.Expire(e.Time, emit)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(c.Stats().Evicted), "evicted")
	c.Flush(emit)
	if n >= 100*len(benchPath) && delivered == 0 {
		b.Fatalf("no packet delivered (%d other verdicts): the synthetic path is wrong", other)
	}
}

// BenchmarkHandCorrelate is the session's own path per event: the
// reader's batch queued by hand (which returns the buffer for the next),
// then taken off the queue and correlated, as Run does.
func BenchmarkHandCorrelate(b *testing.B) {
	const batchLen = 256
	f := newFeeder(4096)
	s := &Session{
		corr:  journey.New(journey.Options{Hops: benchTopology()}),
		queue: make(chan []tracer.Event, 4),
		free:  make(chan []tracer.Event, 6),
	}
	batch := make([]tracer.Event, 0, batchLen)
	emit := func(*journey.Packet) {}
	b.ReportAllocs()
	b.ResetTimer()
	for n := b.N; n > 0; n -= batchLen {
		batch = batch[:batchLen]
		for i := range batch {
			f.next(&batch[i])
		}
		batch = s.hand(batch)
		got := <-s.queue
		for i := range got {
			s.corr.Add(&got[i])
		}
		s.corr.Expire(got[len(got)-1].Time, emit)
		select {
		case s.free <- got[:0]:
		default:
		}
	}
	b.StopTimer()
	if s.userLost.Load() != 0 {
		b.Fatalf("%d events lost in hand with an empty queue", s.userLost.Load())
	}
	// One op is one event; the loop ran whole batches.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64((b.N+batchLen-1)/batchLen*batchLen), "ns/event")
}
