package session

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/tracer"
)

// A Start that fails after the session exists (here the tracer refuses its
// configuration) returns the error and undoes what it did; it once closed
// the nil result instead and panicked.
func TestStartFailureReturnsError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: discovers the host's namespaces")
	}
	s, err := Start(context.Background(), Options{Tracer: tracer.Config{RingSize: 3}, Refresh: -1})
	if err == nil {
		s.Close()
		t.Fatal("Start with a ring of 3 bytes succeeded")
	}
	if s != nil {
		t.Errorf("a failed Start returned a session")
	}
	if !strings.Contains(err.Error(), "ring size") {
		t.Errorf("error %q does not name the ring size", err)
	}
}

func TestKeepWaiting(t *testing.T) {
	for _, c := range []struct {
		waited time.Duration
		fill   float64
		want   bool
	}{
		{0, 0, true},
		{100 * time.Millisecond, 0.3, true}, // a correlator behind: the ring holds the rest
		{0, 0.5, true},                      // the ring still holds what comes meanwhile
		{10 * time.Millisecond, 0.9, false}, // nearly full: give up the batch, not the ring
		{3 * time.Second, 0, false},         // a correlator stuck for good
	} {
		if got := keepWaiting(c.waited, c.fill); got != c.want {
			t.Errorf("keepWaiting(%v, %v) = %v, want %v", c.waited, c.fill, got, c.want)
		}
	}
}

// The correlator ages journeys by the time up to which it has every event:
// never past one still queued, never past the wall clock.
func TestExpiryClock(t *testing.T) {
	const ms = uint64(time.Millisecond)
	for _, c := range []struct {
		name                string
		handed, newest, now uint64
		queued              bool
		want                uint64
	}{
		{"caught up", 995 * ms, 990 * ms, 1000 * ms, false, 995 * ms},
		{"reader behind", 600 * ms, 590 * ms, 1000 * ms, false, 600 * ms},
		{"correlator behind", 995 * ms, 700 * ms, 1000 * ms, true, 700 * ms},
		{"queued, correlated past handed", 650 * ms, 700 * ms, 1000 * ms, true, 650 * ms},
		{"handed ahead of now", 1000 * ms, 990 * ms, 999 * ms, false, 999 * ms},
		{"nothing correlated yet, queued", 995 * ms, 0, 1000 * ms, true, 0},
	} {
		if got := expiryClock(c.handed, c.queued, c.newest, c.now); got != c.want {
			t.Errorf("%s: expiryClock = %d ms, want %d ms", c.name, got/ms, c.want/ms)
		}
	}
}

// A journey evicted at the correlator's bound is one of the trace's packets:
// Run's emit gets it, as it gets the ones that expire.
func TestEvictedJourneysAreReported(t *testing.T) {
	s := &Session{topo: benchTopology()}
	c := s.newCorrelator(Options{Timeout: time.Second, MaxJourneys: 2})
	var got []uint64
	s.emit = func(p *journey.Packet) { got = append(got, p.ID) }
	for fp := uint64(1); fp <= 3; fp++ {
		e := tracer.Event{FP: fp, Time: fp, Hook: tracer.HookTx, NetNS: nsC1, Ifindex: 2}
		c.Add(&e)
	}
	if len(got) != 1 || got[0] != 1 {
		t.Fatalf("evicted packets reported: %v, want [1]", got)
	}
	if st := c.Stats(); st.Evicted != 1 || st.Open != 2 {
		t.Errorf("stats %+v", st)
	}
}
