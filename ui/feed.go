package ui

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
)

// Feed is everything the UI reads from a running trace.
//
// Hops and Counters are polled once per tick (and after pause/filter keys),
// always from the same goroutine, never concurrently, and never from the UI's
// event loop. They must be cheap and must not block. The UI keeps the
// returned hop slice until the next poll, so the feed must not modify it
// afterwards (returning a cached slice that is replaced, not edited, is
// fine); the Counters map is only read during the poll. Hop IDs must be the
// ones journey.Step.HopID and journey.Drop.HopID refer to.
//
// Packets is drained by a goroutine that never waits on the screen, so the
// producer should send without blocking and count what does not fit in
// Counters.LostUser. Packets received belong to the UI, which only reads
// them: the producer must not touch them again (send a clone).
type Feed interface {
	// Hops returns the hop chain in path order (the order the path pane draws).
	Hops() []topo.Hop
	// Packets delivers finished journeys. Closing it means the trace ended;
	// the UI keeps showing what it has.
	Packets() <-chan *journey.Packet
	// Counters returns the cumulative counters since the trace started.
	Counters() Counters
}

// HopCounters are one hop's in-kernel counters. They are cumulative: the UI
// derives rates from the difference between two polls, so they stay right
// when events are lost on the way to user space.
type HopCounters struct {
	RxSeen         uint64 // tracked packets received on the interface
	TxSeen         uint64 // tracked packets sent from the interface
	Dropped        uint64 // tracked packets the kernel dropped at this hop
	TopReason      string // the most frequent drop reason name at this hop
	TopReasonCount uint64
	TCPackets      uint64 // packets seen by the TC programs (0 when blind)
}

// Counters is one poll of the trace-wide counters.
type Counters struct {
	Hops       map[topo.Key]HopCounters
	Events     uint64 // events the kernel submitted to the ring buffer
	LostKernel uint64 // events the kernel could not submit (ring buffer full)
	LostUser   uint64 // events or packets dropped in user space (reader or channel full)
	Scope      string // what is traced, e.g. "container c1 (5 hops)"
	Filter     string // the kernel-side filter, e.g. "icmp and host 10.0.1.4"
}

// ContainerPicker lets the user re-scope the trace to a Docker container.
// Both methods are called off the UI's event loop and may take their time.
type ContainerPicker interface {
	// Containers lists the names the user can choose from.
	Containers(ctx context.Context) ([]string, error)
	// Pick re-scopes the trace to the named container. The new hops and
	// counters are expected to show up through the Feed afterwards.
	Pick(ctx context.Context, name string) error
}

// Options configure Run. The zero value is usable.
type Options struct {
	// Title is shown at the left of the status bar; "vxtrace" when empty.
	Title string
	// Export writes the current trace as a JSON document to path. The `e`
	// key is disabled when it is nil. It is called off the event loop.
	Export func(path string) error
	// Picker enables the `c` key when non-nil.
	Picker ContainerPicker
	// Screen replaces the terminal, e.g. with tcell.NewSimulationScreen in
	// tests. Pass it uninitialized: Run initializes it, and finalizes it
	// when it returns.
	Screen tcell.Screen
	// Logger receives the UI's own diagnostics; nothing is ever written to
	// the terminal. Discarded when nil.
	Logger *slog.Logger
	// Tick is the redraw period; 200ms when zero.
	Tick time.Duration
	// MaxFlows bounds the flows table (least recently seen flows are
	// evicted); 4096 when zero.
	MaxFlows int
	// MaxDrops bounds the drops pane; 256 when zero.
	MaxDrops int

	// Test hooks.
	clock      func() time.Time // time source; time.Now when nil
	manualTick bool             // no ticker: tests call refresh themselves
}

// PanicError is returned by Run when the UI or one of its goroutines
// panicked. The terminal has been restored by the time Run returns it, so
// the caller can print Stack safely.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("ui: panic: %v", e.Value) }
