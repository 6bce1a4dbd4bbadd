package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/vxtrace/vxtrace/lab"
)

// soakRun is P8: trace-all on UDP 64-byte traffic for o.soak, printing the
// tracer's RSS and CPU every 10 s. The Go heap of the tracer is not visible
// from outside the process; RSS bounds it.
func (r *runner) soakRun(ctx context.Context) error {
	t := &Tracer{}
	tr, err := r.startTracer(ctx, ModeP2, t)
	if err != nil {
		return err
	}
	defer tr.stop(syscall.SIGINT, 60*time.Second)
	c1, c2 := r.lab.NS(lab.RoleC1), r.lab.NS(lab.RoleC2)
	srv, err := r.procs.start(c2, false, "iperf3", "-s", "-1", "-p", strconv.Itoa(iperfPort))
	if err != nil {
		return err
	}
	defer srv.stop(syscall.SIGKILL, 5*time.Second)
	if err := waitListen(ctx, srv, iperfPort); err != nil {
		return err
	}
	secs := int(r.o.soak.Seconds())
	cl, err := r.procs.start(c1, false, "iperf3", "-c", r.dst, "-p", strconv.Itoa(iperfPort), "-t", strconv.Itoa(secs), "-u", "-b", "0", "-l", "64")
	if err != nil {
		return err
	}
	defer cl.stop(syscall.SIGKILL, 5*time.Second)
	fmt.Printf("bench: soak %v: trace-all, UDP 64 B\n%8s %10s %10s %8s\n", r.o.soak, "t", "RSS MiB", "HWM MiB", "CPU")
	start := time.Now()
	var first, last uint64
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
			fmt.Printf("%8s %10.1f %10.1f %7.1f%%\n", now.Sub(start).Truncate(time.Second), float64(rss)/1024, float64(hwm)/1024, cpu)
			// The first minute fills the ring, the maps and the pools;
			// growth is measured from there.
			if first == 0 && now.Sub(start) >= time.Minute {
				first = rss
			}
			last = rss
		}
	}
	if err := tr.stop(syscall.SIGINT, 60*time.Second); err != nil {
		return fmt.Errorf("vxtrace: %v", err)
	}
	if err := parseStats(tr.stderr.String(), t); err != nil {
		return err
	}
	fmt.Printf("bench: soak: events %d, lost %d kernel + %d user\n", t.Events, t.LostKernel, t.LostUser)
	if first > 0 {
		fmt.Printf("bench: soak: RSS %.1f MiB after 1 min, %.1f MiB at the end: growth %+.1f%% (P8: < 5%%)\n",
			float64(first)/1024, float64(last)/1024, 100*(float64(last)-float64(first))/float64(first))
	}
	if t.Events == 0 {
		fmt.Fprintln(os.Stderr, "bench: soak traced nothing")
		return errInvalid
	}
	return nil
}
