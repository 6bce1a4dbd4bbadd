package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
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
	timeout := fs.Duration("timeout", time.Second, "a packet unseen this long gets its verdict")
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

	var extraDirs []string
	var cs *containerScope
	if f.container != "" {
		if cs, err = resolveContainer(ctx, &f, progress); err != nil {
			return err
		}
		defer cs.Close()
		scope = append(cs.namespaces, scope...)
		extraDirs = cs.netnsDirs
		if cs.dst.IsValid() && !tcfg.Dst.IsValid() {
			tcfg.Dst = cs.dst
			rfilter.Dst = tcfg.Dst.String()
		}
	}
	s, err := session.Start(ctx, session.Options{
		Tracer: tcfg, Scope: scope, ExtraNetNSDirs: extraDirs, Timeout: *timeout, Log: log, Progress: progress,
		Rescope: cs.rescope(ctx, scope[len(cs.list()):]),
		OnChange: func(added, gone []topo.Hop) {
			log.Info("hops changed", "added", len(added), "gone", len(gone))
		},
	})
	if err != nil {
		return err
	}
	defer s.Close()
	for _, n := range s.Features().Notices {
		log.Info("notice", "msg", n)
	}

	rfilter.NetNS = scope
	feed := newLiveFeed(s, rfilter, describeScope(scope), cs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runDone := make(chan error, 1)
	go func() {
		runDone <- s.Run(ctx, feed.emit)
		close(feed.packets)
	}()
	uiErr := ui.Run(ctx, feed, ui.Options{Title: "vxtrace " + versionString(), Export: feed.export, Logger: log})
	cancel()
	if err := <-runDone; err != nil && uiErr == nil {
		return err
	}
	return uiErr
}

// liveFeed adapts a session to the UI's Feed.
type liveFeed struct {
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
	lf := &liveFeed{
		s:       s,
		packets: make(chan *journey.Packet, 4096),
		scope:   scope,
		filter:  describeFilter(f),
		rec:     report.NewRecorder(report.Options{Filter: f, Namer: s.Names()}),
	}
	if cs != nil && len(cs.scope.Path) > 0 {
		for _, h := range cs.scope.Path {
			if hh, ok := s.Topology().ByName(h.NetNS.Inode, h.Ifname); ok {
				lf.hops = append(lf.hops, *hh)
			}
		}
	}
	if len(lf.hops) == 0 {
		lf.hops = pathOrder(s.Topology())
	}
	return lf
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
	if v := f.s.TopologyVersion(); v != f.hopsVersion {
		f.hopsVersion = v
		f.hops = pathOrder(f.s.Topology())
	}
	return f.hops
}
func (f *liveFeed) Packets() <-chan *journey.Packet { return f.packets }

func (f *liveFeed) Counters() ui.Counters {
	c := ui.Counters{Hops: map[topo.Key]ui.HopCounters{}, Scope: f.scope, Filter: f.filter}
	hc, dc, err := f.s.Counters()
	if err == nil {
		for k, v := range hc {
			c.Hops[k] = ui.HopCounters{RxSeen: v.Rx, TxSeen: v.Tx, Dropped: v.Drops, TCPackets: v.TCIn + v.TCOut}
		}
		for k, n := range dc {
			h := c.Hops[k.Hop]
			if n > h.TopReasonCount {
				h.TopReasonCount = n
				h.TopReason = f.s.Names().DropReason(k.Reason)
			}
			c.Hops[k.Hop] = h
		}
	}
	if st, err := f.s.Tracer().Stats(); err == nil {
		c.Events = st.Events
	}
	kernel, user := f.s.Lost()
	c.LostKernel = kernel
	c.LostUser = user + f.dropped.Load()
	return c
}

// export writes what the trace has seen so far, in the same schema as
// `vxtrace trace --json`.
func (f *liveFeed) export(path string) error {
	hc, dc, err := f.s.Counters()
	if err != nil {
		return err
	}
	kernel, user := f.s.Lost()
	// Hops takes the session's lock, which emit holds while it takes
	// f.mu: read them first so the two locks are never nested this way.
	hops := f.s.Hops()
	f.mu.Lock()
	doc := f.rec.Doc(report.End{Hops: hops, Counts: hopCounts(hc, dc), Lost: report.LostEvents{Kernel: kernel, User: user + f.dropped.Load()}})
	f.mu.Unlock()
	return report.WriteFile(path, doc)
}
