package ui

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// harness runs the TUI on a simulation screen with a fake feed and a fake
// clock. Ticks are manual, so every screen is deterministic.
type harness struct {
	t     *testing.T
	tu    *tui
	sim   tcell.SimulationScreen
	feed  *fakeFeed
	clock *fakeClock
	done  chan error
	stop  context.CancelFunc
}

func startTUI(t *testing.T, w, h int, opts Options) *harness {
	t.Helper()
	hops := dockerHops()
	hs := &harness{t: t, sim: tcell.NewSimulationScreen("UTF-8"), feed: newFakeFeed(hops, 1024),
		clock: &fakeClock{t: t0}, done: make(chan error, 1)}
	opts.Screen = hs.sim
	opts.clock = hs.clock.now
	if !opts.manualTick && opts.Tick == 0 {
		opts.manualTick = true
	}
	hs.tu = newTUI(hs.feed, opts)
	ctx, cancel := context.WithCancel(context.Background())
	hs.stop = cancel
	go func() { hs.done <- hs.tu.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-hs.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	select {
	case <-hs.tu.started:
	case err := <-hs.done:
		t.Fatalf("Run ended early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no first draw")
	}
	hs.sim.SetSize(w, h)
	return hs
}

// refresh is one tick, finished (drawn) when it returns.
func (hs *harness) refresh() { hs.tu.refresh() }

// send queues packets and waits until the model has them.
func (hs *harness) send(ps ...*journey.Packet) {
	hs.t.Helper()
	hs.tu.m.mu.Lock()
	want := hs.tu.m.packets + uint64(len(ps))
	hs.tu.m.mu.Unlock()
	for _, p := range ps {
		hs.feed.ch <- p
	}
	waitFor(hs.t, "packets in the model", func() bool {
		hs.tu.m.mu.Lock()
		defer hs.tu.m.mu.Unlock()
		return hs.tu.m.packets >= want
	})
}

// press injects a key and returns once it has been handled and drawn.
func (hs *harness) press(k tcell.Key, r rune) {
	hs.t.Helper()
	n := hs.tu.keysIn.Load()
	hs.sim.InjectKey(k, r, tcell.ModNone)
	waitFor(hs.t, "key drawn", func() bool { return hs.tu.keysDrawn.Load() > n })
}

func (hs *harness) typeText(s string) {
	for _, r := range s {
		hs.press(tcell.KeyRune, r)
	}
}

// screen reads the simulation screen on the event loop (where it is drawn),
// one line per row, trailing blanks trimmed.
func (hs *harness) screen() string {
	var out string
	hs.tu.app.QueueUpdate(func() {
		cells, w, h := hs.sim.GetContents()
		var b strings.Builder
		for y := range h {
			var line strings.Builder
			for x := range w {
				c := cells[y*w+x]
				if len(c.Runes) == 0 {
					line.WriteByte(' ')
					continue
				}
				line.WriteString(string(c.Runes))
			}
			b.WriteString(strings.TrimRight(line.String(), " "))
			b.WriteByte('\n')
		}
		out = b.String()
	})
	return out
}

// styleAt finds text on screen and returns the style of its first cell.
func (hs *harness) styleAt(text string) (tcell.Style, bool) {
	var st tcell.Style
	var found bool
	hs.tu.app.QueueUpdate(func() {
		cells, w, h := hs.sim.GetContents()
		for y := range h {
			var line []rune
			for x := range w {
				r := ' '
				if rs := cells[y*w+x].Runes; len(rs) > 0 {
					r = rs[0]
				}
				line = append(line, r)
			}
			if i := strings.Index(string(line), text); i >= 0 {
				st, found = cells[y*w+len([]rune(string(line)[:i]))].Style, true
				return
			}
		}
	})
	return st, found
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (run with -update to accept):\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

// scenario brings the harness to the reference state: c1 pings c2 and the
// NIC drops the pings (NETFILTER_DROP), a UDP stream leaves the node, a TCP
// reply is delivered to c1, for one second of counters.
func (hs *harness) scenario() {
	hops := dockerHops()
	hs.refresh() // first poll: all counters at zero
	hs.clock.advance(time.Second)
	hs.feed.setCounters(func(c *Counters) {
		c.Scope = "container c1 (5 hops)"
		c.Filter = "vni 4097"
		c.Events = 1480
		c.LostKernel = 0
		c.LostUser = 3
		for i, h := range hops {
			hc := HopCounters{RxSeen: 120, TxSeen: 120, TCPackets: 240}
			if h.Kind == topo.KindNIC {
				hc = HopCounters{RxSeen: 60, TxSeen: 240, Dropped: 60, TopReason: "NETFILTER_DROP", TopReasonCount: 60, TCPackets: 300}
			}
			if i == 2 { // the bridge only forwards
				hc = HopCounters{RxSeen: 240}
			}
			c.Hops[h.Key()] = hc
		}
	})
	hs.send(udpLeft(hops, 40000), tcpDelivered(hops))
	hs.clock.advance(300 * time.Millisecond)
	hs.send(icmpDropped(hops, 1), icmpDropped(hops, 2), udpLeft(hops, 40000))
	hs.clock.advance(700 * time.Millisecond)
	hs.send(icmpDropped(hops, 3))
	hs.refresh()
}

const goldenW, goldenH = 120, 34

func TestScreenMain(t *testing.T) {
	hs := startTUI(t, goldenW, goldenH, Options{Export: func(string) error { return nil }})
	hs.scenario()
	scr := hs.screen()
	golden(t, "main", scr)
	for _, want := range []string{"eth0 (NIC) ✗", "NETFILTER_DROP (60)", "DROPPING", "nf_hook_slow+0xa5", "LIVE", "lost 0 kern 3 user"} {
		if !strings.Contains(scr, want) {
			t.Errorf("main screen lacks %q", want)
		}
	}
	// The dropping hop is red, the others are not.
	if st, ok := hs.styleAt("eth0 (NIC) ✗"); !ok || fg(st) != tcell.ColorRed {
		t.Errorf("dropping hop style = %v (found %v), want red", fg(st), ok)
	}
	if st, ok := hs.styleAt("vxlan0 (VNI 4097)"); !ok || fg(st) == tcell.ColorRed {
		t.Errorf("healthy hop style = %v (found %v), want not red", fg(st), ok)
	}
}

func TestScreenDetail(t *testing.T) {
	hs := startTUI(t, goldenW, goldenH, Options{})
	hs.scenario()
	hs.press(tcell.KeyEnter, 0) // the icmp flow is first: it drops
	golden(t, "detail", hs.screen())
	// It stays on the flow's latest packet as more arrive.
	hs.send(icmpDropped(dockerHops(), 9))
	hs.refresh()
	if scr := hs.screen(); !strings.Contains(scr, "seq 9") {
		t.Errorf("detail did not follow the latest packet:\n%s", scr)
	}
	hs.press(tcell.KeyEscape, 0)
	if scr := hs.screen(); !strings.Contains(scr, "Flows (3)") {
		t.Errorf("esc did not go back:\n%s", scr)
	}
}

func TestScreenHelp(t *testing.T) {
	hs := startTUI(t, goldenW, goldenH, Options{Export: func(string) error { return nil }, Picker: &fakePicker{}})
	hs.scenario()
	hs.press(tcell.KeyRune, '?')
	golden(t, "help", hs.screen())
	hs.press(tcell.KeyRune, '?')
	if scr := hs.screen(); !strings.Contains(scr, "Flows (3)") {
		t.Errorf("? did not close the help:\n%s", scr)
	}
}

func TestScreenFilter(t *testing.T) {
	hs := startTUI(t, goldenW, goldenH, Options{})
	hs.scenario()
	hs.press(tcell.KeyRune, '/')
	hs.typeText("udp")
	hs.refresh()
	if scr := hs.screen(); !strings.Contains(scr, "Flows (1 of 3)") || !strings.Contains(scr, "/udp") {
		t.Errorf("live filtering while typing failed:\n%s", scr)
	}
	hs.press(tcell.KeyEnter, 0)
	hs.refresh()
	golden(t, "filter", hs.screen())
	// Esc on the main view clears the filter.
	hs.press(tcell.KeyEscape, 0)
	hs.refresh()
	if scr := hs.screen(); !strings.Contains(scr, "Flows (3)") {
		t.Errorf("esc did not clear the filter:\n%s", scr)
	}
	// Esc in the prompt puts the previous filter back.
	hs.press(tcell.KeyRune, '/')
	hs.typeText("tcp")
	hs.press(tcell.KeyEscape, 0)
	hs.refresh()
	if got := hs.tu.m.filterText(); got != "" {
		t.Errorf("filter after esc in the prompt = %q, want empty", got)
	}
}

func TestScreenPaused(t *testing.T) {
	hs := startTUI(t, goldenW, goldenH, Options{})
	hs.scenario()
	hs.press(tcell.KeyRune, 'p')
	// New traffic while paused is counted but not shown.
	hs.clock.advance(time.Second)
	hs.send(tcpDelivered(dockerHops()), udpLeft(dockerHops(), 41000))
	hs.refresh()
	scr := hs.screen()
	golden(t, "paused", scr)
	if !strings.Contains(scr, "PAUSED") || strings.Contains(scr, ":41000") {
		t.Errorf("paused screen wrong:\n%s", scr)
	}
	hs.press(tcell.KeyRune, 'p')
	hs.refresh()
	if scr := hs.screen(); !strings.Contains(scr, "LIVE") || !strings.Contains(scr, ":41000") {
		t.Errorf("resume did not show the new flow:\n%s", scr)
	}
}

func TestScreenResize(t *testing.T) {
	hs := startTUI(t, goldenW, goldenH, Options{})
	hs.scenario()
	hs.sim.SetSize(80, 24)
	hs.refresh()
	scr := hs.screen()
	golden(t, "small", scr)
	lines := strings.Split(strings.TrimRight(scr, "\n"), "\n")
	if len(lines) != 24 {
		t.Fatalf("%d lines after resize, want 24", len(lines))
	}
	for _, l := range lines {
		if n := len([]rune(l)); n > 80 {
			t.Fatalf("line wider than the screen (%d): %q", n, l)
		}
	}
}

func TestKeysMove(t *testing.T) {
	hs := startTUI(t, goldenW, goldenH, Options{})
	hs.scenario()
	selected := func() flowKey {
		var k flowKey
		hs.tu.app.QueueUpdate(func() { k = hs.tu.ui.selFlow })
		return k
	}
	first := selected()
	hs.press(tcell.KeyRune, 'j')
	second := selected()
	hs.press(tcell.KeyDown, 0)
	third := selected()
	if first == second || second == third || first.Proto != 1 || third.Proto != 6 {
		t.Fatalf("j/down did not move: %v %v %v", first, second, third)
	}
	hs.press(tcell.KeyRune, 'k')
	if selected() != second {
		t.Fatal("k did not move up")
	}
	// The selection follows its flow when the order changes.
	hs.press(tcell.KeyRune, 's') // by packets: the udp flow (3 packets) first
	hs.refresh()
	if selected() != second {
		t.Fatal("selection jumped to another flow after a re-sort")
	}
	hs.press(tcell.KeyEnter, 0)
	if scr := hs.screen(); !strings.Contains(scr, "Journey: udp 10.0.1.3:40000 → 10.0.1.4:5201") {
		t.Fatalf("enter did not open the selected flow:\n%s", scr)
	}
	hs.press(tcell.KeyEscape, 0)
	// Tab to the drops pane, Enter opens the dropped packet.
	hs.press(tcell.KeyTab, 0)
	hs.press(tcell.KeyEnter, 0)
	if scr := hs.screen(); !strings.Contains(scr, "verdict  DROPPED") || !strings.Contains(scr, "seq 3") {
		t.Fatalf("enter on a drop did not open it:\n%s", scr)
	}
}

func TestQuitKeys(t *testing.T) {
	for _, k := range []struct {
		name string
		key  tcell.Key
		r    rune
	}{{"q", tcell.KeyRune, 'q'}, {"ctrl-c", tcell.KeyCtrlC, 0}} {
		t.Run(k.name, func(t *testing.T) {
			hs := startTUI(t, 80, 24, Options{})
			hs.scenario()
			hs.sim.InjectKey(k.key, k.r, tcell.ModNone)
			select {
			case err := <-hs.done:
				if err != nil {
					t.Fatalf("Run = %v", err)
				}
				hs.done <- nil // for the cleanup
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return")
			}
			if w, h := hs.sim.Size(); w != 0 || h != 0 {
				t.Errorf("screen not finalized: %dx%d", w, h)
			}
		})
	}
}

func TestContextCancelReturns(t *testing.T) {
	// Real ticker this time.
	hs := startTUI(t, 80, 24, Options{Tick: 10 * time.Millisecond})
	hs.send(icmpDropped(dockerHops(), 1))
	waitFor(t, "the ticker to draw the flow", func() bool { return strings.Contains(hs.screen(), "icmp") })
	hs.stop()
	select {
	case err := <-hs.done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		hs.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestFeedClosed(t *testing.T) {
	hs := startTUI(t, 80, 24, Options{})
	hs.send(udpLeft(dockerHops(), 1))
	close(hs.feed.ch)
	waitFor(t, "ended", func() bool { return hs.tu.m.snapshot(t0).Ended })
	hs.refresh()
	if scr := hs.screen(); !strings.Contains(scr, "ENDED") || !strings.Contains(scr, "Flows (1)") {
		t.Errorf("closed feed:\n%s", scr)
	}
}

type exportRec struct {
	mu    sync.Mutex
	paths []string
	err   error
}

func (e *exportRec) export(path string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.paths = append(e.paths, path)
	return e.err
}

func (e *exportRec) calls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.paths...)
}

func TestExport(t *testing.T) {
	rec := &exportRec{}
	hs := startTUI(t, goldenW, goldenH, Options{Export: rec.export})
	hs.scenario()

	hs.press(tcell.KeyRune, 'e')
	def := "./vxtrace-20250314-150928.json"
	if scr := hs.screen(); !strings.Contains(scr, "export to: "+def) {
		t.Fatalf("no export prompt with the default path:\n%s", scr)
	}
	hs.press(tcell.KeyEnter, 0)
	waitFor(t, "export", func() bool { return len(rec.calls()) == 1 })
	if got := rec.calls()[0]; got != def {
		t.Fatalf("exported to %q, want %q", got, def)
	}
	waitFor(t, "status", func() bool { hs.refresh(); return strings.Contains(hs.screen(), "exported to "+def) })

	// A chosen path, and a failure shown in the status bar.
	rec.err = errors.New("permission denied")
	hs.press(tcell.KeyRune, 'e')
	hs.press(tcell.KeyCtrlU, 0) // clear the default
	hs.typeText("/tmp/x.json")
	hs.press(tcell.KeyEnter, 0)
	waitFor(t, "export", func() bool { return len(rec.calls()) == 2 })
	if got := rec.calls()[1]; got != "/tmp/x.json" {
		t.Fatalf("exported to %q", got)
	}
	waitFor(t, "error status", func() bool {
		hs.refresh()
		return strings.Contains(hs.screen(), "export failed: permission denied")
	})
	if st, ok := hs.styleAt("export failed"); !ok || fg(st) != tcell.ColorRed {
		t.Errorf("export error not red: %v", fg(st))
	}

	// Esc cancels.
	hs.press(tcell.KeyRune, 'e')
	hs.press(tcell.KeyEscape, 0)
	time.Sleep(20 * time.Millisecond)
	if n := len(rec.calls()); n != 2 {
		t.Fatalf("esc exported anyway: %d calls", n)
	}
}

func TestExportUnavailable(t *testing.T) {
	hs := startTUI(t, goldenW, goldenH, Options{})
	hs.press(tcell.KeyRune, 'e')
	hs.refresh()
	if scr := hs.screen(); !strings.Contains(scr, "export is not available") {
		t.Errorf("no message:\n%s", scr)
	}
}

type fakePicker struct {
	mu     sync.Mutex
	picked []string
}

func (p *fakePicker) Containers(context.Context) ([]string, error) {
	return []string{"web-1", "db-1", "cache-1"}, nil
}

func (p *fakePicker) Pick(_ context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.picked = append(p.picked, name)
	return nil
}

func (p *fakePicker) got() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.picked...)
}

func TestContainerPicker(t *testing.T) {
	pk := &fakePicker{}
	hs := startTUI(t, goldenW, goldenH, Options{Picker: pk})
	hs.scenario()
	hs.press(tcell.KeyRune, 'c')
	waitFor(t, "the list", func() bool { hs.refresh(); return strings.Contains(hs.screen(), "cache-1") })
	if scr := hs.screen(); !strings.Contains(scr, "Trace a container") {
		t.Fatalf("no picker:\n%s", scr)
	}
	hs.press(tcell.KeyRune, 'j')
	hs.press(tcell.KeyEnter, 0)
	waitFor(t, "pick", func() bool { return len(pk.got()) == 1 })
	if got := pk.got()[0]; got != "db-1" {
		t.Fatalf("picked %q, want db-1", got)
	}
	waitFor(t, "status", func() bool { hs.refresh(); return strings.Contains(hs.screen(), "tracing db-1") })
	if scr := hs.screen(); strings.Contains(scr, "cache-1") {
		t.Errorf("picker still open:\n%s", scr)
	}
}

func TestPickerUnavailable(t *testing.T) {
	hs := startTUI(t, goldenW, goldenH, Options{})
	hs.press(tcell.KeyRune, 'c')
	hs.refresh()
	if scr := hs.screen(); !strings.Contains(scr, "Docker not available") {
		t.Errorf("no message:\n%s", scr)
	}
}

func TestPanicOnEventLoopRestoresTerminal(t *testing.T) {
	hs := startTUI(t, 80, 24, Options{})
	hs.tu.keyHook = func(ev *tcell.EventKey) {
		if ev.Rune() == '!' {
			panic("boom in a key handler")
		}
	}
	hs.sim.InjectKey(tcell.KeyRune, '!', tcell.ModNone)
	checkPanic(t, hs, "boom in a key handler")
}

func TestPanicInFeedRestoresTerminal(t *testing.T) {
	hs := startTUI(t, 80, 24, Options{Tick: 5 * time.Millisecond})
	hs.feed.mu.Lock()
	hs.feed.hopsPanic = true
	hs.feed.mu.Unlock()
	checkPanic(t, hs, "hops exploded")
}

func checkPanic(t *testing.T, hs *harness, want string) {
	t.Helper()
	select {
	case err := <-hs.done:
		var pe *PanicError
		if !errors.As(err, &pe) || !strings.Contains(pe.Error(), want) || len(pe.Stack) == 0 {
			t.Fatalf("Run = %v, want a PanicError with %q and a stack", err, want)
		}
		hs.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the panic")
	}
	if w, h := hs.sim.Size(); w != 0 || h != 0 {
		t.Errorf("screen not finalized after the panic: %dx%d", w, h)
	}
}

func fg(st tcell.Style) tcell.Color {
	c, _, _ := st.Decompose()
	return c
}

// Moving in a pane that only has its header used to hang tview's Table.
func TestKeysOnEmptyPanes(t *testing.T) {
	hs := startTUI(t, 80, 24, Options{})
	for _, k := range []tcell.Key{tcell.KeyDown, tcell.KeyUp, tcell.KeyHome, tcell.KeyEnd, tcell.KeyPgDn, tcell.KeyEnter} {
		hs.press(k, 0)
	}
	hs.press(tcell.KeyTab, 0)
	hs.typeText("jkgG")
	hs.press(tcell.KeyEnter, 0)
	// Filtering everything away leaves an empty pane too.
	hs.send(udpLeft(dockerHops(), 1))
	hs.refresh()
	hs.press(tcell.KeyTab, 0)
	hs.press(tcell.KeyRune, 'j')
	hs.press(tcell.KeyRune, '/')
	hs.typeText("nomatch")
	hs.press(tcell.KeyEnter, 0)
	hs.refresh()
	hs.typeText("jkjk")
	if scr := hs.screen(); !strings.Contains(scr, "Flows (0 of 1)") {
		t.Errorf("filtered screen:\n%s", scr)
	}
}

// Quitting leaves nothing running: the feed reader, the ticker, the export
// worker and tview's own goroutines all end.
func TestQuitLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	rec := &exportRec{}
	hs := startTUI(t, 80, 24, Options{Tick: 5 * time.Millisecond, Export: rec.export})
	hs.send(icmpDropped(dockerHops(), 1))
	hs.press(tcell.KeyRune, 'e')
	hs.press(tcell.KeyEnter, 0)
	waitFor(t, "export", func() bool { return len(rec.calls()) == 1 })
	hs.sim.InjectKey(tcell.KeyRune, 'q', tcell.ModNone)
	if err := <-hs.done; err != nil {
		t.Fatal(err)
	}
	hs.done <- nil
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}
