package session

import "golang.org/x/sys/unix"

// monotonicNow is the clock bpf_ktime_get_ns reads, so that journey
// timeouts compare like with like.
func monotonicNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}
