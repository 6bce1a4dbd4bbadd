package ui

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/vxtrace/vxtrace/journey"
)

// feedBatch is how many queued packets the feed goroutine files under one
// lock acquisition.
const feedBatch = 512

// Run shows the TUI until ctx is cancelled or the user quits, and returns nil
// then. The terminal is restored whatever happens: if the UI panics, Run
// restores it and returns a *PanicError carrying the stack.
func Run(ctx context.Context, feed Feed, opts Options) error {
	return newTUI(feed, opts).run(ctx)
}

// tui wires the model, the widgets and the goroutines together.
type tui struct {
	feed Feed
	opts Options
	m    *model
	app  *tview.Application
	now  func() time.Time
	log  *slog.Logger
	w    widgets

	// Touched only on the event loop.
	ui uiState

	// What the detail view shows; the ticker reads it to render off the
	// event loop.
	detailMu sync.Mutex
	detail   detailTarget

	// Work that background goroutines (export, picker) want done on the
	// event loop; applied with the next tick's single redraw.
	postMu sync.Mutex
	posted []func()
	kick   chan struct{}

	ctx      context.Context
	cancel   context.CancelFunc
	loopDone chan struct{} // closed when the event loop has ended
	started  chan struct{} // closed after the first draw
	startOne sync.Once
	tickers  sync.WaitGroup
	workers  sync.WaitGroup

	panicOnce sync.Once
	panicErr  *PanicError

	// Key-to-draw accounting for tests and the latency benchmark.
	keysIn    atomic.Uint64 // keys seen by the input capture
	keysDrawn atomic.Uint64 // keysIn as of the latest finished draw
	drawHook  func()        // test hook, called after each draw on the event loop
	keyHook   func(*tcell.EventKey)
}

type detailTarget struct {
	open   bool
	byFlow bool
	flow   flowKey
	packet *journey.Packet // when opened from the drops pane, or the last one shown
}

func newTUI(feed Feed, opts Options) *tui {
	if opts.Title == "" {
		opts.Title = "vxtrace"
	}
	if opts.Tick <= 0 {
		opts.Tick = 200 * time.Millisecond
	}
	t := &tui{
		feed:     feed,
		opts:     opts,
		m:        newModel(modelConfig{MaxFlows: opts.MaxFlows, MaxDrops: opts.MaxDrops}),
		app:      tview.NewApplication(),
		now:      opts.clock,
		log:      opts.Logger,
		kick:     make(chan struct{}, 1),
		loopDone: make(chan struct{}),
		started:  make(chan struct{}),
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.log == nil {
		t.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	t.build()
	return t
}

func (t *tui) run(parent context.Context) (err error) {
	t.ctx, t.cancel = context.WithCancel(parent)
	defer t.cancel()

	if t.opts.Screen != nil {
		t.app.SetScreen(t.opts.Screen)
	}
	t.app.SetAfterDrawFunc(func(tcell.Screen) {
		t.keysDrawn.Store(t.keysIn.Load())
		t.startOne.Do(func() { close(t.started) })
		if t.drawHook != nil {
			t.drawHook()
		}
	})

	// A panic on the event loop unwinds through app.Run (tview finalizes the
	// screen on the way) and lands here.
	defer func() {
		if p := recover(); p != nil {
			t.app.Stop() // restores the terminal if tview did not
			t.recordPanic(p, debug.Stack())
			err = t.panicErr
			t.shutdown()
		}
	}()

	t.workers.Add(1)
	go t.consume()

	if !t.opts.manualTick {
		t.tickers.Add(1)
		go t.ticker()
	}

	// Quitting is ordered: stop the ticker first (its pending redraw needs
	// the event loop), then the application.
	t.workers.Add(1)
	go func() {
		defer t.workers.Done()
		<-t.ctx.Done()
		// Stopping before Run has a screen would make tview open the
		// real terminal.
		select {
		case <-t.started:
		case <-t.loopDone:
			return
		}
		t.tickers.Wait()
		t.app.Stop()
	}()

	runErr := t.app.Run()
	t.shutdown()
	if t.panicErr != nil {
		return t.panicErr
	}
	if runErr != nil {
		return fmt.Errorf("running the terminal UI: %w", runErr)
	}
	return nil
}

// shutdown ends every goroutine Run started and waits for them.
func (t *tui) shutdown() {
	select {
	case <-t.loopDone:
	default:
		close(t.loopDone)
	}
	t.cancel()
	t.tickers.Wait()
	t.workers.Wait()
}

// recordPanic keeps the first panic and stops everything.
func (t *tui) recordPanic(p any, stack []byte) {
	t.panicOnce.Do(func() {
		t.panicErr = &PanicError{Value: p, Stack: stack}
		t.log.Error("ui panic", "panic", fmt.Sprint(p), "stack", string(stack))
	})
	if t.cancel != nil {
		t.cancel()
	}
}

// guard turns a panic in a background goroutine into Run's error, after the
// terminal is restored, instead of killing the process with the screen in
// raw mode.
func (t *tui) guard() {
	if p := recover(); p != nil {
		t.recordPanic(p, debug.Stack())
	}
}

// consume moves packets from the feed into the model. It never waits on the
// screen: the model's lock is only ever held for short copies.
func (t *tui) consume() {
	defer t.workers.Done()
	defer t.guard()
	ch := t.feed.Packets()
	batch := make([]*journey.Packet, 0, feedBatch)
	for {
		select {
		case <-t.ctx.Done():
			return
		case p, ok := <-ch:
			if !ok {
				t.m.setEnded()
				return
			}
			batch = append(batch[:0], p)
		drain:
			for len(batch) < feedBatch {
				select {
				case p, ok := <-ch:
					if !ok {
						t.m.addPackets(batch, t.now())
						t.m.setEnded()
						return
					}
					batch = append(batch, p)
				default:
					break drain
				}
			}
			t.m.addPackets(batch, t.now())
			clear(batch) // let the model own the only references
		}
	}
}

func (t *tui) ticker() {
	defer t.tickers.Done()
	defer t.guard()
	tk := time.NewTicker(t.opts.Tick)
	defer tk.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tk.C:
		case <-t.kick:
		}
		t.refresh()
	}
}

// requestRefresh asks for a redraw now rather than at the next tick, e.g.
// after a pause or a filter change. It never blocks.
func (t *tui) requestRefresh() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// post queues f to run on the event loop with the next redraw.
func (t *tui) post(f func()) {
	t.postMu.Lock()
	t.posted = append(t.posted, f)
	t.postMu.Unlock()
	t.requestRefresh()
}

// refresh polls the feed, snapshots the model and renders everything that
// can be rendered off the event loop, then hands the result to the event
// loop in exactly one QueueUpdateDraw.
func (t *tui) refresh() {
	now := t.now()
	t.m.tick(now, t.feed.Hops(), t.feed.Counters())
	s := t.m.snapshot(now)
	det := t.renderDetail(s)

	t.postMu.Lock()
	posted := t.posted
	t.posted = nil
	t.postMu.Unlock()

	t.queueDraw(func() {
		for _, f := range posted {
			f()
		}
		t.apply(s, det)
	})
}

// queueDraw runs f on the event loop and redraws. It gives up if the event
// loop has ended, so a dead loop (after a panic) cannot hang the ticker.
func (t *tui) queueDraw(f func()) {
	done := make(chan struct{})
	go func() {
		t.app.QueueUpdateDraw(f)
		close(done)
	}()
	select {
	case <-done:
	case <-t.loopDone:
	}
}

// quit is the user asking to leave; it only starts the ordered shutdown, as
// key handlers must not block.
func (t *tui) quit() { t.cancel() }

// renderedDetail is the detail view's text, computed off the event loop.
type renderedDetail struct {
	ok     bool
	title  string
	lines  []string
	packet *journey.Packet
}

func (t *tui) renderDetail(s *snapshot) renderedDetail {
	t.detailMu.Lock()
	d := t.detail
	t.detailMu.Unlock()
	if !d.open {
		return renderedDetail{}
	}
	p := d.packet
	if d.byFlow {
		if latest, ok := t.m.latest(d.flow); ok {
			p = latest
		}
	}
	return renderDetailOf(p, s)
}

func renderDetailOf(p *journey.Packet, s *snapshot) renderedDetail {
	r := renderedDetail{ok: true, packet: p, title: "Journey"}
	if p == nil {
		r.lines = []string{"the flow is gone (evicted from the flows table)"}
		return r
	}
	k := keyOf(p)
	r.title = fmt.Sprintf("Journey: %s %s → %s", protoName(k.Proto),
		endpoint(k.Src, k.Sport, k.Proto, true), endpoint(k.Dst, k.Dport, k.Proto, false))
	r.lines = detailLines(p, s.Topo)
	return r
}
