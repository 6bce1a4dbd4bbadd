package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vxtrace/vxtrace/tracer"
)

// soakRun is P8: trace-all on UDP 64-byte traffic for o.soak, printing the
// tracer's RSS, its Go heap (which the tracer writes to a file: it cannot be
// seen from outside the process) and CPU every 10 s.
func (r *runner) soakRun(ctx context.Context) error {
	t := &Tracer{}
	memFile := filepath.Join(r.tmp, "memstats")
	tr, err := r.startTracer(ctx, ModeP2, t, "VXTRACE_MEMSTATS="+memFile)
	if err != nil {
		return err
	}
	defer tr.stop(syscall.SIGINT, 60*time.Second)
	srv, err := r.iperfServer(ctx)
	if err != nil {
		return err
	}
	defer srv.stop(syscall.SIGKILL, 5*time.Second)
	cl, err := r.iperfClient("udp", int(r.o.soak.Seconds()))
	if err != nil {
		return err
	}
	defer cl.stop(syscall.SIGKILL, 5*time.Second)
	fmt.Printf("bench: soak %v: trace-all, UDP 64 B (heap: live after the last GC, all objects now, the next GC's goal; Go mapped: less what was returned)\n%8s %9s %9s %10s %9s %8s %9s %6s %7s\n",
		r.o.soak, "t", "RSS MiB", "HWM MiB", "live MiB", "objs MiB", "goal MiB", "Go MiB", "GCs", "CPU")
	start := time.Now()
	var first, last, peak uint64
	var firstM, lastM memStats
	prevC, _ := cpuTicks(tr.pid())
	prevT := start
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for !cl.exited() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-cl.done:
			continue
		case now := <-tick.C:
			rss, hwm := memKiB(tr.pid())
			c, err := cpuTicks(tr.pid())
			if err != nil {
				return fmt.Errorf("vxtrace exited during the soak: %s", lastLine(tr.stderr.String()))
			}
			cpu := 100 * float64(c-prevC) / clkTck / now.Sub(prevT).Seconds()
			prevC, prevT = c, now
			m, _ := readMemStats(memFile)
			fmt.Printf("%8s %9.1f %9.1f %10.1f %9.1f %8.1f %9.1f %6d %6.1f%%\n", now.Sub(start).Truncate(time.Second),
				float64(rss)/1024, float64(hwm)/1024, mib(m.Live), mib(m.Objects), mib(m.Goal), mib(m.Mapped), m.GCs, cpu)
			// The first minute fills the ring, the maps and the pools;
			// growth is measured from there.
			if first == 0 && now.Sub(start) >= time.Minute {
				first, firstM = rss, m
			}
			last, lastM = rss, m
			peak = max(peak, hwm)
		}
	}
	if err := finishTracer(tr, ModeP2, t); err != nil {
		return err
	}
	fmt.Printf("bench: soak: events %d, lost %d kernel + %d user; journeys: peak %d open, %d evicted at the bound\n",
		t.Events, t.LostKernel, t.LostUser, t.PeakOpen, t.Evicted)
	if first > 0 {
		growth := 100 * (float64(last) - float64(first)) / float64(first)
		fmt.Printf("bench: soak: RSS %.1f MiB after 1 min, %.1f MiB at the end: growth %+.1f%%\n",
			float64(first)/1024, float64(last)/1024, growth)
		limit := float64(tracer.DefaultRingSize>>20 + 64)
		verdict := "MISS"
		if float64(peak)/1024 <= limit && growth < 5 {
			verdict = "PASS"
		}
		fmt.Printf("bench: soak: P8 %s: RSS peak %.1f MiB (goal <= the ring's %d + 64 MiB), growth %+.1f%% (goal < 5%%)\n",
			verdict, float64(peak)/1024, tracer.DefaultRingSize>>20, growth)
		if firstM.Live > 0 {
			fmt.Printf("bench: soak: live heap %.1f MiB after 1 min, %.1f MiB at the end: growth %+.1f%%\n",
				mib(firstM.Live), mib(lastM.Live), 100*(float64(lastM.Live)-float64(firstM.Live))/float64(firstM.Live))
		}
	}
	return nil
}

// memStats is a snapshot the tracer writes under VXTRACE_MEMSTATS (bytes).
type memStats struct{ Live, Objects, Goal, Mapped, GCs uint64 }

// readMemStats parses the format cmd/vxtrace's memStatsLine writes.
func readMemStats(path string) (memStats, error) {
	var m memStats
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	_, err = fmt.Sscanf(string(b), "live=%d objects=%d goal=%d mapped=%d gcs=%d\n", &m.Live, &m.Objects, &m.Goal, &m.Mapped, &m.GCs)
	return m, err
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
