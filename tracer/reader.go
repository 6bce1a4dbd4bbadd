package tracer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// Reader drains the event ring buffer in batches.
type Reader struct {
	rd    *ringbuf.Reader
	state *ebpf.Map
	flush time.Duration
	batch []Event
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
	rd, err := ringbuf.NewReader(t.maps.Events)
	if err != nil {
		return nil, fmt.Errorf("opening ring buffer reader: %w", err)
	}
	if batchSize <= 0 {
		batchSize = 256
	}
	if flush <= 0 {
		flush = DefaultFlush
	}
	return &Reader{rd: rd, state: t.maps.State, flush: flush, batch: make([]Event, 0, batchSize)}, nil
}

// Run reads until the reader is closed or ctx is done, calling handle with
// each batch. The batch is reused after handle returns: handle must copy
// what it keeps.
func (r *Reader) Run(ctx context.Context, handle func([]Event)) error {
	var rec ringbuf.Record
	idle, asleep := 0, false
	flush := func() {
		if len(r.batch) > 0 {
			handle(r.batch)
			r.batch = r.batch[:0]
		}
		r.rd.SetDeadline(time.Now().Add(r.flush))
	}
	stop := context.AfterFunc(ctx, func() { r.rd.Close() })
	defer stop()
	defer func() { _ = r.setAsleep(false) }()
	r.rd.SetDeadline(time.Now().Add(r.flush))
	for {
		err := r.rd.ReadInto(&rec)
		switch {
		case err == nil:
			idle = 0
			if asleep {
				asleep = false
				// Until this lands the kernel wakes it per event:
				// more wake-ups, never a stall.
				_ = r.setAsleep(false)
				r.rd.SetDeadline(time.Now().Add(r.flush))
			}
			r.batch = r.batch[:len(r.batch)+1]
			if DecodeEvent(rec.RawSample, &r.batch[len(r.batch)-1]) != nil {
				r.batch = r.batch[:len(r.batch)-1]
			}
			if len(r.batch) == cap(r.batch) {
				flush()
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			if len(r.batch) == 0 {
				idle++
			}
			flush()
			if idle >= idleFlushes {
				// The kernel reads the flag before it decides on a
				// wake-up, so an event that comes after it is set
				// wakes the reader, and one that came before is in
				// AvailableBytes.
				if r.setAsleep(true) == nil {
					if r.rd.AvailableBytes() == 0 {
						asleep = true
						r.rd.SetDeadline(time.Time{})
					} else {
						_ = r.setAsleep(false)
					}
				}
				idle = 0
			}
		case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
			flush()
			return nil
		default:
			flush()
			return fmt.Errorf("reading ring buffer: %w", err)
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

// Close stops Run.
func (r *Reader) Close() error { return r.rd.Close() }
