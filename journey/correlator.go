package journey

import (
	"slices"
	"strconv"
	"time"

	"github.com/vxtrace/vxtrace/topo"
	"github.com/vxtrace/vxtrace/tracer"
)

// Defaults for Options.
const (
	DefaultTimeout     = time.Second
	DefaultGrace       = 100 * time.Millisecond
	DefaultMaxJourneys = 16384
	DefaultMaxSteps    = 256
	// DefaultNeighWait: the kernel gives up resolving a next hop after
	// mcast_solicit probes retrans_time apart, 3 s by default, and only
	// then drops what waited.
	DefaultNeighWait = 5 * time.Second
)

// Options configure a Correlator. Zero values take the defaults.
type Options struct {
	Hops  HopResolver // nil: every interface is unknown
	Namer Namer       // nil: numeric drop reasons and locations

	// Timeout is how long a journey may go without an event before it is
	// emitted as it stands; a journey still without an outcome then is
	// vanished.
	Timeout time.Duration
	// Grace is how long a journey that already has an outcome (delivered,
	// dropped, left_node) waits for more events before it is emitted. It
	// absorbs events that other CPUs report late, and clones (bridge
	// floods) that are still moving, without holding every verdict for the
	// whole Timeout. Capped at Timeout.
	Grace time.Duration
	// NeighWait is how long a journey without an outcome may go without
	// an event when its latest step is a wait for the next hop's
	// link-layer address (ARP, NDP): the packet is parked in the kernel,
	// and its send or its drop comes when resolution ends. At least
	// Timeout.
	NeighWait time.Duration
	// MaxJourneys bounds the open journeys. Past it the least recently
	// seen journey is evicted: handed to OnEvict if set, else discarded.
	MaxJourneys int
	// MaxSteps bounds the steps of one journey; later events are counted
	// in Packet.EventsOmitted.
	MaxSteps int
	// OnEvict, if set, receives each evicted journey with its verdict
	// decided as if it had timed out. The same rule as for emit applies:
	// the *Packet is reused after the call returns.
	OnEvict func(*Packet)
}

// Stats are the correlator's counters.
type Stats struct {
	Open    int    // journeys waiting for more events
	Limit   int    // MaxJourneys
	Events  uint64 // events added
	Peak    int    // the most journeys open at once
	Emitted uint64 // packets emitted by Expire or Flush
	// Evicted: packets emitted early (to OnEvict, else discarded) because
	// MaxJourneys journeys were open.
	Evicted uint64
	// LateFrees: journeys of nothing but a free after use, which Expire
	// and Flush end without handing them to emit: the end of a packet
	// reported already, whose socket read it (or was closed) after the
	// grace period. Reported, each would be a packet that "vanished".
	LateFrees uint64
}

// journey is a Packet plus the bookkeeping that keeps Add free of
// allocations: intrusive list links and the storage Packet.Drop points to.
type journey struct {
	Packet
	// steps: the journey's sightings as kept until emit, which turns them
	// into Packet.Steps.
	steps    []step
	drop     Drop
	dropMono uint64 // time of the latest drop event
	dropCode uint32
	dropLoc  uint64
	hasDrop  bool
	// notJustFrees: a step other than a free after use was recorded (a
	// flag, not a scan of the steps on every emit).
	notJustFrees bool
	prev, next   *journey
	list         *jlist
	seq          uint64 // touch order; eviction takes the smallest
}

// jlist is a doubly linked list of journeys in touch order.
type jlist struct {
	head, tail *journey
	n          int
}

func (l *jlist) remove(j *journey) {
	if j.prev != nil {
		j.prev.next = j.next
	} else {
		l.head = j.next
	}
	if j.next != nil {
		j.next.prev = j.prev
	} else {
		l.tail = j.prev
	}
	j.prev, j.next, j.list = nil, nil, nil
	l.n--
}

func (l *jlist) push(j *journey) {
	j.list = l
	j.prev, j.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = j
	} else {
		l.head = j
	}
	l.tail = j
	l.n++
}

// Correlator groups events into per-packet journeys. It is not safe for
// concurrent use: one goroutine feeds it events and expires journeys.
type Correlator struct {
	opts    Options
	byFP    fpTable
	open    jlist // no outcome yet: emitted after Timeout
	settled jlist // has an outcome: emitted after Grace
	parked  jlist // no outcome, waits for a neighbour: after NeighWait
	free    []*journey
	made    int // journeys allocated: in the pool or open
	unknown map[topo.Key]string
	seq     uint64
	stats   Stats

	derived []derivedStep // deriveBridges' scratch
	out     []Step        // the emitted packet's Steps, reused

	// last is the journey of the latest event: a CPU's events reach the
	// reader together, and a packet's hops on one CPU follow each other,
	// so most events find their journey here without a probe of byFP (a
	// cache miss: a quarter of a flooded trace's Add).
	last *journey

	// Every event looks its hop up, and a map lookup was a tenth of a
	// flooded trace's CPU: a small cache answers first, emptied whenever
	// the resolver says its answers may have changed.
	versioned interface{ Version() uint64 }
	hopsAt    uint64
	hops      [hopCacheSize]hopCacheEntry
}

const hopCacheSize = 256

type hopCacheEntry struct {
	key topo.Key
	hop *topo.Hop
	ok  bool
	set bool
}

// maxUnknownNames bounds the cache of "if<N>" names, which exists so that
// events on unknown interfaces do not allocate.
const maxUnknownNames = 4096

// New returns a Correlator.
func New(opts Options) *Correlator {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	opts.Grace = min(opts.Grace, opts.Timeout)
	if opts.NeighWait <= 0 {
		opts.NeighWait = DefaultNeighWait
	}
	opts.NeighWait = max(opts.NeighWait, opts.Timeout)
	if opts.MaxJourneys <= 0 {
		opts.MaxJourneys = DefaultMaxJourneys
	}
	if opts.MaxSteps <= 0 {
		opts.MaxSteps = DefaultMaxSteps
	}
	versioned, _ := opts.Hops.(interface{ Version() uint64 })
	return &Correlator{
		opts:      opts,
		versioned: versioned,
		byFP:      newFPTable(opts.MaxJourneys),
		unknown:   make(map[topo.Key]string),
	}
}

// Stats returns the counters.
func (c *Correlator) Stats() Stats {
	s := c.stats
	s.Open = c.byFP.len()
	s.Limit = c.opts.MaxJourneys
	return s
}

// Add records one event.
func (c *Correlator) Add(ev *tracer.Event) {
	c.stats.Events++
	j := c.last
	if j == nil || j.ID != ev.FP {
		j = c.byFP.get(ev.FP)
	}
	if j == nil {
		if c.byFP.len() >= c.opts.MaxJourneys {
			c.evictOldest()
		}
		j = c.get()
		j.ID = ev.FP
		j.LastHop = -1
		j.First, j.Last = ev.Time, ev.Time
		c.byFP.put(ev.FP, j)
		c.stats.Peak = max(c.stats.Peak, c.byFP.len())
	}
	c.last = j
	if ev.Time > j.Last {
		j.Last = ev.Time
	}
	if j.Inner.Family == 0 && ev.Inner.Family != 0 {
		j.Inner = ev.Inner
		j.IPID = ev.IPID
	}
	if ev.Encap() {
		if !j.Encap {
			j.Encap, j.VNI = true, ev.VNI
		}
		// Only some records carry the headers (tracer.EventHeadSize).
		if j.Outer.Family == 0 {
			j.Outer = ev.Outer
		}
	}
	if ev.Hook == tracer.HookDrop && (!j.hasDrop || ev.Time >= j.dropMono) {
		j.hasDrop, j.dropMono, j.dropCode, j.dropLoc = true, ev.Time, ev.Reason, ev.Location
	}
	// Deciding a journey reads all its steps, for every event: a journey
	// without an outcome keeps none after a step that cannot give it one.
	decide := j.list != &c.open
	switch {
	case len(j.steps) < c.opts.MaxSteps:
		if mayDecide(ev.Hook, c.addStep(j, ev).where) {
			decide = true
		}
	case ev.Hook == tracer.HookDrop:
		// A packet that loops until the kernel drops it: the drop is the
		// step that matters, so it takes the place of the latest one.
		j.EventsOmitted++
		j.steps = j.steps[:len(j.steps)-1]
		c.addStep(j, ev)
		decide = true
	default:
		j.EventsOmitted++
	}
	// Only a neigh event parks a journey, and only a parked one can leave
	// the list because of it: no other event reads its last step for this.
	c.touch(j, decide, ev.Hook == tracer.HookNeigh || j.list == &c.parked)
}

// mayDecide says whether a step of hook h at a hop where (whereOf its
// kind) can give a journey that has no outcome one (see Decide): a drop, a
// consume, an inbound step (a delivery, or the one a consume follows), or
// an outbound one at a NIC. It reads the event's hook, not the step's Dir:
// comparing strings, every event, was 8 % of a flooded trace's CPU profile.
func mayDecide(h tracer.Hook, where uint8) bool {
	switch h {
	case tracer.HookDrop, tracer.HookConsume, tracer.HookRx, tracer.HookTCIngress:
		return true
	case tracer.HookTx, tracer.HookTCEgress:
		return where == atNIC
	}
	return false
}

// step is a Step as a journey keeps it until emit: no strings, 40 bytes
// where a Step is 96. A flooded trace holds thousands of journeys through
// their grace, long enough for their steps to leave the caches; emit then
// reads a third of the cache lines, and the pool is half the size.
type step struct {
	mono    uint64
	hop     *topo.Hop // nil: not a known hop
	netns   uint32
	ifindex uint32
	len     uint32
	vni     uint32
	hook    tracer.Hook
	encap   bool
	where   uint8   // atContainer, atNIC: what Decide asks of the hop's kind
	nh      [4]byte // HookNeigh: the next hop (in the padding)
}

const (
	atContainer = 1 << iota
	atNIC
)

// whereOf is what the verdict rule asks of a hop's kind, read once when a
// step is kept (not through its hop pointer on every event).
func whereOf(k topo.Kind) uint8 {
	switch k {
	case topo.KindContainer:
		return atContainer
	case topo.KindNIC:
		return atNIC
	}
	return 0
}

// addStep adds ev's step in time order and returns it (valid until the
// next change of j.steps).
func (c *Correlator) addStep(j *journey, ev *tracer.Event) *step {
	s := step{
		mono:    ev.Time,
		netns:   ev.NetNS,
		ifindex: ev.Ifindex,
		len:     ev.Len,
		hook:    ev.Hook,
		encap:   ev.Encap(),
	}
	if s.encap {
		s.vni = ev.VNI
	}
	if ev.Hook == tracer.HookNeigh {
		s.nh = tracer.NextHop4(ev.Location)
	}
	if ev.Hook != tracer.HookConsume {
		j.notJustFrees = true
	}
	if h, ok := c.lookup(ev.NetNS, ev.Ifindex); ok {
		s.hop, s.where = h, whereOf(h.Kind)
	}
	if ev.Time < j.First {
		j.First = ev.Time
	}

	// Events come per CPU, so a few arrive late: insertion sort from the
	// end is cheap because they are almost always in order already. Equal
	// times keep arrival order.
	j.steps = append(j.steps, s)
	i := len(j.steps) - 1
	for i > 0 && j.steps[i-1].mono > s.mono {
		i--
	}
	if i < len(j.steps)-1 {
		copy(j.steps[i+1:], j.steps[i:len(j.steps)-1])
		j.steps[i] = s
	}
	return &j.steps[i]
}

// settles says whether Decide gives the journey of steps an outcome (any
// verdict but vanished), read off the kept steps: a drop, a receive at a
// container, a consume right after a receive, or a last step (not a
// consume) out of an underlay NIC. Kept steps have no derived ones, which
// are added at emit and decide nothing (TestListFollowsDecide holds the two
// rules together).
func settles(steps []step) bool {
	for i := range steps {
		s := &steps[i]
		switch s.hook {
		case tracer.HookDrop:
			return true
		case tracer.HookRx, tracer.HookTCIngress:
			if s.where == atContainer {
				return true
			}
		case tracer.HookConsume:
			if i > 0 && (steps[i-1].hook == tracer.HookRx || steps[i-1].hook == tracer.HookTCIngress) {
				return true
			}
		}
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if s := &steps[i]; s.hook != tracer.HookConsume {
			return (s.hook == tracer.HookTx || s.hook == tracer.HookTCEgress) && s.where == atNIC
		}
	}
	return false
}

// stepsOf turns j's kept steps into the Steps of the packet emit hands
// on, in the correlator's reused buffer.
func (c *Correlator) stepsOf(j *journey) []Step {
	out := slices.Grow(c.out[:0], len(j.steps))[:len(j.steps)]
	for i := range j.steps {
		s := &j.steps[i]
		o := &out[i]
		*o = Step{
			Time:    s.mono - j.First,
			Mono:    s.mono,
			HopID:   -1,
			NetNS:   s.netns,
			Ifindex: s.ifindex,
			Dir:     s.hook.String(),
			Encap:   s.encap,
			VNI:     s.vni,
			Len:     s.len,
			NextHop: s.nh,
		}
		if h := s.hop; h != nil {
			o.HopID, o.Ifname, o.Kind = h.ID, h.Ifname, h.Kind
		} else {
			o.Ifname = c.unknownName(s.netns, s.ifindex)
		}
	}
	c.out = out
	return out
}

func (c *Correlator) lookup(netns, ifindex uint32) (*topo.Hop, bool) {
	if c.opts.Hops == nil {
		return nil, false
	}
	if c.versioned == nil {
		return c.opts.Hops.Lookup(netns, ifindex)
	}
	if v := c.versioned.Version(); v != c.hopsAt {
		clear(c.hops[:])
		c.hopsAt = v
	}
	k := topo.Key{NetNS: netns, Ifindex: ifindex}
	e := &c.hops[(netns*0x9E3779B1^ifindex*0x85EBCA77)>>24%hopCacheSize]
	if !e.set || e.key != k {
		h, ok := c.opts.Hops.Lookup(netns, ifindex)
		*e = hopCacheEntry{key: k, hop: h, ok: ok, set: true}
	}
	return e.hop, e.ok
}

// unknownName names an interface that is not a known hop. Ifindex 0 means
// the skb had no device (kfree_skb after the stack cleared it).
func (c *Correlator) unknownName(netns, ifindex uint32) string {
	if ifindex == 0 {
		return ""
	}
	k := topo.Key{NetNS: netns, Ifindex: ifindex}
	if n, ok := c.unknown[k]; ok {
		return n
	}
	n := "if" + strconv.FormatUint(uint64(ifindex), 10)
	if len(c.unknown) < maxUnknownNames {
		c.unknown[k] = n
	}
	return n
}

// touch moves j to the tail of the list its outcome puts it on; without
// decide, of the open list (where a new journey starts), or, with park, of
// the parked list while its latest step is a wait for a neighbour.
func (c *Correlator) touch(j *journey, decide, park bool) {
	want := &c.open
	if decide && settles(j.steps) {
		want = &c.settled
	} else if n := len(j.steps); park && n > 0 && j.steps[n-1].hook == tracer.HookNeigh {
		want = &c.parked
	}
	if j.list != nil {
		j.list.remove(j)
	}
	c.seq++
	j.seq = c.seq
	want.push(j)
}

// journeySlab: journeys are made this many at a time, with one array for
// their first steps. A flood's first second otherwise made tens of
// thousands of small objects, and the collector, run again and again as
// the heap grew, stalled the correlator until the ring overflowed.
const journeySlab = 256

// slabSteps: the steps each journey of a slab has room for without an
// allocation; a packet crossing a two-node overlay takes 11 to 13.
const slabSteps = 16

// get takes a journey from the pool. Once a quarter of MaxJourneys were
// made, the load is a flood, and every journey up to MaxJourneys is made at
// once: the pool otherwise grew in steps each time a burst opened more
// journeys than any before (two steps of ~5 MiB in a 5-minute soak), and a
// trace's memory never stopped growing until it reached the bound anyway.
func (c *Correlator) get() *journey {
	if len(c.free) == 0 {
		n := journeySlab
		if c.made+n >= c.opts.MaxJourneys/4 {
			n = max(n, c.opts.MaxJourneys-c.made)
		}
		js := make([]journey, n)
		steps := make([]step, n*slabSteps)
		for i := range js {
			js[i].steps = steps[i*slabSteps : i*slabSteps : (i+1)*slabSteps]
			c.free = append(c.free, &js[i])
		}
		c.made += n
	}
	n := len(c.free)
	j := c.free[n-1]
	c.free = c.free[:n-1]
	return j
}

func (c *Correlator) put(j *journey) {
	steps := j.steps[:0]
	*j = journey{}
	j.steps = steps
	c.free = append(c.free, j)
}

// Expire emits every journey that saw no event for Timeout (or for Grace
// once it has an outcome). now is CLOCK_MONOTONIC ns, the clock of
// tracer.Event.Time; when replaying recorded events pass the newest event
// time instead.
//
// emit must not keep the *Packet, or anything it points to, after it
// returns: the storage is reused for later journeys. Use Packet.Clone to
// keep one.
func (c *Correlator) Expire(now uint64, emit func(*Packet)) {
	c.expireList(&c.settled, now, uint64(c.opts.Grace), emit)
	c.expireList(&c.open, now, uint64(c.opts.Timeout), emit)
	c.expireList(&c.parked, now, uint64(c.opts.NeighWait), emit)
}

func (c *Correlator) expireList(l *jlist, now, after uint64, emit func(*Packet)) {
	// The list is in touch order, which follows event time closely enough
	// to stop at the first journey that is still live; one that was
	// touched later but is older by a few µs goes on the next call.
	for j := l.head; j != nil; {
		if now < j.Last || now-j.Last < after {
			return
		}
		next := j.next
		c.expired(j, emit)
		j = next
	}
}

// Flush emits every journey, in order of first sighting; the trace is over.
// The same rule as for Expire's emit applies.
func (c *Correlator) Flush(emit func(*Packet)) {
	all := make([]*journey, 0, c.byFP.len())
	for _, l := range []*jlist{&c.settled, &c.open, &c.parked} {
		for j := l.head; j != nil; j = j.next {
			all = append(all, j)
		}
	}
	slices.SortStableFunc(all, func(a, b *journey) int {
		switch {
		case a.First < b.First:
			return -1
		case a.First > b.First:
			return 1
		}
		return 0
	})
	for _, j := range all {
		c.expired(j, emit)
	}
}

func (c *Correlator) evictOldest() {
	var j *journey
	for _, h := range []*journey{c.open.head, c.settled.head, c.parked.head} {
		if h != nil && (j == nil || h.seq < j.seq) {
			j = h
		}
	}
	if j == nil {
		return
	}
	if c.emit(j, c.opts.OnEvict) {
		c.stats.Evicted++
	}
}

// expired emits j for Expire and Flush, and counts it.
func (c *Correlator) expired(j *journey, fn func(*Packet)) {
	if c.emit(j, fn) {
		c.stats.Emitted++
	}
}

// emit finishes j, hands it to fn (if any) and recycles it, and says
// whether it was a packet: a late free is handed to no one, only counted.
func (c *Correlator) emit(j *journey, fn func(*Packet)) (packet bool) {
	j.list.remove(j)
	c.byFP.delete(j.ID)
	if c.last == j {
		c.last = nil
	}
	packet = !j.lateFree()
	if !packet {
		c.stats.LateFrees++
	} else if fn != nil {
		c.finish(j)
		fn(&j.Packet)
	}
	c.put(j)
	return packet
}

// lateFree: the kernel reports the free of a packet only once a hop has
// seen it, so a journey that is nothing but frees after use has had its
// steps reported (or lost) in an earlier journey.
func (j *journey) lateFree() bool { return !j.notJustFrees && len(j.steps) > 0 }

// finish derives bridge steps and decides the verdict.
func (c *Correlator) finish(j *journey) {
	j.Steps = c.deriveBridges(c.stepsOf(j))
	c.out = j.Steps
	v, i := Decide(j.Steps)
	j.Verdict = v
	j.LastHop = -1
	if i >= 0 {
		j.LastHop = j.Steps[i].HopID
	}
	if v != Dropped {
		return
	}
	s := &j.Steps[dropSite(j.Steps, i)]
	j.LastHop = s.HopID
	j.drop = Drop{
		Code:   j.dropCode,
		HopID:  s.HopID,
		Ifname: s.Ifname,
		NetNS:  s.NetNS,
	}
	if c.opts.Namer != nil {
		j.drop.Reason = c.opts.Namer.DropReason(j.dropCode)
		j.drop.Location = c.opts.Namer.Symbol(j.dropLoc)
	} else {
		j.drop.Reason = "reason_" + strconv.FormatUint(uint64(j.dropCode), 10)
		j.drop.Location = "0x" + strconv.FormatUint(j.dropLoc, 16)
	}
	j.Drop = &j.drop
}

// deriveBridges inserts a "fwd" step at the bridge between a port's rx and
// the next tx on another device of the same namespace: the bridge's own
// device has no tracepoint when it forwards, so without this the path would
// jump from one port to the other.
func (c *Correlator) deriveBridges(steps []Step) []Step {
	if c.opts.Hops == nil {
		return steps
	}
	// Found first, then inserted in one pass from the end: one insertion
	// at a time moved the later steps once per bridge (a tenth of a
	// flooded trace's emit).
	c.derived = c.derived[:0]
	for i := 0; i < len(steps); i++ {
		k, fwd, ok := c.bridgeAfter(steps, i)
		if !ok {
			continue
		}
		c.derived = append(c.derived, derivedStep{at: k, step: fwd})
		// Go on from the step the bridge's goes before.
		i = k - 1
	}
	n := len(c.derived)
	if n == 0 {
		return steps
	}
	r := len(steps) - 1
	steps = slices.Grow(steps, n)[:len(steps)+n]
	w := len(steps) - 1
	for m := n - 1; m >= 0; m-- {
		d := &c.derived[m]
		for ; r >= d.at; r-- {
			steps[w] = steps[r]
			w--
		}
		steps[w] = d.step
		w--
	}
	return steps
}

// bridgeAfter says whether steps[i] is a bridge port's rx that the bridge
// forwarded, and if so the bridge's step and the index it goes before.
func (c *Correlator) bridgeAfter(steps []Step, i int) (int, Step, bool) {
	rx := &steps[i]
	if rx.Dir != DirRx || rx.HopID < 0 {
		return 0, Step{}, false
	}
	port, ok := c.lookup(rx.NetNS, rx.Ifindex)
	if !ok || port.Master == "" {
		return 0, Step{}, false
	}
	br, ok := c.opts.Hops.ByName(rx.NetNS, port.Master)
	if !ok {
		return 0, Step{}, false
	}
	// TC sightings sit around the tracepoints; look past them.
	j := i + 1
	for j < len(steps) && (steps[j].Dir == DirTCIn || steps[j].Dir == DirTCOut) {
		j++
	}
	if j == len(steps) {
		return 0, Step{}, false
	}
	tx := &steps[j]
	if tx.Dir != DirTx || tx.NetNS != rx.NetNS || tx.Ifindex == rx.Ifindex || tx.Ifindex == br.Ifindex {
		return 0, Step{}, false
	}
	if out, ok := c.lookup(tx.NetNS, tx.Ifindex); ok && out.Master != "" && out.Master != port.Master {
		return 0, Step{}, false
	}
	// The bridge forwards before the egress TC hook of the out port.
	k := j
	for k-1 > i && steps[k-1].Dir == DirTCOut && steps[k-1].NetNS == tx.NetNS && steps[k-1].Ifindex == tx.Ifindex {
		k--
	}
	return k, Step{
		Time:    steps[k].Time,
		Mono:    steps[k].Mono,
		HopID:   br.ID,
		Ifname:  br.Ifname,
		Kind:    br.Kind,
		NetNS:   br.NetNS.Inode,
		Ifindex: br.Ifindex,
		Dir:     DirFwd,
		Encap:   rx.Encap,
		VNI:     rx.VNI,
		Len:     tx.Len,
		Derived: true,
	}, true
}

// derivedStep is a step deriveBridges inserts before steps[at].
type derivedStep struct {
	at   int
	step Step
}

// Clone returns a deep copy of p that the caller may keep.
func (p *Packet) Clone() *Packet {
	q := *p
	q.Steps = slices.Clone(p.Steps)
	if p.Drop != nil {
		d := *p.Drop
		q.Drop = &d
	}
	return &q
}
