package tracer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Reader drains the event ring buffer in batches.
type Reader struct {
	ring  *ring
	state *ebpf.Map
	// ready is the ring's map, opened a second time in non-blocking mode
	// so that the Go runtime's poller waits on it: a goroutine parked
	// there costs nothing, where one blocked in epoll_wait holds a thread
	// that the runtime must hand its work away from (and back) at every
	// wake-up, tens of thousands of times a second under load.
	ready  *os.File
	flush  time.Duration
	batch  []Event
	size   int // batch's capacity, at least a record's events
	closed atomic.Bool
	// handed: the event clock up to which the ring has been read, the
	// later of when a drain last found it empty and the newest event handed
	// over; published once the batches read before it were handed over.
	handed atomic.Uint64
	// sleeping: the reader waits with no deadline, and the kernel wakes it
	// for every event.
	sleeping atomic.Bool
	// mu is held while Run reads the mapped ring, so that Close unmaps it
	// only once Run has let go.
	mu sync.Mutex
	// batcher flushes the CPUs' batches of events (nil: the kernel does
	// not batch). flushedAt: every event stamped before it has left the
	// batches for the ring; the reader's clocks do not pass it.
	batcher   *batcher
	flushedAt uint64
}

// While events flow the reader flushes the batches at most every
// flushEvery, those whose first event is flushAge old (younger ones its
// CPU's next packet flushes): an event waits for the reader at most about
// flushAge and a flush period. A sleeping reader gets every event at once.
// Both are well within HandedThrough's slack.
const (
	flushEvery = DefaultFlush / 2
	flushAge   = time.Millisecond
)

// noBatches is the first flushedAt: with no batches no event waits, and
// the clocks follow the ring alone.
func noBatches(b *batcher) uint64 {
	if b == nil {
		return math.MaxUint64
	}
	return 0
}

// idleFlushes: this many flush periods without an event, and the reader
// sleeps with no deadline until the kernel wakes it (an idle trace then
// costs no CPU: timed wake-ups every DefaultFlush cost a few % of a CPU).
const idleFlushes = 20

// DefaultFlush bounds how long an event may wait in the ring: the kernel
// wakes the reader only once WakeupBytes are queued, so the reader also
// wakes itself on this period.
const DefaultFlush = 5 * time.Millisecond

// NewReader opens the ring buffer. Close it to stop Run.
func (t *Tracer) NewReader(batchSize int, flush time.Duration) (*Reader, error) {
	rg, err := newRing(t.maps.Events)
	if err != nil {
		return nil, fmt.Errorf("opening ring buffer reader: %w", err)
	}
	fd, err := unix.FcntlInt(uintptr(t.maps.Events.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err == nil {
		err = unix.SetNonblock(fd, true)
		if err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		rg.close()
		return nil, fmt.Errorf("opening ring buffer for polling: %w", err)
	}
	if batchSize <= 0 {
		batchSize = 256
	}
	// A record holds up to a whole batch of events.
	batchSize = max(batchSize, batchEvents)
	if flush <= 0 {
		flush = DefaultFlush
	}
	return &Reader{ring: rg, state: t.maps.State, ready: os.NewFile(uintptr(fd), "vxtrace-events"),
		flush: flush, batch: make([]Event, 0, batchSize), size: batchSize, batcher: t.batch,
		flushedAt: noBatches(t.batch)}, nil
}

// Run reads until the reader is closed or ctx is done, calling handle with
// each batch. The batch is reused after handle returns: handle must copy
// what it keeps.
func (r *Reader) Run(ctx context.Context, handle func([]Event)) error {
	return r.RunHandOver(ctx, func(b []Event) []Event {
		handle(b)
		return b
	})
}

// RunHandOver is Run for a handler that keeps each batch it is given, and
// returns the buffer the reader fills next (nil, or one too small for the
// reader's batches: a new one). A handler that
// queues batches for another goroutine saves a copy per event (a flood's
// events carry pointers, so each copy also pays write barriers: 6 % of the
// tracer's CPU).
func (r *Reader) RunHandOver(ctx context.Context, handle func([]Event) []Event) error {
	conn, err := r.ready.SyscallConn()
	if err != nil {
		return fmt.Errorf("polling the ring buffer: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { r.Close() })
	defer stop()
	defer func() { _ = r.setAsleep(false) }()
	decode := func(raw []byte) { r.batch = appendRecord(r.batch, raw) }
	idle := 0
	for {
		// Batches are handed over with the ring unlocked: handle may
		// take its time, or close the reader.
		got := 0
		var at uint64
		for {
			r.mu.Lock()
			if r.closed.Load() {
				r.mu.Unlock()
				r.deliver(handle)
				return nil
			}
			at = Now()
			if r.batcher != nil && at-r.flushedAt >= uint64(flushEvery) {
				r.flushBatches(at, uint64(flushAge))
			}
			n, more, err := r.ring.drain(cap(r.batch)-len(r.batch), decode)
			r.mu.Unlock()
			got += n
			if err != nil {
				r.deliver(handle)
				return fmt.Errorf("reading ring buffer: %w", err)
			}
			if !more && len(r.batch) < cap(r.batch) {
				break
			}
			r.deliver(handle)
		}
		r.deliver(handle)
		r.handed.Store(max(r.handed.Load(), min(at, r.flushedAt)))
		if got == 0 {
			idle++
		} else {
			idle = 0
		}

		// Wait for the kernel's wake-up, or the flush period: events
		// below the wake-up threshold come without one.
		deadline := time.Now().Add(r.flush)
		asleep := false
		if idle >= idleFlushes {
			idle = 0
			// The kernel reads the flag before it decides on a
			// wake-up, so an event that comes after it is set wakes
			// the reader, and one that came before is in the ring
			// (available).
			if r.setAsleep(true) == nil {
				asleep, deadline = true, time.Time{}
				// From now on the kernel sends each event at
				// once: what waits in the batches goes first. (A
				// program that read the flag a moment before it
				// was set may still add one event to its batch:
				// its CPU's next event takes it along.)
				r.mu.Lock()
				if !r.closed.Load() {
					r.flushBatches(Now(), 0)
				}
				r.mu.Unlock()
				r.sleeping.Store(true)
			}
		}
		err = r.ready.SetReadDeadline(deadline)
		if err == nil {
			err = conn.Read(func(uintptr) bool { return r.available() > 0 })
		}
		if asleep {
			r.sleeping.Store(false)
			// Until this lands the kernel wakes the reader per
			// event: more wake-ups, never a stall.
			_ = r.setAsleep(false)
		}
		switch {
		case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
		case r.closed.Load():
			// Closed under the wait: the raw read says "use of
			// closed file" without a sentinel to match.
			r.deliver(handle)
			return nil
		default:
			return fmt.Errorf("polling the ring buffer: %w", err)
		}
	}
}

// HandedThrough is the event clock (Now) up to which every event is
// handed over: an event stamped before it is no longer in the ring (give or
// take slack). A correlator that expires journeys by the wall clock while
// the reader lags would emit a journey whose next steps are still unread.
// The ring holds events in the order they were stamped, to within the
// moment between a program's clock read and its reservation, so a reader
// that has a backlog has handed over everything before the last event it
// handed; it need not empty the ring first (a flood's reader seldom does,
// and journeys held until it did piled up past the correlator's bound).
// Events are stamped before the ring takes them, and one may be committed a
// moment after a drain went past its place, hence the slack (the flush
// period: far below any journey timeout). A sleeping reader has handed
// everything over but what the kernel is waking it for.
func (r *Reader) HandedThrough() uint64 {
	t := r.handed.Load()
	if r.sleeping.Load() {
		t = Now()
	}
	return max(t, uint64(r.flush)) - uint64(r.flush)
}

// flushBatches sends the CPUs' waiting batches older than minAge to the
// ring (r.mu held), and moves flushedAt to at, or to just before the
// oldest event it left in a batch.
func (r *Reader) flushBatches(at, minAge uint64) {
	if r.batcher == nil {
		return
	}
	if waiting := r.batcher.flush(at, minAge); waiting != 0 && waiting <= at {
		at = waiting - 1
	}
	r.flushedAt = max(r.flushedAt, at)
}

func (r *Reader) deliver(handle func([]Event) []Event) {
	if n := len(r.batch); n > 0 {
		// An event in a batch not yet flushed may be older than the
		// last one handed over.
		last := min(r.batch[n-1].Time, r.flushedAt) // the batch is the handler's until it returns
		next := handle(r.batch)
		// A record is decoded whole: the next buffer must hold the
		// largest (a batch of heads).
		if cap(next) < r.size {
			next = make([]Event, 0, r.size)
		}
		r.batch = next[:0]
		if last > r.handed.Load() {
			r.handed.Store(last)
		}
	}
}

// setAsleep tells the kernel whether to wake the reader for every event. If
// it fails, the reader stays on its timer.
func (r *Reader) setAsleep(v bool) error {
	var x uint64
	if v {
		x = 1
	}
	return r.state.Update(uint32(vxtraceVxStateVX_STATE_READER_ASLEEP), x, ebpf.UpdateAny)
}

// Fill is the fraction of the ring holding events not yet read (about 0
// once the reader is closed).
func (r *Reader) Fill() float64 {
	return float64(r.available()) / float64(r.ring.mask+1)
}

func (r *Reader) available() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		// Closed: let the poll return so that Run sees it.
		return 1
	}
	return r.ring.available()
}

// Close stops Run, and unmaps the ring once Run has let go of it.
func (r *Reader) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	err := r.ready.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(err, r.ring.close())
}
