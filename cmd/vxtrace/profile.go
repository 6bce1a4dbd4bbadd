package main

import (
	"fmt"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	rtrace "runtime/trace"
	"time"
)

// startProfiles profiles the whole run for whoever profiles vxtrace itself
// (not in the usage: it is no way to trace packets), each into the file an
// environment variable names:
//
//	VXTRACE_CPUPROFILE  pprof CPU profile
//	VXTRACE_ALLOCS      pprof allocations, written at exit
//	VXTRACE_EXEC_TRACE  execution trace for `go tool trace`: where the
//	                    reader or the correlator waited, and for whom
//	VXTRACE_MEMSTATS    the Go heap, rewritten every second (memStatsLine):
//	                    a soak sees what RSS is made of, which /proc cannot
//	                    tell from outside
//
// A profile that cannot start is skipped: it must never stop a trace.
func startProfiles() (stop func()) {
	var stops []func()
	if f := createFor("VXTRACE_CPUPROFILE"); f != nil {
		if pprof.StartCPUProfile(f) == nil {
			stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
		} else {
			f.Close()
		}
	}
	if f := createFor("VXTRACE_EXEC_TRACE"); f != nil {
		if rtrace.Start(f) == nil {
			stops = append(stops, func() { rtrace.Stop(); f.Close() })
		} else {
			f.Close()
		}
	}
	if path := os.Getenv("VXTRACE_MEMSTATS"); path != "" {
		done := make(chan struct{})
		go writeMemStats(path, time.Second, done)
		stops = append(stops, func() { close(done) })
	}
	return func() {
		for _, s := range stops {
			s()
		}
		if f := createFor("VXTRACE_ALLOCS"); f != nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
}

// createFor creates the file the environment variable names, or returns nil.
func createFor(env string) *os.File {
	path := os.Getenv(env)
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil
	}
	return f
}

// memStats are the runtime/metrics a soak reads: the heap live after the
// last collection, the heap's objects now (live and garbage), the goal the
// next collection aims for, all the runtime has mapped less what it gave
// back to the OS, and the collections so far.
var memStats = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/gc/heap/goal:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/gc/cycles/total:gc-cycles",
}

// memStatsLine is one snapshot, "live=N objects=N goal=N mapped=N gcs=N"
// (bytes; mapped less released).
func memStatsLine(s []metrics.Sample) string {
	v := make([]uint64, len(s))
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = s[i].Value.Uint64()
		}
	}
	return fmt.Sprintf("live=%d objects=%d goal=%d mapped=%d gcs=%d\n", v[0], v[1], v[2], v[3]-min(v[3], v[4]), v[5])
}

// writeMemStats rewrites path with a snapshot every period until done. The
// file is replaced by a rename, so a reader never sees half a line.
func writeMemStats(path string, period time.Duration, done <-chan struct{}) {
	s := make([]metrics.Sample, len(memStats))
	for i, n := range memStats {
		s[i].Name = n
	}
	t := time.NewTicker(period)
	defer t.Stop()
	tmp := path + ".tmp"
	for {
		metrics.Read(s)
		if os.WriteFile(tmp, []byte(memStatsLine(s)), 0o644) == nil {
			_ = os.Rename(tmp, path)
		}
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}
