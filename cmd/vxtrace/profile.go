package main

import (
	"os"
	"runtime/pprof"
	rtrace "runtime/trace"
)

// startProfiles profiles the whole run for whoever profiles vxtrace itself
// (not in the usage: it is no way to trace packets), each into the file an
// environment variable names:
//
//	VXTRACE_CPUPROFILE  pprof CPU profile
//	VXTRACE_ALLOCS      pprof allocations, written at exit
//	VXTRACE_EXEC_TRACE  execution trace for `go tool trace`: where the
//	                    reader or the correlator waited, and for whom
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
