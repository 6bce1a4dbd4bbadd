package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/report"
	"github.com/vxtrace/vxtrace/session"
	"github.com/vxtrace/vxtrace/topo"
	"github.com/vxtrace/vxtrace/tracer"
)

const traceUsage = `Usage: vxtrace trace [flags]

Follows every packet that matches the filter through the hops of the
overlay (container eth0, veth, br0, vxlan0, the NIC) in the namespaces in
scope, and prints each packet's journey and verdict: delivered, dropped (with
the kernel's drop reason and function), left_node, or vanished.

Example:
  vxtrace trace --dst 10.0.1.4 --proto icmp --count 5 --json trace.json`

type traceFlags struct {
	filterFlags
	count      int
	duration   time.Duration
	timeout    time.Duration
	jsonPath   string
	jsonlPath  string
	failOnDrop bool
	maxPackets int
	stats      bool
	readyFile  string
	ringSize   int
	logFile    string
	node       string
	verbose    bool
	quiet      bool
}

func (f *traceFlags) register(fs *flag.FlagSet) {
	f.filterFlags.register(fs)
	fs.IntVar(&f.count, "count", 0, "stop after this many packets have a verdict (0: no limit)")
	fs.DurationVar(&f.duration, "duration", 0, "stop after this long (0: no limit)")
	fs.DurationVar(&f.timeout, "timeout", time.Second, "a packet unseen this long gets its verdict (vanished if nothing else; one waiting for ARP: 5s, or this if longer)")
	fs.StringVar(&f.jsonPath, "json", "", "write the whole trace as one JSON document to FILE at the end (- for stdout)")
	fs.StringVar(&f.jsonlPath, "jsonl", "", "write one JSON object per packet to FILE as verdicts happen (- for stdout)")
	fs.BoolVar(&f.failOnDrop, "fail-on-drop", false, "exit 1 if any traced packet was dropped")
	fs.IntVar(&f.maxPackets, "max-packets", report.DefaultMaxPackets, "packets kept in --json (the summary counts all)")
	fs.BoolVar(&f.stats, "stats", false, "print per-program BPF run time and lost-event counters at exit")
	fs.StringVar(&f.readyFile, "ready-file", "", "")
	fs.IntVar(&f.ringSize, "ring-size", 0, "")
	fs.StringVar(&f.logFile, "log-file", "", "write logs to FILE instead of stderr")
	fs.StringVar(&f.node, "node", "", "node name recorded in the JSON (default: the hostname); 'vxtrace join' matches traces by it")
	fs.BoolVar(&f.verbose, "v", false, "verbose logs")
	fs.BoolVar(&f.quiet, "q", false, "one line per packet (its verdict) and the summary; no progress")
}

func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f traceFlags
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	f.register(fs)
	if err := parseFlags(fs, args, traceUsage); err != nil {
		return err
	}
	tcfg, rfilter, err := f.tracerConfig()
	if err != nil {
		return err
	}
	if f.count < 0 {
		return usagef("--count %d is negative", f.count)
	}
	if f.duration < 0 {
		return usagef("--duration %v is negative", f.duration)
	}
	if err := durationFlag("timeout", f.timeout, 10*time.Millisecond); err != nil {
		return err
	}
	if f.ringSize != 0 && (f.ringSize < os.Getpagesize() || f.ringSize&(f.ringSize-1) != 0) {
		return usagef("--ring-size %d is not a power of two of at least %d bytes", f.ringSize, os.Getpagesize())
	}
	tcfg.RingSize = f.ringSize
	if f.jsonPath != "" && f.jsonPath == f.jsonlPath && f.jsonPath != "-" {
		return usagef("--json and --jsonl name the same file %s", f.jsonPath)
	}
	if f.jsonPath == "-" && f.jsonlPath == "-" {
		return usagef("--json - and --jsonl - cannot both write to stdout")
	}
	if err := checkWritable("json", f.jsonPath); err != nil {
		return err
	}
	scope, err := f.scope()
	if err != nil {
		return err
	}
	if err := preflight(); err != nil {
		return err
	}
	log, closeLog, err := newLogger(f.logFile, stderr, f.verbose)
	if err != nil {
		return err
	}
	defer closeLog()

	// Human text goes to stdout unless a JSON stream takes it.
	textOut := stdout
	if f.jsonPath == "-" || f.jsonlPath == "-" {
		textOut = stderr
	}
	progress := func(msg string) {
		if !f.quiet {
			fmt.Fprintf(stderr, "vxtrace: %s...\n", msg)
		}
	}

	var extraDirs []string
	var dockerScope *containerScope
	if f.container != "" {
		dockerScope, err = resolveContainer(ctx, &f.filterFlags, progress)
		if err != nil {
			return err
		}
		defer dockerScope.Close()
		scope, extraDirs = dockerScope.apply(scope, &tcfg, &rfilter)
	}

	var jsonl *report.JSONL
	switch f.jsonlPath {
	case "":
	case "-":
		jsonl = report.NewJSONL(stdout)
	default:
		jsonl, err = report.CreateJSONL(f.jsonlPath)
		if err != nil {
			return usagef("--jsonl %s: %v", f.jsonlPath, err)
		}
	}
	if jsonl != nil {
		defer jsonl.Close()
	}

	s, err := session.Start(ctx, session.Options{
		Tracer: tcfg, Scope: scope, ExtraNetNSDirs: extraDirs, Timeout: f.timeout,
		Log: log, Progress: progress, Rescope: dockerScope.rescope(ctx, scope[len(dockerScope.list()):]),
		OnChange: func(added, gone []topo.Hop) { reportChanges(stderr, added, gone) },
	})
	if err != nil {
		return err
	}
	defer s.Close()
	for _, n := range s.Features().Notices {
		fmt.Fprintf(stderr, "vxtrace: notice: %s\n", n)
	}
	if !s.Names().ReasonNames() {
		fmt.Fprintf(stderr, "vxtrace: notice: this kernel's BTF names no drop reasons: drops show reason numbers and the kernel function\n")
	}
	if err := s.AttachError(); err != nil {
		fmt.Fprintf(stderr, "vxtrace: warning: %v (those hops are marked blind)\n", err)
	}

	rfilter.NetNS = scope
	rec := report.NewRecorder(report.Options{Node: f.node, Filter: rfilter, MaxPackets: f.maxPackets, Namer: s.Names()})
	// Per-packet writes would cost a syscall each on the correlator's
	// goroutine; a buffer flushed on a short period keeps the output live
	// and the correlator fast.
	out := newFlushWriter(textOut, 100*time.Millisecond)
	defer out.Close()
	text := report.NewText(out, report.TextOptions{})
	text.SetHops(s.Hops())
	if !f.quiet {
		fmt.Fprintf(stderr, "vxtrace: tracing %s in %s (%d hops); Ctrl-C to stop\n", describeFilter(rfilter), describeScope(scope), len(s.Hops()))
	}
	if f.readyFile != "" {
		if err := os.WriteFile(f.readyFile, []byte("ready\n"), 0o600); err != nil {
			return fmt.Errorf("writing ready file: %w", err)
		}
	}
	testPanic("after-attach")

	runCtx := ctx
	if f.duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	if dockerScope != nil {
		runCtx = dockerScope.watch(runCtx, stderr)
	}
	done, drops := 0, 0
	var writeErr error
	var line []byte      // the -q line, reused: a packet's line costs no allocation
	var rp report.Packet // reused likewise: the recorder clones what it keeps
	runErr := s.Run(runCtx, func(p *journey.Packet) bool {
		if f.count > 0 && done >= f.count {
			return true
		}
		testPanic("in-run")
		done++
		if p.Verdict == journey.Dropped {
			drops++
		}
		if f.quiet && jsonl == nil && rec.Full() {
			report.FillForLine(p, &rp) // all that is left to do with it
		} else {
			report.FillFromJourney(p, &rp)
		}
		rec.AddPacket(&rp)
		var err error
		if f.quiet {
			line = report.AppendHeader(line[:0], &rp)
			line = append(line, "  "...)
			line = text.AppendVerdictLine(line, &rp)
			_, err = out.Write(append(line, '\n'))
		} else {
			err = text.Packet(&rp)
		}
		if err != nil && writeErr == nil {
			writeErr = err
		}
		if jsonl != nil {
			if err := jsonl.WritePacket(rp); err != nil && writeErr == nil {
				writeErr = fmt.Errorf("writing JSONL: %w", err)
			}
		}
		return f.count > 0 && done >= f.count
	})
	out.Flush() // the packets, before anything else is said
	if dockerScope != nil && dockerScope.stopped() != "" {
		fmt.Fprintf(stderr, "vxtrace: %s: ending the trace\n", dockerScope.stopped())
	}

	doc, err := finish(s, rec)
	if err != nil {
		return err
	}
	if f.stats {
		printStats(stderr, s)
	}
	// Detach before the exports: a big document takes a while to write,
	// and the node should not carry the probes (nor pay for them under a
	// flood) meanwhile. The deferred Close is then a no-op.
	if err := s.Close(); err != nil {
		fmt.Fprintf(stderr, "vxtrace: warning: detaching: %v\n", err)
	}
	text.SetHops(doc.Hops)
	if err := text.Summary(doc); err != nil && writeErr == nil {
		writeErr = err
	}
	if err := out.Close(); err != nil && writeErr == nil {
		writeErr = err
	}
	if f.jsonPath != "" {
		if err := report.WriteFile(f.jsonPath, doc); err != nil {
			return fmt.Errorf("writing %s: %w", f.jsonPath, err)
		}
	}
	if runErr != nil {
		return runErr
	}
	if writeErr != nil {
		return writeErr
	}
	if f.failOnDrop && drops > 0 {
		return errDrops
	}
	return nil
}

// reportChanges tells the user that the node changed under the trace.
func reportChanges(w io.Writer, added, gone []topo.Hop) {
	for _, h := range gone {
		fmt.Fprintf(w, "vxtrace: hop %s/%s is gone\n", h.NetNS.DisplayName(), h.Ifname)
	}
	for _, h := range added {
		if h.Kind == topo.KindOther {
			continue
		}
		fmt.Fprintf(w, "vxtrace: new hop %s/%s (%s): attached\n", h.NetNS.DisplayName(), h.Ifname, h.Kind)
	}
}

// finish builds the document from the recorder and the kernel counters.
func finish(s *session.Session, rec *report.Recorder) (*report.Doc, error) {
	hc, dc, err := s.Counters()
	if err != nil {
		return nil, err
	}
	counts := hopCounts(hc, dc)
	kernel, user := s.Lost()
	return rec.Doc(report.End{Hops: s.Hops(), Counts: counts, Lost: report.LostEvents{Kernel: kernel, User: user}}), nil
}

func hopCounts(hc map[topo.Key]tracer.HopCounters, dc map[tracer.DropKey]uint64) []report.HopCount {
	byKey := map[topo.Key]*report.HopCount{}
	get := func(k topo.Key) *report.HopCount {
		c, ok := byKey[k]
		if !ok {
			c = &report.HopCount{Key: k}
			byKey[k] = c
		}
		return c
	}
	for k, c := range hc {
		if c.Rx+c.Tx+c.Drops == 0 {
			continue // TC counts alone: not a traced packet
		}
		hcnt := get(k)
		hcnt.Seen = c.Rx + c.Tx
		hcnt.Dropped = c.Drops
	}
	for k, n := range dc {
		c := get(k.Hop)
		if c.Reasons == nil {
			c.Reasons = map[uint32]uint64{}
		}
		c.Reasons[k.Reason] += n
	}
	out := make([]report.HopCount, 0, len(byKey))
	for _, c := range byKey {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key.NetNS != out[j].Key.NetNS {
			return out[i].Key.NetNS < out[j].Key.NetNS
		}
		return out[i].Key.Ifindex < out[j].Key.Ifindex
	})
	return out
}

func printStats(w io.Writer, s *session.Session) {
	st, err := s.Tracer().Stats()
	if err != nil {
		fmt.Fprintf(w, "vxtrace: stats: %v\n", err)
		return
	}
	_, user := s.Lost()
	fmt.Fprintf(w, "\nevents: %d written, %d lost in the kernel, %d lost in user space; tracked-map full: %d, stale: %d\n",
		st.Events, st.Lost, user, st.TrackFull, st.Stale)
	js := s.Journeys()
	fmt.Fprintf(w, "journeys: %d packets, %d late frees (ends of packets already reported), %d evicted (over %d open; peak %d)\n",
		js.Emitted+js.Evicted, js.LateFrees, js.Evicted, js.Limit, js.Peak)
	ps := s.Tracer().ProgramStats()
	if len(ps) == 0 {
		return
	}
	fmt.Fprintf(w, "%-24s %12s %12s %10s %10s\n", "program", "runs", "run time", "ns/run", "recursion")
	for _, p := range ps {
		per := 0.0
		if p.RunCount > 0 {
			per = float64(p.RunTimeNs) / float64(p.RunCount)
		}
		fmt.Fprintf(w, "%-24s %12d %12s %10.1f %10d\n", p.Name, p.RunCount, time.Duration(p.RunTimeNs), per, p.RecursionMisses)
	}
	if !bpfStatsEnabled() {
		fmt.Fprintln(w, "(run times are 0 unless kernel.bpf_stats_enabled=1)")
	}
}

func bpfStatsEnabled() bool {
	b, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	return err == nil && len(b) > 0 && b[0] == '1'
}

// checkWritable fails early, before anything is attached, when an output
// file cannot be created.
func checkWritable(flagName, path string) error {
	if path == "" || path == "-" {
		return nil
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return usagef("--%s %s is a directory", flagName, path)
	} else if err == nil && !st.Mode().IsRegular() {
		// A device or pipe is written in place.
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return usagef("--%s %s: %v", flagName, path, err)
		}
		return f.Close()
	}
	tmp, err := os.CreateTemp(dir, ".vxtrace-check-*")
	if err != nil {
		return usagef("--%s %s: cannot write in %s: %v", flagName, path, dir, err)
	}
	tmp.Close()
	os.Remove(tmp.Name())
	return nil
}

func describeFilter(f report.Filter) string {
	s := ""
	add := func(k, v string) {
		if v != "" {
			if s != "" {
				s += " "
			}
			s += k + " " + v
		}
	}
	add("src", f.Src)
	add("dst", f.Dst)
	add("outer-src", f.OuterSrc)
	add("outer-dst", f.OuterDst)
	add("proto", f.Proto)
	if f.Port != 0 {
		add("port", fmt.Sprint(f.Port))
	}
	if f.VNI != nil {
		add("vni", fmt.Sprint(*f.VNI))
	}
	if s == "" {
		return "every packet"
	}
	return s
}

func describeScope(nss []topo.NetNS) string {
	if len(nss) == 0 {
		return "every namespace"
	}
	s := ""
	for i, ns := range nss {
		if i > 0 {
			s += ", "
		}
		s += ns.DisplayName()
	}
	return s
}
