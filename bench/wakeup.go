package main

import (
	"fmt"
	"io"
	"strings"
)

// WakeupModel separates what a mode costs each packet from what it costs
// in the receiver's wake-ups. 64-byte UDP on a small VM is bound by them:
// iperf3's receiver drains its socket and sleeps, and each wake-up is an
// interrupt between the CPUs that the sending CPU pays for. A few hundred
// ns more per packet on the sending CPU lets the receiver sleep more
// often, and the wake-ups then cost several times what the programs did.
// The baseline blocks spread over a range of switch rates (the host's
// noise), which a straight line fits; a mode's cost above that line at its
// own switch rate is what it costs per packet at an equal wake-up rate.
type WakeupModel struct {
	Proto     string        `json:"proto"`
	N         int           `json:"baseline_blocks"`
	Intercept float64       `json:"us_per_packet_without_switches"`
	Slope     float64       `json:"us_per_switch_per_packet"`
	R2        float64       `json:"r2"`
	Modes     []WakeupCosts `json:"modes"`
}

// WakeupCosts is one mode against the baseline's line.
type WakeupCosts struct {
	Mode Mode `json:"mode"`
	N    int  `json:"n"`
	// Median over the mode's blocks of its µs per packet less the line's
	// at the block's own switches per packet.
	ExtraUs float64 `json:"median_extra_us_per_packet"`
	// The baseline's µs per packet at its median switch rate, over that
	// plus ExtraUs: the ratio the mode would keep if it woke the receiver
	// no more often than the baseline does.
	RatioAtBaselineWakeups float64 `json:"ratio_at_baseline_wakeups"`
}

// wakeupPoint is one UDP block: switches and µs per delivered packet.
type wakeupPoint struct{ x, y float64 }

func blockWakeups(b *Block) (wakeupPoint, bool) {
	n := b.IPerf.Packets - b.IPerf.LostPackets
	if b.Stats || b.Error != "" || b.Proto != "udp" || n <= 0 || b.CtxSwitches == 0 || b.IPerf.Seconds <= 0 {
		return wakeupPoint{}, false
	}
	return wakeupPoint{float64(b.CtxSwitches) / float64(n), b.IPerf.Seconds * 1e6 / float64(n)}, true
}

// wakeupModel fits the baseline's UDP blocks by least squares. nil with
// fewer than 3 of them, or when their switch rates do not spread.
func wakeupModel(res *Results) *WakeupModel {
	byMode := map[Mode][]wakeupPoint{}
	for _, b := range res.Blocks {
		if p, ok := blockWakeups(b); ok {
			byMode[b.Mode] = append(byMode[b.Mode], p)
		}
	}
	base := byMode[ModeBaseline]
	if len(base) < 3 {
		return nil
	}
	var mx, my float64
	for _, p := range base {
		mx += p.x
		my += p.y
	}
	mx /= float64(len(base))
	my /= float64(len(base))
	var sxx, sxy, syy float64
	for _, p := range base {
		sxx += (p.x - mx) * (p.x - mx)
		sxy += (p.x - mx) * (p.y - my)
		syy += (p.y - my) * (p.y - my)
	}
	if sxx == 0 || syy == 0 {
		return nil
	}
	m := &WakeupModel{Proto: "udp", N: len(base), Slope: sxy / sxx}
	m.Intercept = my - m.Slope*mx
	m.R2 = sxy * sxy / (sxx * syy)
	xs := make([]float64, len(base))
	for i, p := range base {
		xs[i] = p.x
	}
	atBase := m.Intercept + m.Slope*median(xs)
	for _, mode := range res.Options.Modes {
		pts := byMode[mode]
		if len(pts) == 0 {
			continue
		}
		extra := make([]float64, len(pts))
		for i, p := range pts {
			extra[i] = p.y - (m.Intercept + m.Slope*p.x)
		}
		c := WakeupCosts{Mode: mode, N: len(pts), ExtraUs: median(extra)}
		if atBase+c.ExtraUs > 0 {
			c.RatioAtBaselineWakeups = atBase / (atBase + c.ExtraUs)
		}
		m.Modes = append(m.Modes, c)
	}
	return m
}

func printWakeupModel(w io.Writer, m *WakeupModel) {
	if m == nil {
		return
	}
	var parts []string
	for _, c := range m.Modes {
		parts = append(parts, fmt.Sprintf("%s %+.2f us (ratio %.3f)", c.Mode, c.ExtraUs, c.RatioAtBaselineWakeups))
	}
	fmt.Fprintf(w, "   wake-up model, %s: over the %d baseline blocks, us per packet = %.2f + %.2f x switches per packet (R2 %.2f);\n",
		m.Proto, m.N, m.Intercept, m.Slope, m.R2)
	fmt.Fprintf(w, "     each mode above that line at its own switch rate, median (the ratio it keeps at the baseline's wake-ups): %s\n",
		strings.Join(parts, ", "))
	fmt.Fprintln(w, "     (a mode whose own process is busy, p2 and tcpdump, adds its switches and keeps the receiver's CPU awake: rough for those)")
}
