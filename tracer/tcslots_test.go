package tracer

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/vxtrace/vxtrace/topo"
)

// TestTCSlotCounters: TC counts every packet of a hop in that device's own
// slot of tc_slots (claimed by the kernel on first sight, without the
// namespace read), HopCounters adds them up, and ForgetHops frees a gone
// hop's slots while keeping its counts.
func TestTCSlotCounters(t *testing.T) {
	requireRoot(t)
	p := newVethPair(t)
	// A filter that misses: the miss path is the one the slots serve.
	tr, err := New(Config{Dst: mustPrefix("192.0.2.99/32"), NetNS: []uint32{p.nsA.Inode, p.nsB.Inode}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.AttachHops([]topo.Hop{p.hopA, p.hopB}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	p.sendUDP(t, n)

	slotOut := func(k topo.Key) (out uint64) {
		t.Helper()
		tr.slotMu.Lock()
		defer tr.slotMu.Unlock()
		if err := tr.eachTCSlot(func(_ int64, sk topo.Key, s *vxtraceVxTcSlot) {
			if sk == k {
				out += s.Out
			}
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	counters := func() (a, b HopCounters) {
		t.Helper()
		hc, err := tr.HopCounters()
		if err != nil {
			t.Fatal(err)
		}
		return hc[p.hopA.Key()], hc[p.hopB.Key()]
	}

	// Nothing matched: no CPU was told that tracking started.
	for cpu, f := range trackingFlags(t, tr) {
		if f != 0 {
			t.Errorf("CPU %d: tracking flag %d with nothing tracked", cpu, f)
		}
	}

	a, b := counters()
	if a.TCOut < n || b.TCIn < n {
		t.Fatalf("tc_out at A %d, tc_in at B %d: want at least %d each", a.TCOut, b.TCIn, n)
	}
	// Only each CPU's first packet of a device counts elsewhere (the
	// one that claims the slot).
	inSlots := slotOut(p.hopA.Key())
	if inSlots+2*uint64(ebpf.MustPossibleCPU()) < a.TCOut || inSlots == 0 {
		t.Fatalf("A's slots hold %d of its %d tc_out: the slots are not used", inSlots, a.TCOut)
	}

	if err := tr.ForgetHops([]topo.Key{p.hopA.Key()}); err != nil {
		t.Fatal(err)
	}
	if got := slotOut(p.hopA.Key()); got != 0 {
		t.Fatalf("after ForgetHops A's slots still hold %d", got)
	}
	a2, _ := counters()
	if a2.TCOut != a.TCOut {
		t.Fatalf("ForgetHops lost counts: tc_out %d -> %d", a.TCOut, a2.TCOut)
	}
	// The device is claimed again and goes on counting.
	p.sendUDP(t, n)
	a3, _ := counters()
	if a3.TCOut < a2.TCOut+n || slotOut(p.hopA.Key()) == 0 {
		t.Fatalf("after ForgetHops and %d more packets tc_out %d -> %d, %d in slots", n, a2.TCOut, a3.TCOut, slotOut(p.hopA.Key()))
	}
}

// trackingFlags reads each CPU's "tracking started" flag (its slot 0's in).
func trackingFlags(t *testing.T, tr *Tracer) []uint64 {
	t.Helper()
	flags := make([]uint64, ebpf.MustPossibleCPU())
	b := make([]byte, 8)
	for cpu := range flags {
		if _, err := tr.tcMem.ReadAt(b, int64(cpu)<<tcSlotBits*tcSlotSize+16); err != nil {
			t.Fatal(err)
		}
		flags[cpu] = binary.LittleEndian.Uint64(b)
	}
	return flags
}
