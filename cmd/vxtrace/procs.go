package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
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

// The Go heap's soft limit. With the collector's default pacing the heap
// grows to twice what is live before a collection: under a flood that is
// ~25 MiB of journeys and batches, so ~50 MiB of heap, most of it garbage.
// A limit makes the collector run before that, and memHeadroom keeps it from
// running too often when a trace legitimately holds more (a big topology, a
// raised --max-packets): the limit stays that far above the live heap.
// Measured on a 2-CPU node tracing 700k events/s: a floor of 48 MiB took
// peak RSS from 90 to 70 MiB for ~3 % more of a CPU, with no event lost;
// once journeys shrank (live 39 -> 25 MiB) the heap took 8 minutes of a
// soak to fill that floor (RSS +4.6 %), and 32 MiB keeps it flat (+1.6 %,
// peak 69 -> 59 MiB) with a collection every ~20 s. GOMEMLIMIT in the
// environment wins.
const (
	memLimitFloor = 32 << 20
	memHeadroom   = 12 << 20
	memCheckEvery = time.Second
)

// capMemory sets the limit and keeps it memHeadroom above the live heap
// until the process exits.
func capMemory() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(memLimitFloor)
	go func() {
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		cur := int64(memLimitFloor)
		for range time.Tick(memCheckEvery) {
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return
			}
			if lim := memLimitFor(sample[0].Value.Uint64()); lim != cur {
				debug.SetMemoryLimit(lim)
				cur = lim
			}
		}
	}()
}

// memLimitFor: at least memLimitFloor, and memHeadroom above live.
func memLimitFor(live uint64) int64 {
	return max(memLimitFloor, int64(live)+memHeadroom)
}
