// Command bench measures what vxtrace costs the data path it watches (issue
// 5, goals P1-P4): it builds a netns lab, runs iperf3 across its VXLAN
// overlay (TCP, one stream, and UDP with 64-byte payloads) and alternates
// blocks without any tracer, with vxtrace whose filter misses the flow (P1),
// with vxtrace tracing every packet of the flow at every hop (P2), with
// tcpdump on node 1's NIC and with tcpdump on every interface of the lab
// (P3). Every traced block sits between two baseline blocks, and its ratio
// is taken against their mean, so that the load of a shared machine, which
// drifts, cancels out as far as it can. BPF run time per invocation (P4) is
// measured in separate blocks with the kernel's run-time accounting on
// (BPF_ENABLE_STATS, what kernel.bpf_stats_enabled=1 does), because the
// accounting itself costs two clock reads per program run and would bias the
// throughput ratios.
//
// Results are printed as a table and written as JSON (bench/results). The
// exit status is 1 when a block was invalid (iperf3 failed, a tracer did not
// start, no event was traced in trace-all mode), never because of a timing:
// a goal that is missed is reported, not failed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vxtrace/vxtrace/lab"
)

type options struct {
	blocks    int
	seconds   int
	p4Seconds int
	vxtrace   string
	prefix    string
	out       string
	protos    []string
	modes     []Mode
	soak      time.Duration
	profile   time.Duration
	from      string
	compare   string // a second vxtrace binary, B to --vxtrace's A
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	var protos, modes string
	flag.IntVar(&o.blocks, "blocks", 5, "rounds: each round runs every mode once per protocol, each between two baseline blocks")
	flag.IntVar(&o.seconds, "seconds", 10, "length of one iperf3 block")
	flag.IntVar(&o.p4Seconds, "p4-seconds", 0, "length of the bpf_stats blocks (default: --seconds)")
	flag.StringVar(&o.vxtrace, "vxtrace", "bin/vxtrace", "vxtrace binary")
	flag.StringVar(&o.prefix, "prefix", fmt.Sprintf("bench%d", os.Getpid()%100000), "lab name prefix")
	flag.StringVar(&o.out, "out", "bench/results/latest.json", "JSON results file")
	flag.StringVar(&protos, "protos", "tcp,udp", "protocols: tcp, udp")
	flag.StringVar(&modes, "modes", "p1,p2,tcpdump-nic,tcpdump-all,empty", "modes besides the baseline")
	flag.StringVar(&o.from, "from", "", "print the table of an earlier results file (recomputing its summary) and exit")
	flag.DurationVar(&o.soak, "soak", 0, "instead of the table: run trace-all UDP for this long and print the tracer's RSS over time (P8)")
	flag.DurationVar(&o.profile, "profile", 0, "instead of the table: sample every CPU with perf for this long per protocol and vxtrace mode in --modes (p1, p2) under a flood, and print where the time goes")
	flag.StringVar(&o.compare, "compare", "", "instead of the table: attach this vxtrace binary (B) and --vxtrace's (A) at once to one flood, both orders in each of --blocks rounds, and print B's BPF run time over A's per protocol and vxtrace mode in --modes")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q\n", flag.Arg(0))
		return 2
	}
	if o.profile > 0 && o.profile < time.Second {
		fmt.Fprintln(os.Stderr, "bench: --profile must be at least 1s")
		return 2
	}
	if o.blocks < 1 || o.seconds < 1 {
		fmt.Fprintln(os.Stderr, "bench: --blocks and --seconds must be at least 1")
		return 2
	}
	if o.p4Seconds <= 0 {
		o.p4Seconds = o.seconds
	}
	for _, p := range strings.Split(protos, ",") {
		if p != "tcp" && p != "udp" {
			fmt.Fprintf(os.Stderr, "bench: unknown protocol %q\n", p)
			return 2
		}
		o.protos = append(o.protos, p)
	}
	for _, m := range strings.Split(modes, ",") {
		mode := Mode(m)
		if !mode.valid() || mode == ModeBaseline {
			fmt.Fprintf(os.Stderr, "bench: unknown mode %q (p1, p2, tcpdump-nic, tcpdump-all, empty)\n", m)
			return 2
		}
		o.modes = append(o.modes, mode)
	}
	if o.profile > 0 && !slices.ContainsFunc(o.modes, Mode.vxtrace) {
		fmt.Fprintln(os.Stderr, "bench: --profile samples vxtrace's modes: give p1 or p2 in --modes")
		return 2
	}

	if err := checkCompare(&o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}

	if o.from != "" {
		if err := reprint(o.from); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	err := bench(ctx, &o)
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "bench: interrupted; lab removed")
		return 130
	case errors.Is(err, errInvalid):
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	default:
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
}

var errInvalid = errors.New("invalid run")

func bench(ctx context.Context, o *options) (err error) {
	if os.Getuid() != 0 {
		return errors.New("needs root: it builds network namespaces and loads BPF programs")
	}
	for _, tool := range []string{"iperf3", "tcpdump", "ip"} {
		if _, err := lookPath(tool); err != nil {
			return fmt.Errorf("%s not found (make deps installs it)", tool)
		}
	}
	if o.vxtrace, err = filepath.Abs(o.vxtrace); err != nil {
		return err
	}
	if _, err := os.Stat(o.vxtrace); err != nil {
		return fmt.Errorf("vxtrace binary: %w (make build makes it)", err)
	}
	if o.compare != "" {
		if o.compare, err = filepath.Abs(o.compare); err != nil {
			return err
		}
		if _, err := os.Stat(o.compare); err != nil {
			return fmt.Errorf("--compare binary: %w", err)
		}
	}

	env := environment(o)
	fmt.Printf("bench: %s, %d CPUs, kernel %s; load before start: %s, host busy %.0f%% over 2s\n",
		env.CPUModel, runtime.NumCPU(), env.Kernel, env.LoadAvgStart, env.HostBusyBefore)

	procs := newProcs()
	// Nothing may outlive the bench: processes first (they hold the
	// namespaces), then the lab, then the sysctl. Deferred, so a failure
	// or a ^C takes the same path.
	defer procs.killAll()
	_ = lab.Down(o.prefix)
	upCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	l, err := lab.Up(upCtx, lab.Config{Prefix: o.prefix}, func(s string) { fmt.Printf("bench: lab %s: %s\n", o.prefix, s) })
	cancel()
	if err != nil {
		return fmt.Errorf("building the lab: %w", err)
	}
	defer func() {
		procs.killAll()
		if derr := l.Down(); derr != nil {
			fmt.Fprintf(os.Stderr, "bench: removing lab %s: %v\n", o.prefix, derr)
		}
	}()
	r := &runner{o: o, lab: l, procs: procs}
	defer r.close()
	if err := r.discover(ctx); err != nil {
		return err
	}
	if o.soak > 0 {
		return r.soakRun(ctx)
	}
	if o.profile > 0 {
		return r.profileRun(ctx)
	}
	if o.compare != "" {
		return r.runCompare(ctx)
	}
	res, err := r.runAll(ctx)
	if res != nil {
		env.LoadAvgEnd = loadAvg()
		res.Env = env
		summarize(res)
		printTable(os.Stdout, res)
		if ctx.Err() != nil {
			// A partial run must not replace the last complete one.
			return err
		}
		if werr := writeJSON(o.out, res); werr != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", werr)
			if err == nil {
				err = werr
			}
		} else {
			fmt.Printf("\nbench: results written to %s\n", o.out)
		}
		if err == nil && len(res.Invalid) > 0 {
			err = fmt.Errorf("%w: %s", errInvalid, strings.Join(res.Invalid, "; "))
		}
	}
	return err
}

// reprint prints the table of a results file, with the summary recomputed
// from its blocks.
func reprint(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	summarize(&res)
	printTable(os.Stdout, &res)
	return nil
}
