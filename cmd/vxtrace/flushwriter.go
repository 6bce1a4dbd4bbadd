package main

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// flushWriter buffers output and flushes it on a period, so that a trace
// printing thousands of packets a second does not make a syscall for each,
// while a slow trace still shows each packet within the period.
type flushWriter struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

func newFlushWriter(w io.Writer, every time.Duration) *flushWriter {
	f := &flushWriter{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
				f.Flush()
			}
		}
	}()
	return f
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.w.Write(p)
}

func (f *flushWriter) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.w.Flush()
}

// Close stops the flusher and flushes what is left. Safe to call twice.
func (f *flushWriter) Close() error {
	select {
	case <-f.stop:
	default:
		close(f.stop)
		<-f.done
	}
	return f.Flush()
}
