package ui

import "strings"

// matcher is the display filter typed after `/`: whitespace-separated terms,
// each of which must appear (case-insensitively) somewhere in a row's text.
// A term starting with '!' must not appear. It filters the views only; the
// kernel keeps tracing and counting everything in scope.
type matcher struct {
	want, not []string
}

func newMatcher(filter string) matcher {
	var m matcher
	for _, f := range strings.Fields(strings.ToLower(filter)) {
		if neg, ok := strings.CutPrefix(f, "!"); ok {
			if neg != "" {
				m.not = append(m.not, neg)
			}
			continue
		}
		m.want = append(m.want, f)
	}
	return m
}

func (m matcher) empty() bool { return len(m.want) == 0 && len(m.not) == 0 }

func (m matcher) match(text string) bool {
	if m.empty() {
		return true
	}
	text = strings.ToLower(text)
	for _, w := range m.want {
		if !strings.Contains(text, w) {
			return false
		}
	}
	for _, n := range m.not {
		if strings.Contains(text, n) {
			return false
		}
	}
	return true
}
