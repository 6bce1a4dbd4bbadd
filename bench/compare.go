package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
)

// A change to the BPF programs moves the throughput ratios less than the
// noise of this shared VM does (a block against its neighbours: ±5 % in the
// middle half), so --compare measures a change the only way that resolves
// a few percent here: two builds attached at once to one flood, each timing
// its own programs (BPF_ENABLE_STATS). Both see the same packets at the same
// moment, so the host's noise hits both alike. The build attached first pays
// ~10 % more (its programs run first and warm the cache lines both touch),
// so every round runs both orders, and the round's figure is the geometric
// mean of B/A over the two: the order's bias cancels out.

// compareRun is one flood with both builds attached.
type compareRun struct {
	round  int
	aFirst bool
	ip     IPerf
	a, b   Tracer
}

// bpfNs is all of a tracer's programs' run time.
func bpfNs(t *Tracer) uint64 {
	var n uint64
	for _, p := range t.Programs {
		n += p.RunTimeNs
	}
	return n
}

// ratio is B's BPF time over A's in one run (NaN if A ran nothing).
func (c *compareRun) ratio() float64 {
	a := bpfNs(&c.a)
	if a == 0 {
		return math.NaN()
	}
	return float64(bpfNs(&c.b)) / float64(a)
}

// compareSummary: per round, the geometric mean of B/A over the round's
// runs (both orders, when both ran), sorted; and how much more the build
// attached first paid than the one attached second (geometric mean over all
// runs), the bias the orders cancel.
func compareSummary(runs []compareRun) (rounds []float64, firstCost float64) {
	byRound := map[int][]float64{}
	var logFirst float64
	n := 0
	for i := range runs {
		r := runs[i].ratio()
		if math.IsNaN(r) || r <= 0 {
			continue
		}
		byRound[runs[i].round] = append(byRound[runs[i].round], math.Log(r))
		// first/second: A/B when A went first, else B/A.
		if runs[i].aFirst {
			logFirst -= math.Log(r)
		} else {
			logFirst += math.Log(r)
		}
		n++
	}
	for _, ls := range byRound {
		var s float64
		for _, l := range ls {
			s += l
		}
		rounds = append(rounds, math.Exp(s/float64(len(ls))))
	}
	slices.Sort(rounds)
	firstCost = math.NaN()
	if n > 0 {
		firstCost = math.Exp(logFirst / float64(n))
	}
	return rounds, firstCost
}

// runCompare runs --blocks rounds of both orders per protocol and vxtrace
// mode, and prints each run and then each pair's summary.
func (r *runner) runCompare(ctx context.Context) error {
	a, b := r.o.vxtrace, r.o.compare
	stats, err := enableBPFStats()
	if err != nil {
		return err
	}
	defer stats.Close()
	var modes []Mode
	for _, m := range r.o.modes {
		if m.vxtrace() {
			modes = append(modes, m)
		}
	}
	fmt.Printf("bench: compare A = %s\n               B = %s\n", a, b)
	fmt.Printf("bench: both attached to one flood, %d rounds of both orders, %d s each, BPF run-time stats on\n", r.o.blocks, r.o.seconds)
	total := len(r.o.protos) * len(modes) * r.o.blocks * 2
	n := 0
	var invalid []string
	var out strings.Builder
	for _, proto := range r.o.protos {
		for _, mode := range modes {
			var runs []compareRun
			for round := 1; round <= r.o.blocks; round++ {
				for _, aFirst := range []bool{true, false} {
					if err := ctx.Err(); err != nil {
						return err
					}
					n++
					c := compareRun{round: round, aFirst: aFirst}
					err := r.compareOnce(ctx, proto, mode, &c)
					order := "A first"
					if !aFirst {
						order = "B first"
					}
					if err != nil {
						fmt.Printf("bench: [%d/%d] %s %s round %d, %s: %v\n", n, total, proto, mode, round, order, err)
						invalid = append(invalid, fmt.Sprintf("%s %s round %d %s: %v", proto, mode, round, order, err))
						continue
					}
					fmt.Printf("bench: [%d/%d] %s %s round %d, %s: %s\n", n, total, proto, mode, round, order, c.line(proto))
					printProgPairs(os.Stdout, &c.a, &c.b)
					runs = append(runs, c)
				}
			}
			rounds, first := compareSummary(runs)
			fmt.Fprintf(&out, "  %s %s: B/A per round %s", proto, mode, fmtRatios(rounds))
			if len(rounds) > 0 {
				fmt.Fprintf(&out, "; median %.3f", median(rounds))
			}
			fmt.Fprintf(&out, "; attached first pays %.3f× attached second\n", first)
		}
	}
	fmt.Printf("\n-- B's BPF run time over A's, each round the geometric mean of both orders\n%s", out.String())
	if len(invalid) > 0 {
		return fmt.Errorf("%w: %s", errInvalid, strings.Join(invalid, "; "))
	}
	return nil
}

func fmtRatios(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.3f", x)
	}
	return strings.Join(s, " ")
}

// compareOnce runs one flood with both builds attached, c.aFirst's first.
func (r *runner) compareOnce(ctx context.Context, proto string, mode Mode, c *compareRun) error {
	type side struct {
		bin, tag string
		t        *Tracer
		p        *proc
	}
	sides := []*side{{bin: r.o.vxtrace, tag: "ready-a", t: &c.a}, {bin: r.o.compare, tag: "ready-b", t: &c.b}}
	if !c.aFirst {
		sides[0], sides[1] = sides[1], sides[0]
	}
	defer func() {
		for _, s := range sides {
			if s.p != nil {
				_ = s.p.stop(syscall.SIGKILL, 5*time.Second)
			}
		}
	}()
	for _, s := range sides {
		p, err := r.startTracerBin(ctx, s.bin, s.tag, mode, s.t)
		if err != nil {
			return err
		}
		s.p = p
	}
	b := &Block{Proto: proto, Mode: mode}
	if err := r.iperf(ctx, b, r.o.seconds); err != nil {
		return err
	}
	c.ip = b.IPerf
	for _, s := range sides {
		p := s.p
		s.p = nil
		if err := finishTracer(p, mode, s.t); err != nil {
			return fmt.Errorf("%s: %w", s.bin, err)
		}
	}
	return nil
}

func (c *compareRun) line(proto string) string {
	a, b := bpfNs(&c.a), bpfNs(&c.b)
	s := fmt.Sprintf("%.2f Gbit/s", c.ip.BitsPerSecond/1e9)
	per := ""
	if proto == "udp" {
		s = fmt.Sprintf("%.0f pps", c.ip.PPS)
		if c.ip.Packets > 0 {
			per = fmt.Sprintf(", %.0f vs %.0f ns a packet", float64(a)/float64(c.ip.Packets), float64(b)/float64(c.ip.Packets))
		}
	}
	return fmt.Sprintf("%s; BPF A %.1f ms, B %.1f ms%s; B/A %.3f; lost A %d+%d B %d+%d",
		s, float64(a)/1e6, float64(b)/1e6, per, c.ratio(), c.a.LostKernel, c.a.LostUser, c.b.LostKernel, c.b.LostUser)
}

// printProgPairs prints each program's ns/run under A and B.
func printProgPairs(w io.Writer, a, b *Tracer) {
	byName := map[string]ProgRun{}
	for _, p := range b.Programs {
		byName[p.Name] = p
	}
	var parts []string
	for _, p := range a.Programs {
		q, ok := byName[p.Name]
		if !ok || p.Runs == 0 || q.Runs == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.1f/%.1f", p.Name, p.NsPerRun, q.NsPerRun))
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "    ns/run A/B: %s\n", strings.Join(parts, "  "))
	}
}

// checkCompare says what is wrong with --compare's options, if anything.
func checkCompare(o *options) error {
	if o.compare == "" {
		return nil
	}
	if o.soak > 0 || o.profile > 0 || o.from != "" {
		return errors.New("--compare runs on its own: drop --soak, --profile and --from")
	}
	if !slices.ContainsFunc(o.modes, Mode.vxtrace) {
		return errors.New("--compare measures vxtrace's modes: give p1 or p2 in --modes")
	}
	return nil
}
