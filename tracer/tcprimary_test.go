package tracer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/vxtrace/vxtrace/internal/leakcheck"
	"github.com/vxtrace/vxtrace/topo"
)

// collect runs a reader until stop is called and returns the events seen.
func collect(t *testing.T, tr *Tracer) (events func() []Event, stop func()) {
	t.Helper()
	rd, err := tr.NewReader(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []Event
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- rd.Run(ctx, func(evs []Event) {
			mu.Lock()
			got = append(got, evs...)
			mu.Unlock()
		})
	}()
	events = func() []Event {
		mu.Lock()
		defer mu.Unlock()
		return append([]Event(nil), got...)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return events, stop
}

// TestTCFindsDeviceTracepointsFollow: with TC on every hop, the TC programs
// report the packets (rx/tx events flagged TC), the rx/tx tracepoints are
// not even attached, and the hops count in their array slots. When a hop's
// TC program cannot attach, the tracepoints attach and follow the packets
// the TC programs found across the device that has none.
func TestTCFindsDeviceTracepointsFollow(t *testing.T) {
	requireRoot(t)
	p := newVethPair(t)
	paths := []string{p.nsA.Path, p.nsB.Path}
	before := leakcheck.Snapshot(t, paths...)
	cfg := Config{Dst: mustPrefix(p.addrB + "/32"), Proto: 17, NetNS: []uint32{p.nsA.Inode, p.nsB.Inode}}

	t.Run("every hop has TC", func(t *testing.T) {
		tr, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		if err := tr.AttachHops([]topo.Hop{p.hopA, p.hopB}); err != nil {
			t.Fatal(err)
		}
		if tr.Features().DeviceTracepoints {
			t.Fatal("rx/tx tracepoints attached although every hop has TC")
		}
		events, stop := collect(t, tr)
		p.sendUDP(t, 3)
		time.Sleep(100 * time.Millisecond)
		stop()
		seen := map[string]int{}
		for _, e := range events() {
			if e.Flags&FlagTC == 0 && (e.Hook == HookRx || e.Hook == HookTx) {
				t.Errorf("rx/tx event not from TC: %+v", e)
			}
			seen[key(topoKeyHop(e), e.Hook)]++
		}
		if seen[key(p.hopA, HookTx)] < 3 || seen[key(p.hopB, HookRx)] < 3 {
			t.Fatalf("events %v: want 3 tx at A and 3 rx at B", seen)
		}
		// Each packet's free took its entry out of the tracked table.
		if n := trackedEntries(t, tr); n != 0 {
			t.Errorf("%d tracked entries left after every packet was freed", n)
		}
		// The first tracked packet told every CPU, so that a free on
		// any of them looks the skb up.
		for cpu, f := range trackingFlags(t, tr) {
			if f != 1 {
				t.Errorf("CPU %d: tracking flag %d after packets were tracked", cpu, f)
			}
		}
		// The hops counted in their slots, not in the hash map.
		for _, h := range []topo.Hop{p.hopA, p.hopB} {
			var per []vxtraceVxHopStats
			err := tr.maps.HopStats.Lookup(vxtraceVxHopKey{Netns: h.NetNS.Inode, Ifindex: h.Ifindex}, &per)
			if !errors.Is(err, ebpf.ErrKeyNotExist) {
				t.Errorf("hop %s counts in the hash map (err %v): its slot %d was not used", h.Ifname, err, hopSlot(h.Key()))
			}
		}
		hc, err := tr.HopCounters()
		if err != nil {
			t.Fatal(err)
		}
		a, b := hc[p.hopA.Key()], hc[p.hopB.Key()]
		if a.TCOut < 3 || a.Tx < 3 || b.TCIn < 3 || b.Rx < 3 {
			t.Fatalf("counters A %+v B %+v: want tc_out and tx >= 3 at A, tc_in and rx >= 3 at B", a, b)
		}
	})

	t.Run("a hop without TC", func(t *testing.T) {
		tr, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		missing := p.hopB
		missing.Ifindex = 4242 // no such device: its TC attach fails
		err = tr.AttachHops([]topo.Hop{p.hopA, missing})
		if err == nil {
			t.Fatal("attaching to a missing device succeeded")
		}
		if !tr.Features().DeviceTracepoints {
			t.Fatal("a hop has no TC, and the rx/tx tracepoints were not attached")
		}
		events, stop := collect(t, tr)
		p.sendUDP(t, 3)
		time.Sleep(100 * time.Millisecond)
		stop()
		var tcTx, tpRx int
		for _, e := range events() {
			switch k := key(topoKeyHop(e), e.Hook); {
			case k == key(p.hopA, HookTx) && e.Flags&FlagTC != 0:
				tcTx++
			case k == key(p.hopB, HookRx) && e.Flags&FlagTC == 0:
				tpRx++
			}
		}
		if tcTx < 3 || tpRx < 3 {
			t.Fatalf("%d TC tx events at A, %d tracepoint rx events at B: want 3 each", tcTx, tpRx)
		}
	})
	leakcheck.Check(t, before, paths...)
}

func topoKeyHop(e Event) topo.Hop {
	return topo.Hop{NetNS: topo.NetNS{Inode: e.NetNS}, Ifindex: e.Ifindex}
}

// TestReaderSleepsWhenIdle: with nothing to read for a while, the reader
// drops its timer and asks the kernel to wake it for each event; a single
// event (far below the wake-up threshold) still reaches it.
func TestReaderSleepsWhenIdle(t *testing.T) {
	requireRoot(t)
	p := newVethPair(t)
	tr, err := New(Config{Dst: mustPrefix(p.addrB + "/32"), Proto: 17, NetNS: []uint32{p.nsA.Inode, p.nsB.Inode}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.AttachHops([]topo.Hop{p.hopA, p.hopB}); err != nil {
		t.Fatal(err)
	}
	asleep := func() uint64 {
		var v uint64
		if err := tr.maps.State.Lookup(uint32(vxtraceVxStateVX_STATE_READER_ASLEEP), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	events, stop := collect(t, tr)
	deadline := time.Now().Add(5 * time.Second)
	for asleep() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the idle reader never went to sleep")
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.sendUDP(t, 1)
	for len(events()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a sleeping reader was not woken by an event")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if v := asleep(); v != 0 {
		t.Errorf("reader woken by an event, flag still %d", v)
	}
	stop()
	if v := asleep(); v != 0 {
		t.Errorf("reader stopped, flag left at %d", v)
	}
}
