package session

import (
	"context"
	"os"
	"strings"
	"testing"

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
