package main

import (
	"math"
	"testing"
)

func tracerNs(ns ...uint64) Tracer {
	var t Tracer
	for _, n := range ns {
		t.Programs = append(t.Programs, ProgRun{Name: "p", Runs: 1, RunTimeNs: n})
	}
	return t
}

// TestCompareSummary: a build that costs 0.9 of the other, on a machine
// where the build attached first pays 1.1×, comes out at 0.9 per round,
// and the first-attached cost at 1.1, whichever order each run took.
func TestCompareSummary(t *testing.T) {
	const x = 1000000
	var runs []compareRun
	for round, bFactor := range []float64{0.9, 0.9, 1.2} {
		a, b := float64(x), bFactor*x
		// A first: A pays 1.1.
		runs = append(runs, compareRun{round: round, aFirst: true, a: tracerNs(uint64(a*1.1/2), uint64(a*1.1/2)), b: tracerNs(uint64(b))})
		// B first: B pays 1.1.
		runs = append(runs, compareRun{round: round, aFirst: false, a: tracerNs(uint64(a)), b: tracerNs(uint64(b * 1.1))})
	}
	// A run where A ran nothing says nothing.
	runs = append(runs, compareRun{round: 7, aFirst: true, b: tracerNs(5)})
	rounds, first := compareSummary(runs)
	want := []float64{0.9, 0.9, 1.2}
	if len(rounds) != len(want) {
		t.Fatalf("rounds %v, want %v", rounds, want)
	}
	for i := range want {
		if math.Abs(rounds[i]-want[i]) > 1e-4 {
			t.Errorf("round %d: B/A %.5f, want %.5f", i, rounds[i], want[i])
		}
	}
	if math.Abs(first-1.1) > 1e-4 {
		t.Errorf("first-attached cost %.5f, want 1.1", first)
	}
	if m := median(rounds); math.Abs(m-0.9) > 1e-4 {
		t.Errorf("median %.5f, want 0.9", m)
	}
}

func TestCheckCompare(t *testing.T) {
	for _, c := range []struct {
		o  options
		ok bool
	}{
		{options{}, true},
		{options{compare: "b", modes: []Mode{ModeP1}}, true},
		{options{compare: "b", modes: []Mode{ModeTcpdumpNIC}}, false},
		{options{compare: "b", modes: []Mode{ModeP2}, soak: 1}, false},
		{options{compare: "b", modes: []Mode{ModeP2}, from: "x.json"}, false},
	} {
		if err := checkCompare(&c.o); (err == nil) != c.ok {
			t.Errorf("%+v: error %v, want ok=%v", c.o, err, c.ok)
		}
	}
}
