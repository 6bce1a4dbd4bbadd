package ui

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
)

// floodFeed produces packets at a fixed rate the way the real feed does:
// non-blocking sends, with what does not fit counted as lost in user space.
type floodFeed struct {
	hops []topo.Hop
	ch   chan *journey.Packet
	sent atomic.Uint64
	lost atomic.Uint64
}

func (f *floodFeed) Hops() []topo.Hop                { return append([]topo.Hop(nil), f.hops...) }
func (f *floodFeed) Packets() <-chan *journey.Packet { return f.ch }

func (f *floodFeed) Counters() Counters {
	n := f.sent.Load()
	c := Counters{Hops: map[topo.Key]HopCounters{}, Events: n * 5, LostUser: f.lost.Load(), Scope: "flood"}
	for _, h := range f.hops {
		hc := HopCounters{RxSeen: n, TxSeen: n}
		if h.Kind == topo.KindNIC {
			hc.Dropped, hc.TopReason, hc.TopReasonCount = n/10, "NETFILTER_DROP", n/10
		}
		c.Hops[h.Key()] = hc
	}
	return c
}

// run sends rate packets/s, cycling through a pool of prebuilt packets
// (many flows, one in ten dropped), until ctx ends.
func (f *floodFeed) run(ctx context.Context, rate int) {
	pool := make([]*journey.Packet, 0, 8192)
	for i := range cap(pool) {
		if i%10 == 0 {
			pool = append(pool, icmpDropped(f.hops, uint16(i)))
		} else {
			pool = append(pool, udpLeft(f.hops, uint16(i)))
		}
	}
	start := time.Now()
	tk := time.NewTicker(time.Millisecond)
	defer tk.Stop()
	var n uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		due := uint64(time.Since(start).Seconds() * float64(rate))
		for ; n < due; n++ {
			select {
			case f.ch <- pool[n%uint64(len(pool))]:
				f.sent.Add(1)
			default:
				f.lost.Add(1)
			}
		}
	}
}

type latencies struct {
	p50, p99, max time.Duration
	ingested      float64 // packets/s the UI took in
	lost          uint64
}

// measureKeyLatency floods the UI with rate packets/s and measures, presses
// times, the time from injecting a key to the end of the redraw that shows
// its effect.
func measureKeyLatency(tb testing.TB, rate, presses int) latencies {
	sim := tcell.NewSimulationScreen("UTF-8")
	feed := &floodFeed{hops: dockerHops(), ch: make(chan *journey.Packet, 16384)}
	tu := newTUI(feed, Options{Screen: sim, MaxFlows: 4096})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tu.run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run = %v", err)
		}
	}()
	<-tu.started
	sim.SetSize(120, 40)
	go feed.run(ctx, rate)
	time.Sleep(time.Second) // let the flood and the flows table fill up

	tu.m.mu.Lock()
	p0, t0 := tu.m.packets, time.Now()
	tu.m.mu.Unlock()
	keys := []rune{'j', 'j', 'k', 'j', 'k', 'k'}
	lat := make([]time.Duration, 0, presses)
	for i := range presses {
		// Land the presses at every phase of the 200ms tick.
		time.Sleep(time.Duration(7+i%13) * time.Millisecond)
		n := tu.keysIn.Load()
		start := time.Now()
		sim.InjectKey(tcell.KeyRune, keys[i%len(keys)], tcell.ModNone)
		for tu.keysDrawn.Load() <= n {
			time.Sleep(20 * time.Microsecond)
			if time.Since(start) > 10*time.Second {
				tb.Fatal("key never drawn")
			}
		}
		lat = append(lat, time.Since(start))
	}
	tu.m.mu.Lock()
	p1, t1 := tu.m.packets, time.Now()
	tu.m.mu.Unlock()

	slices.Sort(lat)
	return latencies{
		p50:      lat[len(lat)/2],
		p99:      lat[(len(lat)*99)/100],
		max:      lat[len(lat)-1],
		ingested: float64(p1-p0) / t1.Sub(t0).Seconds(),
		lost:     feed.lost.Load(),
	}
}

// BenchmarkKeyLatencyUnderFlood reports key-press-to-redraw latency while
// 200k packets/s flow into the UI. Each iteration is one key press.
func BenchmarkKeyLatencyUnderFlood(b *testing.B) {
	for _, rate := range []int{0, 200_000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			presses := max(b.N, 50)
			l := measureKeyLatency(b, rate, presses)
			b.ReportMetric(float64(l.p50.Microseconds())/1e3, "p50-ms")
			b.ReportMetric(float64(l.p99.Microseconds())/1e3, "p99-ms")
			b.ReportMetric(float64(l.max.Microseconds())/1e3, "max-ms")
			b.ReportMetric(l.ingested, "pkts/s")
			b.ReportMetric(float64(l.lost), "lost")
		})
	}
}

// The bar: a key press is answered within 100ms under a flood. The
// machine is shared (2 cores, parallel builds and root tests), so a p99 miss
// is retried, and finally judged against the same UI without the flood: a UI
// that is really slow (a redraw per packet, a key handler waiting on the
// model) misses with a quiet baseline, a busy machine misses both.
// TestKeyLatencyUnderFlood asserts a timing, so it is opt-in: a timing can
// fail on a busy machine for reasons that are not the code's. CI and
// `make test` run BenchmarkKeyLatency's figures instead; set
// VXTRACE_TIMING_TESTS=1 to run this check.
func TestKeyLatencyUnderFlood(t *testing.T) {
	if os.Getenv("VXTRACE_TIMING_TESTS") == "" {
		t.Skip("timing check: set VXTRACE_TIMING_TESTS=1 to run it")
	}
	for attempt := 1; attempt <= 3; attempt++ {
		l := measureKeyLatency(t, 200_000, 100)
		t.Logf("attempt %d, 200k pkts/s offered: key→draw p50 %v p99 %v max %v; UI ingested %.0f pkts/s, %d lost at the channel",
			attempt, l.p50, l.p99, l.max, l.ingested, l.lost)
		if l.p50 > 50*time.Millisecond {
			t.Fatalf("median key→draw latency %v under the flood", l.p50)
		}
		if l.p99 <= 100*time.Millisecond {
			return
		}
	}
	base := measureKeyLatency(t, 0, 100)
	t.Logf("no flood: key→draw p50 %v p99 %v max %v", base.p50, base.p99, base.max)
	if base.p99 <= 50*time.Millisecond {
		t.Fatal("p99 key→draw latency above 100ms under the flood, with a quiet baseline")
	}
	t.Log("the machine is too busy to judge the 100ms p99 bar; see the benchmark")
}
