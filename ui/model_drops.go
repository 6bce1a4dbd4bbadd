package ui

import (
	"strings"
	"time"

	"github.com/vxtrace/vxtrace/journey"
)

// dropRow is one dropped packet in the drops pane.
type dropRow struct {
	At       time.Time
	Hop      string // hop label, or the interface name when the hop is unknown
	HopID    int
	NetNS    string
	Reason   string
	Location string
	Flow     flowKey
	Packet   *journey.Packet // read-only, for the detail view
}

func (r *dropRow) flowText() string {
	k := r.Flow
	return protoName(k.Proto) + " " + endpoint(k.Src, k.Sport, k.Proto, true) + " → " + endpoint(k.Dst, k.Dport, k.Proto, false)
}

func (r *dropRow) text() string {
	return strings.Join([]string{r.Hop, r.NetNS, r.Reason, r.Location, r.flowText()}, " ")
}

// dropRing keeps the latest drops; older ones are overwritten.
type dropRing struct {
	buf   []dropRow
	next  int
	n     int
	total uint64
}

func newDropRing(size int) *dropRing { return &dropRing{buf: make([]dropRow, size)} }

func (r *dropRing) push(d dropRow) {
	r.buf[r.next] = d
	r.next = (r.next + 1) % len(r.buf)
	if r.n < len(r.buf) {
		r.n++
	}
	r.total++
}

// rows copies the drops, newest first.
func (r *dropRing) rows() []dropRow {
	out := make([]dropRow, 0, r.n)
	for i := 1; i <= r.n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}
