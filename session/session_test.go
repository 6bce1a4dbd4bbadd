package session

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

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
