package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	_ "unsafe" // go:linkname
)

// Hook says where in the kernel an event was seen. Keep in sync with enum
// vx_hook in bpf/vxtrace.h.
type Hook uint8

const (
	HookRx        Hook = 1 // a device received the packet (netif_receive_skb)
	HookTx        Hook = 2 // a device is sending the packet (net_dev_start_xmit)
	HookDrop      Hook = 3 // the kernel freed it as dropped (kfree_skb)
	HookConsume   Hook = 4 // the kernel freed it after normal use (consume_skb)
	HookTCIngress Hook = 5
	HookTCEgress  Hook = 6
	HookBrForward Hook = 7 // a bridge forwarded it (optional fentry/kprobe)
	// HookNeigh: parked until the next hop's link-layer address resolves
	// (neigh_event_send_done); Location holds that hop's IPv4 address.
	HookNeigh Hook = 8
)

func (h Hook) String() string {
	switch h {
	case HookRx:
		return "rx"
	case HookTx:
		return "tx"
	case HookDrop:
		return "drop"
	case HookConsume:
		return "consume"
	case HookTCIngress:
		return "tc_in"
	case HookTCEgress:
		return "tc_out"
	case HookBrForward:
		return "fwd"
	case HookNeigh:
		return "neigh"
	}
	return fmt.Sprintf("hook%d", uint8(h))
}

// Event flags: enum vx_event_flags in bpf/vxtrace.h (TestLayout holds them to it).
const (
	FlagEncap     = 1 << 0
	FlagParsed    = 1 << 1
	FlagNew       = 1 << 2
	FlagTruncated = 1 << 3
	FlagFragment  = 1 << 4
	FlagTC        = 1 << 5 // seen by a TC program on a hop interface
	// FlagHeaders: the event carries the packet's headers (Inner, Outer).
	// In a ring record it says how long the event is (EventSize, or
	// EventHeadSize without it).
	FlagHeaders = 1 << 6
)

// Tuple is one IP header and its L4 ports, as parsed in the kernel.
type Tuple struct {
	Family uint8 // 4, 6, or 0 when no IP header was parsed
	Proto  uint8
	L4Info uint8 // TCP flags, or ICMP type
	Src    netip.Addr
	Dst    netip.Addr
	Sport  uint16 // ICMP echo: identifier
	Dport  uint16 // ICMP echo: sequence
}

// Event is one sighting of a tracked packet at one hook. It is the decoded
// form of struct vx_event; the generated type stays private to this package.
type Event struct {
	Time     uint64 // CLOCK_MONOTONIC ns (bpf_ktime_get_ns)
	Skb      uint64
	FP       uint64 // fingerprint: the same packet has the same FP on every node
	Location uint64 // drops: the kernel address that freed the skb; HookNeigh: see NextHop
	NetNS    uint32
	Ifindex  uint32
	Len      uint32
	Reason   uint32
	VNI      uint32
	IPID     uint16
	Hook     Hook
	Flags    uint8
	Inner    Tuple
	Outer    Tuple // set when Encap()
}

// Encap reports whether the packet carried VXLAN outer headers at this hop.
func (e *Event) Encap() bool { return e.Flags&FlagEncap != 0 }

// NextHop is the address a HookNeigh event's packet waits to resolve: the
// kernel writes the IPv4 address as it lies in memory, network order. It is
// invalid for IPv6 next hops and other hooks.
func (e *Event) NextHop() netip.Addr {
	a := NextHop4(e.Location)
	if e.Hook != HookNeigh || a == ([4]byte{}) {
		return netip.Addr{}
	}
	return netip.AddrFrom4(a)
}

// NextHop4 is the IPv4 next hop a HookNeigh event's Location holds, as
// bytes: for whoever keeps it in less room than a netip.Addr.
func NextHop4(loc uint64) [4]byte {
	return [4]byte{byte(loc), byte(loc >> 8), byte(loc >> 16), byte(loc >> 24)}
}

// EventSize is sizeof(struct vx_event): a record with the packet's headers.
// EventHeadSize is a record without them (VX_EVENT_HEAD_LEN): the kernel
// sends a followed packet's headers once, and again only after a silence
// long enough for user space to have ended its journey.
const (
	EventSize     = 136
	EventHeadSize = 56
	eventFlagsOff = 55
)

var errShortEvent = errors.New("short event record")

// appendRecord decodes one ring record into evs, which must have room for
// its maxRecordEvents: a sequence of events (a CPU's batch, flushed at once,
// or a single event), each as long as its FlagHeaders says. An event that
// does not decode ends the record.
func appendRecord(evs []Event, raw []byte) []Event {
	for len(raw) >= EventHeadSize && len(evs) < cap(evs) {
		n := EventHeadSize
		if raw[eventFlagsOff]&FlagHeaders != 0 {
			n = EventSize
		}
		if len(raw) < n {
			break
		}
		evs = evs[:len(evs)+1]
		if DecodeEvent(raw[:n], &evs[len(evs)-1]) != nil {
			evs = evs[:len(evs)-1]
			break
		}
		raw = raw[n:]
	}
	return evs
}

// DecodeEvent fills e from a raw ring-buffer record. It does not allocate:
// the reader calls it once per event on the hot path.
func DecodeEvent(b []byte, e *Event) error {
	if len(b) < EventHeadSize {
		return errShortEvent
	}
	le := binary.LittleEndian
	e.Time = le.Uint64(b[0:])
	e.Skb = le.Uint64(b[8:])
	e.FP = le.Uint64(b[16:])
	e.Location = le.Uint64(b[24:])
	e.NetNS = le.Uint32(b[32:])
	e.Ifindex = le.Uint32(b[36:])
	e.Len = le.Uint32(b[40:])
	e.Reason = le.Uint32(b[44:])
	e.VNI = le.Uint32(b[48:])
	e.IPID = le.Uint16(b[52:])
	e.Hook = Hook(b[54])
	e.Flags = b[eventFlagsOff]
	if len(b) < EventSize {
		e.Inner, e.Outer = Tuple{}, Tuple{}
		return nil
	}
	decodeTuple(b[56:96], &e.Inner)
	// The kernel fills the outer tuple only with VX_F_ENCAP (zeros
	// otherwise): most events skip its decoding.
	if e.Flags&FlagEncap != 0 {
		decodeTuple(b[96:136], &e.Outer)
	} else {
		e.Outer = Tuple{}
	}
	return nil
}

func decodeTuple(b []byte, t *Tuple) {
	b = b[:40] // one bounds check for all the reads below (struct vx_tuple)
	le := binary.LittleEndian
	t.Sport = le.Uint16(b[32:])
	t.Dport = le.Uint16(b[34:])
	t.Proto = b[36]
	t.Family = b[37]
	t.L4Info = b[38]
	switch t.Family {
	case 4:
		t.Src = netip.AddrFrom4([4]byte(b[0:4]))
		t.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	case 6:
		t.Src = netip.AddrFrom16([16]byte(b[0:16]))
		t.Dst = netip.AddrFrom16([16]byte(b[16:32]))
	default:
		t.Src, t.Dst = netip.Addr{}, netip.Addr{}
	}
}

// Now reads the clock events are stamped with (bpf_ktime_get_ns:
// CLOCK_MONOTONIC), so that ages compare like with like. It is the Go
// runtime's own reading of that clock (through the vDSO on Linux), not an
// offset from it: an offset is off by the call that measured it, and an
// event read within that much of its stamp then looked younger than zero (a
// benchmark's latency tail went from 6 to 100 ms). A system call per read
// was 3 % of a flooded tracer's CPU.
func Now() uint64 { return uint64(nanotime()) }

// nanotime is CLOCK_MONOTONIC on every Linux port of the runtime; Go keeps
// this link for outside users (go.dev/issue/67401).
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64
