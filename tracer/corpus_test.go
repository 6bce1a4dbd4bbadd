package tracer

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestWriteSeedCorpus writes the crafted frames as committed seed corpora
// for the fuzz targets (testdata/fuzz/...), so that `go test` replays them
// and `go test -fuzz` starts from them. Run it after changing namedFrames:
//
//	VXTRACE_WRITE_CORPUS=1 go test ./tracer -run WriteSeedCorpus
func TestWriteSeedCorpus(t *testing.T) {
	if os.Getenv("VXTRACE_WRITE_CORPUS") == "" {
		t.Skip("set VXTRACE_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	frames := namedFrames()
	names := make([]string, 0, len(frames))
	for n := range frames {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		write(t, "FuzzParseFrame", n, goBytes(frames[n])+"\nbool(true)\n")
		write(t, "FuzzDecodeEvent", n, goBytes(eventFor(frames[n]))+"\n")
	}
}

// eventFor is a raw event record carrying what the kernel parsed of frame.
func eventFor(frame []byte) []byte {
	raw := make([]byte, EventSize)
	p, ok := ParseFrame(frame, true, 0, DefaultVXLANPorts)
	if !ok {
		return raw[:EventHeadSize-1] // a short record, which must be refused
	}
	raw[54] = byte(HookRx)
	raw[55] = p.Flags
	put := func(off int, tp Tuple) {
		if tp.Family == 4 {
			a, b := tp.Src.As4(), tp.Dst.As4()
			copy(raw[off:], a[:])
			copy(raw[off+16:], b[:])
		} else if tp.Family == 6 {
			a, b := tp.Src.As16(), tp.Dst.As16()
			copy(raw[off:], a[:])
			copy(raw[off+16:], b[:])
		}
		raw[off+36], raw[off+37], raw[off+38] = tp.Proto, tp.Family, tp.L4Info
	}
	put(56, p.Inner)
	put(96, p.Outer)
	return raw
}

func goBytes(b []byte) string {
	var s strings.Builder
	s.WriteString("go test fuzz v1\n[]byte(\"")
	for _, c := range b {
		fmt.Fprintf(&s, "\\x%02x", c)
	}
	s.WriteString("\")")
	return s.String()
}

func write(t *testing.T, target, name, body string) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
