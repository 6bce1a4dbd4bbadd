package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vxtrace/vxtrace/lab"
)

// Mode is what watches the traffic during a block.
type Mode string

const (
	ModeBaseline   Mode = "baseline"
	ModeP1         Mode = "p1"          // vxtrace attached, its filter misses the flow
	ModeP2         Mode = "p2"          // vxtrace traces every packet of the flow at every hop
	ModeTcpdumpNIC Mode = "tcpdump-nic" // tcpdump on node 1's NIC
	ModeTcpdumpAll Mode = "tcpdump-all" // one tcpdump per interface of the lab
	// ModeEmpty: empty BPF programs where vxtrace's run (TC on every
	// interface, consume_skb): what the hooks cost before any program does
	// anything, the ceiling P1 can reach.
	ModeEmpty Mode = "empty"
	// ModeFloor: the same empty programs in a bpf_stats block: what an
	// empty program costs as measured (not a user mode).
	ModeFloor Mode = "p4-floor"
)

func (m Mode) valid() bool {
	switch m {
	case ModeBaseline, ModeP1, ModeP2, ModeTcpdumpNIC, ModeTcpdumpAll, ModeEmpty:
		return true
	}
	return false
}

func (m Mode) vxtrace() bool { return m == ModeP1 || m == ModeP2 }

// iperfPort is iperf3's default port: the P2 filter is on it, so both
// directions of the test flow (data and ACKs) and its control connection
// are traced.
const iperfPort = 5201

// missDst is an address no packet of the lab goes to: the P1 filter.
const missDst = "10.9.9.9"

type iface struct {
	NS   string `json:"ns"`
	Name string `json:"name"`
}

type runner struct {
	o      *options
	lab    *lab.Lab
	procs  *procs
	nss    []string // every namespace of the lab
	ifaces []iface  // every interface of the lab but lo
	dst    string   // c2's address
	tmp    string
}

// Block is one iperf3 run and what watched it.
type Block struct {
	Round int     `json:"round"`
	Proto string  `json:"proto"`
	Mode  Mode    `json:"mode"`
	Stats bool    `json:"bpf_stats,omitempty"` // a P4 block
	Start string  `json:"start"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`          // Gbit/s or pps
	Ratio float64 `json:"ratio"`         // vs the mean of the adjacent baselines
	IPerf IPerf   `json:"iperf"`         // what iperf3 reported
	Busy  float64 `json:"host_busy_pct"` // both CPUs, during the block
	// Host-wide, during the block. A 64-byte UDP flood here is bound by
	// waking the receiver: the sender pays a cross-CPU wake-up (an exit
	// to the hypervisor) for each packet that finds iperf3 asleep.
	CtxSwitches uint64  `json:"context_switches"`
	Tracer      *Tracer `json:"tracer,omitempty"`
	Dumps       *Dumps  `json:"tcpdump,omitempty"`
	// Floor: the empty programs of a p4-floor block.
	Floor []ProgRun `json:"floor,omitempty"`
	Error string    `json:"error,omitempty"`
}

// IPerf is the part of iperf3 -J the bench uses.
type IPerf struct {
	BitsPerSecond float64 `json:"bits_per_second"`
	Packets       int64   `json:"packets,omitempty"`
	LostPackets   int64   `json:"lost_packets,omitempty"`
	Seconds       float64 `json:"seconds"`
	PPS           float64 `json:"pps,omitempty"` // delivered
	Retransmits   int64   `json:"retransmits,omitempty"`
	SenderCPU     float64 `json:"sender_cpu_pct"`
	ReceiverCPU   float64 `json:"receiver_cpu_pct"`
}

// Tracer is what one vxtrace run cost and counted.
type Tracer struct {
	Args       []string  `json:"args"`
	StartupSec float64   `json:"startup_s"` // until --ready-file
	CPUPct     float64   `json:"cpu_pct"`   // of one CPU, during the iperf3 run
	RSSKiB     uint64    `json:"rss_kib"`   // at the end of the iperf3 run
	MaxRSSKiB  uint64    `json:"max_rss_kib"`
	Events     uint64    `json:"events"`
	LostKernel uint64    `json:"lost_kernel"`
	LostUser   uint64    `json:"lost_user"`
	TrackFull  uint64    `json:"track_full"`
	Stale      uint64    `json:"stale"`
	Packets    uint64    `json:"packets"`    // journeys reported
	LateFrees  uint64    `json:"late_frees"` // not reported: ends of packets reported already
	Evicted    uint64    `json:"evicted"`    // reported early: the correlator's bound was reached
	PeakOpen   int       `json:"peak_open"`  // the most journeys open at once
	Programs   []ProgRun `json:"programs,omitempty"`
}

// ProgRun is one BPF program's run-time accounting.
type ProgRun struct {
	Name      string  `json:"name"`
	Runs      uint64  `json:"runs"`
	RunTimeNs uint64  `json:"run_time_ns"`
	NsPerRun  float64 `json:"ns_per_run"`
	Recursion uint64  `json:"recursion_misses"`
}

// Dumps is what the tcpdumps of a block reported.
type Dumps struct {
	Count         int     `json:"count"`
	Captured      uint64  `json:"captured"`
	DroppedKernel uint64  `json:"dropped_by_kernel"`
	CPUPct        float64 `json:"cpu_pct"` // all of them, of one CPU
	MaxRSSKiB     uint64  `json:"max_rss_kib"`
}

// discover lists the lab's namespaces and interfaces.
func (r *runner) discover(ctx context.Context) error {
	for _, role := range r.lab.Roles() {
		ns := r.lab.NS(role)
		r.nss = append(r.nss, ns)
		out, err := runOut(ctx, "ip", "-n", ns, "-j", "link", "show")
		if err != nil {
			return err
		}
		var links []struct {
			Ifname string `json:"ifname"`
		}
		if err := json.Unmarshal([]byte(out), &links); err != nil {
			return fmt.Errorf("parsing links of %s: %w", ns, err)
		}
		for _, l := range links {
			if l.Ifname != "lo" {
				r.ifaces = append(r.ifaces, iface{NS: ns, Name: l.Ifname})
			}
		}
	}
	r.dst = r.lab.ContainerIP(lab.RoleC2)
	var err error
	r.tmp, err = os.MkdirTemp("", "vxbench-")
	return err
}

func (r *runner) close() {
	if r.tmp != "" {
		os.RemoveAll(r.tmp)
	}
}

func runOut(ctx context.Context, args ...string) (string, error) {
	p, err := newProcs().start("", true, args...)
	if err != nil {
		return "", err
	}
	if err := p.wait(ctx, 30*time.Second); err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, p.stderr.String())
	}
	return p.stdout.String(), nil
}

// Results is the whole run, as written to JSON.
type Results struct {
	Version  string     `json:"version"`
	Env      Env        `json:"env"`
	Options  OptsOut    `json:"options"`
	Hops     []iface    `json:"interfaces"`
	Blocks   []*Block   `json:"blocks"`
	Summary  []Summary  `json:"summary"`
	Goals    []Goal     `json:"goals"`
	P4       []P4Row    `json:"p4"`
	Invalid  []string   `json:"invalid,omitempty"`
	Warnings []string   `json:"warnings,omitempty"`
	Commands []string   `json:"commands"`
	Overhead []Overhead `json:"tracer_overhead"`
	// UDP: the blocks' cost apart from the receiver's wake-ups.
	Wakeups *WakeupModel `json:"wakeup_model,omitempty"`
}

// OptsOut echoes the options of the run.
type OptsOut struct {
	Blocks    int      `json:"blocks"`
	Seconds   int      `json:"seconds"`
	P4Seconds int      `json:"p4_seconds"`
	Protos    []string `json:"protos"`
	Modes     []Mode   `json:"modes"`
	Prefix    string   `json:"prefix"`
}

// runAll runs the rounds, then the P4 blocks. Within a round and protocol
// the order is B m1 B m2 B m3 B m4 B, rotated by round so that no mode
// always runs first after a protocol switch.
func (r *runner) runAll(ctx context.Context) (*Results, error) {
	o := r.o
	res := &Results{
		Version: "vxtrace.bench/v1",
		Options: OptsOut{Blocks: o.blocks, Seconds: o.seconds, P4Seconds: o.p4Seconds, Protos: o.protos, Modes: o.modes, Prefix: o.prefix},
		Hops:    r.ifaces,
	}
	res.Commands = r.commands()
	total := o.blocks * len(o.protos) * (2*len(o.modes) + 1)
	n := 0
	for round := 1; round <= o.blocks; round++ {
		for _, proto := range o.protos {
			order := make([]Mode, len(o.modes))
			for i := range o.modes {
				order[i] = o.modes[(i+round-1)%len(o.modes)]
			}
			seq := []Mode{ModeBaseline}
			for _, m := range order {
				seq = append(seq, m, ModeBaseline)
			}
			for _, m := range seq {
				if err := ctx.Err(); err != nil {
					return res, err
				}
				n++
				b := r.runBlock(ctx, round, proto, m, false, o.seconds)
				fmt.Printf("bench: [%d/%d] round %d %s %-11s %s\n", n, total, round, proto, m, b.line())
				if b.Error != "" {
					res.Invalid = append(res.Invalid, fmt.Sprintf("round %d %s %s: %s", round, proto, m, b.Error))
				}
				res.Blocks = append(res.Blocks, b)
			}
		}
	}
	// P4: run-time accounting on, in blocks of their own.
	stats, err := enableBPFStats()
	if err != nil {
		res.Warnings = append(res.Warnings, err.Error())
		return res, nil
	}
	defer stats.Close()
	for _, proto := range o.protos {
		for _, m := range []Mode{ModeFloor, ModeP1, ModeP2} {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			b := r.runBlock(ctx, 0, proto, m, true, o.p4Seconds)
			fmt.Printf("bench: [p4] %s %-11s %s\n", proto, m, b.line())
			if b.Error != "" {
				res.Invalid = append(res.Invalid, fmt.Sprintf("p4 %s %s: %s", proto, m, b.Error))
			}
			res.Blocks = append(res.Blocks, b)
		}
	}
	return res, nil
}

func (b *Block) line() string {
	s := fmt.Sprintf("%10.3f %-6s busy %3.0f%%", b.Value, b.Unit, b.Busy)
	if b.Tracer != nil {
		s += fmt.Sprintf("  vxtrace cpu %5.1f%% rss %3d MiB events %d lost %d+%d",
			b.Tracer.CPUPct, b.Tracer.MaxRSSKiB>>10, b.Tracer.Events, b.Tracer.LostKernel, b.Tracer.LostUser)
	}
	if b.Dumps != nil {
		s += fmt.Sprintf("  %d tcpdump cpu %5.1f%% captured %d dropped %d", b.Dumps.Count, b.Dumps.CPUPct, b.Dumps.Captured, b.Dumps.DroppedKernel)
	}
	if b.Error != "" {
		s += "  INVALID: " + b.Error
	}
	return s
}

// runBlock runs one iperf3 block under mode. Errors make the block invalid;
// they are recorded in it, not returned.
func (r *runner) runBlock(ctx context.Context, round int, proto string, mode Mode, stats bool, seconds int) *Block {
	b := &Block{Round: round, Proto: proto, Mode: mode, Stats: stats, Start: time.Now().UTC().Format(time.RFC3339)}
	b.Unit = "Gbit/s"
	if proto == "udp" {
		b.Unit = "pps"
	}
	if err := r.block(ctx, b, seconds); err != nil {
		b.Error = err.Error()
	}
	return b
}

func (r *runner) block(ctx context.Context, b *Block, seconds int) error {
	var tr *proc
	var dumps []*proc
	var fl *floor
	defer func() {
		if fl != nil {
			_ = fl.Close()
		}
		// On an error path: nothing of this block may run on.
		if tr != nil {
			_ = tr.stop(syscall.SIGKILL, 5*time.Second)
		}
		for _, d := range dumps {
			_ = d.stop(syscall.SIGKILL, 5*time.Second)
		}
	}()
	var err error
	switch b.Mode {
	case ModeP1, ModeP2:
		b.Tracer = &Tracer{}
		tr, err = r.startTracer(ctx, b.Mode, b.Tracer)
	case ModeTcpdumpNIC:
		dumps, err = r.startDumps(ctx, []iface{{NS: r.lab.NS(lab.RoleN1), Name: lab.NodeNIC}})
	case ModeTcpdumpAll:
		dumps, err = r.startDumps(ctx, r.ifaces)
	case ModeFloor, ModeEmpty:
		fl, err = attachFloor(r.ifaces)
	}
	if err != nil {
		return err
	}

	var t0 []uint64
	watched := append([]*proc(nil), dumps...)
	if tr != nil {
		watched = append(watched, tr)
	}
	for _, p := range watched {
		c, _ := cpuTicks(p.pid())
		t0 = append(t0, c)
	}
	h0 := readHostStat()
	start := time.Now()
	ipErr := r.iperf(ctx, b, seconds)
	wall := time.Since(start).Seconds()
	h1 := readHostStat()
	b.Busy = busyPct(h0, h1)
	b.CtxSwitches = h1.ctxt - h0.ctxt
	var cpu []float64
	var hwm []uint64
	for i, p := range watched {
		c, err := cpuTicks(p.pid())
		if err != nil {
			return fmt.Errorf("%s exited during the block: %s", p.name, lastLine(p.stderr.String()))
		}
		cpu = append(cpu, 100*float64(c-t0[i])/clkTck/wall)
		rss, h := memKiB(p.pid())
		hwm = append(hwm, h)
		if p == tr {
			b.Tracer.RSSKiB = rss
		}
	}

	if fl != nil {
		st, err := fl.Stats()
		if err != nil {
			return err
		}
		b.Floor = st
	}
	if tr != nil {
		b.Tracer.CPUPct = cpu[len(cpu)-1]
		b.Tracer.MaxRSSKiB = hwm[len(hwm)-1]
		p := tr
		tr = nil
		if err := finishTracer(p, b.Mode, b.Tracer); err != nil {
			return err
		}
	}
	if len(dumps) > 0 {
		d := &Dumps{Count: len(dumps)}
		for i := range dumps {
			d.CPUPct += cpu[i]
			d.MaxRSSKiB = max(d.MaxRSSKiB, hwm[i])
		}
		for _, p := range dumps {
			_ = p.stop(syscall.SIGINT, 10*time.Second)
			cap, drop := parseTcpdump(p.stderr.String())
			d.Captured += cap
			d.DroppedKernel += drop
		}
		dumps = nil
		b.Dumps = d
	}
	return ipErr
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// tracerArgs is the vxtrace command line of a mode. Every namespace of the
// lab is in scope, so every hop gets its TC programs and the tracepoints
// see every device the flow crosses. The per-packet text lines go to
// /dev/null (stdout is not kept): the tracer still correlates every packet
// and formats its line, as it does for a user.
func (r *runner) tracerArgs(bin string, mode Mode, ready string) []string {
	args := []string{bin, "trace", "-q", "--stats", "--ready-file", ready}
	for _, ns := range r.nss {
		args = append(args, "--netns", ns)
	}
	if mode == ModeP1 {
		return append(args, "--dst", missDst)
	}
	return append(args, "--port", strconv.Itoa(iperfPort))
}

// env: added to the tracer's environment.
func (r *runner) startTracer(ctx context.Context, mode Mode, t *Tracer, env ...string) (*proc, error) {
	return r.startTracerBin(ctx, r.o.vxtrace, "ready", mode, t, env...)
}

// startTracerBin starts the vxtrace binary bin; tag names its ready file,
// so that two tracers can start side by side.
func (r *runner) startTracerBin(ctx context.Context, bin, tag string, mode Mode, t *Tracer, env ...string) (*proc, error) {
	ready := filepath.Join(r.tmp, tag)
	_ = os.Remove(ready)
	args := r.tracerArgs(bin, mode, ready)
	t.Args = args[1:]
	start := time.Now()
	p, err := r.procs.startEnv(env, "", false, args...)
	if err != nil {
		return nil, err
	}
	for {
		if _, err := os.Stat(ready); err == nil {
			t.StartupSec = time.Since(start).Seconds()
			return p, nil
		}
		if p.exited() {
			return nil, fmt.Errorf("vxtrace exited before it was ready: %s", lastLine(p.stderr.String()))
		}
		if time.Since(start) > 60*time.Second {
			_ = p.stop(syscall.SIGKILL, 5*time.Second)
			return nil, errors.New("vxtrace not ready after 60s")
		}
		if ctx.Err() != nil {
			_ = p.stop(syscall.SIGINT, 10*time.Second)
			return nil, ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finishTracer stops a tracer the way a user does (^C), and reads into t
// what its --stats printed; a trace-all run that traced nothing is invalid.
func finishTracer(p *proc, mode Mode, t *Tracer) error {
	err := p.stop(syscall.SIGINT, 60*time.Second)
	out := p.stderr.String()
	if err != nil {
		return fmt.Errorf("vxtrace: %v: %s", err, lastLine(out))
	}
	if err := parseStats(out, t); err != nil {
		return err
	}
	if mode == ModeP2 && t.Events == 0 {
		return errors.New("vxtrace traced no packet in trace-all mode")
	}
	return nil
}

// parseStats reads what `vxtrace trace --stats` prints at exit.
func parseStats(out string, t *Tracer) error {
	found := false
	inTable := false
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "events: ") {
			found = true
			_, err := fmt.Sscanf(line, "events: %d written, %d lost in the kernel, %d lost in user space; tracked-map full: %d, stale: %d",
				&t.Events, &t.LostKernel, &t.LostUser, &t.TrackFull, &t.Stale)
			if err != nil {
				return fmt.Errorf("parsing vxtrace --stats line %q: %w", line, err)
			}
			continue
		}
		if strings.HasPrefix(line, "journeys: ") {
			var limit int
			_, err := fmt.Sscanf(line, "journeys: %d packets, %d late frees (ends of packets already reported), %d evicted (over %d open; peak %d)",
				&t.Packets, &t.LateFrees, &t.Evicted, &limit, &t.PeakOpen)
			if err != nil {
				return fmt.Errorf("parsing vxtrace --stats line %q: %w", line, err)
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == "program" && f[1] == "runs" {
			inTable = true
			continue
		}
		if !inTable || len(f) != 5 {
			continue
		}
		runs, err1 := strconv.ParseUint(f[1], 10, 64)
		d, err2 := time.ParseDuration(f[2])
		rec, err3 := strconv.ParseUint(f[4], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		pr := ProgRun{Name: f[0], Runs: runs, RunTimeNs: uint64(d.Nanoseconds()), Recursion: rec}
		if runs > 0 {
			pr.NsPerRun = float64(pr.RunTimeNs) / float64(runs)
		}
		t.Programs = append(t.Programs, pr)
	}
	if !found {
		return fmt.Errorf("vxtrace printed no --stats: %s", lastLine(out))
	}
	return nil
}

// startDumps starts one tcpdump per interface, writing to /dev/null, and
// waits until each has said it is listening.
func (r *runner) startDumps(ctx context.Context, ifs []iface) ([]*proc, error) {
	var ps []*proc
	fail := func(err error) ([]*proc, error) {
		for _, p := range ps {
			_ = p.stop(syscall.SIGKILL, 5*time.Second)
		}
		return nil, err
	}
	for _, i := range ifs {
		// -Z root: writing to /dev/null needs no privilege drop, and
		// it keeps the capture identical on every distribution.
		p, err := r.procs.start(i.NS, false, "tcpdump", "-i", i.Name, "-n", "-Z", "root", "-w", "/dev/null")
		if err != nil {
			return fail(err)
		}
		ps = append(ps, p)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range ps {
		for !strings.Contains(p.stderr.String(), "listening on") {
			if p.exited() {
				return fail(fmt.Errorf("tcpdump exited: %s", lastLine(p.stderr.String())))
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fail(errors.New("tcpdump not listening after 20s"))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return ps, nil
}

// parseTcpdump reads tcpdump's exit summary.
func parseTcpdump(out string) (captured, dropped uint64) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(sc.Text(), f[0]+" packets captured"):
			captured = n
		case strings.Contains(sc.Text(), "dropped by kernel"):
			dropped = n
		}
	}
	return captured, dropped
}

// iperfServer starts a one-test iperf3 server in c2 and returns once it
// listens.
func (r *runner) iperfServer(ctx context.Context) (*proc, error) {
	srv, err := r.procs.start(r.lab.NS(lab.RoleC2), false, "iperf3", "-s", "-1", "-p", strconv.Itoa(iperfPort))
	if err != nil {
		return nil, err
	}
	if err := waitListen(ctx, srv, iperfPort); err != nil {
		_ = srv.stop(syscall.SIGKILL, 5*time.Second)
		return nil, err
	}
	return srv, nil
}

// iperfClient starts the test from c1, its JSON report kept: one TCP
// stream, or UDP 64-byte datagrams as fast as they go.
func (r *runner) iperfClient(proto string, seconds int) (*proc, error) {
	args := []string{"iperf3", "-c", r.dst, "-p", strconv.Itoa(iperfPort), "-t", strconv.Itoa(seconds), "-J"}
	if proto == "udp" {
		args = append(args, "-u", "-b", "0", "-l", "64")
	}
	return r.procs.start(r.lab.NS(lab.RoleC1), true, args...)
}

// iperf runs one iperf3 test from c1 to c2 and fills b.Value.
func (r *runner) iperf(ctx context.Context, b *Block, seconds int) error {
	srv, err := r.iperfServer(ctx)
	if err != nil {
		return err
	}
	defer srv.stop(syscall.SIGKILL, 5*time.Second)
	cl, err := r.iperfClient(b.Proto, seconds)
	if err != nil {
		return err
	}
	werr := cl.wait(ctx, time.Duration(seconds+30)*time.Second)
	if werr != nil {
		_ = cl.stop(syscall.SIGKILL, 5*time.Second)
	}
	out := cl.stdout.String()
	ip, perr := parseIPerf([]byte(out), b.Proto)
	b.IPerf = ip
	if b.Proto == "udp" {
		b.Value = ip.PPS
	} else {
		b.Value = ip.BitsPerSecond / 1e9
	}
	switch {
	case perr != nil:
		return perr
	case werr != nil:
		return fmt.Errorf("iperf3: %v", werr)
	case b.Value <= 0:
		return errors.New("iperf3 measured nothing")
	}
	_ = srv.wait(ctx, 5*time.Second)
	return nil
}

// waitListen waits until the iperf3 server's namespace has its port in
// LISTEN (tcp or tcp6: iperf3 binds a dual-stack socket).
func waitListen(ctx context.Context, p *proc, port int) error {
	want := fmt.Sprintf(":%04X", port)
	for i := 0; i < 500; i++ {
		if p.exited() {
			return fmt.Errorf("iperf3 server exited: %s", lastLine(p.stderr.String()))
		}
		for _, f := range []string{"tcp", "tcp6"} {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", p.pid(), f))
			for _, line := range strings.Split(string(b), "\n") {
				x := strings.Fields(line)
				if len(x) > 3 && strings.HasSuffix(x[1], want) && x[3] == "0A" {
					return nil
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("iperf3 server not listening after 5s")
}

type iperfJSON struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int64   `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Seconds       float64 `json:"seconds"`
		} `json:"sum_received"`
		Sum struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Seconds       float64 `json:"seconds"`
			Packets       int64   `json:"packets"`
			LostPackets   int64   `json:"lost_packets"`
		} `json:"sum"`
		CPU struct {
			Host   float64 `json:"host_total"`
			Remote float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
	} `json:"end"`
}

// parseIPerf takes TCP throughput at the receiver, and UDP packets the
// server received (sent minus lost) per second.
func parseIPerf(b []byte, proto string) (IPerf, error) {
	var j iperfJSON
	var ip IPerf
	if len(b) == 0 {
		return ip, errors.New("iperf3 printed nothing")
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return ip, fmt.Errorf("parsing iperf3 -J: %w", err)
	}
	if j.Error != "" {
		return ip, fmt.Errorf("iperf3: %s", j.Error)
	}
	ip.SenderCPU, ip.ReceiverCPU = j.End.CPU.Host, j.End.CPU.Remote
	if proto == "tcp" {
		ip.BitsPerSecond = j.End.SumReceived.BitsPerSecond
		ip.Seconds = j.End.SumReceived.Seconds
		ip.Retransmits = j.End.SumSent.Retransmits
		return ip, nil
	}
	ip.BitsPerSecond = j.End.Sum.BitsPerSecond
	ip.Seconds = j.End.Sum.Seconds
	ip.Packets, ip.LostPackets = j.End.Sum.Packets, j.End.Sum.LostPackets
	if ip.Seconds > 0 {
		ip.PPS = float64(ip.Packets-ip.LostPackets) / ip.Seconds
	}
	return ip, nil
}

// commands are the exact command lines of the run, for the record.
func (r *runner) commands() []string {
	c1, c2 := r.lab.NS(lab.RoleC1), r.lab.NS(lab.RoleC2)
	s := strconv.Itoa(r.o.seconds)
	p := strconv.Itoa(iperfPort)
	return []string{
		"ip netns exec " + c2 + " iperf3 -s -1 -p " + p,
		"ip netns exec " + c1 + " iperf3 -c " + r.dst + " -p " + p + " -t " + s + " -J",
		"ip netns exec " + c1 + " iperf3 -c " + r.dst + " -p " + p + " -t " + s + " -J -u -b 0 -l 64",
		"p1: " + strings.Join(r.tracerArgs(r.o.vxtrace, ModeP1, "READY"), " ") + " >/dev/null",
		"p2: " + strings.Join(r.tracerArgs(r.o.vxtrace, ModeP2, "READY"), " ") + " >/dev/null",
		"tcpdump-nic: ip netns exec " + r.lab.NS(lab.RoleN1) + " tcpdump -i eth0 -n -Z root -w /dev/null",
		fmt.Sprintf("tcpdump-all: one `ip netns exec NS tcpdump -i IF -n -Z root -w /dev/null` per interface (%d)", len(r.ifaces)),
	}
}
