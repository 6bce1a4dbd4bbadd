// Package session owns one running trace: it resolves the scope to
// namespaces and hops, starts the tracer, moves events from the ring-buffer
// reader to the correlator without ever blocking the reader, and hands out
// finished packets and counter snapshots. The CLI and the TUI both drive it.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
	"github.com/vxtrace/vxtrace/tracer"
)

// Options configure a session.
type Options struct {
	Tracer tracer.Config // NetNS is filled from Scope
	// Scope lists the namespaces to trace; empty means every namespace.
	Scope []topo.NetNS
	// ExtraNetNSDirs are searched for namespaces besides /run/netns and
	// Docker's default directory (e.g. a dockerd --exec-root).
	ExtraNetNSDirs []string
	Timeout        time.Duration // a journey unseen this long gets its verdict
	MaxJourneys    int
	QueueBatches   int // reader-to-correlator queue, in batches
	Log            *slog.Logger
	// Progress reports slow start-up steps; nil is quiet.
	Progress func(string)

	// Refresh is how often the hops are discovered again, so that a
	// restarted container's new veth is followed and a deleted interface
	// is marked gone. Zero means 2s; negative disables it.
	Refresh time.Duration
	// Rescope returns the namespaces in scope now (e.g. a container's new
	// namespace after a restart). Nil: the Scope given, or every namespace
	// when Scope is empty.
	Rescope func() ([]topo.NetNS, error)
	// OnChange is told about hops that appeared or went away. It runs on
	// the refresh goroutine.
	OnChange func(added, gone []topo.Hop)
}

// Session is one trace. Its methods are safe for concurrent use unless
// noted.
type Session struct {
	opts  Options
	log   *slog.Logger
	tr    *tracer.Tracer
	rd    *tracer.Reader
	names *tracer.Names

	mu   sync.Mutex // guards topo and corr
	topo *topo.Topology
	corr *journey.Correlator

	topoVersion atomic.Uint64 // bumped by every refresh that changed something
	queue       chan []tracer.Event
	free        chan []tracer.Event
	userLost    atomic.Uint64
	handTimer   *time.Timer // the reader goroutine's only
	newest      uint64      // the latest event correlated; the correlator goroutine's only
	// emit is Run's: the correlator goroutine's only. It has the packets
	// the correlator evicts too (see newCorrelator).
	emit      func(*journey.Packet)
	events    atomic.Uint64
	started   time.Time
	attachErr error
}

// Start discovers the hops in scope, loads and attaches the tracer, and
// opens the reader. Close undoes all of it.
func Start(ctx context.Context, o Options) (_ *Session, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.QueueBatches <= 0 {
		// 8k events: the ring is the buffer (~260k events of a flood,
		// most of them heads), the queue only smooths the hand-over.
		// Each queued batch is 40 KiB of Go heap, and 128 of them put
		// a 10-minute soak's peak RSS past ring + 64 MiB.
		o.QueueBatches = 32
	}
	progress := o.Progress
	if progress == nil {
		progress = func(string) {}
	}
	s := &Session{opts: o, log: o.Log, started: time.Now()}
	// s, not the result: a failed Start returns nil and still undoes
	// whatever it attached.
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	progress("discovering namespaces and hops")
	nss := o.Scope
	if len(nss) == 0 {
		nss, err = topo.ListNamespaces(o.ExtraNetNSDirs...)
		if err != nil {
			return nil, fmt.Errorf("listing network namespaces: %w", err)
		}
	}
	s.topo, err = topo.Discover(nss)
	if err != nil {
		return nil, fmt.Errorf("discovering hops: %w", err)
	}

	s.names, err = tracer.NewNames()
	if err != nil {
		return nil, err
	}

	cfg := o.Tracer
	cfg.Log = o.Log
	if cfg.HeadersAfter <= 0 {
		// Well inside the shortest silence after which the correlator
		// ends a journey, so that the next journey of a packet gets its
		// headers.
		cfg.HeadersAfter = min(journey.DefaultGrace, o.Timeout) / 2
	}
	cfg.NetNS = nil
	for _, ns := range o.Scope {
		cfg.NetNS = append(cfg.NetNS, ns.Inode)
	}
	progress("loading BPF programs")
	s.tr, err = tracer.New(cfg)
	if err != nil {
		return nil, err
	}
	progress("attaching to hops")
	if err := s.tr.AttachHops(s.tcHops()); err != nil {
		// A blind hop is shown, not fatal: the tracepoints still see it.
		s.attachErr = err
		o.Log.Warn("some hops have no TC probe", "err", err)
	}
	s.rd, err = s.tr.NewReader(0, 0)
	if err != nil {
		return nil, err
	}
	s.corr = s.newCorrelator(o)
	s.queue = make(chan []tracer.Event, o.QueueBatches)
	s.free = make(chan []tracer.Event, o.QueueBatches+2)
	return s, nil
}

// newCorrelator: a journey evicted at the correlator's bound is reported as
// it stands (the least recently seen: nearly always a finished packet
// waiting out its grace), not left out of the trace's packets and verdicts.
func (s *Session) newCorrelator(o Options) *journey.Correlator {
	return journey.New(journey.Options{Hops: s.topo, Namer: s.names, Timeout: o.Timeout, MaxJourneys: o.MaxJourneys,
		OnEvict: func(p *journey.Packet) {
			if s.emit != nil {
				s.emit(p)
			}
		}})
}

// tcHops are the hops worth a TC probe: every role on the overlay path.
// Other interfaces are still seen by the tracepoints. The returned slice
// aliases the topology, so AttachHops can mark blind hops.
func (s *Session) tcHops() []topo.Hop {
	return s.topo.Hops
}

// Features reports what the kernel allowed.
func (s *Session) Features() tracer.Features { return s.tr.Features() }

// AttachError is the error of hops whose TC probe could not attach.
func (s *Session) AttachError() error { return s.attachErr }

// Names resolves drop reasons and kernel symbols.
func (s *Session) Names() *tracer.Names { return s.names }

// Hops returns a copy of the known hops.
func (s *Session) Hops() []topo.Hop {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]topo.Hop(nil), s.topo.Hops...)
}

// Topology returns a copy of the topology, safe to use while the trace
// runs.
func (s *Session) Topology() *topo.Topology {
	s.mu.Lock()
	defer s.mu.Unlock()
	return topo.NewTopology(append([]topo.Hop(nil), s.topo.Hops...))
}

// Run reads events until ctx is done or stop returns true, calling emit for
// every packet that gets a verdict. emit runs on the correlator goroutine;
// the *Packet is only valid during the call. At the end every open journey
// is flushed through emit.
func (s *Session) Run(ctx context.Context, emit func(*journey.Packet) (stop bool)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	readErr := make(chan error, 1)
	go func() {
		readErr <- s.rd.RunHandOver(ctx, s.hand)
		close(s.queue)
	}()

	if s.opts.Refresh >= 0 {
		// Run must not return while a refresh still uses the tracer:
		// Close follows it.
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.refreshLoop(ctx)
		}()
		defer wg.Wait()
		defer cancel()
	}

	stopped := false
	emitted := 0
	wrap := func(p *journey.Packet) {
		// vxtrace runs on one P on small nodes (capProcs): a long expiry
		// of a flood's journeys would keep the reader from the ring until
		// the runtime preempts it (10 ms and more), so it yields now and
		// then.
		if emitted++; emitted%yieldEvery == 0 {
			runtime.Gosched()
		}
		if stopped {
			return
		}
		if emit(p) {
			stopped = true
			cancel()
		}
	}
	s.emit = wrap
	defer func() { s.emit = nil }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case batch, ok := <-s.queue:
			if !ok {
				s.mu.Lock()
				s.corr.Flush(wrap)
				s.mu.Unlock()
				if err := <-readErr; err != nil && !errors.Is(err, context.Canceled) {
					return err
				}
				return nil
			}
			s.mu.Lock()
			for i := range batch {
				s.corr.Add(&batch[i])
			}
			// Ring order is time order to within microseconds: the
			// batch's last event stands for its newest.
			if len(batch) > 0 {
				s.newest = max(s.newest, batch[len(batch)-1].Time)
			}
			s.mu.Unlock()
			s.events.Add(uint64(len(batch)))
			s.recycle(batch)
		case <-tick.C:
			s.mu.Lock()
			s.corr.Expire(s.expiryClock(), wrap)
			s.mu.Unlock()
		}
	}
}

// expiryClock is the time journeys are aged by: the wall clock (the events'
// clock) while the reader keeps up, and otherwise the time up to which every
// event has been correlated. A reader or correlator behind by more than a
// journey's grace would emit journeys whose next steps are still in the ring
// or the queue, and their packets would show as two, each half a path.
// Called on the correlator goroutine.
func (s *Session) expiryClock() uint64 {
	return expiryClock(s.rd.HandedThrough(), len(s.queue) > 0, s.newest, tracer.Now())
}

// expiryClock: every event before handed has been handed over by the reader;
// queued, some are still waiting in the queue, and newest is the latest
// event the correlator has seen. handed must be read before the queue's
// length: the reader fills the queue before it moves handed on.
func expiryClock(handed uint64, queued bool, newest, now uint64) uint64 {
	if queued {
		handed = min(handed, newest)
	}
	return min(handed, now)
}

func (s *Session) refreshLoop(ctx context.Context) {
	every := s.opts.Refresh
	if every == 0 {
		every = 2 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.refresh(); err != nil {
			s.log.Warn("refreshing hops", "err", err)
		}
	}
}

// refresh discovers the hops again and brings the tracer along: new hops
// get TC programs, new namespaces join the kernel's scope, and gone hops
// are marked (their tcx links went with the device).
func (s *Session) refresh() error {
	nss, err := s.currentScope()
	if err != nil {
		return err
	}
	// Only the refresh loop changes the topology, so it may read it
	// unlocked; the correlator, which reads it per event, waits only for
	// the merge.
	fresh, err := s.topo.Rediscover(nss...)
	if err != nil {
		return err
	}
	s.mu.Lock()
	ch := s.topo.Merge(fresh)
	if ch.Empty() {
		s.mu.Unlock()
		return nil
	}
	var added, gone []topo.Hop
	for _, h := range ch.Added {
		added = append(added, *h)
	}
	for _, h := range ch.Gone {
		gone = append(gone, *h)
	}
	s.mu.Unlock()

	var inodes []uint32
	for _, h := range added {
		inodes = append(inodes, h.NetNS.Inode)
	}
	if err := s.tr.AddNetNS(inodes...); err != nil {
		return err
	}
	// Gone hops free their TC counter slots before new devices come,
	// which may sit at a gone one's address.
	var goneKeys []topo.Key
	for _, h := range gone {
		goneKeys = append(goneKeys, h.Key())
	}
	if err := s.tr.ForgetHops(goneKeys); err != nil {
		s.log.Warn("freeing the counters of gone hops", "err", err)
	}
	if err := s.tr.AttachHops(added); err != nil {
		s.log.Warn("some new hops have no TC probe", "err", err)
		s.mu.Lock()
		for _, h := range added {
			if h.Blind {
				if th, ok := s.topo.Lookup(h.NetNS.Inode, h.Ifindex); ok {
					th.Blind = true
				}
			}
		}
		s.mu.Unlock()
	}
	s.topoVersion.Add(1)
	if s.opts.OnChange != nil {
		s.opts.OnChange(added, gone)
	}
	return nil
}

func (s *Session) currentScope() ([]topo.NetNS, error) {
	if s.opts.Rescope != nil {
		return s.opts.Rescope()
	}
	if len(s.opts.Scope) > 0 {
		return s.opts.Scope, nil
	}
	return topo.ListNamespaces(s.opts.ExtraNetNSDirs...)
}

// TopologyVersion changes whenever a refresh found hops added or gone.
func (s *Session) TopologyVersion() uint64 { return s.topoVersion.Load() }

// yieldEvery: journeys emitted between yields of the correlator (~1 ms of
// work under a flood).
const yieldEvery = 256

// handPoll: while the queue is full the reader looks this often at how full
// the kernel's ring is.
const handPoll = 5 * time.Millisecond

// handMaxFill: the reader waits for room in a full queue until the kernel's
// ring is this full. A correlator behind for a moment (its collector, or
// descheduled while softirqs take both CPUs of a flooded node) catches up
// meanwhile, and the ring, sized for this, holds what comes in: a batch
// given up here is lost as surely as one the kernel could not write, so
// the reader gives batches up only once the ring is nearly full (a fixed
// 50-ms wait gave them up while the ring had room, and so did a ring half
// full: 100k events lost in a 10-min soak, against none at 90 %). The
// reader never waits on a screen: the correlator does not.
const handMaxFill = 0.9

// keepWaiting is hand's policy: wait for room in the queue while the ring
// is below handMaxFill, and never longer than the whole ring takes to fill
// at any sane rate.
func keepWaiting(waited time.Duration, ringFill float64) bool {
	return ringFill < handMaxFill && waited < 2*time.Second
}

// hand runs on the reader goroutine. The correlator drains the queue until
// the reader closes it, even after a cancel, so the last batches of a trace
// are correlated too. The batch is queued as it is (the reader fills the
// buffer returned next); one the queue cannot take is counted lost and
// reused.
func (s *Session) hand(batch []tracer.Event) []tracer.Event {
	select {
	case s.queue <- batch:
		return s.spare(cap(batch))
	default:
	}
	if s.handTimer == nil {
		s.handTimer = time.NewTimer(handPoll)
	}
	start := time.Now()
	for keepWaiting(time.Since(start), s.rd.Fill()) {
		s.handTimer.Reset(handPoll)
		select {
		case s.queue <- batch:
			s.handTimer.Stop()
			return s.spare(cap(batch))
		case <-s.handTimer.C:
		}
	}
	s.userLost.Add(uint64(len(batch)))
	return batch[:0]
}

// spare is a buffer for the reader's next batch: one the correlator is done
// with, or a new one.
func (s *Session) spare(n int) []tracer.Event {
	select {
	case buf := <-s.free:
		return buf
	default:
		return make([]tracer.Event, 0, n)
	}
}

// recycle returns a batch buffer to the free list, or to the collector.
func (s *Session) recycle(buf []tracer.Event) {
	select {
	case s.free <- buf[:0]:
	default:
	}
}

// Lost returns events lost in the kernel (ring full) and in user space
// (queue full).
func (s *Session) Lost() (kernel, user uint64) {
	st, err := s.tr.Stats()
	if err == nil {
		kernel = st.Lost
	}
	return kernel, s.userLost.Load()
}

// Journeys returns the correlator's counters.
func (s *Session) Journeys() journey.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.corr.Stats()
}

// Events is the number of events correlated so far.
func (s *Session) Events() uint64 { return s.events.Load() }

// Counters reads the in-kernel per-hop counters.
func (s *Session) Counters() (map[topo.Key]tracer.HopCounters, map[tracer.DropKey]uint64, error) {
	hc, err := s.tr.HopCounters()
	if err != nil {
		return nil, nil, err
	}
	dc, err := s.tr.DropCounters()
	if err != nil {
		return nil, nil, err
	}
	return hc, dc, nil
}

// Tracer exposes the tracer for statistics.
func (s *Session) Tracer() *tracer.Tracer { return s.tr }

// Close detaches everything. Safe to call more than once.
func (s *Session) Close() error {
	var errs []error
	if s.rd != nil {
		errs = append(errs, s.rd.Close())
		s.rd = nil
	}
	if s.tr != nil {
		errs = append(errs, s.tr.Close())
		s.tr = nil
	}
	return errors.Join(errs...)
}
