package main

import (
	"bytes"
	"strings"
	"testing"
)

// perf script's layout (`-F comm,tid,ip,sym` of a -g recording) as perf 6.1
// prints it: the bench's profile rests on it.
const perfScript = `          iperf3 24151 
	ffffffff8133bc87 kvm_clock_get_cycles
	ffffffff81430a7d ktime_get_mono_fast_ns
	ffffffffc00390e2 bpf_prog_3d61fc8dd663bb63_tc_events
	ffffffffc0037ba6 bpf_prog_50f563faf69d636d_tc_egress
	ffffffff81eb4d7a __dev_queue_xmit

          iperf3 24151 
	ffffffffc0037b10 bpf_prog_50f563faf69d636d_tc_egress
	ffffffff81eb4d7a __dev_queue_xmit

      ksoftirqd/1 22 
	ffffffff81ab0000 __pi_memcpy
	ffffffff81ab1000 bpf_ringbuf_output
	ffffffffc00390f0 bpf_prog_3d61fc8dd663bb63_tc_events
	ffffffffc0038000 bpf_prog_0fed3c59c51a1100_tc_ingress

          vxtrace 9001 
	ffffffff81ab2000 do_syscall_64

        swapper 0 
	ffffffff81ab3000 pvm_safe_halt_hc

       perf-exec 24155 
	ffffffff81ab4000 bpf_prog_run_raw_tp
	ffffffff81ab5000 do_syscall_64

          iperf3 24141 
	ffffffff81ab6000 udp_sendmsg
`

func TestParsePerfScript(t *testing.T) {
	lines := &lineTable{
		addrs: []uint64{0xffffffffc0037b00, 0xffffffffc00390d0, 0xffffffffc00390e2, 0xffffffffc00390e8},
		lines: []string{"vxtrace.c:1240  if (ts)", "vxtrace.c:799  now", "vxtrace.c:800  after", "vxtrace.c:417  output"},
	}
	p, err := parsePerfScript(strings.NewReader(perfScript), lines)
	if err != nil {
		t.Fatal(err)
	}
	if p.total != 7 {
		t.Fatalf("total %d, want 7", p.total)
	}
	// A sample counts for the outermost program (the entry point), and
	// its part comes from what the innermost BPF frame called.
	want := map[string]map[string]int{
		"tc_egress":  {partClock: 1, partOwn: 1},
		"tc_ingress": {partRing: 1},
	}
	for prog, parts := range want {
		for part, n := range parts {
			if got := p.bpf[prog][part]; got != n {
				t.Errorf("%s %q: %d samples, want %d (all: %v)", prog, part, got, n, p.bpf)
			}
		}
	}
	if len(p.bpf) != 2 {
		t.Errorf("programs %v, want tc_egress and tc_ingress only (bpf_prog_run_raw_tp is a kernel function)", p.bpf)
	}
	for where, n := range map[string]int{whereTracer: 1, whereIdle: 1, wherePerf: 1, whereRest: 1} {
		if p.other[where] != n {
			t.Errorf("%q: %d, want %d (all: %v)", where, p.other[where], n, p.other)
		}
	}
	// Lines: a frame with callees holds a return address (the call at
	// 0x...e1 is the line at 0x...d0, not the one that starts at the
	// return address 0x...e2); a leaf is its own address.
	for line, n := range map[string]int{"vxtrace.c:799  now": 1, "vxtrace.c:1240  if (ts)": 1, "vxtrace.c:417  output": 1} {
		if p.lines[line] != n {
			t.Errorf("line %q: %d, want %d (all: %v)", line, p.lines[line], n, p.lines)
		}
	}
	var b bytes.Buffer
	p.print(&b, 1000, 1)
	p.printLines(&b, 10, 1000, 1)
	// 1 sample at 999 Hz over 1000 packets: ~1001 ns a packet.
	if !strings.Contains(b.String(), "BPF programs") || !strings.Contains(b.String(), "1001  vxtrace.c:799  now") {
		t.Errorf("table:\n%s", b.String())
	}
	if _, err := parsePerfScript(strings.NewReader("\n\n"), nil); err == nil {
		t.Error("an empty recording parsed")
	}
}

func TestLineTableAt(t *testing.T) {
	lt := &lineTable{addrs: []uint64{100, 200}, lines: []string{"a", "b"}}
	for ip, want := range map[uint64]string{100: "a", 199: "a", 200: "b", 4296: "b"} {
		if got, ok := lt.at(ip); !ok || got != want {
			t.Errorf("at(%d) = %q, %v; want %q", ip, got, ok, want)
		}
	}
	for _, ip := range []uint64{99, 200 + 4097} {
		if got, ok := lt.at(ip); ok {
			t.Errorf("at(%d) = %q, want none", ip, got)
		}
	}
	var none *lineTable
	if _, ok := none.at(100); ok {
		t.Error("a nil table found a line")
	}
}
