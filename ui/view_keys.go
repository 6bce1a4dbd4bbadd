package ui

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"
)

// keyHelp is the one list of keys: the help page and the hints line are both
// made from it, so they cannot drift apart.
type keyHelp struct {
	keys, hint, desc string
	onMain, onDetail bool // shown in the hints line of that page
	prio             int  // which hints survive a narrow terminal, lowest first
}

func keyList(opts Options) []keyHelp {
	keys := []keyHelp{
		{"↑↓ j k", "move", "move the selection; scroll in the journey view", true, true, 8},
		{"enter", "journey", "show the selected flow's (or drop's) latest packet hop by hop", true, false, 2},
		{"esc", "back", "go back; on the main view, clear the filter", false, true, 0},
		{"tab", "pane", "switch between the flows and drops panes", true, false, 7},
		{"/", "filter", "filter the views: words must all match addresses, protocol, VNI, verdict, reason, hop; !word excludes", true, false, 3},
		{"s r", "sort", "sort the flows by the next column; reverse the order", true, false, 6},
		{"p", "pause", "pause or resume the views (the kernel keeps counting)", true, true, 4},
	}
	if opts.Picker != nil {
		keys = append(keys, keyHelp{"c", "container", "pick a Docker container to trace", true, false, 9})
	}
	if opts.Export != nil {
		keys = append(keys, keyHelp{"e", "export", "export the trace to a JSON file (same schema as trace --json)", true, true, 5})
	}
	return append(keys,
		keyHelp{"?", "help", "show or hide this help", true, true, 1},
		keyHelp{"q ctrl-c", "quit", "quit", true, true, 0},
	)
}

func helpText(opts Options) string {
	var b strings.Builder
	b.WriteString("[::b]Keys[::-]\n\n")
	for _, k := range keyList(opts) {
		fmt.Fprintf(&b, "  [fuchsia]%-10s[-] %s\n", tview.Escape(k.keys), tview.Escape(k.desc))
	}
	b.WriteString("\n[::b]Panes[::-]\n\n")
	b.WriteString("  Path    the hop chain with the in-kernel counters of each hop: packets/s, totals,\n")
	b.WriteString("          drops and the top drop reason. A hop is red while it drops, yellow when blind\n")
	b.WriteString("          (a probe could not attach), grey when the interface is gone.\n")
	b.WriteString("  Flows   inner 5-tuple and VNI, with packets, drops and the last verdict.\n")
	b.WriteString("  Drops   the latest dropped packets: where, in which namespace, why, and the\n")
	b.WriteString("          kernel function that freed them.\n")
	b.WriteString("\nLost events (kernel: ring buffer full; user: reader too slow) show in the status bar;\n")
	b.WriteString("the path counters come from the kernel and stay right when events are lost.\n")
	return b.String()
}

func (t *tui) setHints() {
	var items []lineItem
	for _, k := range keyList(t.opts) {
		show := k.onMain
		if t.ui.page != pageMain {
			show = k.onDetail
		}
		if show {
			keys := k.keys
			if k.hint == "quit" {
				keys = "q" // ctrl-c is in the help
			}
			items = append(items, lineItem{text: fmt.Sprintf("[fuchsia]<%s>[-] %s", tview.Escape(keys), k.hint), prio: k.prio})
		}
	}
	t.w.hints.setItems(items)
}

// onKey is the application-wide key handler. It runs on the event loop, so
// it only flips state and asks for a refresh; anything slow goes to a
// goroutine.
func (t *tui) onKey(ev *tcell.EventKey) *tcell.EventKey {
	t.keysIn.Add(1)
	if t.keyHook != nil {
		t.keyHook(ev)
	}
	if ev.Key() == tcell.KeyCtrlC {
		t.quit()
		return nil // we stop in order ourselves
	}
	if t.ui.pickerOpen && ev.Key() == tcell.KeyRune {
		switch ev.Rune() { // tview's List has no vi keys
		case 'j':
			return tcell.NewEventKey(tcell.KeyDown, 0, tcell.ModNone)
		case 'k':
			return tcell.NewEventKey(tcell.KeyUp, 0, tcell.ModNone)
		}
	}
	if t.ui.prompt != "" || t.ui.pickerOpen {
		return ev // the prompt and the picker get every other key
	}
	switch ev.Key() {
	case tcell.KeyEscape:
		if t.ui.page != pageMain {
			t.showPage(pageMain)
		} else if t.m.filterText() != "" {
			t.m.setFilter("")
			t.requestRefresh()
		}
		return nil
	case tcell.KeyTab, tcell.KeyBacktab:
		if t.ui.page == pageMain {
			t.ui.focusDrops = !t.ui.focusDrops
			t.focusMain()
		}
		return nil
	case tcell.KeyRune:
	default:
		return t.toFocused(ev)
	}
	switch ev.Rune() {
	case 'q':
		t.quit()
	case '?':
		if t.ui.page == pageHelp {
			t.showPage(pageMain)
		} else {
			t.showPage(pageHelp)
		}
	case 'p':
		paused := t.m.togglePause(t.now())
		t.log.Debug("pause", "paused", paused)
		t.requestRefresh()
	case '/':
		if t.ui.page != pageMain {
			t.showPage(pageMain)
		}
		t.openFilterPrompt()
	case 's':
		t.m.cycleSort()
		t.requestRefresh()
	case 'r':
		t.m.reverseSort()
		t.requestRefresh()
	case 'e':
		t.openExportPrompt()
	case 'c':
		t.openPicker()
	default:
		return t.toFocused(ev)
	}
	return nil
}

// toFocused passes a key on to the focused pane. tview's Table spins forever
// looking for a selectable cell when it only has its (unselectable) header,
// so a pane without rows gets no keys.
func (t *tui) toFocused(ev *tcell.EventKey) *tcell.EventKey {
	if t.ui.page != pageMain {
		return ev
	}
	tb := t.w.flows
	if t.ui.focusDrops {
		tb = t.w.drops
	}
	if tb.GetRowCount() <= 1 {
		return nil
	}
	return ev
}

func (t *tui) showPage(name string) {
	t.ui.page = name
	t.w.body.SwitchToPage(name)
	switch name {
	case pageMain:
		t.detailMu.Lock()
		t.detail = detailTarget{}
		t.detailMu.Unlock()
		t.focusMain()
	case pageDetail:
		t.app.SetFocus(t.w.detail)
	case pageHelp:
		t.app.SetFocus(t.w.help)
	}
	t.setHints()
}

func (t *tui) focusMain() {
	if t.ui.focusDrops {
		t.app.SetFocus(t.w.drops)
		t.w.drops.SetSelectable(true, false)
		t.w.flows.SetSelectable(false, false)
	} else {
		t.app.SetFocus(t.w.flows)
		t.w.flows.SetSelectable(true, false)
		t.w.drops.SetSelectable(false, false)
	}
}

func (t *tui) openFlowDetail(row int) {
	r, ok := t.flowAt(row)
	if !ok {
		return
	}
	t.detailMu.Lock()
	t.detail = detailTarget{open: true, byFlow: true, flow: r.Key, packet: r.Latest}
	t.detailMu.Unlock()
	// Show it now from the last snapshot; the ticker keeps it current.
	t.showDetail(renderDetailOf(r.Latest, t.ui.last))
	t.w.detail.ScrollToBeginning()
	t.showPage(pageDetail)
}

func (t *tui) openDropDetail(row int) {
	s := t.ui.last
	if s == nil || row < 1 || row > len(s.Drops) {
		return
	}
	p := s.Drops[row-1].Packet
	t.detailMu.Lock()
	t.detail = detailTarget{open: true, packet: p}
	t.detailMu.Unlock()
	t.showDetail(renderDetailOf(p, s))
	t.w.detail.ScrollToBeginning()
	t.showPage(pageDetail)
}

func (t *tui) showDetail(d renderedDetail) {
	var b strings.Builder
	for _, l := range d.lines {
		e := tview.Escape(l)
		if strings.HasPrefix(l, "verdict  DROPPED") || strings.Contains(l, " drop    ") {
			e = "[red]" + e + "[-]"
		}
		b.WriteString(e)
		b.WriteByte('\n')
	}
	row, col := t.w.detail.GetScrollOffset()
	t.w.detail.SetText(b.String())
	t.w.detail.ScrollTo(row, col) // a live refresh must not jump back to the top
	t.w.detail.SetTitle(tview.Escape(" " + d.title + " "))
}

// Prompts use the bottom line, like k9s.

func (t *tui) openPrompt(kind, label, text string, done func(text string)) {
	t.ui.prompt = kind
	p := t.w.prompt
	p.SetLabel(label).SetText(text)
	p.SetChangedFunc(nil)
	p.SetDoneFunc(func(key tcell.Key) {
		text := p.GetText()
		t.closePrompt()
		if key == tcell.KeyEnter {
			done(text)
		} else if kind == "filter" { // Esc puts the old filter back
			t.m.setFilter(t.ui.filterWas)
			t.requestRefresh()
		}
	})
	t.w.bottom.SwitchToPage("prompt")
	t.app.SetFocus(p)
}

func (t *tui) closePrompt() {
	t.ui.prompt = ""
	t.w.bottom.SwitchToPage("hints")
	t.focusMain()
	if t.ui.page != pageMain {
		t.showPage(t.ui.page)
	}
}

func (t *tui) openFilterPrompt() {
	t.ui.filterWas = t.m.filterText()
	t.openPrompt("filter", "/", t.ui.filterWas, func(string) {})
	// Filter as the user types; the next refresh applies it.
	t.w.prompt.SetChangedFunc(func(text string) {
		t.m.setFilter(text)
		t.requestRefresh()
	})
}

func (t *tui) openExportPrompt() {
	if t.opts.Export == nil {
		t.m.setStatus("export is not available", true, t.now())
		t.requestRefresh()
		return
	}
	def := "./vxtrace-" + t.now().Format("20060102-150405") + ".json"
	t.openPrompt("export", "export to: ", def, func(path string) {
		path = strings.TrimSpace(path)
		if path == "" {
			return
		}
		t.m.setStatus("exporting to "+path+"…", false, t.now())
		t.requestRefresh()
		export := t.opts.Export
		t.workers.Add(1)
		go func() {
			defer t.workers.Done()
			defer t.guard()
			if err := export(path); err != nil {
				t.m.setStatus("export failed: "+err.Error(), true, t.now())
			} else {
				t.m.setStatus("exported to "+path, false, t.now())
			}
			t.requestRefresh()
		}()
	})
}

// openPicker lists the containers off the event loop and shows the list
// with the next redraw.
func (t *tui) openPicker() {
	pk := t.opts.Picker
	if pk == nil {
		t.m.setStatus("no container picker (Docker not available)", true, t.now())
		t.requestRefresh()
		return
	}
	t.m.setStatus("listing containers…", false, t.now())
	t.requestRefresh()
	t.workers.Add(1)
	go func() {
		defer t.workers.Done()
		defer t.guard()
		names, err := pk.Containers(t.ctx)
		if err == nil && len(names) == 0 {
			err = errors.New("no containers")
		}
		if err != nil {
			t.m.setStatus("listing containers: "+err.Error(), true, t.now())
			t.requestRefresh()
			return
		}
		t.m.setStatus("", false, t.now())
		t.post(func() { t.showPicker(names) })
	}()
}

func (t *tui) showPicker(names []string) {
	if t.ctx.Err() != nil {
		return
	}
	l := t.w.picker
	l.Clear()
	for _, n := range names {
		l.AddItem(tview.Escape(n), "", 0, nil)
	}
	l.SetSelectedFunc(func(i int, _, _ string, _ rune) {
		t.closePicker()
		t.pick(names[i])
	})
	l.SetDoneFunc(t.closePicker)
	t.ui.pickerOpen = true
	t.w.body.ShowPage(pagePicker)
	t.app.SetFocus(l)
}

func (t *tui) closePicker() {
	t.ui.pickerOpen = false
	t.w.body.HidePage(pagePicker)
	t.showPage(t.ui.page)
}

func (t *tui) pick(name string) {
	pk := t.opts.Picker
	t.m.setStatus("switching to "+name+"…", false, t.now())
	t.requestRefresh()
	t.workers.Add(1)
	go func() {
		defer t.workers.Done()
		defer t.guard()
		if err := pk.Pick(t.ctx, name); err != nil {
			t.m.setStatus("picking "+name+": "+err.Error(), true, t.now())
		} else {
			t.m.setStatus("tracing "+name, false, t.now())
		}
		t.requestRefresh()
	}()
}
