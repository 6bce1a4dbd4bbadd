package ui

import (
	"net/netip"
	"sync"
	"time"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
	"github.com/vxtrace/vxtrace/tracer"
)

// fakeFeed is a Feed driven by the test.
type fakeFeed struct {
	mu        sync.Mutex
	hops      []topo.Hop
	c         Counters
	ch        chan *journey.Packet
	hopsPanic bool
}

var _ Feed = (*fakeFeed)(nil)

func newFakeFeed(hops []topo.Hop, buf int) *fakeFeed {
	return &fakeFeed{hops: hops, ch: make(chan *journey.Packet, buf), c: Counters{Hops: map[topo.Key]HopCounters{}}}
}

func (f *fakeFeed) Hops() []topo.Hop {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hopsPanic {
		panic("fake feed: hops exploded")
	}
	return append([]topo.Hop(nil), f.hops...)
}

func (f *fakeFeed) Packets() <-chan *journey.Packet { return f.ch }

func (f *fakeFeed) Counters() Counters {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.c
	c.Hops = make(map[topo.Key]HopCounters, len(f.c.Hops))
	for k, v := range f.c.Hops {
		c.Hops[k] = v
	}
	return c
}

func (f *fakeFeed) setCounters(fn func(c *Counters)) {
	f.mu.Lock()
	fn(&f.c)
	f.mu.Unlock()
}

// fakeClock is a settable time source.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// Namespace inodes of the Docker-like lab layout.
const (
	nsC1  = 4026532301
	nsOV1 = 4026532302
	nsN1  = 4026532300
)

func u32(v uint32) *uint32 { return &v }

// dockerHops is the Docker overlay layout on node 1: container c1's eth0,
// its veth peer on the overlay sandbox bridge, the vxlan device (VNI 4097)
// and the node's NIC towards node 2.
func dockerHops() []topo.Hop {
	return topo.NewTopology([]topo.Hop{
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindContainer, NetNS: topo.NetNS{Inode: nsC1, Name: "vxlab-c1"}, MTU: 1450},
		{Ifname: "veth0", Ifindex: 5, Kind: topo.KindVeth, NetNS: topo.NetNS{Inode: nsOV1, Name: "vxlab-ov1"}, MTU: 1450, Master: "br0"},
		{Ifname: "br0", Ifindex: 3, Kind: topo.KindBridge, NetNS: topo.NetNS{Inode: nsOV1, Name: "vxlab-ov1"}, MTU: 1450},
		{Ifname: "vxlan0", Ifindex: 4, Kind: topo.KindVXLAN, NetNS: topo.NetNS{Inode: nsOV1, Name: "vxlab-ov1"}, MTU: 1450, Master: "br0",
			VNI: u32(4097), Port: 4789, FDB: []topo.FDBEntry{{MAC: "02:42:0a:00:01:04", Dst: "10.99.2.2"}}},
		{Ifname: "eth0", Ifindex: 2, Kind: topo.KindNIC, NetNS: topo.NetNS{Inode: nsN1, Name: "vxlab-n1"}, MTU: 1500, Peers: []string{"10.99.2.2"}},
	}).Hops
}

var (
	c1IP   = netip.MustParseAddr("10.0.1.3")
	c2IP   = netip.MustParseAddr("10.0.1.4")
	n1IP   = netip.MustParseAddr("10.99.1.2")
	n2IP   = netip.MustParseAddr("10.99.2.2")
	fpMu   sync.Mutex
	fpNext uint64
)

func nextFP() uint64 {
	fpMu.Lock()
	defer fpMu.Unlock()
	fpNext++
	return fpNext
}

func step(at uint64, hop int, hops []topo.Hop, dir string, encap bool) journey.Step {
	h := hops[hop]
	s := journey.Step{Time: at, HopID: hop, Ifname: h.Ifname, Kind: h.Kind, NetNS: h.NetNS.Inode, Ifindex: h.Ifindex, Dir: dir, Len: 84}
	if encap {
		s.Encap, s.VNI, s.Len = true, 4097, 134
	}
	s.Derived = dir == "fwd" // the bridge has no tracepoint of its own
	return s
}

// icmpDropped is an echo request from c1 to c2 dropped by netfilter on the
// node's NIC after encapsulation.
func icmpDropped(hops []topo.Hop, seq uint16) *journey.Packet {
	return &journey.Packet{
		ID:    0x5eed0000 + uint64(seq),
		Inner: tracer.Tuple{Family: 4, Proto: 1, L4Info: 8, Src: c1IP, Dst: c2IP, Sport: 7, Dport: seq},
		IPID:  4000 + seq, Encap: true, VNI: 4097,
		Outer: tracer.Tuple{Family: 4, Proto: 17, Src: n1IP, Dst: n2IP, Sport: 53211, Dport: 4789},
		Steps: []journey.Step{
			step(0, 0, hops, "tx", false),
			step(4100, 1, hops, "rx", false),
			step(9800, 2, hops, "fwd", false),
			step(15200, 3, hops, "tx", true),
			step(31000, 4, hops, "tx", true),
			step(33500, 4, hops, "drop", true),
		},
		Verdict: journey.Dropped, LastHop: 4,
		Drop: &journey.Drop{Reason: "NETFILTER_DROP", Code: 6, Location: "nf_hook_slow+0xa5", HopID: 4, Ifname: "eth0", NetNS: nsN1},
	}
}

// udpLeft is a datagram from c1 that leaves the node encapsulated.
func udpLeft(hops []topo.Hop, sport uint16) *journey.Packet {
	return &journey.Packet{
		ID:    0x7a110000 + nextFP(),
		Inner: tracer.Tuple{Family: 4, Proto: 17, Src: c1IP, Dst: c2IP, Sport: sport, Dport: 5201},
		IPID:  100, Encap: true, VNI: 4097,
		Outer: tracer.Tuple{Family: 4, Proto: 17, Src: n1IP, Dst: n2IP, Sport: 40123, Dport: 4789},
		Steps: []journey.Step{
			step(0, 0, hops, "tx", false),
			step(3900, 1, hops, "rx", false),
			step(8800, 2, hops, "fwd", false),
			step(14100, 3, hops, "tx", true),
			step(29000, 4, hops, "tx", true),
		},
		Verdict: journey.LeftNode, LastHop: 4,
	}
}

// tcpDelivered is a segment from c2 delivered to c1.
func tcpDelivered(hops []topo.Hop) *journey.Packet {
	return &journey.Packet{
		ID:    0xde110000 + nextFP(),
		Inner: tracer.Tuple{Family: 4, Proto: 6, L4Info: 0x18, Src: c2IP, Dst: c1IP, Sport: 5201, Dport: 40001},
		IPID:  200, Encap: true, VNI: 4097,
		Outer: tracer.Tuple{Family: 4, Proto: 17, Src: n2IP, Dst: n1IP, Sport: 51000, Dport: 4789},
		Steps: []journey.Step{
			step(0, 4, hops, "rx", true),
			step(12000, 3, hops, "rx", false),
			step(15000, 2, hops, "fwd", false),
			step(19000, 1, hops, "tx", false),
			step(24000, 0, hops, "rx", false),
		},
		Verdict: journey.Delivered, LastHop: 0,
	}
}
