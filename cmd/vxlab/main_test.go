package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/vxtrace/vxtrace/lab"
)

func runOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var buf bytes.Buffer
	old := stdout
	stdout = &buf
	defer func() { stdout = old }()
	err := run(context.Background(), args)
	return buf.String(), err
}

// Usage mistakes must exit 2 with one line; they are caught before any
// namespace is touched, so this runs without root.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"frob"},
		{"up", "--layout", "calico"},
		{"up", "--fault", "nope"},
		{"up", "extra"},
		{"fault", "nope", "on"},
		{"fault", "wrong-vni", "maybe"},
		{"fault", "wrong-vni"},
		{"down", "--bogus"},
		{"status", "x"},
	} {
		_, err := runOut(t, args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: want a usage error, got %v", args, err)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error is not one line: %q", args, err)
		}
	}
}

func TestFaultsList(t *testing.T) {
	out, err := runOut(t, "faults")
	if err != nil {
		t.Fatal(err)
	}
	for _, fi := range lab.FaultTable() {
		if !strings.Contains(out, string(fi.Fault)) || !strings.Contains(out, fi.Reason) {
			t.Errorf("faults output lacks %s/%s:\n%s", fi.Fault, fi.Reason, out)
		}
	}
	out, err = runOut(t, "faults", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var table []lab.FaultInfo
	if err := json.Unmarshal([]byte(out), &table); err != nil || len(table) != len(lab.FaultTable()) {
		t.Errorf("faults --json: %d entries, %v", len(table), err)
	}
}

func TestFlagsAfterArguments(t *testing.T) {
	fs := newFlags("x")
	p := fs.String("prefix", "d", "")
	pos, err := parse(fs, []string{"wrong-vni", "on", "--prefix", "t1"})
	if err != nil || *p != "t1" || len(pos) != 2 || pos[0] != "wrong-vni" || pos[1] != "on" {
		t.Errorf("parse = %q, %v, prefix %q", pos, err, *p)
	}
}
