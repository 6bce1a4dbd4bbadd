package tracer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/vxtrace/vxtrace/internal/leakcheck"
	"github.com/vxtrace/vxtrace/internal/nsexec"
	"github.com/vxtrace/vxtrace/topo"
)

// Kernel variety: every fallback is forced here and must still trace a real
// packet on a real veth pair; the optional probes this kernel refuses must be
// refused in one notice and survived.

// vethPair is two namespaces joined by a veth: A (192.168.77.1) and B
// (192.168.77.2).
type vethPair struct {
	nsA, nsB     topo.NetNS
	hopA, hopB   topo.Hop
	addrA, addrB string
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newVethPair(t *testing.T) *vethPair {
	t.Helper()
	a := fmt.Sprintf("vxfb%d-a", os.Getpid()%100000)
	b := fmt.Sprintf("vxfb%d-b", os.Getpid()%100000)
	for _, ns := range []string{a, b} {
		_ = exec.Command("ip", "netns", "del", ns).Run()
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("deleting %s: %v: %s", ns, err, out)
			}
		})
	}
	ipCmd(t, "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b)
	ipCmd(t, "-n", a, "addr", "add", "192.168.77.1/30", "dev", "va")
	ipCmd(t, "-n", b, "addr", "add", "192.168.77.2/30", "dev", "vb")
	for _, x := range [][2]string{{a, "va"}, {b, "vb"}, {a, "lo"}, {b, "lo"}} {
		ipCmd(t, "-n", x[0], "link", "set", x[1], "up")
	}
	p := &vethPair{addrA: "192.168.77.1", addrB: "192.168.77.2"}
	var err error
	if p.nsA, err = topo.ResolveNetNS(a); err != nil {
		t.Fatal(err)
	}
	if p.nsB, err = topo.ResolveNetNS(b); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		ns  topo.NetNS
		dev string
		hop *topo.Hop
	}{{p.nsA, "va", &p.hopA}, {p.nsB, "vb", &p.hopB}} {
		var idx int
		err := nsexec.Do(x.ns.Path, func() error {
			ifi, err := net.InterfaceByName(x.dev)
			if err == nil {
				idx = ifi.Index
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		*x.hop = topo.Hop{Ifname: x.dev, Ifindex: uint32(idx), NetNS: x.ns}
	}
	return p
}

// sendUDP sends n datagrams from A to B's port 9. Nothing listens there:
// the packets still cross both veth ends. The socket is unconnected, so the
// port-unreachable answer of one datagram does not fail the next send.
func (p *vethPair) sendUDP(t *testing.T, n int) {
	t.Helper()
	p.sendUDPTo(t, 9, n, 10*time.Millisecond)
}

// sendUDPTo sends n datagrams from A to B's port, gap apart.
func (p *vethPair) sendUDPTo(t *testing.T, port, n int, gap time.Duration) {
	t.Helper()
	var conn *net.UDPConn
	err := nsexec.Do(p.nsA.Path, func() error {
		var err error
		conn, err = net.ListenUDP("udp4", nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst := &net.UDPAddr{IP: net.ParseIP(p.addrB), Port: port}
	for range n {
		if _, err := conn.WriteToUDP([]byte("vxtrace fallback test"), dst); err != nil {
			t.Fatal(err)
		}
		time.Sleep(gap)
	}
}

func TestFallbackPaths(t *testing.T) {
	requireRoot(t)
	p := newVethPair(t)
	cases := []struct {
		name      string
		cfg       Config
		tp, tc    string
		tcEvents  bool
		tracepts  bool
		wantHooks []Hook
	}{
		{name: "tp_btf+tcx", tp: "tp_btf", tc: "tcx", tracepts: true},
		{name: "raw_tp", cfg: Config{ForceRawTP: true}, tp: "raw_tp", tc: "tcx", tracepts: true},
		{name: "clsact", cfg: Config{ForceClsact: true}, tp: "tp_btf", tc: "clsact", tracepts: true},
		{name: "raw_tp+clsact", cfg: Config{ForceRawTP: true, ForceClsact: true}, tp: "raw_tp", tc: "clsact", tracepts: true},
		// The tracepoints find the packets themselves (as without TC);
		// TC only counts.
		{name: "tracepoints find", cfg: Config{TracepointsFind: true}, tp: "tp_btf", tc: "tcx", tracepts: true},
		{name: "raw_tp find", cfg: Config{TracepointsFind: true, ForceRawTP: true}, tp: "raw_tp", tc: "tcx", tracepts: true},
		// TC alone (no tracepoint can attach): the TC programs emit the
		// events themselves.
		{name: "clsact tc-events only", cfg: Config{ForceClsact: true, NoTracepoints: true, TCEvents: true}, tc: "clsact"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			paths := []string{p.nsA.Path, p.nsB.Path}
			before := leakcheck.Snapshot(t, paths...)
			cfg := c.cfg
			cfg.Dst = mustPrefix(p.addrB + "/32")
			cfg.Proto = 17
			cfg.NetNS = []uint32{p.nsA.Inode, p.nsB.Inode}
			tr, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					tr.Close()
				}
			}()
			hops := []topo.Hop{p.hopA, p.hopB}
			if err := tr.AttachHops(hops); err != nil {
				t.Fatal(err)
			}
			f := tr.Features()
			if f.Tracepoints != c.tp || f.TC != c.tc {
				t.Fatalf("features %+v, want tracepoints %q tc %q", f, c.tp, c.tc)
			}
			if c.tc == "clsact" {
				if got := leakcheck.Filters(paths...); len(got) != 4 {
					t.Fatalf("cls_bpf filters %v, want ingress and egress on both ends", got)
				}
			}
			rd, err := tr.NewReader(0, 0)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			seen := map[string]int{}
			// A packet's headers come in its first record only (the
			// rest are heads: tracer.EventHeadSize): each packet
			// must have exactly one, and match the filter.
			headers := map[uint64][]Tuple{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- rd.Run(ctx, func(evs []Event) {
					mu.Lock()
					defer mu.Unlock()
					for _, e := range evs {
						if e.Inner.Family != 0 {
							headers[e.FP] = append(headers[e.FP], e.Inner)
						} else if _, ok := headers[e.FP]; !ok {
							headers[e.FP] = nil
						}
						seen[fmt.Sprintf("%d/%d/%s", e.NetNS, e.Ifindex, e.Hook)]++
					}
				})
			}()
			p.sendUDP(t, 3)
			time.Sleep(100 * time.Millisecond)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			t.Logf("events by ifindex/hook: %v", seen)
			if len(headers) != 3 {
				t.Errorf("%d packets seen, want 3", len(headers))
			}
			for fp, in := range headers {
				if len(in) != 1 {
					t.Errorf("packet %x: %d records with its headers, want 1", fp, len(in))
				}
				for _, tp := range in {
					if tp.Dst.String() != p.addrB || tp.Proto != 17 {
						t.Errorf("packet %x outside the filter: %+v", fp, tp)
					}
				}
			}
			var want []string
			if c.tracepts {
				want = []string{key(p.hopA, HookTx), key(p.hopB, HookRx)}
			} else {
				want = []string{key(p.hopA, HookTCEgress), key(p.hopB, HookTCIngress)}
			}
			for _, w := range want {
				if seen[w] < 3 {
					t.Errorf("%d events at %s, want 3 (all: %v)", seen[w], w, seen)
				}
			}
			mu.Unlock()

			hc, err := tr.HopCounters()
			if err != nil {
				t.Fatal(err)
			}
			a, b := hc[p.hopA.Key()], hc[p.hopB.Key()]
			t.Logf("counters A %+v B %+v", a, b)
			if a.TCOut < 3 || b.TCIn < 3 {
				t.Errorf("TC counters A tc_out %d, B tc_in %d: want at least 3 each", a.TCOut, b.TCIn)
			}
			if c.tracepts && (a.Tx < 3 || b.Rx < 3) {
				t.Errorf("tracepoint counters A tx %d, B rx %d: want at least 3 each", a.Tx, b.Rx)
			}
			if err := tr.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			closed = true
			if got := clsactOn(t, p); len(got) != 0 {
				t.Errorf("clsact qdiscs left: %v", got)
			}
			leakcheck.Check(t, before, paths...)
		})
	}
}

func key(h topo.Hop, hook Hook) string {
	return fmt.Sprintf("%d/%d/%s", h.NetNS.Inode, h.Ifindex, hook)
}

func clsactOn(t *testing.T, p *vethPair) []string {
	t.Helper()
	var out []string
	for _, ns := range []string{p.nsA.Path, p.nsB.Path} {
		b, err := exec.Command("tc", "-n", ns[strings.LastIndex(ns, "/")+1:], "qdisc", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("tc qdisc show: %v: %s", err, b)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "clsact") {
				out = append(out, ns+": "+l)
			}
		}
	}
	return out
}

// TestFallbackOptionalProbes: the bridge-forward probes. Here the kprobe
// program is verified but cannot attach (kprobes are compiled out), and the
// fentry program is refused at load (EPERM). Both must cost exactly one
// notice and never the trace.
func TestFallbackOptionalProbes(t *testing.T) {
	requireRoot(t)
	tr, err := New(Config{NoTC: true})
	if err != nil {
		t.Fatalf("a refused optional probe failed the tracer: %v", err)
	}
	defer tr.Close()
	f := tr.Features()
	if f.Tracepoints != "tp_btf" {
		t.Errorf("tracepoints %q, want tp_btf", f.Tracepoints)
	}
	var probeNotices []string
	for _, n := range f.Notices {
		if strings.Contains(n, "bridge probe") {
			probeNotices = append(probeNotices, n)
		}
	}
	t.Logf("notices: %q", f.Notices)

	// New let go of the spec once it had loaded everything.
	if tr.spec != nil {
		t.Error("the tracer keeps its BPF spec after New")
	}
	if tr.spec, err = specFor(tr.cfg); err != nil {
		t.Fatal(err)
	}
	kp, kerr := tr.loadOne("kprobe_br_forward")
	fe, ferr := tr.loadOne("fentry_br_forward")
	if fe != nil {
		fe.Close()
	}
	switch {
	case f.BridgeProbe != "":
		t.Skipf("this kernel attached the %s bridge probe: nothing refused to test", f.BridgeProbe)
	case len(probeNotices) != 1:
		t.Fatalf("%d notices about the bridge probe, want exactly 1: %q", len(probeNotices), f.Notices)
	case strings.Contains(probeNotices[0], "\n"):
		t.Fatalf("notice is not one line: %q", probeNotices[0])
	case !strings.Contains(probeNotices[0], "fentry") || !strings.Contains(probeNotices[0], "kprobe"):
		t.Fatalf("notice does not say what was refused: %q", probeNotices[0])
	}

	// fentry: refused at load.
	if ferr == nil {
		t.Errorf("fentry program loaded; the reference kernel refuses it")
	} else if !errors.Is(ferr, os.ErrPermission) {
		t.Logf("fentry refused with %v (not EPERM)", ferr)
	}
	if !strings.Contains(probeNotices[0], "fentry: "+shortErr(ferr)) {
		t.Errorf("notice %q does not carry the fentry refusal %q", probeNotices[0], shortErr(ferr))
	}

	// kprobe: the verifier accepts it; only the attach fails.
	if kerr != nil {
		t.Fatalf("kprobe program not verified: %v", kerr)
	}
	defer kp.Close()
	info, err := kp.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != ebpf.Kprobe {
		t.Fatalf("program type %v, want kprobe", info.Type)
	}
	l, err := link.Kprobe("br_forward", kp, nil)
	if err == nil {
		l.Close()
		t.Skip("kprobe attached on this kernel")
	}
	t.Logf("kprobe attach refused as expected: %v", err)
	if !strings.Contains(probeNotices[0], "kprobe: "+shortErr(err)) {
		t.Errorf("notice %q does not carry the kprobe refusal %q", probeNotices[0], shortErr(err))
	}
}

// TestReliabilityRingAccounting: a ring that holds a few dozen events and a
// flood of thousands. Every event is either delivered or counted lost, and
// a slow reader receives exactly the events counted as written.
func TestReliabilityRingAccounting(t *testing.T) {
	requireRoot(t)
	ring := os.Getpagesize()
	capacity := ring / (EventSize + 8) // each record has an 8-byte header
	frame := namedFrames()["vxlan_icmp"]

	// newTCOnly: every record carries the headers, so the capacity
	// counts records of one size.
	t.Run("no reader", func(t *testing.T) {
		tr, rd := newTCOnly(t, Config{RingSize: ring})
		const runs = 1000
		ran := runIngress(t, tr, frame, runs)
		st, err := tr.Stats()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("ring of %d bytes (%d events), %d runs asked, %d ran: %+v", ring, capacity, runs, ran, st)
		if ran < runs || st.Events+st.Lost != ran {
			t.Fatalf("written %d + lost %d != %d runs", st.Events, st.Lost, ran)
		}
		if st.Events != uint64(capacity) {
			t.Fatalf("written %d, want the ring's capacity %d", st.Events, capacity)
		}
		n := 0
		for {
			rd.SetDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := rd.Read(); err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal(err)
				}
				break
			}
			n++
		}
		if uint64(n) != st.Events {
			t.Fatalf("read %d events, %d counted as written", n, st.Events)
		}
	})

	// Through the product's Reader, with events waiting in the CPUs'
	// batches: counted written when they reach the ring.
	t.Run("slow reader", func(t *testing.T) {
		tr, err := New(Config{RingSize: ring, NoTracepoints: true, TCEvents: true, HeadersAfter: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		if tr.batch == nil {
			t.Fatal("batching did not start on this kernel")
		}
		r, err := tr.NewReader(16, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		var got atomic.Uint64
		// Every event is of the same frame: one that reads differently
		// was taken apart where its record wraps around the ring's end.
		var first Event
		bad := 0
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- r.Run(ctx, func(evs []Event) {
				for _, e := range evs {
					if got.Load() == 0 && first.Skb == 0 {
						first = e
					}
					if e.Inner != first.Inner || e.Len != first.Len || e.Hook != first.Hook {
						bad++
					}
				}
				got.Add(uint64(len(evs)))
				time.Sleep(2 * time.Millisecond) // the slowed reader
			})
		}()
		runs := 0
		for range 200 {
			runs += int(runIngress(t, tr, frame, 20))
			time.Sleep(200 * time.Microsecond)
		}
		if runs < 200*20 {
			t.Fatalf("%d runs counted, want at least the %d asked", runs, 200*20)
		}
		// Let the reader flush the batches and drain what is left
		// before stopping it.
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			st, _ := tr.Stats()
			if got.Load() == st.Events && st.Events+st.Lost == uint64(runs) {
				break
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		st, err := tr.Stats()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d runs: written %d, lost %d, received %d", runs, st.Events, st.Lost, got.Load())
		if st.Events+st.Lost != uint64(runs) {
			t.Fatalf("written %d + lost %d != %d runs", st.Events, st.Lost, runs)
		}
		if st.Lost == 0 {
			t.Fatalf("nothing lost: the flood did not outrun the reader, so the test proves nothing")
		}
		if got.Load() != st.Events {
			t.Fatalf("reader received %d events, %d counted as written", got.Load(), st.Events)
		}
		if first.Inner.Family == 0 || bad != 0 {
			t.Fatalf("%d of %d events differ from the first (%+v)", bad, got.Load(), first.Inner)
		}
	})
}
