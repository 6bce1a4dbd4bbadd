package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
)

// profileHz is perf's sampling rate: low enough that perf's own share stays
// under a percent, high enough for tens of thousands of samples a run.
const profileHz = 999

// The parts of a BPF program's time, told apart by what the sample's stack
// holds under the program's frame.
const (
	partOwn   = "own code (parse, maps inlined, batch writes)"
	partClock = "clock read (bpf_ktime_get_ns)"
	partCopy  = "header copy (bpf_probe_read_kernel)"
	partRing  = "ring buffer output"
	partMaps  = "map helpers"
	partOther = "other helpers"
)

// Where a sample outside the BPF programs falls.
const (
	whereTracer = "vxtrace (user space and its system calls)"
	whereIdle   = "idle"
	wherePerf   = "perf itself"
	whereRest   = "the workload: iperf3 and the kernel's packet path"
)

// profile counts perf samples: per BPF program (by its entry point, the
// outermost BPF frame) and part, and everything else by where it ran.
type profile struct {
	total int
	bpf   map[string]map[string]int // program -> part -> samples
	other map[string]int
	// lines: samples per source line of the BPF programs, with a table
	// from JIT addresses to lines.
	lines map[string]int
	table *lineTable
}

func newProfile(t *lineTable) *profile {
	return &profile{bpf: map[string]map[string]int{}, other: map[string]int{}, lines: map[string]int{}, table: t}
}

// frame is one entry of a sample's stack.
type frame struct {
	ip  uint64
	sym string
}

// parsePerfScript reads `perf script -F comm,tid,ip,sym` of a -g recording:
// a header line per sample ("comm tid"), then its stack, innermost frame
// first, one "\tip sym" line each, and a blank line.
func parsePerfScript(r io.Reader, t *lineTable) (*profile, error) {
	p := newProfile(t)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var comm string
	var frames []frame
	inSample := false
	flush := func() {
		if inSample {
			p.add(comm, frames)
		}
		inSample, frames = false, frames[:0]
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == '\t':
			f := strings.Fields(line)
			if len(f) >= 2 {
				ip, _ := strconv.ParseUint(f[0], 16, 64)
				frames = append(frames, frame{ip: ip, sym: f[1]})
			}
		default:
			flush()
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			// The thread id is last; a command name may hold spaces.
			comm = strings.Join(f[:max(len(f)-1, 1)], " ")
			inSample = true
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading perf script: %w", err)
	}
	if p.total == 0 {
		return nil, errors.New("perf recorded no samples")
	}
	return p, nil
}

// bpfProgName is the program's name in a JIT symbol, bpf_prog_<tag>_<name>
// (the tag: 16 hex digits; kernel functions such as bpf_prog_run_* are
// not programs).
func bpfProgName(sym string) (string, bool) {
	rest, ok := strings.CutPrefix(sym, "bpf_prog_")
	if !ok || len(rest) < 17 || rest[16] != '_' {
		return "", false
	}
	if _, err := strconv.ParseUint(rest[:16], 16, 64); err != nil {
		return "", false
	}
	return rest[17:], true
}

func (p *profile) add(comm string, frames []frame) {
	p.total++
	inner, outer := -1, -1
	prog := ""
	for i, f := range frames {
		if name, ok := bpfProgName(f.sym); ok {
			if inner < 0 {
				inner = i
			}
			outer, prog = i, name
		}
	}
	if outer >= 0 {
		m := p.bpf[prog]
		if m == nil {
			m = map[string]int{}
			p.bpf[prog] = m
		}
		m[bpfPart(frames[:inner])]++
		// A frame below the leaf holds a return address: the call is
		// the byte before it.
		ip := frames[inner].ip
		if inner > 0 {
			ip--
		}
		if l, ok := p.table.at(ip); ok {
			p.lines[l]++
		}
		return
	}
	switch {
	case comm == "vxtrace":
		p.other[whereTracer]++
	case comm == "perf" || comm == "perf-exec":
		p.other[wherePerf]++
	case strings.HasPrefix(comm, "swapper"):
		p.other[whereIdle]++
	default:
		p.other[whereRest]++
	}
}

// bpfPart names what a BPF program was doing: callees are the frames
// above its innermost BPF frame (a subprogram such as tc_events counts as
// the program's own code). The clock is the kernel's ktime path, which in
// a paravirtual guest reads the hypervisor's clock page.
func bpfPart(callees []frame) string {
	if len(callees) == 0 {
		return partOwn
	}
	has := func(subs ...string) bool {
		for _, f := range callees {
			for _, s := range subs {
				if strings.Contains(f.sym, s) {
					return true
				}
			}
		}
		return false
	}
	switch {
	case has("ringbuf"):
		return partRing
	case has("ktime_get", "clock", "read_tsc"):
		return partClock
	case has("copy_from_kernel_nofault", "probe_read"):
		return partCopy
	case has("map_", "lookup_", "htab_"):
		return partMaps
	}
	return partOther
}

type count struct {
	k string
	v int
}

// sorted is m's entries, the most samples first.
func sorted(m map[string]int) []count {
	var s []count
	for k, v := range m {
		s = append(s, count{k, v})
	}
	sort.Slice(s, func(i, j int) bool {
		if s[i].v != s[j].v {
			return s[i].v > s[j].v
		}
		return s[i].k < s[j].k
	})
	return s
}

// profileRow is one line of the table.
type profileRow struct {
	name    string
	samples int
	indent  bool
}

// rows orders the table: the BPF programs (largest first) with their
// parts, then everything else.
func (p *profile) rows() []profileRow {
	progs := map[string]int{}
	all := 0
	for name, parts := range p.bpf {
		for _, n := range parts {
			progs[name] += n
			all += n
		}
	}
	rows := []profileRow{{name: "BPF programs", samples: all}}
	for _, prog := range sorted(progs) {
		rows = append(rows, profileRow{name: prog.k, samples: prog.v, indent: true})
		for _, part := range sorted(p.bpf[prog.k]) {
			rows = append(rows, profileRow{name: "  " + part.k, samples: part.v, indent: true})
		}
	}
	for _, o := range sorted(p.other) {
		rows = append(rows, profileRow{name: o.k, samples: o.v})
	}
	return rows
}

// print writes the table. pps > 0 adds each row's CPU time per packet.
func (p *profile) print(w io.Writer, pps float64, seconds float64) {
	fmt.Fprintf(w, "  %-52s %8s %8s %12s\n", "where", "samples", "of CPU", "ns/packet")
	for _, r := range p.rows() {
		name := r.name
		if r.indent {
			name = "  " + name
		}
		fmt.Fprintf(w, "  %-52s %8d %7.1f%% %12s\n", name, r.samples, 100*float64(r.samples)/float64(p.total), perPacket(r.samples, pps, seconds))
	}
}

// lineTable maps the JIT addresses of the loaded BPF programs to their
// source lines (their BTF line info), read while the programs are loaded:
// perf knows a program's symbol but not which line of it ran.
type lineTable struct {
	addrs []uint64 // sorted
	lines []string
}

// loadLineTable reads every loaded program that has line info.
func loadLineTable() (*lineTable, error) {
	type entry struct {
		addr uint64
		line string
	}
	var all []entry
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			break
		}
		id = next
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded since
		}
		info, err := prog.Info()
		prog.Close()
		if err != nil {
			continue
		}
		lines, err := info.LineInfos()
		if err != nil {
			continue
		}
		addrs, ok := info.JitedLineInfos()
		// The kernel hides addresses under kptr_restrict: zeros.
		if !ok || len(addrs) != len(lines) || addrs[0] == 0 {
			continue
		}
		for i, l := range lines {
			all = append(all, entry{addrs[i], fmt.Sprintf("%s:%d  %s", filepath.Base(l.Line.FileName()),
				l.Line.LineNumber(), strings.Join(strings.Fields(l.Line.Line()), " "))})
		}
	}
	if len(all) == 0 {
		return nil, errors.New("no loaded BPF program has JIT line info")
	}
	sort.Slice(all, func(i, j int) bool { return all[i].addr < all[j].addr })
	t := &lineTable{}
	for _, e := range all {
		t.addrs = append(t.addrs, e.addr)
		t.lines = append(t.lines, e.line)
	}
	return t, nil
}

// at is the source line of the machine code at ip.
func (t *lineTable) at(ip uint64) (string, bool) {
	if t == nil {
		return "", false
	}
	i := sort.Search(len(t.addrs), func(i int) bool { return t.addrs[i] > ip }) - 1
	// Past a program's last line by more than any line's code: not in a
	// program with line info.
	if i < 0 || ip-t.addrs[i] > 4096 {
		return "", false
	}
	return t.lines[i], true
}

// printLines writes the n source lines of the BPF programs with the most
// samples.
func (p *profile) printLines(w io.Writer, n int, pps, seconds float64) {
	if len(p.lines) == 0 {
		return
	}
	s := sorted(p.lines)
	all := 0
	for _, e := range s {
		all += e.v
	}
	fmt.Fprintf(w, "  the BPF programs' source lines with the most samples (a line's callees count in it):\n")
	fmt.Fprintf(w, "  %8s %8s %12s  %s\n", "samples", "of BPF", "ns/packet", "line")
	for i, e := range s {
		if i == n {
			break
		}
		fmt.Fprintf(w, "  %8d %7.1f%% %12s  %s\n", e.v, 100*float64(e.v)/float64(all), perPacket(e.v, pps, seconds), e.k)
	}
}

// perPacket is the CPU time of n samples per packet of a flood at pps, or
// "-" without a packet rate.
func perPacket(n int, pps, seconds float64) string {
	if pps <= 0 || seconds <= 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(n)/profileHz*1e9/(pps*seconds), 'f', 0, 64)
}

// profileRun samples every CPU with perf while vxtrace watches a flood,
// once per vxtrace mode in --modes (its filter missing the flow, P1;
// tracing every packet, P2), and says where the time goes: in which BPF
// program and which part of it (its own code, the clock, the header copy,
// the ring), in the tracer, in the workload. perf's cpu-clock samples come
// from a timer, so the guest needs no hardware counters; time with
// interrupts off is charged where they come back on.
func (r *runner) profileRun(ctx context.Context) error {
	perf, err := lookPath("perf")
	if err != nil {
		return errors.New("perf not found (apt-get install linux-perf; make profile installs it)")
	}
	// BPF programs show in perf's stacks only under their JIT symbols.
	restore, err := setSysctl("/proc/sys/net/core/bpf_jit_kallsyms", "1")
	if err != nil {
		return err
	}
	defer restore()
	seconds := int(r.o.profile.Seconds())
	for _, proto := range r.o.protos {
		for _, m := range r.o.modes {
			if !m.vxtrace() {
				continue
			}
			if err := r.profileProto(ctx, perf, proto, m, seconds); err != nil {
				return fmt.Errorf("profile %s %s: %w", proto, m, err)
			}
		}
	}
	return nil
}

func (r *runner) profileProto(ctx context.Context, perf, proto string, mode Mode, seconds int) error {
	t := &Tracer{}
	tr, err := r.startTracer(ctx, mode, t)
	if err != nil {
		return err
	}
	defer tr.stop(syscall.SIGINT, 60*time.Second)
	srv, err := r.iperfServer(ctx)
	if err != nil {
		return err
	}
	defer srv.stop(syscall.SIGKILL, 5*time.Second)
	// The flood runs 2 s before perf starts and 2 s after it stops.
	cl, err := r.iperfClient(proto, seconds+4)
	if err != nil {
		return err
	}
	defer cl.stop(syscall.SIGKILL, 5*time.Second)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Second):
	}
	data := filepath.Join(r.tmp, "perf-"+proto+".data")
	fmt.Printf("bench: profile %s %s: sampling every CPU for %d s (perf record -e cpu-clock -a -g -F %d)\n", proto, mode, seconds, profileHz)
	rec := exec.CommandContext(ctx, perf, "record", "-q", "-e", "cpu-clock", "-a", "-g", "-F", strconv.Itoa(profileHz),
		"-o", data, "--", "sleep", strconv.Itoa(seconds))
	if out, err := rec.CombinedOutput(); err != nil {
		return fmt.Errorf("perf record: %v: %s", err, lastLine(string(out)))
	}
	if err := cl.wait(ctx, time.Duration(seconds+30)*time.Second); err != nil {
		return fmt.Errorf("iperf3: %v", err)
	}
	ip, err := parseIPerf([]byte(cl.stdout.String()), proto)
	if err != nil {
		return err
	}
	// Before the tracer unloads its programs.
	table, err := loadLineTable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: profile %s: no source lines: %v\n", proto, err)
	}
	if err := finishTracer(tr, mode, t); err != nil {
		return err
	}
	sc := exec.CommandContext(ctx, perf, "script", "-i", data, "-F", "comm,tid,ip,sym")
	out, err := sc.StdoutPipe()
	if err != nil {
		return err
	}
	sc.Stderr = io.Discard
	if err := sc.Start(); err != nil {
		return fmt.Errorf("perf script: %w", err)
	}
	p, perr := parsePerfScript(out, table)
	if err := sc.Wait(); err != nil && perr == nil {
		perr = fmt.Errorf("perf script: %w", err)
	}
	if perr != nil {
		return perr
	}
	rate := fmt.Sprintf("%.2f Gbit/s", ip.BitsPerSecond/1e9)
	pps := 0.0
	if proto == "udp" {
		pps = ip.PPS
		rate = fmt.Sprintf("%.0f packets/s", pps)
	}
	what := map[Mode]string{ModeP1: "filter misses the flow", ModeP2: "trace-all"}[mode]
	fmt.Printf("bench: profile %s %s: %s, %s, %d samples on %d CPUs; events %d, lost %d kernel + %d user\n",
		proto, mode, what, rate, p.total, runtime.NumCPU(), t.Events, t.LostKernel, t.LostUser)
	p.print(os.Stdout, pps, float64(seconds))
	p.printLines(os.Stdout, 25, pps, float64(seconds))
	return nil
}

// setSysctl writes v to a sysctl file and returns what puts the old value
// back.
func setSysctl(path, v string) (func(), error) {
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	prev := strings.TrimSpace(string(old))
	if prev == v {
		return func() {}, nil
	}
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		return nil, fmt.Errorf("setting %s: %w", path, err)
	}
	return func() { _ = os.WriteFile(path, []byte(prev), 0o644) }, nil
}
