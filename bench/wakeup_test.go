package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// Baseline blocks on the line µs/packet = 5 + 6 x switches/packet; a mode
// 0.5 µs above it at a higher switch rate, another on it. The fit must find
// the line, and each mode's cost apart from its wake-ups.
func TestWakeupModel(t *testing.T) {
	// 1e6 delivered packets in a block of y seconds per µs per packet.
	block := func(m Mode, x, y float64) *Block {
		const n = 1_000_000
		return &Block{Round: 1, Proto: "udp", Mode: m, Value: 1, Unit: "pps",
			CtxSwitches: uint64(x * n), IPerf: IPerf{Packets: n + 500, LostPackets: 500, Seconds: y}}
	}
	line := func(x float64) float64 { return 5 + 6*x }
	res := &Results{Options: OptsOut{Protos: []string{"udp"}, Modes: []Mode{ModeP1, ModeEmpty}}}
	for _, x := range []float64{0.6, 0.9, 1.0, 1.2, 1.5} {
		res.Blocks = append(res.Blocks, block(ModeBaseline, x, line(x)))
	}
	res.Blocks = append(res.Blocks,
		block(ModeP1, 1.4, line(1.4)+0.5), block(ModeP1, 1.6, line(1.6)+0.5), block(ModeP1, 1.2, line(1.2)+0.4),
		block(ModeEmpty, 1.1, line(1.1)),
		// Neither a P4 block nor a failed one counts.
		&Block{Round: 1, Proto: "udp", Mode: ModeBaseline, Stats: true, CtxSwitches: 9e6, IPerf: IPerf{Packets: 1e6, Seconds: 1}},
		&Block{Round: 1, Proto: "udp", Mode: ModeBaseline, Error: "iperf3 failed", CtxSwitches: 9e6, IPerf: IPerf{Packets: 1e6, Seconds: 1}})
	summarize(res)
	m := res.Wakeups
	if m == nil {
		t.Fatal("no model from 5 baseline blocks")
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	if m.N != 5 || !near(m.Intercept, 5) || !near(m.Slope, 6) || !near(m.R2, 1) {
		t.Fatalf("fit %+v, want 5 blocks on 5 + 6x with R2 1", m)
	}
	if len(m.Modes) != 2 || m.Modes[0].Mode != ModeP1 || m.Modes[1].Mode != ModeEmpty {
		t.Fatalf("modes %+v, want p1 then empty", m.Modes)
	}
	// At the baseline's median switch rate (1.0) a packet takes 11 µs.
	if p1 := m.Modes[0]; p1.N != 3 || !near(p1.ExtraUs, 0.5) || !near(p1.RatioAtBaselineWakeups, 11/11.5) {
		t.Errorf("p1 %+v, want 0.5 µs above the line, ratio 11/11.5", p1)
	}
	if e := m.Modes[1]; !near(e.ExtraUs, 0) || !near(e.RatioAtBaselineWakeups, 1) {
		t.Errorf("empty %+v, want on the line, ratio 1", e)
	}
	var out bytes.Buffer
	printTable(&out, res)
	for _, w := range []string{"us per packet = 5.00 + 6.00 x switches per packet (R2 1.00)", "p1 +0.50 us (ratio 0.957), empty +0.00 us (ratio 1.000)"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("no %q in\n%s", w, out.String())
		}
	}

	// Too few baselines, or all at one switch rate: no line to fit.
	res.Blocks = res.Blocks[3:]
	if summarize(res); res.Wakeups != nil {
		t.Errorf("a model from 2 baseline blocks: %+v", res.Wakeups)
	}
	res.Blocks = []*Block{block(ModeBaseline, 1, 10), block(ModeBaseline, 1, 11), block(ModeBaseline, 1, 12), block(ModeP1, 1, 12)}
	if summarize(res); res.Wakeups != nil {
		t.Errorf("a model from baselines at one switch rate: %+v", res.Wakeups)
	}
}
