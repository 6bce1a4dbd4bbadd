package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vxtrace/vxtrace/journey"
)

// Marshal encodes a document as indented JSON with a final newline.
func Marshal(d *Doc) ([]byte, error) {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding trace document: %w", err)
	}
	return append(b, '\n'), nil
}

// WriteFile writes a document to path, or to stdout when path is "-". The
// file appears whole or not at all: a temporary file in the same directory
// (mode 0600, traces name hosts and addresses) is synced, then renamed.
func WriteFile(path string, d *Doc) error {
	b, err := Marshal(d)
	if err != nil {
		return err
	}
	if path == "-" {
		if _, err := os.Stdout.Write(b); err != nil {
			return fmt.Errorf("writing trace document to stdout: %w", err)
		}
		return nil
	}
	return writeAtomic(path, b)
}

// WriteBytes writes b to path the way WriteFile does: atomically, mode 0600.
func WriteBytes(path string, b []byte) error { return writeAtomic(path, b) }

func writeAtomic(path string, b []byte) (err error) {
	// A device or a pipe (/dev/null, /dev/stdout, a FIFO another tool
	// reads) is written in place: renaming over it would replace it.
	if st, serr := os.Stat(path); serr == nil && !st.Mode().IsRegular() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("opening %s: %w", path, err)
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return fmt.Errorf("writing %s: %w", path, err)
		}
		return f.Close()
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("setting mode of %s: %w", tmp, err)
	}
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp, path, err)
	}
	// The rename is durable only once the directory is synced; failing
	// that is not worth failing a written trace for.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// topKeys are the top-level keys every v1 document has.
var topKeys = []string{"schema", "node", "started", "ended", "filter", "hops", "packets", "packets_omitted", "summary", "lost_events"}

// Read decodes a document. It refuses anything but schema
// vxtrace.trace/v1, a document missing a top-level key, trailing data, and
// packets whose id or verdict is not one v1 allows. Unknown fields are
// ignored: later v1 writers may add optional ones.
func Read(r io.Reader) (*Doc, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading trace document: %w", err)
	}
	// The schema first: another version may not even decode into Doc.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("decoding trace document: %w", err)
	}
	var schema string
	if raw, ok := top["schema"]; !ok || json.Unmarshal(raw, &schema) != nil {
		return nil, errors.New("decoding trace document: no schema string")
	}
	if schema != Schema {
		return nil, fmt.Errorf("decoding trace document: schema %q, want %q", schema, Schema)
	}
	for _, k := range topKeys {
		if raw, ok := top[k]; !ok || bytes.Equal(raw, []byte("null")) {
			return nil, fmt.Errorf("decoding trace document: no %q", k)
		}
	}
	var d Doc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decoding trace document: %w", err)
	}
	for i := range d.Packets {
		if err := checkPacket(&d.Packets[i]); err != nil {
			return nil, fmt.Errorf("decoding trace document: packet %d: %w", i, err)
		}
	}
	// Times in UTC, as vxtrace writes them: "+00:00" from another tool is
	// the same instant, and a reader re-emitting the document should not
	// carry the zone it happened to be written in.
	d.Started, d.Ended = d.Started.UTC(), d.Ended.UTC()
	for _, t := range []struct {
		name string
		y    int
	}{{"started", d.Started.Year()}, {"ended", d.Ended.Year()}} {
		// RFC 3339 has four-digit years: a time outside them could not
		// be written back.
		if t.y < 0 || t.y > 9999 {
			return nil, fmt.Errorf("decoding trace document: %s is outside the years 0-9999", t.name)
		}
	}
	return &d, nil
}

func checkPacket(p *Packet) error {
	if len(p.ID) != 16 {
		return fmt.Errorf("id %q is not 16 hex digits", p.ID)
	}
	for _, c := range []byte(p.ID) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("id %q is not 16 hex digits", p.ID)
		}
	}
	switch journey.Verdict(p.Verdict) {
	case journey.Delivered, journey.Dropped, journey.LeftNode, journey.Vanished:
	default:
		return fmt.Errorf("unknown verdict %q", p.Verdict)
	}
	if p.Events == nil {
		return errors.New("no events")
	}
	return nil
}

// JSONL writes one packet object per line, flushed as each verdict is
// written so that a reader (tail -f, jq) sees packets as they finish.
type JSONL struct {
	bw     *bufio.Writer
	enc    *json.Encoder
	closer io.Closer
}

// NewJSONL writes packets to w.
func NewJSONL(w io.Writer) *JSONL {
	bw := bufio.NewWriter(w)
	return &JSONL{bw: bw, enc: json.NewEncoder(bw)}
}

// CreateJSONL creates (truncates) path, mode 0600, or uses stdout for "-".
func CreateJSONL(path string) (*JSONL, error) {
	if path == "-" {
		return NewJSONL(os.Stdout), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	j := NewJSONL(f)
	j.closer = f
	return j, nil
}

// Write writes one journey. It copies what it needs, so it may be called
// inside a correlator's emit.
func (j *JSONL) Write(p *journey.Packet) error {
	return j.WritePacket(FromJourney(p))
}

// WritePacket writes one packet line and flushes it.
func (j *JSONL) WritePacket(p Packet) error {
	if err := j.enc.Encode(p); err != nil {
		return fmt.Errorf("writing packet %s: %w", p.ID, err)
	}
	if err := j.bw.Flush(); err != nil {
		return fmt.Errorf("writing packet %s: %w", p.ID, err)
	}
	return nil
}

// Close flushes and closes the file CreateJSONL opened; it leaves stdout
// and writers given to NewJSONL open.
func (j *JSONL) Close() error {
	err := j.bw.Flush()
	if j.closer != nil {
		if cerr := j.closer.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
