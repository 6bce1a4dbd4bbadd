package tracer

import (
	"testing"
	"unsafe"
)

// The generated types mirror bpf/vxtrace.h; DecodeEvent reads raw bytes at
// fixed offsets. Either drifting from the C layout breaks decoding silently,
// so pin both here.
func TestLayout(t *testing.T) {
	var e vxtraceVxEvent
	checks := []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(vx_event)", unsafe.Sizeof(e), EventSize},
		{"vx_event.netns", unsafe.Offsetof(e.Netns), 32},
		{"vx_event.vni", unsafe.Offsetof(e.Vni), 48},
		{"vx_event.hook", unsafe.Offsetof(e.Hook), 54},
		{"vx_event.inner", unsafe.Offsetof(e.Inner), 56},
		{"VX_EVENT_HEAD_LEN", unsafe.Offsetof(e.Inner), EventHeadSize},
		{"vx_event.outer", unsafe.Offsetof(e.Outer), 96},
		{"vx_tuple.sport", unsafe.Offsetof(e.Inner.Sport), 32},
		{"vx_tuple.family", unsafe.Offsetof(e.Inner.Family), 37},
		{"sizeof(vx_config)", unsafe.Sizeof(vxtraceVxConfig{}), 4*36 + 8 + 8 + 4 + 4 + 8 + 2 + 6},
		{"sizeof(vx_hop_stats)", unsafe.Sizeof(vxtraceVxHopStats{}), 64},
		{"sizeof(vx_drop_key)", unsafe.Sizeof(vxtraceVxDropKey{}), 16},
		{"sizeof(vx_track)", unsafe.Sizeof(vxtraceVxTrack{}), 40},
		// eachTCSlot decodes these by hand: a slot is one cache line.
		{"sizeof(vx_tc_slot)", unsafe.Sizeof(vxtraceVxTcSlot{}), tcSlotSize},
		{"vx_tc_slot.netns", unsafe.Offsetof(vxtraceVxTcSlot{}.Netns), 8},
		{"vx_tc_slot.ifindex", unsafe.Offsetof(vxtraceVxTcSlot{}.Ifindex), 12},
		{"vx_tc_slot.in", unsafe.Offsetof(vxtraceVxTcSlot{}.In), 16},
		{"vx_tc_slot.bytes", unsafe.Offsetof(vxtraceVxTcSlot{}.Bytes), 40},
		{"vx_tc_slot.rx", unsafe.Offsetof(vxtraceVxTcSlot{}.Rx), 48},
		{"vx_tc_slot.tx", unsafe.Offsetof(vxtraceVxTcSlot{}.Tx), 56},
		// batcher.flush reads n and the first event's stamp by hand.
		{"sizeof(vx_batch)", unsafe.Sizeof(vxtraceVxBatch{}), batchSize},
		{"vx_batch.ev", unsafe.Offsetof(vxtraceVxBatch{}.Ev), 8},
		{"VX_BATCH heads", unsafe.Sizeof(vxtraceVxBatch{}.Ev), batchEvents * EventHeadSize},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestDecodeEventRoundTrip(t *testing.T) {
	raw := make([]byte, EventSize)
	raw[32] = 0x78 // netns
	raw[48] = 0x01 // vni 4097
	raw[49] = 0x10
	raw[54] = byte(HookDrop)
	raw[55] = FlagEncap
	raw[56+37] = 4 // inner family
	copy(raw[56:], []byte{10, 0, 1, 3})
	copy(raw[56+16:], []byte{10, 0, 1, 4})
	raw[56+36] = 1 // icmp
	var e Event
	if err := DecodeEvent(raw, &e); err != nil {
		t.Fatal(err)
	}
	if e.NetNS != 0x78 || e.VNI != 4097 || e.Hook != HookDrop || !e.Encap() {
		t.Fatalf("decoded %+v", e)
	}
	if e.Inner.Src.String() != "10.0.1.3" || e.Inner.Dst.String() != "10.0.1.4" || e.Inner.Proto != 1 {
		t.Fatalf("inner %+v", e.Inner)
	}
	if e.Outer.Src.IsValid() {
		t.Fatalf("outer should be empty: %+v", e.Outer)
	}
	// A record without the headers: the head decodes, the tuples are
	// empty (not left from the previous event).
	if err := DecodeEvent(raw[:EventHeadSize], &e); err != nil {
		t.Fatal(err)
	}
	if e.NetNS != 0x78 || e.VNI != 4097 || e.Hook != HookDrop || e.Inner.Family != 0 || e.Inner.Src.IsValid() {
		t.Fatalf("head-only record decoded %+v", e)
	}
	if err := DecodeEvent(raw[:EventHeadSize-1], &e); err == nil {
		t.Fatal("short record decoded without error")
	}
}

// BenchmarkDecodeEvent (P6): an event inside the overlay (inner tuple
// only), and one on the underlay (outer tuple too: 4 of the 11 events of a
// lab packet).
func BenchmarkDecodeEvent(b *testing.B) {
	for _, c := range []struct {
		name  string
		flags uint8
	}{{"inner", 0}, {"encap", FlagEncap}} {
		b.Run(c.name, func(b *testing.B) {
			raw := make([]byte, EventSize)
			raw[55] = c.flags
			raw[56+37] = 4
			raw[96+37] = 4
			var e Event
			b.ReportAllocs()
			for b.Loop() {
				_ = DecodeEvent(raw, &e)
			}
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(make([]byte, EventSize))
	f.Add(make([]byte, EventHeadSize))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		e := Event{Inner: Tuple{Family: 4}, Outer: Tuple{Family: 6}} // what a previous record left
		err := DecodeEvent(b, &e)
		if (err == nil) != (len(b) >= EventHeadSize) {
			t.Fatalf("len %d: err %v", len(b), err)
		}
		if err == nil && len(b) < EventSize && (e.Inner != Tuple{} || e.Outer != Tuple{}) {
			t.Fatalf("len %d, no headers: tuples %+v %+v", len(b), e.Inner, e.Outer)
		}
		if err == nil && e.Inner.Family != 4 && e.Inner.Family != 6 && e.Inner.Src.IsValid() {
			t.Fatalf("address set for family %d", e.Inner.Family)
		}
	})
}
