package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/vxtrace/vxtrace/docker"
	"github.com/vxtrace/vxtrace/tracer"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/report"
	"github.com/vxtrace/vxtrace/session"
	"github.com/vxtrace/vxtrace/topo"
	"github.com/vxtrace/vxtrace/ui"
)

const tuiUsage = `Usage: vxtrace [tui] [flags]

A live view of the overlay path: per-hop packets/s and drops with the
kernel's drop reason, the flows seen, the latest drops, and each packet's
journey. It takes the same scope and filter flags as 'vxtrace trace'.

Keys: arrows or j/k move, Enter details, Esc back, / filter, p pause,
c pick a container, e export JSON, ? help, q quit.`

func runTUI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f filterFlags
	fs := flag.NewFlagSet("tui", flag.ContinueOnError)
	f.register(fs)
	timeout := fs.Duration("timeout", time.Second, "a packet unseen this long gets its verdict (one waiting for ARP: 5s, or this if longer)")
	logFile := fs.String("log-file", "", "write logs to FILE (the screen never shows logs)")
	if err := parseFlags(fs, args, tuiUsage); err != nil {
		return err
	}
	tcfg, rfilter, err := f.tracerConfig()
	if err != nil {
		return err
	}
	scope, err := f.scope()
	if err != nil {
		return err
	}
	if err := preflight(); err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	if *logFile != "" {
		l, closeLog, err := newLogger(*logFile, stderr, true)
		if err != nil {
			return err
		}
		defer closeLog()
		log = l
	}
	progress := func(msg string) { fmt.Fprintf(stderr, "vxtrace: %s...\n", msg) }

	r := &tuiRunner{f: f, tcfg: tcfg, rfilter: rfilter, extra: scope, timeout: *timeout, log: log, swap: make(chan *tuiScope, 1)}
	first := &tuiScope{}
	if f.container != "" {
		if first.cs, err = resolveContainer(ctx, &f, progress); err != nil {
			return err
		}
	}
	if err := r.start(ctx, first, progress); err != nil {
		first.close()
		return err
	}
	feed := newLiveFeed(first.s, first.filter, describeScope(first.scope), first.cs)
	r.feed = feed

	var picker ui.ContainerPicker
	if eng, err := docker.Open(ctx, f.dockerHost); err == nil {
		defer eng.Close()
		picker = &tuiPicker{r: r, eng: eng, ctx: ctx}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- r.loop(ctx, first) }()
	uiErr := ui.Run(ctx, feed, ui.Options{Title: "vxtrace " + versionString(), Export: feed.export, Picker: picker, Logger: log})
	cancel()
	if err := <-runDone; err != nil && uiErr == nil {
		return err
	}
	return uiErr
}

// tuiScope is one session of the TUI and what it was started for; picking
// a container replaces it.
type tuiScope struct {
	cs     *containerScope
	scope  []topo.NetNS
	filter report.Filter
	s      *session.Session
}

func (t *tuiScope) close() {
	if t.s != nil {
		t.s.Close()
	}
	if t.cs != nil {
		t.cs.Close()
	}
}

// tuiRunner runs the TUI's sessions one after the other. The kernel's
// namespace filter is fixed when the programs load, so re-scoping to
// another container starts a new session and retires the old one.
type tuiRunner struct {
	f       filterFlags
	tcfg    tracer.Config
	rfilter report.Filter
	extra   []topo.NetNS // --netns
	timeout time.Duration
	log     *slog.Logger
	feed    *liveFeed

	mu     sync.Mutex
	cancel context.CancelFunc // ends the current session's Run
	swap   chan *tuiScope     // the next session, started by Pick
}

func (r *tuiRunner) start(ctx context.Context, t *tuiScope, progress func(string)) error {
	tcfg, filter := r.tcfg, r.rfilter
	var extraDirs []string
	t.scope, extraDirs = t.cs.apply(r.extra, &tcfg, &filter)
	filter.NetNS = t.scope
	t.filter = filter
	var err error
	t.s, err = session.Start(ctx, session.Options{
		Tracer: tcfg, Scope: t.scope, ExtraNetNSDirs: extraDirs, Timeout: r.timeout, Log: r.log, Progress: progress,
		Rescope: t.cs.rescope(ctx, r.extra),
		OnChange: func(added, gone []topo.Hop) {
			r.log.Info("hops changed", "added", len(added), "gone", len(gone))
		},
	})
	if err != nil {
		return err
	}
	for _, n := range t.s.Features().Notices {
		r.log.Info("notice", "msg", n)
	}
	return nil
}

func (r *tuiRunner) loop(ctx context.Context, cur *tuiScope) error {
	defer close(r.feed.packets)
	for {
		runCtx, cancel := context.WithCancel(ctx)
		r.mu.Lock()
		r.cancel = cancel
		r.mu.Unlock()
		err := cur.s.Run(runCtx, r.feed.emit)
		cancel()
		select {
		case next := <-r.swap:
			cur.close()
			cur = next
			r.feed.setSession(next.s, next.filter, describeScope(next.scope), next.cs)
			continue
		default:
		}
		cur.close()
		return err
	}
}

// tuiPicker implements the `c` key.
type tuiPicker struct {
	r   *tuiRunner
	eng docker.Engine
	ctx context.Context
}

func (p *tuiPicker) Containers(ctx context.Context) ([]string, error) {
	cs, err := p.eng.Containers(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range cs {
		if c.Running {
			names = append(names, c.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

func (p *tuiPicker) Pick(ctx context.Context, name string) error {
	f := p.r.f
	f.container = name
	next := &tuiScope{}
	var err error
	if next.cs, err = resolveContainer(p.ctx, &f, func(string) {}); err != nil {
		return err
	}
	if err := p.r.start(p.ctx, next, func(string) {}); err != nil {
		next.close()
		return err
	}
	p.r.swap <- next
	p.r.mu.Lock()
	if p.r.cancel != nil {
		p.r.cancel()
	}
	p.r.mu.Unlock()
	return nil
}

// liveFeed adapts a session to the UI's Feed. The session changes when the
// user picks another container; the packet channel stays.
type liveFeed struct {
	smu     sync.Mutex // guards s, scope, filter, hops
	s       *session.Session
	hops    []topo.Hop
	packets chan *journey.Packet
	dropped atomic.Uint64
	scope   string
	filter  string

	hopsVersion uint64 // Hops is polled from one goroutine only

	mu  sync.Mutex // guards rec
	rec *report.Recorder
}

func newLiveFeed(s *session.Session, f report.Filter, scope string, cs *containerScope) *liveFeed {
	lf := &liveFeed{packets: make(chan *journey.Packet, 4096)}
	lf.setSession(s, f, scope, cs)
	return lf
}

// setSession points the feed at a (new) session. The recorder starts over:
// an export describes one scope.
func (f *liveFeed) setSession(s *session.Session, filter report.Filter, scope string, cs *containerScope) {
	var hops []topo.Hop
	t := s.Topology()
	if cs != nil {
		for _, h := range cs.scope.Path {
			if hh, ok := t.ByName(h.NetNS.Inode, h.Ifname); ok {
				hops = append(hops, *hh)
			}
		}
	}
	if len(hops) == 0 {
		hops = pathOrder(t)
	}
	f.smu.Lock()
	f.s, f.scope, f.filter, f.hops = s, scope, describeFilter(filter), hops
	f.hopsVersion = s.TopologyVersion()
	f.smu.Unlock()
	f.mu.Lock()
	f.rec = report.NewRecorder(report.Options{Filter: filter, Namer: s.Names()})
	f.mu.Unlock()
}

func (f *liveFeed) session() *session.Session {
	f.smu.Lock()
	defer f.smu.Unlock()
	return f.s
}

// pathOrder lists hops the way a packet from the first container meets
// them: its node's chain outwards, the hops between nodes, then each other
// container's chain inwards.
func pathOrder(t *topo.Topology) []topo.Hop {
	var chains [][]*topo.Hop
	for i := range t.Hops {
		if t.Hops[i].Kind == topo.KindContainer {
			chains = append(chains, t.PathFromHop(&t.Hops[i]))
		}
	}
	seen := map[int]bool{}
	var out []topo.Hop
	add := func(h *topo.Hop) {
		if !seen[h.ID] {
			seen[h.ID] = true
			out = append(out, *h)
		}
	}
	if len(chains) > 0 {
		for _, h := range chains[0] {
			add(h)
		}
	}
	var rest []*topo.Hop
	for _, c := range chains[min(1, len(chains)):] {
		rest = append(rest, c...)
	}
	inChain := map[int]bool{}
	for _, h := range rest {
		inChain[h.ID] = true
	}
	for i := range t.Hops {
		if !seen[t.Hops[i].ID] && !inChain[t.Hops[i].ID] {
			add(&t.Hops[i])
		}
	}
	for _, c := range chains[min(1, len(chains)):] {
		for i := len(c) - 1; i >= 0; i-- {
			add(c[i])
		}
	}
	return out
}

// emit runs on the correlator goroutine. The UI owns what it receives, so
// it gets a clone; a full channel counts as lost, never as a wait.
func (f *liveFeed) emit(p *journey.Packet) bool {
	f.mu.Lock()
	f.rec.Add(p)
	f.mu.Unlock()
	select {
	case f.packets <- p.Clone():
	default:
		f.dropped.Add(1)
	}
	return false
}

// Hops follows the session's topology: a refresh may add or retire hops.
func (f *liveFeed) Hops() []topo.Hop {
	s := f.session()
	v := s.TopologyVersion()
	f.smu.Lock()
	defer f.smu.Unlock()
	if v != f.hopsVersion && s == f.s {
		f.hopsVersion = v
		f.hops = pathOrder(s.Topology())
	}
	return f.hops
}

func (f *liveFeed) Packets() <-chan *journey.Packet { return f.packets }

func (f *liveFeed) Counters() ui.Counters {
	f.smu.Lock()
	s, scope, filter := f.s, f.scope, f.filter
	f.smu.Unlock()
	c := ui.Counters{Hops: map[topo.Key]ui.HopCounters{}, Scope: scope, Filter: filter}
	hc, dc, err := s.Counters()
	if err == nil {
		for k, v := range hc {
			c.Hops[k] = ui.HopCounters{RxSeen: v.Rx, TxSeen: v.Tx, Dropped: v.Drops, TCPackets: v.TCIn + v.TCOut}
		}
		for k, n := range dc {
			h := c.Hops[k.Hop]
			if n > h.TopReasonCount {
				h.TopReasonCount = n
				h.TopReason = s.Names().DropReason(k.Reason)
			}
			c.Hops[k.Hop] = h
		}
	}
	if st, err := s.Tracer().Stats(); err == nil {
		c.Events = st.Events
	}
	kernel, user := s.Lost()
	c.LostKernel = kernel
	c.LostUser = user + f.dropped.Load()
	return c
}

// export writes what the trace has seen so far, in the same schema as
// `vxtrace trace --json`.
func (f *liveFeed) export(path string) error {
	s := f.session()
	hc, dc, err := s.Counters()
	if err != nil {
		return err
	}
	kernel, user := s.Lost()
	// Hops takes the session's lock, which emit holds while it takes
	// f.mu: read them first so the two locks are never nested this way.
	hops := s.Hops()
	f.mu.Lock()
	doc := f.rec.Doc(report.End{Hops: hops, Counts: hopCounts(hc, dc), Lost: report.LostEvents{Kernel: kernel, User: user + f.dropped.Load()}})
	f.mu.Unlock()
	return report.WriteFile(path, doc)
}
