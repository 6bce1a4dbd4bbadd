package main

import (
	"os"
	"runtime"
)

// capProcs keeps vxtrace's Go runtime to a share of the node it is
// debugging: its reader, correlator and GC would otherwise spread over every
// CPU and take them from the packets being traced. Measured on a 2-CPU node
// tracing 400k events/s: one P instead of two cut vxtrace's CPU from 49 % to
// 41 % of a CPU with the same events and no more loss. GOMAXPROCS in the
// environment wins.
func capProcs() {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	runtime.GOMAXPROCS(procsFor(runtime.GOMAXPROCS(0)))
}

// procsFor: half the CPUs the runtime would use, at least 1, at most 2.
func procsFor(cpus int) int { return max(1, min(2, cpus/2)) }
