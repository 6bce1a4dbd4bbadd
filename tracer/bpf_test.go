package tracer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
}

// runTC runs the TC ingress program on frame with BPF_PROG_TEST_RUN and
// returns the event it emitted, if any.
var errRefused = errors.New("test run refused the frame")

func runTC(t *testing.T, tr *Tracer, rd *ringbuf.Reader, frame []byte) (*Event, bool) {
	t.Helper()
	e, ok, err := tryTC(t, tr, rd, frame)
	if err != nil {
		t.Fatal(err)
	}
	return e, ok
}

// tryTC is runTC for frames the kernel may refuse to build an skb from:
// BPF_PROG_TEST_RUN wants a whole IP header when the EtherType says IP.
func tryTC(t *testing.T, tr *Tracer, rd *ringbuf.Reader, frame []byte) (*Event, bool, error) {
	t.Helper()
	ret, err := tr.tc.Ingress.Run(&ebpf.RunOptions{Data: frame})
	if errors.Is(err, unix.EINVAL) {
		return nil, false, errRefused
	}
	if err != nil {
		t.Fatalf("prog.Run on % x: %v", frame, err)
	}
	if int32(ret) != -1 {
		t.Fatalf("TC program returned %d, want -1 (continue)", int32(ret))
	}
	tr.batch.flush(Now(), 0) // a head-only record waits in its CPU's batch
	rd.SetDeadline(time.Now().Add(20 * time.Millisecond))
	rec, err := rd.Read()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var e Event
	if err := DecodeEvent(rec.RawSample, &e); err != nil {
		return nil, false, err
	}
	return &e, true, nil
}

func newTCOnly(t *testing.T, cfg Config) (*Tracer, *ringbuf.Reader) {
	t.Helper()
	cfg.NoTracepoints = true
	cfg.TCEvents = true
	// Every record carries the packet's headers: the tests read them from
	// each. (With no free tracepoint, a run's skb address stays tracked,
	// and the next run of the same frame would otherwise send its head
	// alone.)
	if cfg.HeadersAfter == 0 {
		cfg.HeadersAfter = 1
	}
	// And each record is one event, as the tests read them.
	cfg.NoBatch = true
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	rd, err := ringbuf.NewReader(tr.maps.Events)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return tr, rd
}

func checkAgainstGo(t *testing.T, name string, frame []byte, e *Event, emitted bool) {
	t.Helper()
	p, ok := ParseFrame(frame, true, 0, DefaultVXLANPorts)
	if ok != emitted {
		t.Fatalf("%s: Go parsed=%v, BPF emitted=%v (% x)", name, ok, emitted, frame)
	}
	if !ok {
		return
	}
	got := Parsed{Inner: e.Inner, Outer: e.Outer, VNI: e.VNI, IPID: e.IPID, Flags: e.Flags &^ (FlagNew | FlagTC | FlagHeaders)}
	want := p
	want.TCPSeq, want.UDPCsum = 0, 0 // not carried in the event; covered by the fingerprint
	if got != want {
		t.Fatalf("%s: BPF parsed\n %+v\nGo parsed\n %+v", name, got, want)
	}
	if fp := Fingerprint(&p); e.FP != fp {
		t.Fatalf("%s: BPF fingerprint %x, Go %x", name, e.FP, fp)
	}
	if e.Hook != HookTCIngress || e.Len != uint32(len(frame)) {
		t.Fatalf("%s: hook %v len %d", name, e.Hook, e.Len)
	}
}

func TestProgRunParserMatchesGo(t *testing.T) {
	requireRoot(t)
	tr, rd := newTCOnly(t, Config{})
	frames := namedFrames()
	names := make([]string, 0, len(frames))
	for n := range frames {
		names = append(names, n)
	}
	sort.Strings(names)
	refused := 0
	for _, n := range names {
		e, ok, err := tryTC(t, tr, rd, frames[n])
		if err == errRefused {
			refused++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		checkAgainstGo(t, n, frames[n], e, ok)
	}

	// Mutations of the crafted frames: flipped bytes and cut lengths
	// exercise every bounds check on both sides.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		base := frames[names[rng.IntN(len(names))]]
		f := append([]byte(nil), base...)
		for range 1 + rng.IntN(4) {
			f[rng.IntN(len(f))] = byte(rng.Uint32())
		}
		if rng.IntN(3) == 0 {
			f = f[:14+rng.IntN(len(f)-13)]
		}
		e, ok, err := tryTC(t, tr, rd, f)
		if err == errRefused {
			refused++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		checkAgainstGo(t, fmt.Sprintf("mutation %d", i), f, e, ok)
	}
	if refused > 1000 {
		t.Fatalf("the kernel refused %d of the frames: the comparison covers too little", refused)
	}
	t.Logf("%d frames refused by BPF_PROG_TEST_RUN", refused)

	st, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Lost != 0 || st.Events == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestProgRunFilter(t *testing.T) {
	requireRoot(t)
	vni := uint32(4097)
	cases := []struct {
		name  string
		cfg   Config
		frame string
		want  bool
	}{
		{"dst match inner", Config{Dst: mustPrefix("10.0.1.4/32")}, "vxlan_icmp", true},
		{"dst miss", Config{Dst: mustPrefix("10.0.1.5/32")}, "vxlan_icmp", false},
		{"src cidr", Config{Src: mustPrefix("10.0.0.0/16")}, "icmp", true},
		{"src cidr /23 miss", Config{Src: mustPrefix("10.0.2.0/23")}, "icmp", false},
		{"outer dst", Config{OuterDst: mustPrefix("10.99.2.0/24")}, "vxlan_icmp", true},
		{"outer on plain packet", Config{OuterDst: mustPrefix("10.99.2.0/24")}, "icmp", false},
		{"proto tcp", Config{Proto: 6}, "vxlan_tcp", true},
		{"proto tcp on icmp", Config{Proto: 6}, "vxlan_icmp", false},
		{"port", Config{Port: 8080}, "vxlan_tcp", true},
		{"port miss", Config{Port: 80}, "vxlan_tcp", false},
		{"vni", Config{VNI: &vni}, "vxlan_icmp", true},
		{"vni miss", Config{VNI: &vni}, "flannel_8472", false},
		{"vni on plain", Config{VNI: &vni}, "icmp", false},
		{"v6 prefix", Config{Dst: mustPrefix("fd00::/64")}, "udp6", true},
		{"v6 prefix on v4", Config{Dst: mustPrefix("fd00::/64")}, "icmp", false},
		{"src /0", Config{Src: mustPrefix("0.0.0.0/0")}, "icmp", true},
		{"dst /31 match", Config{Dst: mustPrefix("10.0.1.4/31")}, "icmp", true},
		{"dst /31 miss", Config{Dst: mustPrefix("10.0.1.6/31")}, "icmp", false},
		{"dst /30 unmasked", Config{Dst: mustPrefix("10.0.1.7/30")}, "icmp", true},
		{"v6 /128 match", Config{Dst: mustPrefix("fd00::4/128")}, "udp6", true},
		{"v6 /128 miss", Config{Dst: mustPrefix("fd00::5/128")}, "udp6", false},
		{"v6 /56 miss", Config{Dst: mustPrefix("fd00:0:0:100::/56")}, "udp6", false},
		{"v6 /100 match", Config{Dst: mustPrefix("fd00::/100")}, "udp6", true},
		{"outer src and inner dst", Config{OuterSrc: mustPrefix("10.99.1.0/24"), Dst: mustPrefix("10.0.1.4/32")}, "vxlan_icmp", true},
		{"outer src miss", Config{OuterSrc: mustPrefix("10.99.2.0/24")}, "vxlan_icmp", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, rd := newTCOnly(t, c.cfg)
			_, got := runTC(t, tr, rd, namedFrames()[c.frame])
			if got != c.want {
				t.Fatalf("matched=%v, want %v", got, c.want)
			}
		})
	}
}

// A followed packet's headers travel in its first record, the VTEP headers
// in its first encapsulated one, and both again after a silence (user space
// may have ended the journey); the other records are heads alone. Runs of
// BPF_PROG_TEST_RUN are one packet when their skb sits at one address (the
// kernel reuses a freed skb's at once, mostly: a sequence counts only when
// every run of it did).
func TestHeadersOncePerPacket(t *testing.T) {
	requireRoot(t)
	const after = 50 * time.Millisecond
	tr, rd := newTCOnly(t, Config{HeadersAfter: after})
	type rec struct {
		skb          uint64
		inner, outer bool
	}
	run := func(frame []byte) rec {
		t.Helper()
		e, ok := runTC(t, tr, rd, frame)
		if !ok {
			t.Fatal("no event")
		}
		return rec{e.Skb, e.Inner.Family != 0, e.Outer.Family != 0}
	}
	for attempt := range 50 {
		// Another packet each time (its IP id): the last one's address
		// stays tracked, as no free tracepoint is attached.
		ping := pingFrame("10.0.1.3", "10.0.1.4", 0x1234, 7, uint16(attempt))
		vx := vxlanWrap(ping, "10.99.1.2", "10.99.2.2", 4789, 4097)
		first := run(ping)
		encap := run(vx)
		again := run(vx)
		time.Sleep(after + 10*time.Millisecond)
		late := run(vx)
		if first.skb != encap.skb || encap.skb != again.skb || again.skb != late.skb {
			continue
		}
		t.Logf("attempt %d: one address for the 4 runs", attempt)
		for _, c := range []struct {
			name         string
			got          rec
			inner, outer bool
		}{
			{"first sighting", first, true, false},
			{"first encapsulated", encap, true, true},
			{"nothing new", again, false, false},
			{"after a silence", late, true, true},
		} {
			if c.got.inner != c.inner || c.got.outer != c.outer {
				t.Errorf("%s: record with inner headers %v, outer %v; want %v, %v", c.name, c.got.inner, c.got.outer, c.inner, c.outer)
			}
		}
		return
	}
	t.Fatal("BPF_PROG_TEST_RUN never reused an skb's address for 4 runs in 50 attempts")
}
