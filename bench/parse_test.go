package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The bench reads other tools' output; these pin the formats it relies on,
// so that a changed --stats layout fails here rather than leaving the P4
// table silently empty.
func TestParseStats(t *testing.T) {
	out := `vxtrace: notice: something
events: 10 written, 3 lost in the kernel, 2 lost in user space; tracked-map full: 1, stale: 4
journeys: 7 packets, 5 late frees (ends of packets already reported), 6 evicted (over 16384 open; peak 9000)
program                          runs     run time     ns/run  recursion
tp_netif_receive_skb              123      1.234ms   10032.5          0
tc_ingress                          5        850µs  170000.0          2
(run times are 0 unless kernel.bpf_stats_enabled=1)
`
	var tr Tracer
	if err := parseStats(out, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Events != 10 || tr.LostKernel != 3 || tr.LostUser != 2 || tr.TrackFull != 1 || tr.Stale != 4 {
		t.Fatalf("counters %+v", tr)
	}
	if tr.Packets != 7 || tr.LateFrees != 5 || tr.Evicted != 6 || tr.PeakOpen != 9000 {
		t.Fatalf("journeys %+v", tr)
	}
	if len(tr.Programs) != 2 {
		t.Fatalf("programs %+v", tr.Programs)
	}
	p := tr.Programs[1]
	if p.Name != "tc_ingress" || p.Runs != 5 || p.RunTimeNs != 850000 || p.NsPerRun != 170000 || p.Recursion != 2 {
		t.Fatalf("program %+v", p)
	}
	if err := parseStats("vxtrace: error\n", &tr); err == nil {
		t.Fatal("no stats line parsed without error")
	}
}

func TestParseIPerf(t *testing.T) {
	udp := []byte(`{"end":{"sum":{"bits_per_second":1e8,"seconds":10,"packets":2000000,"lost_packets":100000},
		"cpu_utilization_percent":{"host_total":99.5,"remote_total":60}}}`)
	ip, err := parseIPerf(udp, "udp")
	if err != nil {
		t.Fatal(err)
	}
	if ip.PPS != 190000 || ip.SenderCPU != 99.5 {
		t.Fatalf("udp %+v", ip)
	}
	tcp := []byte(`{"end":{"sum_sent":{"bits_per_second":2e10,"retransmits":3},"sum_received":{"bits_per_second":1.9e10,"seconds":10}}}`)
	if ip, err = parseIPerf(tcp, "tcp"); err != nil || ip.BitsPerSecond != 1.9e10 || ip.Retransmits != 3 {
		t.Fatalf("tcp %+v %v", ip, err)
	}
	if _, err := parseIPerf([]byte(`{"error":"unable to connect"}`), "tcp"); err == nil {
		t.Fatal("iperf3 error not reported")
	}
}

func TestParseTcpdump(t *testing.T) {
	c, d := parseTcpdump("tcpdump: listening on eth0\n642813 packets captured\n650000 packets received by filter\n2278 packets dropped by kernel\n")
	if c != 642813 || d != 2278 {
		t.Fatalf("captured %d dropped %d", c, d)
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Fatal(m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Fatal(m)
	}
	if q := quantile([]float64{5, 1, 4, 2, 3}, 0.25); q != 2 {
		t.Fatal(q)
	}
	if q := quantile([]float64{4, 1, 2, 3}, 0.75); q != 3.25 {
		t.Fatal(q)
	}
}

type modeRatio struct {
	m     Mode
	ratio float64
}

// udpRounds is one round per entry, its block between baselines of 1: the
// block's ratio is its value.
func udpRounds(rs []modeRatio) []*Block {
	var blocks []*Block
	for i, r := range rs {
		blocks = append(blocks, &Block{Round: i + 1, Proto: "udp", Mode: ModeBaseline, Value: 1, Unit: "pps"},
			&Block{Round: i + 1, Proto: "udp", Mode: r.m, Value: r.ratio, Unit: "pps"},
			&Block{Round: i + 1, Proto: "udp", Mode: ModeBaseline, Value: 1, Unit: "pps"})
	}
	return blocks
}

// The table sets P1 against the empty programs' blocks: the ceiling line
// gives both medians and their gap.
func TestCeilingLine(t *testing.T) {
	res := &Results{Options: OptsOut{Protos: []string{"udp"}, Modes: []Mode{ModeP1, ModeEmpty}},
		Blocks: udpRounds([]modeRatio{{ModeP1, 0.84}, {ModeEmpty, 0.95}, {ModeP1, 0.86}, {ModeEmpty, 0.97}, {ModeP1, 0.85}, {ModeEmpty, 0.96}})}
	summarize(res)
	var out bytes.Buffer
	printTable(&out, res)
	want := "udp: empty programs keep median 0.960, vxtrace with a missing filter 0.850 (-0.110)"
	if !strings.Contains(out.String(), want) {
		t.Errorf("no line %q in\n%s", want, out.String())
	}
}

// P3 against tcpdump on every hop: a 3x that would need more than 1.0 is
// said to be out of reach, and one within reach is not.
func TestTcpdumpAllGoal(t *testing.T) {
	for _, c := range []struct {
		all, p2 float64
		reach   bool
	}{{0.668, 0.723, false}, {0.300, 0.892, true}} {
		res := &Results{Options: OptsOut{Protos: []string{"udp"}, Modes: []Mode{ModeP2, ModeTcpdumpAll}},
			Blocks: udpRounds([]modeRatio{{ModeP2, c.p2}, {ModeTcpdumpAll, c.all}})}
		summarize(res)
		var g *Goal
		for i := range res.Goals {
			if strings.Contains(res.Goals[i].What, "tcpdump on every hop") {
				g = &res.Goals[i]
			}
		}
		if g == nil {
			t.Fatalf("tcpdump-all %.3f: no P3 goal in %+v", c.all, res.Goals)
		}
		if out := strings.Contains(g.Got, "out of reach"); out == c.reach {
			t.Errorf("tcpdump-all %.3f: got %q, out of reach said: %v", c.all, g.Got, out)
		}
		if g.Pass != (c.p2 >= 3*c.all) {
			t.Errorf("tcpdump-all %.3f, p2 %.3f: pass %v", c.all, c.p2, g.Pass)
		}
	}
}

// cpu0's line and the intr line must not count: only the all-CPU line's
// busy jiffies (not idle, iowait) and the ctxt line.
func TestParseHostStat(t *testing.T) {
	const stat = `cpu  100 5 200 1000 50 7 8 0 0 0
cpu0 50 2 100 500 25 3 4 0 0 0
intr 123456 0 9
ctxt 91922478
btime 1764900000
`
	got := parseHostStat(stat)
	if want := (hostStat{busy: 100 + 5 + 200 + 7 + 8, total: 1370, ctxt: 91922478}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if h := readHostStat(); h.ctxt == 0 || h.total == 0 {
		t.Errorf("this host's /proc/stat read as %+v", h)
	}
}

func TestReadMemStats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(path, []byte("live=1048576 objects=2097152 goal=3145728 mapped=10485760 gcs=7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := readMemStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := (memStats{Live: 1 << 20, Objects: 2 << 20, Goal: 3 << 20, Mapped: 10 << 20, GCs: 7}); m != want {
		t.Errorf("got %+v, want %+v", m, want)
	}
	if _, err := readMemStats(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("a missing file read without error")
	}
}

// A round B m1 B m2 B: each mode against the baselines either side, the
// inner baseline against the outer ones; an invalid neighbour leaves a
// ratio out. The noise line gives the baselines' spread.
func TestSetRatios(t *testing.T) {
	vals := []float64{100, 90, 120, 60, 80}
	var blocks []*Block
	for i, v := range vals {
		m := ModeBaseline
		if i%2 == 1 {
			m = ModeP1
		}
		blocks = append(blocks, &Block{Round: 1, Proto: "udp", Mode: m, Value: v, Unit: "pps"})
	}
	setRatios(blocks)
	setRatios(blocks) // again: the same
	want := []float64{0, 90.0 / 110, 120.0 / 90, 60.0 / 100, 0}
	for i, b := range blocks {
		if math.Abs(b.Ratio-want[i]) > 1e-9 {
			t.Errorf("block %d (%s): ratio %.4f, want %.4f", i, b.Mode, b.Ratio, want[i])
		}
	}
	res := &Results{Options: OptsOut{Protos: []string{"udp"}, Modes: []Mode{ModeP1}}, Blocks: blocks}
	summarize(res)
	var out bytes.Buffer
	printTable(&out, res)
	for _, w := range []string{"noise, udp: a baseline block against the baselines either side of it: median 1.333, middle half 1.333 to 1.333, all 1.333 to 1.333",
		"udp  baseline  - 1.333 -"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("no %q in\n%s", w, out.String())
		}
	}

	blocks[4].Error = "iperf3 failed"
	for _, b := range blocks {
		b.Ratio = 0
	}
	setRatios(blocks)
	if blocks[2].Ratio != 0 || blocks[3].Ratio != 0 || blocks[1].Ratio == 0 {
		t.Errorf("with the last baseline invalid: ratios %.3f %.3f %.3f, want m1 only", blocks[1].Ratio, blocks[2].Ratio, blocks[3].Ratio)
	}
}

// Switches per delivered packet (sent less lost), a median per mode; TCP
// blocks have no packet count and get no line.
func TestWakeupLine(t *testing.T) {
	udp := func(m Mode, sw uint64) *Block {
		return &Block{Round: 1, Proto: "udp", Mode: m, Value: 1, Unit: "pps", CtxSwitches: sw,
			IPerf: IPerf{Packets: 1100, LostPackets: 100}}
	}
	res := &Results{
		Options: OptsOut{Protos: []string{"tcp", "udp"}, Modes: []Mode{ModeP1}},
		Blocks: []*Block{udp(ModeBaseline, 1000), udp(ModeP1, 1500), udp(ModeBaseline, 800),
			{Round: 1, Proto: "tcp", Mode: ModeBaseline, Value: 1, Unit: "Gbit/s", CtxSwitches: 5000}},
	}
	summarize(res)
	var out bytes.Buffer
	printTable(&out, res)
	if w := "wake-ups, udp: host context switches per delivered packet, median: baseline 0.90, p1 1.50\n"; !strings.Contains(out.String(), w) {
		t.Errorf("no %q in\n%s", w, out.String())
	}
	if strings.Contains(out.String(), "wake-ups, tcp") {
		t.Errorf("a wake-up line for TCP in\n%s", out.String())
	}
}
