package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func lookPath(name string) (string, error) { return exec.LookPath(name) }

// procs is every process the bench started and has not reaped yet, so that
// no exit path (an error, a ^C) leaves an iperf3, tcpdump or vxtrace behind.
type procs struct {
	mu   sync.Mutex
	live map[*proc]bool
}

func newProcs() *procs { return &procs{live: map[*proc]bool{}} }

// proc is one started command; done closes when it has been waited for.
type proc struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr lockedBuffer
	done   chan struct{}
	err    error
	name   string // the tool, for messages
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs args in the namespace ns ("" = ours). `ip netns exec` execs
// the command without forking, so the pid is the tool's own. Each child gets
// its own process group: a ^C on the terminal reaches only the bench, which
// then stops its children in order.
func (p *procs) start(ns string, keepStdout bool, args ...string) (*proc, error) {
	return p.startEnv(nil, ns, keepStdout, args...)
}

// startEnv is start with env added to the bench's environment.
func (p *procs) startEnv(env []string, ns string, keepStdout bool, args ...string) (*proc, error) {
	full := args
	if ns != "" {
		full = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	cmd := exec.Command(full[0], full[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	pr := &proc{cmd: cmd, done: make(chan struct{}), name: filepath.Base(args[0])}
	if keepStdout {
		cmd.Stdout = &pr.stdout
	}
	cmd.Stderr = &pr.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", strings.Join(args, " "), err)
	}
	p.mu.Lock()
	p.live[pr] = true
	p.mu.Unlock()
	go func() {
		pr.err = cmd.Wait()
		p.mu.Lock()
		delete(p.live, pr)
		p.mu.Unlock()
		close(pr.done)
	}()
	return pr, nil
}

func (pr *proc) pid() int { return pr.cmd.Process.Pid }

func (pr *proc) exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit on its own.
func (pr *proc) wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-pr.done:
		return pr.err
	case <-t.C:
		return fmt.Errorf("%s did not exit within %v", pr.name, d)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop sends sig, waits up to grace, then kills. It returns the exit error
// of a process that stopped on sig.
func (pr *proc) stop(sig syscall.Signal, grace time.Duration) error {
	if pr.exited() {
		return pr.err
	}
	_ = pr.cmd.Process.Signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-pr.done:
		return pr.err
	case <-t.C:
		_ = pr.cmd.Process.Kill()
		<-pr.done
		return fmt.Errorf("did not stop on %v within %v: killed", sig, grace)
	}
}

// killAll stops every live child, politely first.
func (p *procs) killAll() {
	p.mu.Lock()
	var all []*proc
	for pr := range p.live {
		all = append(all, pr)
	}
	p.mu.Unlock()
	for _, pr := range all {
		_ = pr.cmd.Process.Signal(syscall.SIGINT)
	}
	for _, pr := range all {
		select {
		case <-pr.done:
		case <-time.After(10 * time.Second):
			_ = pr.cmd.Process.Kill()
			<-pr.done
		}
	}
}

// cpuTicks is utime+stime of pid, in clock ticks.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return ut + st, nil
}

// clkTck is USER_HZ; Linux has reported 100 on every architecture Go runs
// on for decades, and /proc/PID/stat is in these units.
const clkTck = 100

// memKiB returns VmRSS and VmHWM of pid.
func memKiB(pid int) (rss, hwm uint64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm
}

// hostStat is what the bench reads of /proc/stat: all CPUs' busy and total
// jiffies, and context switches since boot.
type hostStat struct{ busy, total, ctxt uint64 }

func readHostStat() hostStat {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostStat{}
	}
	return parseHostStat(string(b))
}

func parseHostStat(s string) hostStat {
	var h hostStat
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "cpu":
			for i, v := range f[1:] {
				n, _ := strconv.ParseUint(v, 10, 64)
				h.total += n
				if i != 3 && i != 4 { // idle, iowait
					h.busy += n
				}
			}
		case "ctxt":
			h.ctxt, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	return h
}

func busyPct(a, b hostStat) float64 {
	if b.total <= a.total {
		return 0
	}
	return 100 * float64(b.busy-a.busy) / float64(b.total-a.total)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// enableBPFStats turns on the kernel's per-program run-time accounting
// (what kernel.bpf_stats_enabled=1 does) for as long as the returned closer
// is open. BPF_ENABLE_STATS is reference counted and ends with the file
// descriptor, so unlike writing the sysctl it cannot be left on by a crash,
// nor switch off accounting that someone else on the machine turned on.
func enableBPFStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return nil, fmt.Errorf("enabling BPF run-time stats: %w", err)
	}
	return c, nil
}

// bpfStatsSysctl is the current kernel.bpf_stats_enabled.
func bpfStatsSysctl() string {
	b, _ := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	return strings.TrimSpace(string(b))
}
