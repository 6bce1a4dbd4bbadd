package tracer

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// fakeRing lays out memory as the kernel's mappings are: a consumer page,
// then a producer page followed by size bytes of data.
type fakeRing struct {
	r    *ring
	prod uint64 // next write position, published to the ring by commit
}

func newFakeRing(size int) *fakeRing {
	const page = 64
	cons := make([]byte, page)
	prod := make([]byte, page+size)
	return &fakeRing{r: newRingOver(cons, prod, page)}
}

// write appends a record the way bpf_ringbuf_submit leaves it (or, busy,
// as bpf_ringbuf_reserve does), data wrapping around the end.
func (f *fakeRing) write(data []byte, busy, discard bool) {
	hdr := uint32(len(data))
	if busy {
		hdr |= ringBusyBit
	}
	if discard {
		hdr |= ringDiscardBit
	}
	size := uint64(len(f.r.data))
	binary.LittleEndian.PutUint32(f.r.data[f.prod%size:], hdr)
	for i, b := range data {
		f.r.data[(f.prod+ringHdrSize+uint64(i))%size] = b
	}
	f.prod += ringHdrSize + (uint64(len(data))+7)&^7
	*f.r.prod = f.prod
}

func (f *fakeRing) drain(t *testing.T, limit int) [][]byte {
	t.Helper()
	var got [][]byte
	if _, _, err := f.r.drain(limit, func(b []byte) { got = append(got, bytes.Clone(b)) }); err != nil {
		t.Fatal(err)
	}
	return got
}

func record(i, n int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, n)
	copy(b, fmt.Sprintf("r%d", i))
	return b
}

// Records are read in order across many laps, whole when their data wraps
// around the end of the (once-mapped) data area; the consumer position
// follows, so the producer gets its room back.
func TestRingDrainWraps(t *testing.T) {
	f := newFakeRing(256)
	next := 0
	for lap := 0; lap < 40; lap++ {
		var want [][]byte
		for k := 0; k < 3; k++ {
			rec := record(next, 37+k*11) // not multiples of 8: padding too
			f.write(rec, false, false)
			want = append(want, rec)
			next++
		}
		got := f.drain(t, 100)
		if len(got) != len(want) {
			t.Fatalf("lap %d: %d records, want %d", lap, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("lap %d record %d: got %q, want %q", lap, i, got[i], want[i])
			}
		}
		if c := *f.r.cons; c != f.prod {
			t.Fatalf("lap %d: consumer at %d, producer at %d", lap, c, f.prod)
		}
	}
}

// A record still being written stops the drain (the ones after it wait),
// a discarded one is skipped, and limit bounds one drain.
func TestRingDrainBusyDiscardLimit(t *testing.T) {
	f := newFakeRing(512)
	f.write(record(1, 16), false, false)
	f.write(record(2, 16), false, true)
	f.write(record(3, 16), false, false)
	f.write(record(4, 16), false, false)
	if got := f.drain(t, 1); len(got) != 1 || got[0][1] != '1' {
		t.Fatalf("limit 1: %q", got)
	}
	if got := f.drain(t, 10); len(got) != 2 || got[0][1] != '3' || got[1][1] != '4' {
		t.Fatalf("after a discarded record: %q", got)
	}
	busyAt := f.prod
	f.write(record(5, 16), true, false)
	f.write(record(6, 16), false, false)
	if got := f.drain(t, 10); len(got) != 0 {
		t.Fatalf("read past a busy record: %q", got)
	}
	if *f.r.cons != busyAt {
		t.Fatalf("consumer moved past a busy record: %d, want %d", *f.r.cons, busyAt)
	}
	binary.LittleEndian.PutUint32(f.r.data[busyAt%512:], 16) // committed
	if got := f.drain(t, 10); len(got) != 2 || got[0][1] != '5' || got[1][1] != '6' {
		t.Fatalf("after commit: %q", got)
	}
}

// A header that says more data than was produced is corruption, not a hang.
func TestRingDrainCorrupt(t *testing.T) {
	f := newFakeRing(256)
	f.write(record(1, 16), false, false)
	binary.LittleEndian.PutUint32(f.r.data[0:], 200)
	if _, _, err := f.r.drain(10, func([]byte) {}); err == nil {
		t.Fatal("a record past the producer position read without error")
	}
}

// newRingReader is a TC-only tracer with a 1-MiB ring, and its reader. As
// with newBenchTracer, every record is whole (one size: Fill is checked
// against their count).
func newRingReader(t *testing.T) (*Tracer, *Reader) {
	t.Helper()
	tr := newBenchTracer(t, Config{RingSize: 1 << 20})
	rd, err := tr.NewReader(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return tr, rd
}

// Fill is what the session's reader looks at before it gives up a batch:
// it must follow the events waiting in the ring.
func TestReaderFill(t *testing.T) {
	tr, rd := newRingReader(t)
	if f := rd.Fill(); f != 0 {
		t.Fatalf("empty ring: Fill = %v", f)
	}
	const n = 2000
	if _, err := tr.tc.Ingress.Run(&ebpf.RunOptions{Data: benchFrame(), Repeat: n}); err != nil {
		t.Fatal(err)
	}
	tr.batch.flush(Now(), 0)
	st, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Events < n {
		t.Fatalf("%d events written, want %d", st.Events, n)
	}
	// Whole events, in records of a batch each: the ring's header, then
	// the events.
	perBatch := uint64(batchBytes / unsafe.Sizeof(vxtraceVxEvent{}))
	records := (st.Events + perBatch - 1) / perBatch
	want := float64(st.Events*EventSize+records*8) / float64(1<<20)
	if f := rd.Fill(); f < want*0.99 || f > want*1.01 {
		t.Errorf("Fill = %.4f after %d events, want %.4f", f, st.Events, want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got uint64
	drained := -1.0
	done := make(chan error, 1)
	go func() {
		done <- rd.Run(ctx, func(evs []Event) {
			if got += uint64(len(evs)); got >= st.Events && drained < 0 {
				drained = rd.Fill() // the ring is not locked while a batch is handled
				cancel()
			}
		})
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if drained != 0 {
		t.Errorf("Fill = %v once every event was read", drained)
	}
}

// A handler that keeps its batches (the session queues them for the
// correlator) owns them: the reader fills the buffer the handler returns,
// never one it handed over.
func TestReaderHandOverKeepsBatches(t *testing.T) {
	tr, rd := newRingReader(t)
	n := int(runIngress(t, tr, benchFrame(), 2000))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var kept [][]Event
	got := 0
	err := rd.RunHandOver(ctx, func(evs []Event) []Event {
		kept = append(kept, evs)
		if got += len(evs); got >= n {
			cancel()
		}
		// Both kinds of next buffer: a new one of the reader's own
		// choosing, and a small one.
		if len(kept)%2 == 0 {
			return nil
		}
		return make([]Event, 0, 7)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != n || len(kept) < 3 {
		t.Fatalf("%d events in %d batches, want %d in several", got, len(kept), n)
	}
	var prev uint64
	for i, b := range kept {
		for _, e := range b {
			if e.Time < prev {
				t.Fatalf("batch %d holds an event stamped %d after one stamped %d: a kept batch was refilled", i, e.Time, prev)
			}
			prev = e.Time
		}
	}
}

// HandedThrough is the clock the session ages journeys by: it must never
// pass an event still in the ring or in a handler, and it must follow the
// wall clock when the reader is idle (awake on its timer, or asleep).
func TestReaderHandedThrough(t *testing.T) {
	tr, rd := newRingReader(t)
	produce := func() {
		t.Helper()
		if _, err := tr.tc.Ingress.Run(&ebpf.RunOptions{Data: benchFrame()}); err != nil {
			t.Fatal(err)
		}
	}
	batches := make(chan uint64) // the newest event time of each batch
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- rd.Run(ctx, func(evs []Event) {
			batches <- evs[len(evs)-1].Time
			<-release
		})
	}()
	defer func() {
		cancel()
		close(release)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	before := Now()
	produce()
	tsA := <-batches
	if after := Now(); tsA < before || tsA > after {
		t.Fatalf("event stamped %d, outside [%d, %d] of Now: not the events' clock", tsA, before, after)
	}
	// The handler holds A; B waits in the ring for longer than the slack.
	produce()
	time.Sleep(30 * time.Millisecond)
	if h := rd.HandedThrough(); h > tsA {
		t.Errorf("handler holds an event: HandedThrough %d > its time %d", h, tsA)
	}
	release <- struct{}{}
	tsB := <-batches
	if tsB <= tsA {
		t.Fatalf("event B (%d) not after A (%d)", tsB, tsA)
	}
	time.Sleep(30 * time.Millisecond)
	if h := rd.HandedThrough(); h > tsB {
		t.Errorf("handler holds B: HandedThrough %d > its time %d (%.1f ms past)", h, tsB, float64(h-tsB)/1e6)
	}
	release <- struct{}{}

	// Awake on its timer, then asleep: the clock follows the wall clock.
	for _, wait := range []time.Duration{20 * time.Millisecond, 400 * time.Millisecond} {
		time.Sleep(wait)
		if lag := time.Duration(Now() - rd.HandedThrough()); lag > 150*time.Millisecond {
			t.Errorf("idle reader %v after its last event: HandedThrough lags %v", wait, lag)
		}
	}
}

// A reader with a backlog seldom finds the ring empty: HandedThrough must
// follow the events it hands over all the same (else a flood's journeys are
// held until the correlator's bound evicts them), and never pass one still
// in the ring.
func TestReaderHandedThroughBacklog(t *testing.T) {
	// Each event a record of its own: the ring's order is the test's.
	tr := newBenchTracer(t, Config{RingSize: 1 << 20, NoBatch: true})
	const batch, flush = batchEvents, 5 * time.Millisecond
	rd, err := tr.NewReader(batch, flush)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	batches := make(chan []uint64) // each batch's event times
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- rd.Run(ctx, func(evs []Event) {
			ts := make([]uint64, len(evs))
			for i := range evs {
				ts[i] = evs[i].Time
			}
			batches <- ts
			<-release
		})
	}()
	defer func() {
		cancel()
		close(release)
		for range batches {
		}
	}()
	go func() {
		if err := <-done; err != nil {
			t.Error(err)
		}
		close(batches)
	}()
	produce := func() {
		t.Helper()
		if _, err := tr.tc.Ingress.Run(&ebpf.RunOptions{Data: benchFrame()}); err != nil {
			t.Fatal(err)
		}
	}

	produce()
	<-batches // held: the rest piles up in the ring
	// Two batches' worth, further apart than the slack.
	for range 2 * batch {
		time.Sleep(2 * flush)
		produce()
	}
	release <- struct{}{}
	first := <-batches // handed over; the second batch waits in the ring
	release <- struct{}{}
	second := <-batches // held by the handler
	if len(first) != batch || len(second) != batch {
		t.Fatalf("batches of %d and %d events, want %d each", len(first), len(second), batch)
	}
	h := rd.HandedThrough()
	if want := first[batch-1] - uint64(flush); h < want {
		t.Errorf("HandedThrough %d is %.1f ms before the last event handed over (%d): it waits for an empty ring",
			h, float64(want-h)/1e6, first[batch-1])
	}
	if h >= second[0] {
		t.Errorf("HandedThrough %d is past an event the handler holds (%d)", h, second[0])
	}
	release <- struct{}{}
}

// Now must be the clock the kernel stamps events with: CLOCK_MONOTONIC
// itself, not an estimate of it (the reader and the correlator compare
// their ages with it).
func TestNowIsClockMonotonic(t *testing.T) {
	sys := func() uint64 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		return uint64(ts.Nano())
	}
	for range 1000 {
		before := sys()
		n := Now()
		after := sys()
		if n < before || n > after {
			t.Fatalf("Now %d outside [%d, %d] of CLOCK_MONOTONIC", n, before, after)
		}
	}
}

// A batch goes to the ring by itself once the next event may not fit: a
// flood's records need no flush from user space.
func TestBatchFlushesWhenFull(t *testing.T) {
	// Every event whole (HeadersAfter 1 ns).
	tr := newBenchTracer(t, Config{RingSize: 1 << 20})
	if tr.batch == nil {
		t.Fatal("batching did not start on this kernel")
	}
	rd, err := ringbuf.NewReader(tr.maps.Events)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	ran := int(runIngress(t, tr, benchFrame(), 100))
	// A batch holds 15 whole events: it goes once the 16th cannot fit
	// after the 15th (in the room left, a head still would).
	perBatch := batchBytes / EventSize
	full := ran / perBatch
	st, _ := tr.Stats()
	if st.Events != uint64(full*perBatch) {
		t.Fatalf("%d events written before any flush, want %d batches of %d", st.Events, full, perBatch)
	}
	for i := range full {
		rd.SetDeadline(time.Now().Add(time.Second))
		r, err := rd.Read()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if len(r.RawSample) != perBatch*EventSize {
			t.Fatalf("record %d: %d bytes, want %d whole events", i, len(r.RawSample), perBatch)
		}
		evs := appendRecord(make([]Event, 0, batchEvents), r.RawSample)
		if len(evs) != perBatch || evs[0].Inner.Family != 4 || evs[perBatch-1].Inner.Family != 4 {
			t.Fatalf("record %d decoded to %d events (first family %d), want %d whole", i, len(evs), evs[0].Inner.Family, perBatch)
		}
	}
	tr.batch.flush(Now(), 0)
	if st, _ := tr.Stats(); st.Events != uint64(ran) || st.Lost != 0 {
		t.Fatalf("after the flush: %+v, want all %d written", st, ran)
	}
}

// Events wait in their CPU's batch (struct vx_batch) and reach the ring as
// one record when flushed: the first with the packet's headers, the rest
// heads. The reader hands over each event of it, in order, and the kernel
// counts each as written.
func TestBatchedEvents(t *testing.T) {
	tr := newBenchTracer(t, Config{RingSize: 1 << 20, HeadersAfter: time.Minute})
	rd, err := tr.NewReader(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	if tr.batch == nil {
		t.Fatal("batching did not start on this kernel")
	}
	// One skb for every run: the first starts a packet (a whole event),
	// the others are its heads.
	runs := int(runIngress(t, tr, benchFrame(), 5))
	if runs < 5 || runs >= batchBytes/EventSize {
		t.Fatalf("%d runs counted, want 5 or a few more, fewer than one batch holds", runs)
	}
	if f := rd.Fill(); f != 0 {
		t.Fatalf("before the flush the ring holds %.0f bytes, want none: the events wait in the batch", f*(1<<20))
	}
	if st, _ := tr.Stats(); st.Events != 0 {
		t.Fatalf("%d events counted written before the flush, want 0", st.Events)
	}
	tr.batch.flush(Now(), 0)
	if f, want := rd.Fill(), float64(8+EventSize+(runs-1)*EventHeadSize)/(1<<20); f != want {
		t.Fatalf("after the flush the ring holds %.0f bytes, want %.0f: the events in one record", f*(1<<20), want*(1<<20))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []Event
	if err := rd.Run(ctx, func(evs []Event) {
		if got = append(got, evs...); len(got) >= runs {
			cancel()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != runs {
		t.Fatalf("%d events read, want %d", len(got), runs)
	}
	for i, e := range got {
		if e.Skb != got[0].Skb || e.FP != got[0].FP || e.Hook != got[0].Hook {
			t.Errorf("event %d: skb %x fp %x hook %v, want the first event's %x %x %v", i, e.Skb, e.FP, e.Hook, got[0].Skb, got[0].FP, got[0].Hook)
		}
		if i > 0 && e.Time <= got[i-1].Time {
			t.Errorf("event %d stamped %d, not after event %d (%d)", i, e.Time, i-1, got[i-1].Time)
		}
		if heads := i > 0; heads != (e.Inner.Family == 0) {
			t.Errorf("event %d: inner family %d; only the first carries the headers", i, e.Inner.Family)
		}
	}
	if st, _ := tr.Stats(); st.Events != uint64(runs) || st.Lost != 0 {
		t.Errorf("stats %+v, want %d written and none lost", st, runs)
	}
}

// TestWakeupThreshold: while the reader is awake, the kernel wakes it each
// time the data queued in the ring grows past another WakeupBytes, and
// never in between. Wake-ups are watched as edges of an edge-triggered
// epoll on the ring: a record written without one adds data but no edge.
// Nothing reads the ring, so what is queued is all that was written.
func TestWakeupThreshold(t *testing.T) {
	const threshold = 4096
	tr := newBenchTracer(t, Config{NoBatch: true, WakeupBytes: threshold})
	rg, err := newRing(tr.maps.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rg.close()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(tr.maps.Events.FD())}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, tr.maps.Events.FD(), &ev); err != nil {
		t.Fatal(err)
	}
	woken := func(wait int) bool {
		evs := make([]unix.EpollEvent, 1)
		for {
			n, err := unix.EpollWait(ep, evs, wait)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			return n > 0
		}
	}
	woken(0) // an empty ring's edge, if any, from registering

	frame := benchFrame()
	wakes := 0
	for i := 0; i < 100; i++ {
		before := rg.available()
		if _, err := tr.tc.Ingress.Run(&ebpf.RunOptions{Data: frame}); err != nil {
			t.Fatal(err)
		}
		after := rg.available()
		if after == before {
			t.Fatalf("run %d wrote no record", i)
		}
		want := after/threshold != before/threshold
		if want {
			wakes++
		}
		// A wake-up reaches epoll through an irq_work: wait for one
		// that is due, and a little while for one that must not come.
		wait := 20
		if want {
			wait = 1000
		}
		if got := woken(wait); got != want {
			t.Fatalf("record %d (queued %d -> %d bytes): woken %v, want %v", i, before, after, got, want)
		}
	}
	if wakes < 3 {
		t.Fatalf("only %d wake-ups in 100 records: the test shows nothing", wakes)
	}
}
