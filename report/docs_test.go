package report

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
)

// dynamicKeys are objects whose keys are data, not schema; the docs write
// their key as <name>.
var dynamicKeys = map[string]string{
	"summary.per_hop[].drop_reasons": "<reason>",
}

// jsonPaths lists every key path in a decoded JSON value: "a.b", arrays as
// "a[]", e.g. "packets[].events[].t_ns".
func jsonPaths(prefix string, v any, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			if ph, ok := dynamicKeys[prefix]; ok {
				k = ph
			}
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out[p] = true
			jsonPaths(p, val, out)
		}
	case []any:
		for _, e := range v {
			jsonPaths(prefix+"[]", e, out)
		}
	}
}

// documentedPaths reads the field tables of docs/json.md: rows whose first
// cell is a `code` path.
func documentedPaths(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		cell := strings.TrimSpace(cells[1])
		if len(cell) < 3 || cell[0] != '`' || cell[len(cell)-1] != '`' {
			continue
		}
		path := cell[1 : len(cell)-1]
		if out[path] {
			t.Errorf("docs/json.md lists %s twice", path)
		}
		out[path] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 50 {
		t.Fatalf("found only %d documented fields; did the table format change?", len(out))
	}
	return out
}

// fullDoc has every optional key: the sample trace plus a hop with every
// field set.
func fullDoc(t *testing.T) *Doc {
	d := sampleDoc(t, -1)
	d.Hops = append(d.Hops, filled[topo.Hop]())
	// A packet parked for ARP (no sample journey waits).
	p := &d.Packets[0]
	p.Events = append(p.Events, Event{Hop: 3, Ifname: "vxlan0", Dir: journey.DirNeigh, What: What(journey.DirNeigh), NextHop: "10.0.1.4"})
	return d
}

func TestJSONMatchesDocs(t *testing.T) {
	b, err := Marshal(fullDoc(t))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	produced := map[string]bool{}
	jsonPaths("", v, produced)
	// A JSONL line is a packet object: it must be documented as one too.
	var line map[string]any
	if err := json.Unmarshal(mustJSON(t, fullDoc(t).Packets[0]), &line); err != nil {
		t.Fatal(err)
	}
	for k := range line {
		if !produced["packets[]."+k] {
			t.Errorf("JSONL packet key %q not in the document's packets", k)
		}
	}

	documented := documentedPaths(t)
	var undocumented, missing []string
	for p := range produced {
		if !documented[p] {
			undocumented = append(undocumented, p)
		}
	}
	for p := range documented {
		if !produced[p] {
			missing = append(missing, p)
		}
	}
	slices.Sort(undocumented)
	slices.Sort(missing)
	for _, p := range undocumented {
		t.Errorf("output has %s, docs/json.md does not describe it", p)
	}
	for _, p := range missing {
		t.Errorf("docs/json.md describes %s, the output never has it", p)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTopLevelKeys(t *testing.T) {
	b, err := Marshal(sampleDoc(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range top {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := slices.Clone(topKeys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("top-level keys %v, want %v", keys, want)
	}
}
