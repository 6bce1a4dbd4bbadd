package main

import "testing"

func TestProcsFor(t *testing.T) {
	for _, c := range []struct{ cpus, want int }{{1, 1}, {2, 1}, {3, 1}, {4, 2}, {64, 2}} {
		if got := procsFor(c.cpus); got != c.want {
			t.Errorf("procsFor(%d) = %d, want %d", c.cpus, got, c.want)
		}
	}
}

func TestMemLimitFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live uint64
		want int64
	}{{0, 32 * mib}, {20 * mib, 32 * mib}, {25 * mib, 37 * mib}, {40 * mib, 52 * mib}, {500 * mib, 512 * mib}} {
		if got := memLimitFor(c.live); got != c.want {
			t.Errorf("memLimitFor(%d MiB) = %d MiB, want %d MiB", c.live/mib, got/mib, c.want/mib)
		}
	}
}
