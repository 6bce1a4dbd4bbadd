package ui

import (
	"strconv"
	"time"

	"github.com/vxtrace/vxtrace/topo"
)

// rateWindow is how far back a rate looks: long enough to smooth the jitter
// of 200ms ticks, short enough to follow a burst.
const rateWindow = time.Second

type sample struct {
	at time.Time
	v  uint64
}

// rateMeter turns a cumulative counter into a per-second rate from the
// deltas between polls.
type rateMeter struct {
	samples []sample
}

// observe records the counter's value and returns the rate over the last
// window. A counter that went backwards was reset (e.g. the trace was
// re-scoped): the history restarts from it.
func (m *rateMeter) observe(now time.Time, v uint64) float64 {
	if n := len(m.samples); n > 0 && v < m.samples[n-1].v {
		m.samples = m.samples[:0]
	}
	m.samples = append(m.samples, sample{now, v})
	// Keep the newest sample at least a window old as the base.
	cut := 0
	for i := range m.samples {
		if now.Sub(m.samples[i].at) >= rateWindow {
			cut = i
		}
	}
	m.samples = m.samples[cut:]
	base := m.samples[0]
	dt := now.Sub(base.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(v-base.v) / dt
}

// hopState is what the model remembers about one hop between ticks.
type hopState struct {
	seen     rateMeter
	rate     float64
	c        HopCounters
	lastDrop time.Time // last time the hop dropped something
}

// hopRow is one hop as the path pane draws it.
type hopRow struct {
	Hop        topo.Hop
	Label      string
	NetNS      string
	Rate       float64 // packets/s, rx+tx
	Total      uint64  // rx+tx
	Drops      uint64
	TopReason  string
	TopCount   uint64
	TCPackets  uint64
	Dropping   bool // dropped something within the hold time
	HasCounter bool // the kernel reported counters for this hop
}

func (r *hopRow) state() string {
	switch {
	case r.Hop.Gone:
		return "gone"
	case r.Dropping:
		return "DROPPING"
	case r.Hop.Blind:
		return "blind"
	}
	return ""
}

// pathChain is the hop chain as one line of nodes, ending with the remote
// VTEPs.
type pathNode struct {
	Text     string
	Dropping bool
	Blind    bool
	Gone     bool
	Peer     bool
}

func chainOf(rows []hopRow, peers []string) []pathNode {
	out := make([]pathNode, 0, len(rows)+1)
	for i := range rows {
		r := &rows[i]
		t := r.Label
		switch {
		case r.Hop.Gone:
			t += " (gone)"
		case r.Hop.Blind:
			t += " (blind)"
		}
		if r.Dropping {
			t += " ✗"
		}
		out = append(out, pathNode{Text: t, Dropping: r.Dropping, Blind: r.Hop.Blind, Gone: r.Hop.Gone})
	}
	if len(peers) > 0 {
		t := "[peer " + peers[0]
		if len(peers) > 1 {
			t += " +" + strconv.Itoa(len(peers)-1)
		}
		out = append(out, pathNode{Text: t + "]", Peer: true})
	}
	return out
}
