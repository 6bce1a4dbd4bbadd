// Package journey owns correlation: it groups tracer events by packet
// fingerprint into journeys across hops and namespaces, and decides each
// packet's verdict. It is pure logic: no BPF, no netlink, no terminal.
package journey

import (
	"net/netip"

	"github.com/vxtrace/vxtrace/topo"
	"github.com/vxtrace/vxtrace/tracer"
)

// Verdict is how a packet's journey ended.
type Verdict string

const (
	Delivered Verdict = "delivered" // reached a container interface or a local socket
	Dropped   Verdict = "dropped"   // the kernel freed it as dropped
	LeftNode  Verdict = "left_node" // last seen leaving through the underlay NIC
	Vanished  Verdict = "vanished"  // seen, then neither dropped nor seen again before the timeout
)

// Step is one sighting of a packet at a hop.
type Step struct {
	Time    uint64 // ns since the packet's first step
	Mono    uint64 // raw CLOCK_MONOTONIC ns of the event
	HopID   int    // -1 when the interface is not a known hop
	Ifname  string
	Kind    topo.Kind
	NetNS   uint32
	Ifindex uint32
	Dir     string // tracer.Hook.String(): rx, tx, drop, consume, fwd, tc_in, tc_out, neigh
	Encap   bool
	// Derived marks a step the correlator inferred rather than saw: a
	// bridge forwards without a tracepoint on its own device, so its hop is
	// filled in between a port's rx and the next tx (Dir "fwd").
	Derived bool
	VNI     uint32
	Len     uint32
	// NextHop: Dir "neigh", the IPv4 address whose link-layer address the
	// packet waits for; zero for IPv6. Four bytes, not a netip.Addr, and
	// after the two bools: in padding, a step stays 96 bytes, where an
	// Addr made it 128, and every packet's steps are written at emit.
	NextHop [4]byte
}

// NextHopAddr is NextHop as an address; invalid when there is none.
func (s *Step) NextHopAddr() netip.Addr {
	if s.NextHop == ([4]byte{}) {
		return netip.Addr{}
	}
	return netip.AddrFrom4(s.NextHop)
}

// Drop says where and why the kernel dropped a packet.
type Drop struct {
	Reason   string // name from the running kernel's enum skb_drop_reason
	Code     uint32
	Location string // symbol+offset from /proc/kallsyms
	HopID    int
	Ifname   string
	NetNS    uint32
}

// Packet is one packet's whole journey.
type Packet struct {
	ID      uint64 // fingerprint
	Inner   tracer.Tuple
	IPID    uint16
	Encap   bool // was encapsulated at some hop
	VNI     uint32
	Outer   tracer.Tuple // outer headers at the first encapsulated hop
	Steps   []Step
	Verdict Verdict
	LastHop int // hop ID of the last step, -1 if unknown
	Drop    *Drop
	First   uint64 // CLOCK_MONOTONIC ns of the first step
	Last    uint64
	// EventsOmitted counts events not recorded as steps because the journey
	// already had Options.MaxSteps steps (a looping packet, a flood).
	EventsOmitted uint32
}

// HopResolver maps a (netns inode, ifindex) to a known hop. *topo.Topology
// implements it.
type HopResolver interface {
	Lookup(netns, ifindex uint32) (*topo.Hop, bool)
	ByName(netns uint32, name string) (*topo.Hop, bool)
}

// Namer turns kernel numbers into names. The real one reads the running
// kernel's BTF and /proc/kallsyms; tests use a fake.
type Namer interface {
	DropReason(code uint32) string
	Symbol(addr uint64) string
}
