package ui

import (
	"fmt"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"
)

// Page names of the body.
const (
	pageMain   = "main"
	pageDetail = "detail"
	pageHelp   = "help"
	pagePicker = "picker"
)

// Colours, k9s style: quiet chrome, loud problems.
var (
	colBorder  = tcell.ColorDodgerBlue
	colTitle   = tcell.ColorAqua
	colHeader  = tcell.ColorWhite
	colDrop    = tcell.ColorRed
	colBlind   = tcell.ColorYellow
	colGone    = tcell.ColorGray
	colOK      = tcell.ColorGreen
	colKey     = tcell.ColorFuchsia
	styleCell  = tcell.StyleDefault
	styleHead  = tcell.StyleDefault.Foreground(colHeader).Bold(true)
	styleDrop  = tcell.StyleDefault.Foreground(colDrop)
	styleBlind = tcell.StyleDefault.Foreground(colBlind)
	styleGone  = tcell.StyleDefault.Foreground(colGone)
)

type widgets struct {
	root    *tview.Flex
	body    *tview.Pages
	main    *tview.Flex
	path    *tview.Flex
	chain   *chainView
	hops    *tview.Table
	flows   *tview.Table
	drops   *tview.Table
	detail  *tview.TextView
	help    *tview.TextView
	picker  *tview.List
	status  *itemLine
	bottom  *tview.Pages
	hints   *itemLine
	prompt  *tview.InputField
	pathLen int // hop rows the path pane is sized for
}

// uiState is the view state; only the event loop touches it.
type uiState struct {
	last       *snapshot
	page       string
	focusDrops bool // the drops pane has the focus, not the flows pane
	selFlow    flowKey
	haveSel    bool
	prompt     string // "", "filter" or "export"
	filterWas  string // the filter before the prompt opened, for Esc
	pickerOpen bool
}

func styleBox(b *tview.Box, title string) {
	b.SetBorder(true).SetBorderColor(colBorder).SetTitleColor(colTitle).
		SetTitle(title).SetTitleAlign(tview.AlignLeft)
}

func (t *tui) build() {
	w := &t.w
	w.chain = newChainView()
	w.hops = tview.NewTable().SetFixed(1, 0).SetSelectable(false, false)
	w.path = tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(w.chain, 2, 0, false).
		AddItem(w.hops, 0, 1, false)
	styleBox(w.path.Box, " Path ")

	w.flows = tview.NewTable().SetFixed(1, 0).SetSelectable(true, false)
	styleBox(w.flows.Box, " Flows ")
	w.flows.SetSelectionChangedFunc(func(row, _ int) {
		if r, ok := t.flowAt(row); ok {
			t.ui.selFlow, t.ui.haveSel = r.Key, true
		}
	})
	w.flows.SetSelectedFunc(func(row, _ int) { t.openFlowDetail(row) })

	w.drops = tview.NewTable().SetFixed(1, 0).SetSelectable(true, false)
	styleBox(w.drops.Box, " Drops ")
	w.drops.SetSelectedFunc(func(row, _ int) { t.openDropDetail(row) })

	w.main = tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(w.path, 5, 0, false).
		AddItem(w.flows, 0, 3, true).
		AddItem(w.drops, 0, 2, false)

	w.detail = tview.NewTextView().SetDynamicColors(true).SetWrap(false).SetScrollable(true)
	styleBox(w.detail.Box, " Journey ")

	w.help = tview.NewTextView().SetDynamicColors(true).SetWrap(true)
	styleBox(w.help.Box, " Help ")
	w.help.SetText(helpText(t.opts))

	w.picker = tview.NewList().ShowSecondaryText(false).SetHighlightFullLine(true)
	styleBox(w.picker.Box, " Trace a container ")

	w.body = tview.NewPages().
		AddPage(pageMain, w.main, true, true).
		AddPage(pageDetail, w.detail, true, false).
		AddPage(pageHelp, w.help, true, false).
		AddPage(pagePicker, centered(w.picker, 50, 16), true, false)
	t.ui.page = pageMain

	w.status = newItemLine(2)
	w.hints = newItemLine(1)
	w.prompt = tview.NewInputField().SetFieldBackgroundColor(tcell.ColorDefault).
		SetLabelColor(colKey)
	w.bottom = tview.NewPages().
		AddPage("hints", w.hints, true, true).
		AddPage("prompt", w.prompt, true, false)

	w.root = tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(w.body, 0, 1, true).
		AddItem(w.status, 1, 0, false).
		AddItem(w.bottom, 1, 0, false)

	t.app.SetRoot(w.root, true).SetFocus(w.flows)
	t.app.SetInputCapture(t.onKey)
	t.app.SetTitle(t.opts.Title)
	t.setHints()
	t.apply(t.m.snapshot(t.now()), renderedDetail{})
}

// centered puts p in the middle of the screen as a modal.
func centered(p tview.Primitive, width, height int) tview.Primitive {
	return tview.NewFlex().
		AddItem(nil, 0, 1, false).
		AddItem(tview.NewFlex().SetDirection(tview.FlexRow).
			AddItem(nil, 0, 1, false).
			AddItem(p, height, 0, true).
			AddItem(nil, 0, 1, false), width, 0, true).
		AddItem(nil, 0, 1, false)
}

// apply puts a snapshot on screen. It runs on the event loop, so it only
// copies prepared data into widgets; the tables read the rows lazily.
func (t *tui) apply(s *snapshot, det renderedDetail) {
	w := &t.w
	t.ui.last = s

	// Path pane.
	w.chain.nodes = s.Chain
	if len(s.Hops) != w.pathLen {
		w.pathLen = len(s.Hops)
		w.main.ResizeItem(w.path, 2+2+1+max(len(s.Hops), 1), 0)
	}
	fillHops(w.hops, s.Hops)
	title := " Path "
	if len(s.Hops) == 0 {
		title = " Path (no hops in scope) "
	}
	w.path.SetTitle(title)

	// Flows pane, keeping the selection on the same flow.
	row, _ := w.flows.GetSelection()
	w.flows.SetContent(&flowContent{rows: s.Flows, now: s.ViewAt, col: s.SortCol, desc: s.SortDesc})
	sel := 0
	if t.ui.haveSel {
		for i := range s.Flows {
			if s.Flows[i].Key == t.ui.selFlow {
				sel = i + 1
				break
			}
		}
	}
	if sel == 0 && len(s.Flows) > 0 {
		sel = min(max(row, 1), len(s.Flows))
	}
	if sel > 0 {
		w.flows.Select(sel, 0)
	}
	w.flows.SetTitle(flowsTitle(s))

	// Drops pane: newest first, the selection stays on the same row index.
	w.drops.SetContent(&dropContent{rows: s.Drops})
	if r, _ := w.drops.GetSelection(); len(s.Drops) > 0 && (r < 1 || r > len(s.Drops)) {
		w.drops.Select(min(max(r, 1), len(s.Drops)), 0)
	}
	w.drops.SetTitle(dropsTitle(s))

	if det.ok {
		t.showDetail(det)
	}
	w.status.setItems(statusItems(t.opts.Title, s))
}

func (t *tui) flowAt(row int) (flowRow, bool) {
	s := t.ui.last
	if s == nil || row < 1 || row > len(s.Flows) {
		return flowRow{}, false
	}
	return s.Flows[row-1], true
}

func flowsTitle(s *snapshot) string {
	dir := "↓"
	if !s.SortDesc {
		dir = "↑"
	}
	n := fmt.Sprintf("%d", len(s.Flows))
	if s.Filter != "" {
		n = fmt.Sprintf("%d of %d", len(s.Flows), s.FlowsAll)
	}
	title := fmt.Sprintf(" Flows (%s) sort: %s%s ", n, s.SortCol, dir)
	if s.Evictions > 0 {
		title += fmt.Sprintf("evicted: %s ", count(s.Evictions))
	}
	return tview.Escape(title)
}

func dropsTitle(s *snapshot) string {
	n := fmt.Sprintf("latest %d of %s", len(s.Drops), count(s.DropsTotal))
	if s.Filter != "" {
		n = fmt.Sprintf("%d matching, %s in all", len(s.Drops), count(s.DropsTotal))
	}
	return tview.Escape(fmt.Sprintf(" Drops (%s) ", n))
}

// The kind comes last: the labels already say most of it, and narrow
// terminals cut the right end.
var hopHeader = []string{"HOP", "NAMESPACE", "PKTS/S", "TOTAL", "DROPS", "TOP DROP REASON", "STATE", "KIND"}

func fillHops(tb *tview.Table, rows []hopRow) {
	tb.Clear()
	for c, h := range hopHeader {
		tb.SetCell(0, c, headCell(h, c >= 2 && c <= 4))
	}
	for i := range rows {
		r := &rows[i]
		st := styleCell
		switch {
		case r.Dropping:
			st = styleDrop
		case r.Hop.Gone:
			st = styleGone
		case r.Hop.Blind:
			st = styleBlind
		}
		reason := ""
		if r.TopReason != "" {
			reason = fmt.Sprintf("%s (%s)", r.TopReason, count(r.TopCount))
		}
		cells := []string{r.Label, r.NetNS, rate(r.Rate), count(r.Total), count(r.Drops), reason, r.state(), string(r.Hop.Kind)}
		for c, text := range cells {
			cell := tview.NewTableCell(pad(text)).SetStyle(st)
			if c >= 2 && c <= 4 {
				cell.SetAlign(tview.AlignRight)
			}
			if c == 4 && r.Drops > 0 {
				cell.SetStyle(styleDrop)
			}
			tb.SetCell(i+1, c, cell)
		}
	}
}

func headCell(text string, right bool) *tview.TableCell {
	c := tview.NewTableCell(pad(text)).SetStyle(styleHead).SetSelectable(false)
	if right {
		c.SetAlign(tview.AlignRight)
	}
	return c
}

// flowContent backs the flows table with the snapshot's rows; tview asks
// only for the cells it draws, so a full table costs nothing extra.
type flowContent struct {
	tview.TableContentReadOnly
	rows []flowRow
	now  time.Time
	col  sortCol
	desc bool
}

var flowHeader = []string{"PROTO", "SOURCE", "DESTINATION", "VNI", "PKTS", "DROPS", "VERDICT", "LAST DROP REASON", "AGE"}

// flowSortHeader maps sort columns to header columns.
var flowSortHeader = map[sortCol]int{sortSrc: 1, sortDst: 2, sortPackets: 4, sortDrops: 5, sortSeen: 8}

func (f *flowContent) GetRowCount() int    { return len(f.rows) + 1 }
func (f *flowContent) GetColumnCount() int { return len(flowHeader) }

func (f *flowContent) GetCell(row, col int) *tview.TableCell {
	if col < 0 || col >= len(flowHeader) || row < 0 || row > len(f.rows) {
		return nil
	}
	right := col == 3 || col == 4 || col == 5 || col == 8
	if row == 0 {
		h := flowHeader[col]
		if c, ok := flowSortHeader[f.col]; ok && c == col {
			if f.desc {
				h += "↓"
			} else {
				h += "↑"
			}
		}
		return headCell(h, right)
	}
	r := &f.rows[row-1]
	k := r.Key
	var text string
	switch col {
	case 0:
		text = protoName(k.Proto)
	case 1:
		text = endpoint(k.Src, k.Sport, k.Proto, true)
	case 2:
		text = endpoint(k.Dst, k.Dport, k.Proto, false)
	case 3:
		text = "-"
		if k.VNI != 0 {
			text = fmt.Sprint(k.VNI)
		}
	case 4:
		text = count(r.Packets)
	case 5:
		text = count(r.Drops)
	case 6:
		text = verdictText(r.Verdict)
	case 7:
		text = r.LastReason
	case 8:
		text = age(f.now.Sub(r.Last))
	}
	c := tview.NewTableCell(pad(text))
	if right {
		c.SetAlign(tview.AlignRight)
	}
	if r.Drops > 0 && (col == 5 || col == 7) || col == 6 && r.Verdict == "dropped" {
		c.SetStyle(styleDrop)
	}
	return c
}

func age(d time.Duration) string {
	switch {
	case d < time.Second:
		return "now"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	}
	return fmt.Sprintf("%dh", int(d/time.Hour))
}

type dropContent struct {
	tview.TableContentReadOnly
	rows []dropRow
}

var dropHeader = []string{"TIME", "HOP", "NAMESPACE", "REASON", "LOCATION", "FLOW"}

func (d *dropContent) GetRowCount() int    { return len(d.rows) + 1 }
func (d *dropContent) GetColumnCount() int { return len(dropHeader) }

func (d *dropContent) GetCell(row, col int) *tview.TableCell {
	if col < 0 || col >= len(dropHeader) || row < 0 || row > len(d.rows) {
		return nil
	}
	if row == 0 {
		return headCell(dropHeader[col], false)
	}
	r := &d.rows[row-1]
	var text string
	switch col {
	case 0:
		text = r.At.Format("15:04:05.000")
	case 1:
		text = r.Hop
	case 2:
		text = r.NetNS
	case 3:
		text = orDash(r.Reason)
	case 4:
		text = orDash(r.Location)
	case 5:
		text = r.flowText()
	}
	c := tview.NewTableCell(pad(text))
	if col == 3 {
		c.SetStyle(styleDrop)
	}
	return c
}

// statusItems is the status bar; the prio order says what survives a
// narrow terminal: state and message, lost events, rates, then the scope.
func statusItems(title string, s *snapshot) []lineItem {
	var items []lineItem
	add := func(prio int, format string, args ...any) {
		items = append(items, lineItem{text: fmt.Sprintf(format, args...), prio: prio})
	}
	add(5, "[::b]%s[::-]", tview.Escape(title))
	switch {
	case s.Paused:
		add(0, "[black:yellow] PAUSED [-:-]")
	case s.Ended:
		add(0, "[black:gray] ENDED [-:-]")
	default:
		add(0, "[black:green] LIVE [-:-]")
	}
	if s.Status != "" {
		color := "green"
		if s.StatusErr {
			color = "red"
		}
		add(1, "[%s::b]%s[-::-]", color, tview.Escape(s.Status))
	}
	lost := fmt.Sprintf("%s kern %s user", count(s.Counters.LostKernel), count(s.Counters.LostUser))
	if s.Counters.LostKernel+s.Counters.LostUser > 0 {
		add(2, "[gray]lost[-] [red::b]%s[-::-]", lost)
	} else {
		add(2, "[gray]lost[-] %s", lost)
	}
	add(3, "[gray]events/s[-] %s", rate(s.EventsRate))
	if s.Filter != "" {
		add(4, "[gray]view[-] [aqua]/%s[-]", tview.Escape(s.Filter))
	}
	if s.Counters.Scope != "" {
		add(6, "[gray]scope[-] %s", tview.Escape(s.Counters.Scope))
	}
	if s.Counters.Filter != "" {
		add(7, "[gray]kfilter[-] %s", tview.Escape(s.Counters.Filter))
	}
	return items
}

// pad escapes a cell's text and widens it by one blank, so columns are two
// blanks apart.
func pad(text string) string { return tview.Escape(text) + " " }
