// Command vxtrace traces packets through container overlay networks
// (VXLAN, veth, bridges) with eBPF and says where and why they die.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

const topUsage = `vxtrace: where did my overlay packet go?

Usage:
  vxtrace [tui] [flags]          live per-hop view (the default)
  vxtrace trace [flags]          follow matching packets, print verdicts, exit
  vxtrace topology [flags]       print the hop chain that would be traced
  vxtrace join A.json B.json     join two nodes' traces: one verdict per packet
  vxtrace version [--features]   version, and what this kernel offers

Run 'vxtrace COMMAND -h' for a command's flags.`

func main() {
	capProcs()
	capMemory()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	stopProfiles := startProfiles()
	err := runSafe(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfiles()
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// panicError is a panic of the main goroutine, recovered once every
// deferred Close on the way up has detached what the run attached.
type panicError struct {
	value any
	stack []byte
}

func (e panicError) Error() string {
	return fmt.Sprintf("internal error: panic: %v (please report it)\n%s", e.value, e.stack)
}

// runSafe is run with a panic turned into an error. The unwinding runs the
// deferred Close of the session, so a bug still leaves the node as it was.
// (A panic on another goroutine cannot be recovered here; tcx links die with
// the process anyway, and the next run sweeps legacy filters.)
func runSafe(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicError{value: v, stack: debug.Stack()}
		}
	}()
	return run(ctx, args, stdout, stderr)
}

// testPanicAt is read once: one point is passed per packet, and a
// lookup of the environment (a lock and a search) was 1.4 % of a flood's
// tracer CPU.
var testPanicAt = os.Getenv("VXTRACE_TEST_PANIC")

// testPanic lets tests prove that a panic leaves nothing behind:
// VXTRACE_TEST_PANIC names the point of the run that panics.
func testPanic(point string) {
	if testPanicAt != "" && testPanicAt == point {
		panic("VXTRACE_TEST_PANIC=" + point)
	}
}

// errDrops makes --fail-on-drop exit 1 without printing anything more.
var errDrops = errors.New("packets were dropped")

func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	var pe panicError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errDrops):
		return 1
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "vxtrace: %s\n", ue.msg)
		return 2
	case errors.As(err, &pe):
		fmt.Fprintf(stderr, "vxtrace: %v", pe)
		return 3
	default:
		fmt.Fprintf(stderr, "vxtrace: %v\n", err)
		return 1
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "tui"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "trace":
		return runTrace(ctx, args, stdout, stderr)
	case "tui":
		return runTUI(ctx, args, stdout, stderr)
	case "topology":
		return runTopology(ctx, args, stdout, stderr)
	case "version":
		return runVersion(ctx, args, stdout, stderr)
	case "join":
		return runJoin(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprintln(stdout, topUsage)
		return nil
	}
	return usagef("unknown command %q (commands: trace, tui, topology, join, version)", cmd)
}

// newLogger logs to a file when asked, else to stderr at warning level, so
// that a log line never lands on the TUI or in the middle of a trace.
func newLogger(path string, stderr io.Writer, verbose bool) (*slog.Logger, func(), error) {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	if path == "" {
		return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})), func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, usagef("--log-file %s: %v", path, err)
	}
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})), func() { f.Close() }, nil
}
