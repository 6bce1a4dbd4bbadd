package tracer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// Reader drains the event ring buffer in batches.
type Reader struct {
	rd    *ringbuf.Reader
	flush time.Duration
	batch []Event
}

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
	return &Reader{rd: rd, flush: flush, batch: make([]Event, 0, batchSize)}, nil
}

// Run reads until the reader is closed or ctx is done, calling handle with
// each batch. The batch is reused after handle returns: handle must copy
// what it keeps.
func (r *Reader) Run(ctx context.Context, handle func([]Event)) error {
	var rec ringbuf.Record
	flush := func() {
		if len(r.batch) > 0 {
			handle(r.batch)
			r.batch = r.batch[:0]
		}
		r.rd.SetDeadline(time.Now().Add(r.flush))
	}
	stop := context.AfterFunc(ctx, func() { r.rd.Close() })
	defer stop()
	r.rd.SetDeadline(time.Now().Add(r.flush))
	for {
		err := r.rd.ReadInto(&rec)
		switch {
		case err == nil:
			r.batch = r.batch[:len(r.batch)+1]
			if DecodeEvent(rec.RawSample, &r.batch[len(r.batch)-1]) != nil {
				r.batch = r.batch[:len(r.batch)-1]
			}
			if len(r.batch) == cap(r.batch) {
				flush()
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			flush()
		case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
			flush()
			return nil
		default:
			flush()
			return fmt.Errorf("reading ring buffer: %w", err)
		}
	}
}

// Close stops Run.
func (r *Reader) Close() error { return r.rd.Close() }
