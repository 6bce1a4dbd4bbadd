package main

import (
	"os"
	"runtime/pprof"
	rtrace "runtime/trace"
)

// startProfiles starts what startExecTrace and VXTRACE_ALLOCS ask for.
func startProfiles() (stop func()) {
	stopTrace := startExecTrace()
	// VXTRACE_CPUPROFILE: a pprof CPU profile of the whole run.
	var cpu *os.File
	if path := os.Getenv("VXTRACE_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				cpu = f
			} else {
				f.Close()
			}
		}
	}
	return func() {
		stopTrace()
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		// VXTRACE_ALLOCS: a pprof profile of what the run allocated,
		// written at exit.
		if path := os.Getenv("VXTRACE_ALLOCS"); path != "" {
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}
	}
}

// startExecTrace writes the Go execution trace of the whole run to the file
// VXTRACE_EXEC_TRACE names (for `go tool trace`): where the reader or the
// correlator waited, and for whom. Undocumented in the usage on purpose:
// it is for whoever profiles vxtrace, not for tracing packets.
func startExecTrace() (stop func()) {
	path := os.Getenv("VXTRACE_EXEC_TRACE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		return func() {}
	}
	if err := rtrace.Start(f); err != nil {
		f.Close()
		return func() {}
	}
	return func() {
		rtrace.Stop()
		f.Close()
	}
}
