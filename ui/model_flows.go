package ui

import (
	"cmp"
	"container/list"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vxtrace/vxtrace/journey"
)

// flowKey is a flow: the inner 5-tuple plus the VNI. Directions are separate
// flows because drops usually hit one direction only.
type flowKey struct {
	Proto uint8
	Src   netip.Addr
	Dst   netip.Addr
	Sport uint16
	Dport uint16
	VNI   uint32
}

func (k flowKey) compare(o flowKey) int {
	if c := k.Src.Compare(o.Src); c != 0 {
		return c
	}
	if c := k.Dst.Compare(o.Dst); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Proto, o.Proto); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Sport, o.Sport); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Dport, o.Dport); c != 0 {
		return c
	}
	return cmp.Compare(k.VNI, o.VNI)
}

// keyOf derives the flow of a packet. For ICMP echo the tracer puts the
// sequence number in Dport; it changes every packet, so it is left out.
func keyOf(p *journey.Packet) flowKey {
	k := flowKey{Proto: p.Inner.Proto, Src: p.Inner.Src, Dst: p.Inner.Dst, VNI: p.VNI}
	switch {
	case hasPorts(k.Proto):
		k.Sport, k.Dport = p.Inner.Sport, p.Inner.Dport
	case isICMP(k.Proto):
		k.Sport = p.Inner.Sport
	}
	return k
}

// sortCol is a column the flows table can be sorted by.
type sortCol int

const (
	sortDrops sortCol = iota
	sortPackets
	sortSeen
	sortSrc
	sortDst
	numSortCols
)

// naturalDesc is the direction a column sorts in when chosen: counters and
// recency biggest first, addresses in order.
func (c sortCol) naturalDesc() bool { return c != sortSrc && c != sortDst }

func (c sortCol) String() string {
	switch c {
	case sortDrops:
		return "drops"
	case sortPackets:
		return "pkts"
	case sortSeen:
		return "age"
	case sortSrc:
		return "source"
	case sortDst:
		return "destination"
	}
	return fmt.Sprintf("col%d", int(c))
}

// flowRow is one flow as the views see it: a copy, safe to read while the
// model keeps counting.
type flowRow struct {
	Key        flowKey
	Packets    uint64
	Drops      uint64
	Verdict    journey.Verdict
	LastReason string // reason of the flow's latest drop
	First      time.Time
	Last       time.Time
	Latest     *journey.Packet // read-only
}

// text is what the display filter matches a flow against.
func (r *flowRow) text() string {
	k := r.Key
	return strings.Join([]string{
		protoName(k.Proto),
		endpoint(k.Src, k.Sport, k.Proto, true),
		endpoint(k.Dst, k.Dport, k.Proto, false),
		fmt.Sprintf("vni %d", k.VNI),
		string(r.Verdict), verdictText(r.Verdict), r.LastReason,
	}, " ")
}

// flowTable aggregates packets per flow, bounded by evicting the least
// recently seen flow.
type flowTable struct {
	max       int
	lru       *list.List // of *flowRow, most recent first
	byKey     map[flowKey]*list.Element
	evictions uint64
}

func newFlowTable(max int) *flowTable {
	return &flowTable{max: max, lru: list.New(), byKey: make(map[flowKey]*list.Element)}
}

func (t *flowTable) add(p *journey.Packet, now time.Time) {
	k := keyOf(p)
	var r *flowRow
	if e, ok := t.byKey[k]; ok {
		t.lru.MoveToFront(e)
		r = e.Value.(*flowRow)
	} else if t.lru.Len() >= t.max {
		// Recycle the least recently seen flow's entry: under flow churn
		// (a scan, many short connections) this path runs per packet and
		// must not allocate.
		e := t.lru.Back()
		r = e.Value.(*flowRow)
		delete(t.byKey, r.Key)
		t.evictions++
		*r = flowRow{Key: k, First: now}
		t.lru.MoveToFront(e)
		t.byKey[k] = e
	} else {
		r = &flowRow{Key: k, First: now}
		t.byKey[k] = t.lru.PushFront(r)
	}
	r.Packets++
	r.Verdict = p.Verdict
	if p.Verdict == journey.Dropped {
		r.Drops++
		if p.Drop != nil {
			r.LastReason = p.Drop.Reason
		}
	}
	r.Last = now
	r.Latest = p
}

func (t *flowTable) get(k flowKey) (flowRow, bool) {
	e, ok := t.byKey[k]
	if !ok {
		return flowRow{}, false
	}
	return *e.Value.(*flowRow), true
}

// rows copies every flow, most recently seen first.
func (t *flowTable) rows() []flowRow {
	out := make([]flowRow, 0, t.lru.Len())
	for e := t.lru.Front(); e != nil; e = e.Next() {
		out = append(out, *e.Value.(*flowRow))
	}
	return out
}

// sortFlows orders rows by col; ties fall back to a fixed order so rows do
// not swap places between ticks.
func sortFlows(rows []flowRow, col sortCol, desc bool) {
	slices.SortStableFunc(rows, func(a, b flowRow) int {
		var c int
		switch col {
		case sortDrops:
			c = cmp.Compare(a.Drops, b.Drops)
			if c == 0 {
				c = cmp.Compare(a.Packets, b.Packets)
			}
		case sortPackets:
			c = cmp.Compare(a.Packets, b.Packets)
		case sortSeen:
			c = a.Last.Compare(b.Last)
		case sortSrc:
			c = a.Key.Src.Compare(b.Key.Src)
			if c == 0 {
				c = cmp.Compare(a.Key.Sport, b.Key.Sport)
			}
		case sortDst:
			c = a.Key.Dst.Compare(b.Key.Dst)
			if c == 0 {
				c = cmp.Compare(a.Key.Dport, b.Key.Dport)
			}
		}
		if desc {
			c = -c
		}
		if c == 0 {
			c = a.Key.compare(b.Key)
		}
		return c
	})
}
