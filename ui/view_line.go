package ui

import (
	"slices"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"
)

// lineItem is one piece of a one-line bar, with tview style tags.
type lineItem struct {
	text string
	prio int // when the line is too narrow, the highest prio goes first
}

// itemLine draws items left to right and leaves out the least important
// ones that do not fit, so a narrow terminal still shows what matters
// (lost events, quit and help) instead of cutting the line at the end.
type itemLine struct {
	*tview.Box
	items []lineItem
	gap   int
}

func newItemLine(gap int) *itemLine { return &itemLine{Box: tview.NewBox(), gap: gap} }

func (l *itemLine) setItems(items []lineItem) { l.items = items }

// fit chooses which items are shown in width columns.
func fit(items []lineItem, gap, width int) []bool {
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return items[a].prio - items[b].prio })
	keep := make([]bool, len(items))
	used := 0
	for _, i := range order {
		w := tview.TaggedStringWidth(items[i].text)
		if used > 0 {
			w += gap
		}
		if used+w <= width {
			keep[i] = true
			used += w
		}
	}
	return keep
}

func (l *itemLine) Draw(screen tcell.Screen) {
	l.DrawForSubclass(screen, l)
	x, y, width, height := l.GetInnerRect()
	if height < 1 || width < 1 {
		return
	}
	keep := fit(l.items, l.gap, width)
	cx := x
	for i, it := range l.items {
		if !keep[i] {
			continue
		}
		if cx > x {
			cx += l.gap
		}
		_, w := tview.Print(screen, it.text, cx, y, x+width-cx, tview.AlignLeft, tview.Styles.PrimaryTextColor)
		cx += w
	}
}

// chainView draws the hop chain as a path, breaking lines only between
// hops so a hop's name is never split.
type chainView struct {
	*tview.Box
	nodes []pathNode
}

func newChainView() *chainView { return &chainView{Box: tview.NewBox()} }

func nodeText(n pathNode) string {
	text := tview.Escape(n.Text)
	switch {
	case n.Dropping:
		return "[red::b]" + text + "[-::-]"
	case n.Gone:
		return "[gray::d]" + text + "[-::-]"
	case n.Blind:
		return "[yellow]" + text + "[-]"
	case n.Peer:
		return "[aqua]" + text + "[-]"
	}
	return text
}

func (c *chainView) Draw(screen tcell.Screen) {
	c.DrawForSubclass(screen, c)
	x, y, width, height := c.GetInnerRect()
	if height < 1 || width < 1 {
		return
	}
	color := tview.Styles.PrimaryTextColor
	if len(c.nodes) == 0 {
		tview.Print(screen, "[gray]waiting for hops…[-]", x, y, width, tview.AlignLeft, color)
		return
	}
	const sep, cont = " [gray]→[-] ", "  [gray]→[-] "
	cx, cy := x, y
	for i, n := range c.nodes {
		text := nodeText(n)
		w := tview.TaggedStringWidth(text)
		if i > 0 {
			if cx+tview.TaggedStringWidth(sep)+w > x+width {
				cy++
				if cy >= y+height {
					return
				}
				cx = x
				_, sw := tview.Print(screen, cont, cx, cy, width, tview.AlignLeft, color)
				cx += sw
			} else {
				_, sw := tview.Print(screen, sep, cx, cy, x+width-cx, tview.AlignLeft, color)
				cx += sw
			}
		}
		_, pw := tview.Print(screen, text, cx, cy, x+width-cx, tview.AlignLeft, color)
		cx += pw
	}
}
