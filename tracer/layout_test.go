package tracer

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
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
		{"sizeof(vx_track_set)", unsafe.Sizeof(vxtraceVxTrackSet{}), 8*8 + 8*40},
		// eachTCSlot decodes these by hand: a slot is one cache line.
		{"sizeof(vx_tc_slot)", unsafe.Sizeof(vxtraceVxTcSlot{}), tcSlotSize},
		{"vx_tc_slot.netns", unsafe.Offsetof(vxtraceVxTcSlot{}.Netns), 8},
		{"vx_tc_slot.ifindex", unsafe.Offsetof(vxtraceVxTcSlot{}.Ifindex), 12},
		{"vx_tc_slot.in", unsafe.Offsetof(vxtraceVxTcSlot{}.In), 16},
		{"vx_tc_slot.bytes", unsafe.Offsetof(vxtraceVxTcSlot{}.Bytes), 40},
		{"vx_tc_slot.rx", unsafe.Offsetof(vxtraceVxTcSlot{}.Rx), 48},
		{"vx_tc_slot.tx", unsafe.Offsetof(vxtraceVxTcSlot{}.Tx), 56},
		// batcher.flush reads len and the first event's stamp by hand.
		{"sizeof(vx_batch)", unsafe.Sizeof(vxtraceVxBatch{}), batchSize},
		{"vx_batch.len", unsafe.Offsetof(vxtraceVxBatch{}.Len), 0},
		{"vx_batch.ev", unsafe.Offsetof(vxtraceVxBatch{}.Ev), 8},
		{"VX_BATCH_BYTES", unsafe.Sizeof(vxtraceVxBatch{}.Ev), batchBytes},
		{"vx_event.flags", unsafe.Offsetof(e.Flags), eventFlagsOff},
		{"VX_F_ENCAP", uintptr(vxtraceVxEventFlagsVX_F_ENCAP), FlagEncap},
		{"VX_F_PARSED", uintptr(vxtraceVxEventFlagsVX_F_PARSED), FlagParsed},
		{"VX_F_NEW", uintptr(vxtraceVxEventFlagsVX_F_NEW), FlagNew},
		{"VX_F_TRUNCATED", uintptr(vxtraceVxEventFlagsVX_F_TRUNCATED), FlagTruncated},
		{"VX_F_FRAGMENT", uintptr(vxtraceVxEventFlagsVX_F_FRAGMENT), FlagFragment},
		{"VX_F_TC", uintptr(vxtraceVxEventFlagsVX_F_TC), FlagTC},
		{"VX_F_HEADERS", uintptr(vxtraceVxEventFlagsVX_F_HEADERS), FlagHeaders},
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

// A ring record is a sequence of events, each as long as its FlagHeaders
// says: a batch mixes whole events and heads.
func TestAppendRecordMixed(t *testing.T) {
	event := func(id byte, whole bool) []byte {
		n, f := EventHeadSize, byte(0)
		if whole {
			n, f = EventSize, FlagHeaders
		}
		raw := make([]byte, n)
		raw[0] = id // the stamp
		raw[eventFlagsOff] = f
		if whole {
			raw[56+37] = 4 // inner family
		}
		return raw
	}
	var rec []byte
	shape := []bool{true, false, false, true, false}
	for i, whole := range shape {
		rec = append(rec, event(byte(i+1), whole)...)
	}
	if got, bound := len(shape), maxRecordEvents(uint64(len(rec))); bound < got {
		t.Fatalf("maxRecordEvents(%d) = %d, under the %d events it holds", len(rec), bound, got)
	}
	check := func(name string, raw []byte, room, want int) {
		t.Helper()
		evs := appendRecord(make([]Event, 0, room), raw)
		if len(evs) != want {
			t.Fatalf("%s: %d events decoded, want %d", name, len(evs), want)
		}
		for i, e := range evs {
			if e.Time != uint64(i+1) || (e.Inner.Family == 4) != shape[i] {
				t.Errorf("%s: event %d: stamp %d, inner family %d; want stamp %d, headers %v", name, i, e.Time, e.Inner.Family, i+1, shape[i])
			}
		}
	}
	check("whole record", rec, 16, len(shape))
	// A record cut inside its last (whole) event: the events before it.
	check("cut record", rec[:len(rec)-EventHeadSize-1], 16, 3)
	check("no room", rec, 2, 2)
}

// BenchmarkDecodeEvent (P6): an event inside the overlay (inner tuple
// only), and one on the underlay (outer tuple too: 4 of the 11 events of a
// lab packet).
func BenchmarkDecodeEvent(b *testing.B) {
	// Most records are heads alone (a packet's events after its first).
	for _, c := range []struct {
		name  string
		flags uint8
		size  int
	}{{"head", 0, EventHeadSize}, {"inner", FlagHeaders, EventSize}, {"encap", FlagHeaders | FlagEncap, EventSize}} {
		b.Run(c.name, func(b *testing.B) {
			raw := make([]byte, EventSize)
			raw[55] = c.flags
			raw[56+37] = 4
			raw[96+37] = 4
			var e Event
			b.ReportAllocs()
			for b.Loop() {
				_ = DecodeEvent(raw[:c.size], &e)
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

func TestMaxRecordEvents(t *testing.T) {
	for _, c := range []struct {
		dlen uint64
		want int
	}{
		{EventHeadSize, 1},
		{EventSize, 1},
		{2 * EventHeadSize, 2},
		{EventSize + 3*EventHeadSize, 4},
		{batchEvents * EventHeadSize, batchEvents},
		// 15 whole events: as long as 34 heads and one whole.
		{15 * EventSize, 35},
		{7, 1},
	} {
		if got := maxRecordEvents(c.dlen); got != c.want {
			t.Errorf("maxRecordEvents(%d) = %d, want %d", c.dlen, got, c.want)
		}
	}
}

// A plain array's values start 312 bytes into struct bpf_array (56 bytes
// into a cache line), so a hot value there straddles two lines; an
// mmapable array's start on a page. The hot path's arrays must keep the
// flag, and their values must stay whole lines (or fit in one).
func TestHotMapsLineAligned(t *testing.T) {
	spec, err := loadVxtrace()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tc_slots", "tracked", "state", "batches"} {
		m := spec.Maps[name]
		if m == nil {
			t.Fatalf("map %s is missing from the spec", name)
		}
		if m.Flags&unix.BPF_F_MMAPABLE == 0 {
			t.Errorf("map %s: BPF_F_MMAPABLE is not set: its values would straddle cache lines", name)
		}
		size := m.ValueSize
		if name == "state" {
			size *= m.MaxEntries
		}
		if size%64 != 0 && size > 64 {
			t.Errorf("map %s: value size %d is neither a multiple of 64 nor one line", name, size)
		}
	}
}
