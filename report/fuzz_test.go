package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

// FuzzRead checks that Read never panics, and that whatever it accepts
// survives a write and a read unchanged: a tool joining traces must be
// able to re-emit what it read.
func FuzzRead(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		b, err := Marshal(d)
		if err != nil {
			t.Fatalf("Read accepted a document Marshal refuses: %v", err)
		}
		d2, err := Read(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("re-reading a written document: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(d, d2) {
			a, _ := json.Marshal(d)
			c, _ := json.Marshal(d2)
			t.Fatalf("document changed on a round trip:\n%s\n%s", a, c)
		}
	})
}

func fuzzSeeds(tb testing.TB) [][]byte {
	full, err := json.Marshal(sampleDoc(tb, 0))
	if err != nil {
		tb.Fatal(err)
	}
	capped, err := Marshal(sampleDoc(tb, 1))
	if err != nil {
		tb.Fatal(err)
	}
	empty, err := json.Marshal(NewRecorder(Options{Node: "n", Started: started}).Doc(End{Ended: ended}))
	if err != nil {
		tb.Fatal(err)
	}
	return [][]byte{
		full,
		capped,
		empty,
		[]byte(`{"schema":"vxtrace.trace/v2"}`),
		[]byte(`{"schema":"vxtrace.trace/v1","node":"","started":"2025-01-02T15:04:05+01:00","ended":"0001-01-01T00:00:00Z",` +
			`"filter":{},"hops":[],"packets":[{"id":"00000000000000ff","inner":{},"events":[],"verdict":"vanished","last_hop":-1}],` +
			`"packets_omitted":0,"summary":{"packets":1,"verdicts":{},"per_hop":[]},"lost_events":{}}`),
		[]byte(`not json`),
	}
}

// TestWriteFuzzCorpus rewrites the committed seed corpus with -update.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz/FuzzRead")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzRead")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds(t) {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, "seed"+strconv.Itoa(i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
