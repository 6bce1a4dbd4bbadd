package tracer

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// trackSetBits mirrors VX_TRACK_SETS_BITS, and trackSet vx_track_set_idx.
const trackSetBits = 13

func trackSet(skb uint64) uint32 {
	return uint32(((skb >> 8) * 0x9E3779B97F4A7C15) >> (64 - trackSetBits))
}

// The tracked table (struct vx_track_set): a new packet takes an empty
// entry of its set, else the first past its time to live, else the
// oldest. The others stay as they were: they are packets on their way.
func TestTrackedTable(t *testing.T) {
	const oldest = 3
	for _, c := range []struct {
		name string
		free int // an empty entry (-1: none)
		dead int // an entry past the TTL (-1: none)
		want int
	}{
		{"full set: the oldest goes", -1, -1, oldest},
		{"an empty entry first", 6, -1, 6},
		// The first past its TTL, not the oldest (way 7 is older).
		{"then an entry past its TTL", -1, 5, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := newBenchTracer(t, Config{RingSize: 1 << 20, NoBatch: true, TrackTTL: time.Second})
			if got := tr.maps.Tracked.MaxEntries(); got != 1<<trackSetBits {
				t.Fatalf("tracked has %d sets, want %d", got, 1<<trackSetBits)
			}
			rd, err := ringbuf.NewReader(tr.maps.Events)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rd.Close() })

			// Every set full of young entries of other packets, the
			// way `oldest` the oldest (1 ms).
			now := Now()
			var set vxtraceVxTrackSet
			for w := range set.Key {
				set.Key[w] = 0x1000 + uint64(w)
				set.Val[w].Fp = 0xf000 + uint64(w)
				set.Val[w].Ts = now - uint64(w)
			}
			set.Val[oldest].Ts = now - uint64(time.Millisecond)
			if c.free >= 0 {
				set.Key[c.free] = 0
			}
			if c.dead >= 0 {
				set.Val[c.dead].Ts = now - uint64(2*time.Second)
				set.Val[7].Ts = now - uint64(5*time.Second)
			}
			for i := range uint32(1 << trackSetBits) {
				if err := tr.maps.Tracked.Update(i, &set, ebpf.UpdateAny); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := tr.tc.Ingress.Run(&ebpf.RunOptions{Data: benchFrame()}); err != nil {
				t.Fatal(err)
			}
			rd.SetDeadline(time.Now().Add(time.Second))
			r, err := rd.Read()
			if err != nil {
				t.Fatal(err)
			}
			var e Event
			if err := DecodeEvent(r.RawSample, &e); err != nil {
				t.Fatal(err)
			}
			if e.Flags&FlagNew == 0 {
				t.Fatalf("event flags %#x: not a new packet", e.Flags)
			}
			var got vxtraceVxTrackSet
			if err := tr.maps.Tracked.Lookup(trackSet(e.Skb), &got); err != nil {
				t.Fatal(err)
			}
			for w := range got.Key {
				switch {
				case w == c.want:
					if got.Key[w] != e.Skb || got.Val[w].Fp != e.FP {
						t.Errorf("entry %d: key %#x fp %#x, want the new packet's %#x %#x", w, got.Key[w], got.Val[w].Fp, e.Skb, e.FP)
					}
				case got.Key[w] != set.Key[w] || got.Val[w] != set.Val[w]:
					t.Errorf("entry %d changed: %#x %+v, was %#x %+v", w, got.Key[w], got.Val[w], set.Key[w], set.Val[w])
				}
			}
		})
	}
}

// trackedEntries counts the skbs in the tracked table.
func trackedEntries(tb testing.TB, tr *Tracer) int {
	tb.Helper()
	n := 0
	var set vxtraceVxTrackSet
	for i := range uint32(tr.maps.Tracked.MaxEntries()) {
		if err := tr.maps.Tracked.Lookup(i, &set); err != nil {
			tb.Fatal(err)
		}
		for _, k := range set.Key {
			if k != 0 {
				n++
			}
		}
	}
	return n
}
