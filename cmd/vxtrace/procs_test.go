package main

import "testing"

func TestProcsFor(t *testing.T) {
	for _, c := range []struct{ cpus, want int }{{1, 1}, {2, 1}, {3, 1}, {4, 2}, {64, 2}} {
		if got := procsFor(c.cpus); got != c.want {
			t.Errorf("procsFor(%d) = %d, want %d", c.cpus, got, c.want)
		}
	}
}
