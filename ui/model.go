package ui

import (
	"sync"
	"time"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
)

// How long things stay on screen.
const (
	defaultDropHold = 3 * time.Second  // a hop stays red this long after its last drop
	statusInfoTTL   = 10 * time.Second // "exported to …"
	statusErrTTL    = time.Minute      // "export failed: …"
)

type modelConfig struct {
	MaxFlows int
	MaxDrops int
	DropHold time.Duration
}

// model holds everything the views show. Packets come in from the feed
// goroutine, counters from the ticker, and the views only ever get copies
// (snapshots), so no lock is held while drawing.
type model struct {
	mu  sync.Mutex
	cfg modelConfig

	hops     []topo.Hop
	hopIdx   hopIndex
	hopState map[topo.Key]*hopState

	flows *flowTable
	drops *dropRing

	counters   Counters
	events     rateMeter
	eventsRate float64
	packets    uint64 // journeys received by the UI

	paused bool
	frozen *frozenView

	filter   string
	sortCol  sortCol
	sortDesc bool

	status    string
	statusErr bool
	statusAt  time.Time

	ended bool // the feed closed its channel
}

// frozenView is what the panes keep showing while paused.
type frozenView struct {
	at         time.Time
	hops       []hopRow
	topo       []topo.Hop
	flows      []flowRow
	drops      []dropRow
	evictions  uint64
	dropsTotal uint64
}

func newModel(cfg modelConfig) *model {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = 4096
	}
	if cfg.MaxDrops <= 0 {
		cfg.MaxDrops = 256
	}
	if cfg.DropHold <= 0 {
		cfg.DropHold = defaultDropHold
	}
	return &model{
		cfg:      cfg,
		hopIdx:   newHopIndex(nil),
		hopState: make(map[topo.Key]*hopState),
		flows:    newFlowTable(cfg.MaxFlows),
		drops:    newDropRing(cfg.MaxDrops),
		sortCol:  sortDrops,
		sortDesc: true,
	}
}

// addPackets files a batch of journeys. It runs on the feed goroutine under
// one lock acquisition per batch; nothing here waits on the screen.
func (m *model) addPackets(ps []*journey.Packet, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range ps {
		if p == nil {
			continue
		}
		m.packets++
		m.flows.add(p, now)
		if p.Verdict != journey.Dropped {
			continue
		}
		d := dropRow{At: now, HopID: -1, Flow: keyOf(p), Packet: p, Hop: "-", NetNS: "-"}
		if p.Drop != nil {
			d.HopID = p.Drop.HopID
			d.Hop = m.hopIdx.dropHop(p.Drop)
			d.NetNS = m.hopIdx.nsName(p.Drop.NetNS)
			d.Reason = p.Drop.Reason
			d.Location = p.Drop.Location
			if h, ok := m.hopIdx.byID[p.Drop.HopID]; ok && p.Drop.HopID >= 0 {
				m.state(h.Key()).lastDrop = now
			}
		}
		m.drops.push(d)
	}
}

func (m *model) state(k topo.Key) *hopState {
	st, ok := m.hopState[k]
	if !ok {
		st = &hopState{}
		m.hopState[k] = st
	}
	return st
}

// tick takes one poll of the hops and counters and updates the rates.
func (m *model) tick(now time.Time, hops []topo.Hop, c Counters) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hops = hops
	m.hopIdx = newHopIndex(hops)
	for i := range hops {
		k := hops[i].Key()
		hc := c.Hops[k]
		st, known := m.hopState[k]
		if !known {
			st = &hopState{}
			m.hopState[k] = st
		}
		st.rate = st.seen.observe(now, hc.RxSeen+hc.TxSeen)
		// Drops counted before the first poll happened at an unknown time:
		// only an increase seen by the UI turns a hop red.
		switch {
		case known && hc.Dropped > st.c.Dropped:
			st.lastDrop = now
		case known && hc.Dropped < st.c.Dropped && hc.Dropped > 0: // counters were reset
			st.lastDrop = now
		}
		st.c = hc
	}
	m.eventsRate = m.events.observe(now, c.Events)
	m.counters = c
	m.counters.Hops = nil // the hop states keep what the views need
}

func (m *model) hopRowsLocked(now time.Time) []hopRow {
	rows := make([]hopRow, 0, len(m.hops))
	for i := range m.hops {
		h := m.hops[i]
		r := hopRow{Hop: h, Label: hopLabel(&h), NetNS: nsName(h.NetNS)}
		if st, ok := m.hopState[h.Key()]; ok {
			r.Rate = st.rate
			r.Total = st.c.RxSeen + st.c.TxSeen
			r.Drops = st.c.Dropped
			r.TopReason = st.c.TopReason
			r.TopCount = st.c.TopReasonCount
			r.TCPackets = st.c.TCPackets
			r.Dropping = !st.lastDrop.IsZero() && now.Sub(st.lastDrop) < m.cfg.DropHold
		}
		rows = append(rows, r)
	}
	return rows
}

func (m *model) setPaused(p bool, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setPausedLocked(p, now)
}

func (m *model) setPausedLocked(p bool, now time.Time) {
	if p == m.paused {
		return
	}
	m.paused = p
	if !p {
		m.frozen = nil
		return
	}
	m.frozen = &frozenView{
		at:         now,
		hops:       m.hopRowsLocked(now),
		topo:       m.hops,
		flows:      m.flows.rows(),
		drops:      m.drops.rows(),
		evictions:  m.flows.evictions,
		dropsTotal: m.drops.total,
	}
}

func (m *model) togglePause(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setPausedLocked(!m.paused, now)
	return m.paused
}

func (m *model) setFilter(f string) {
	m.mu.Lock()
	m.filter = f
	m.mu.Unlock()
}

func (m *model) filterText() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.filter
}

// cycleSort moves to the next sort column, in its natural direction.
func (m *model) cycleSort() {
	m.mu.Lock()
	m.sortCol = (m.sortCol + 1) % numSortCols
	m.sortDesc = m.sortCol.naturalDesc()
	m.mu.Unlock()
}

func (m *model) reverseSort() {
	m.mu.Lock()
	m.sortDesc = !m.sortDesc
	m.mu.Unlock()
}

func (m *model) setStatus(msg string, isErr bool, now time.Time) {
	m.mu.Lock()
	m.status, m.statusErr, m.statusAt = msg, isErr, now
	m.mu.Unlock()
}

func (m *model) setEnded() {
	m.mu.Lock()
	m.ended = true
	m.mu.Unlock()
}

// latest returns the flow's latest packet as the views currently see it
// (frozen while paused).
func (m *model) latest(k flowKey) (*journey.Packet, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen != nil {
		for i := range m.frozen.flows {
			if m.frozen.flows[i].Key == k {
				return m.frozen.flows[i].Latest, true
			}
		}
		return nil, false
	}
	r, ok := m.flows.get(k)
	return r.Latest, ok
}

// snapshot is a consistent copy of what the views show at one tick.
type snapshot struct {
	At     time.Time
	ViewAt time.Time // what the ages in the panes are relative to: At, or when paused
	Paused bool
	Ended  bool

	Hops  []hopRow
	Chain []pathNode
	Topo  []topo.Hop

	Flows     []flowRow // filtered and sorted
	FlowsAll  int       // before filtering
	Evictions uint64

	Drops      []dropRow // filtered, newest first
	DropsAll   int       // in the ring, before filtering
	DropsTotal uint64    // every drop the UI received

	Counters   Counters // without Hops
	EventsRate float64
	Packets    uint64

	Filter   string
	SortCol  sortCol
	SortDesc bool

	Status    string
	StatusErr bool
}

// snapshot copies the model under the lock, then filters and sorts the
// copies without it, so the feed goroutine waits as little as possible.
func (m *model) snapshot(now time.Time) *snapshot {
	m.mu.Lock()
	s := &snapshot{
		At: now, ViewAt: now, Paused: m.paused, Ended: m.ended,
		Counters: m.counters, EventsRate: m.eventsRate, Packets: m.packets,
		Filter: m.filter, SortCol: m.sortCol, SortDesc: m.sortDesc,
	}
	var flows []flowRow
	var drops []dropRow
	if f := m.frozen; f != nil {
		s.Hops, s.Topo, flows, drops = f.hops, f.topo, f.flows, f.drops
		s.ViewAt = f.at
		s.Evictions, s.DropsTotal = f.evictions, f.dropsTotal
		// The frozen rows are shared by every paused snapshot: filter and
		// sort a copy.
		flows = append([]flowRow(nil), flows...)
	} else {
		s.Hops, s.Topo = m.hopRowsLocked(now), m.hops
		flows, drops = m.flows.rows(), m.drops.rows()
		s.Evictions, s.DropsTotal = m.flows.evictions, m.drops.total
	}
	if m.status != "" {
		ttl := statusInfoTTL
		if m.statusErr {
			ttl = statusErrTTL
		}
		if now.Sub(m.statusAt) < ttl {
			s.Status, s.StatusErr = m.status, m.statusErr
		}
	}
	m.mu.Unlock()

	s.Chain = chainOf(s.Hops, peersOf(s.Topo))
	s.FlowsAll, s.DropsAll = len(flows), len(drops)
	match := newMatcher(s.Filter)
	if !match.empty() {
		flows = filterRows(flows, func(r *flowRow) bool { return match.match(r.text()) })
		drops = filterRows(append([]dropRow(nil), drops...), func(r *dropRow) bool { return match.match(r.text()) })
	}
	sortFlows(flows, s.SortCol, s.SortDesc)
	s.Flows, s.Drops = flows, drops
	return s
}

// filterRows keeps the rows that match, in place.
func filterRows[T any](rows []T, keep func(*T) bool) []T {
	out := rows[:0]
	for i := range rows {
		if keep(&rows[i]) {
			out = append(out, rows[i])
		}
	}
	return out
}
