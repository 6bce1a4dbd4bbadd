package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxtrace/vxtrace/internal/leakcheck"
	"github.com/vxtrace/vxtrace/lab"
	"github.com/vxtrace/vxtrace/report"
)

// Reliability tests (issue 6): vxtrace never leaves a node worse than it
// found it, survives what the node does under it, and rejects bad input
// cleanly. Each test tries to break one promise on a real lab with the real
// binary; the helpers are prefixed rl so they do not collide with the other
// e2e files of this package.

// rlBuffer is a bytes.Buffer that the exec copier and the test may use at
// the same time.
type rlBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *rlBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *rlBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// rlTrace is a `vxtrace trace` running in the background.
type rlTrace struct {
	cmd            *exec.Cmd
	stdout, stderr rlBuffer
	jsonPath       string
	jsonlPath      string
	done           chan struct{}
	err            error
}

// rlStart starts `vxtrace trace` with a JSON and a JSONL file and waits
// until it says it is attached. env is added to the environment.
func rlStart(t *testing.T, args, env []string) *rlTrace {
	t.Helper()
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	b := &rlTrace{jsonPath: filepath.Join(dir, "trace.json"), jsonlPath: filepath.Join(dir, "trace.jsonl"), done: make(chan struct{})}
	full := append([]string{"trace", "--json", b.jsonPath, "--jsonl", b.jsonlPath, "--ready-file", ready}, args...)
	b.cmd = exec.Command(vxtraceBin, full...)
	b.cmd.Env = append(os.Environ(), env...)
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		if !b.exited() {
			b.cmd.Process.Kill()
			<-b.done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return b
		}
		if b.exited() {
			// Ready and gone at once is fine (a panic right after attaching);
			// gone before ready is not.
			if _, err := os.Stat(ready); err == nil {
				return b
			}
			t.Fatalf("vxtrace exited before attaching (%v)\nstderr:\n%s", b.err, b.stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("vxtrace never became ready\nstderr:\n%s", b.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *rlTrace) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the exit and returns the exit code (-1: killed
// because it did not exit in time).
func (b *rlTrace) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(d):
		b.cmd.Process.Kill()
		<-b.done
		t.Errorf("vxtrace did not exit within %v; killed\nstderr:\n%s", d, b.stderr.String())
		return -1
	}
	return rlExitCode(b.err)
}

func rlExitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// doc reads the JSON document and checks the promises of the export: it
// exists, is a valid v1 document, and has mode 0600.
func (b *rlTrace) doc(t *testing.T) (*report.Doc, []byte) {
	t.Helper()
	raw, err := os.ReadFile(b.jsonPath)
	if err != nil {
		t.Fatalf("no JSON document: %v\nstderr:\n%s", err, b.stderr.String())
	}
	d, err := report.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("invalid JSON document: %v", err)
	}
	st, err := os.Stat(b.jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("JSON mode %v, want 0600", st.Mode().Perm())
	}
	// No temporary file may be left next to it.
	tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(b.jsonPath), ".trace.json.tmp-*"))
	if len(tmps) > 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
	return d, raw
}

// rlInNetNS runs fn on a thread inside the namespace at path. Sockets made
// by fn stay in that namespace.
func rlInNetNS(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: Go ends it with the goroutine.
		return errors.Join(ferr, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// rlTCState lists what TC holds in the namespaces: clsact qdiscs, every
// filter on them (anyone's), and the programs attached through tcx. Gone
// namespaces are skipped.
func rlTCState(t *testing.T, paths []string) []string {
	t.Helper()
	var out []string
	for _, path := range paths {
		ns, err := netns.GetFromPath(path)
		if err != nil {
			continue
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			t.Fatalf("netlink in %s: %v", path, err)
		}
		links, err := h.LinkList()
		if err != nil {
			h.Close()
			continue // the namespace is being torn down
		}
		name := filepath.Base(path)
		for _, l := range links {
			at := l.Attrs().Name + " in " + name
			qs, _ := h.QdiscList(l)
			for _, q := range qs {
				if q.Type() == "clsact" {
					out = append(out, "clsact qdisc on "+at)
				}
			}
			for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
				fs, _ := h.FilterList(l, parent)
				for _, f := range fs {
					a := f.Attrs()
					if a.Handle == 0 {
						continue
					}
					desc := f.Type()
					if bf, ok := f.(*netlink.BpfFilter); ok {
						desc += " " + bf.Name
					}
					out = append(out, fmt.Sprintf("%s filter %s pref %d on %s", dirName(parent), desc, a.Priority, at))
				}
			}
		}
		h.Close()
		err = rlInNetNS(path, func() error {
			for _, l := range links {
				for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
					r, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: at})
					if err != nil {
						continue
					}
					for _, p := range r.Programs {
						pname := "?"
						if prog, err := ebpf.NewProgramFromID(p.ID); err == nil {
							if info, err := prog.Info(); err == nil {
								pname = info.Name
							}
							prog.Close()
						}
						out = append(out, fmt.Sprintf("tcx %v program %s on %s in %s", at, pname, l.Attrs().Name, name))
					}
				}
			}
			return nil
		})
		if err != nil {
			continue
		}
	}
	slices.Sort(out)
	return out
}

func dirName(parent uint32) string {
	if parent == netlink.HANDLE_MIN_EGRESS {
		return "egress"
	}
	return "ingress"
}

// rlCheckTCState fails unless the TC state returns to want. Programs and
// links of a process that just exited are freed after an RCU grace period,
// hence the short wait.
func rlCheckTCState(t *testing.T, paths, want []string) {
	t.Helper()
	var got []string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got = rlTCState(t, paths)
		if slices.Equal(got, want) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("TC state after: %q", got)
	if !slices.Equal(got, want) {
		t.Errorf("TC state changed:\n before %q\n after  %q", want, got)
	}
}

// rlForeignFilter puts someone else's cls_bpf filter (a do-nothing
// program, named "other-tool") on ingress of ifname, as another tool would,
// and drops the program's descriptor: like a leftover of ours, no process
// holds it. vxtrace must never remove it.
func rlForeignFilter(t *testing.T, nsPath, ifname string) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "other_tool", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	qd := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
	if err := h.QdiscAdd(qd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			return
		}
		defer ns.Close()
		if h, err := netlink.NewHandleAt(ns); err == nil {
			h.QdiscDel(qd)
			h.Close()
		}
	})
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_MIN_INGRESS, Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1},
		Fd:          prog.FD(), Name: "other-tool", DirectAction: true,
	}
	if err := h.FilterAdd(f); err != nil {
		t.Fatal(err)
	}
}

func rlPing(t *testing.T, l *lab.Lab, count int) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return lab.Ping(ctx, l.NSPath(lab.RoleC1), l.ContainerIP(lab.RoleC2), count, 0)
}

func rlDelivered(d *report.Doc) int {
	n := 0
	for _, p := range d.Packets {
		if p.Verdict == "delivered" {
			n++
		}
	}
	return n
}

// TestReliabilityNothingLeftBehind: however the trace ends, no tc filter,
// qdisc, tcx link or BPF program of vxtrace's remains; after kill -9, the
// legacy filters the kernel cannot clean remain only until the next start.
func TestReliabilityNothingLeftBehind(t *testing.T) {
	requireRoot(t)
	l := upLab(t, lab.DockerLayout)
	paths := labPaths(l)
	base := append([]string{"--dst", l.ContainerIP(lab.RoleC2), "--proto", "icmp"}, labScope(l)...)

	ends := []struct {
		name     string
		sig      os.Signal
		args     []string
		env      []string
		wantCode int
		json     bool
	}{
		{name: "SIGINT", sig: syscall.SIGINT, json: true},
		{name: "SIGTERM", sig: syscall.SIGTERM, json: true},
		{name: "SIGHUP", sig: syscall.SIGHUP, json: true},
		{name: "count", args: []string{"--count", "2"}, json: true},
		{name: "panic after attach", env: []string{"VXTRACE_TEST_PANIC=after-attach"}, wantCode: 3},
		{name: "panic in run", env: []string{"VXTRACE_TEST_PANIC=in-run"}, wantCode: 3},
	}
	for _, mode := range []struct {
		name string
		args []string
	}{{"tcx", nil}, {"clsact", []string{"--force-clsact"}}} {
		for _, e := range ends {
			t.Run(mode.name+"/"+e.name, func(t *testing.T) {
				before := leakcheck.Snapshot(t, paths...)
				tcBefore := rlTCState(t, paths)
				t.Logf("TC state before: %q", tcBefore)
				args := append(append(append([]string{}, base...), mode.args...), e.args...)
				b := rlStart(t, args, e.env)
				if e.wantCode == 0 {
					during := rlTCState(t, paths)
					t.Logf("TC state while tracing: %d entries", len(during))
					if len(during) <= len(tcBefore) {
						t.Errorf("nothing attached while tracing: %q", during)
					}
				}
				if err := rlPing(t, l, 2); err != nil && e.wantCode == 0 {
					t.Errorf("ping under the trace: %v", err)
				}
				if e.sig != nil {
					time.Sleep(200 * time.Millisecond)
					b.cmd.Process.Signal(e.sig)
				}
				code := b.wait(t, 10*time.Second)
				if code != e.wantCode {
					t.Errorf("exit %d, want %d\nstderr:\n%s", code, e.wantCode, b.stderr.String())
				}
				if e.wantCode == 3 && !strings.Contains(b.stderr.String(), "panic: VXTRACE_TEST_PANIC") {
					t.Errorf("the panic is not printed:\n%s", b.stderr.String())
				}
				if e.json {
					d, _ := b.doc(t)
					if rlDelivered(d) < 1 {
						t.Errorf("no delivered packet in the JSON: the trace did not work\n%s", b.stdout.String())
					}
				}
				rlCheckTCState(t, paths, tcBefore)
				leakcheck.Check(t, before, paths...)
			})
		}
	}

	t.Run("tcx/SIGKILL", func(t *testing.T) {
		before := leakcheck.Snapshot(t, paths...)
		tcBefore := rlTCState(t, paths)
		b := rlStart(t, base, nil)
		b.cmd.Process.Kill()
		b.wait(t, 5*time.Second)
		// tcx links and programs belong to the process's descriptors.
		rlCheckTCState(t, paths, tcBefore)
		leakcheck.Check(t, before, paths...)
	})

	t.Run("clsact/SIGKILL then the next start sweeps", func(t *testing.T) {
		// Someone else's filter on c2's eth0, which must survive the sweep
		// (and takes priority 1, so vxtrace has to find another).
		rlForeignFilter(t, l.NSPath(lab.RoleC2), "eth0")
		before := leakcheck.Snapshot(t, paths...)
		tcBefore := rlTCState(t, paths)
		t.Logf("TC state before: %q", tcBefore)

		b := rlStart(t, append(append([]string{}, base...), "--force-clsact"), nil)
		attached := leakcheck.Filters(paths...)
		b.cmd.Process.Kill()
		b.wait(t, 5*time.Second)
		time.Sleep(200 * time.Millisecond)
		left := leakcheck.Filters(paths...)
		orphans := leakcheck.Orphans()
		t.Logf("after kill -9: %d vxtrace filters (of %d attached), orphan programs %v", len(left), len(attached), orphans)
		t.Logf("TC state after kill -9: %q", rlTCState(t, paths))
		if len(attached) == 0 || len(left) != len(attached) {
			t.Fatalf("kill -9 should leave the legacy filters (the kernel cannot clean them): attached %d, left %d", len(attached), len(left))
		}
		if len(orphans) == 0 {
			t.Errorf("the left filters should hold orphan programs")
		}

		// The next start (tcx: the sweep does not depend on the mode).
		next := rlStart(t, append(append([]string{}, base...), "--count", "1"), nil)
		if got := leakcheck.Filters(paths...); len(got) != 0 {
			t.Errorf("filters of the killed run still there after the next start: %v", got)
		}
		if err := rlPing(t, l, 1); err != nil {
			t.Errorf("ping: %v", err)
		}
		if code := next.wait(t, 10*time.Second); code != 0 {
			t.Errorf("next run exit %d\n%s", code, next.stderr.String())
		}
		stderr := next.stderr.String()
		if !strings.Contains(stderr, "removed what a killed vxtrace left") {
			t.Errorf("the sweep did not say what it removed:\n%s", stderr)
		}
		for _, line := range strings.Split(stderr, "\n") {
			if strings.Contains(line, "removed what") {
				t.Logf("sweep: %s", line)
				if strings.Contains(line, "other-tool") {
					t.Errorf("the sweep removed someone else's filter: %s", line)
				}
			}
		}
		if d, _ := next.doc(t); rlDelivered(d) != 1 {
			t.Errorf("next run: %d delivered, want 1", rlDelivered(d))
		}
		rlCheckTCState(t, paths, tcBefore)
		leakcheck.Check(t, before, paths...)
	})
}

// rlCapture is an AF_PACKET socket on one interface of a namespace.
type rlCapture struct{ fd int }

func rlListen(t *testing.T, nsPath, ifname string) *rlCapture {
	t.Helper()
	var c rlCapture
	proto := int(htons(unix.ETH_P_ALL))
	err := rlInNetNS(nsPath, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		return unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("capturing on %s in %s: %v", ifname, nsPath, err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(c.fd) })
	return &c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// collect returns the received (not sent) frames that match, until n are
// in or the time is up.
func (c *rlCapture) collect(match func([]byte) bool, n int, d time.Duration) [][]byte {
	var out [][]byte
	buf := make([]byte, 65536)
	for deadline := time.Now().Add(d); len(out) < n && time.Now().Before(deadline); {
		m, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if match(buf[:m]) {
			out = append(out, append([]byte(nil), buf[:m]...))
		}
	}
	return out
}

// udpDport returns the UDP destination port of an IPv4 packet at off in
// frame, and the offset of its payload.
func udpDport(frame []byte, off int) (port uint16, payload int, ok bool) {
	if len(frame) < off+28 || frame[off]>>4 != 4 || frame[off+9] != 17 {
		return 0, 0, false
	}
	ihl := int(frame[off]&0xf) * 4
	if len(frame) < off+ihl+8 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(frame[off+ihl+2:]), off + ihl + 8, true
}

// ipv4Sum is the checksum of an IPv4 header: 0 when the header is intact.
func ipv4Sum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// normalize checks the IPv4 header checksums at the offsets and blanks the
// fields the kernel changes from one packet to the next (IP ID, and the
// checksum that covers it), so that frames of two runs compare.
func normalize(t *testing.T, frame []byte, ipOffs ...int) []byte {
	t.Helper()
	f := append([]byte(nil), frame...)
	for _, off := range ipOffs {
		ihl := int(f[off]&0xf) * 4
		if ipv4Sum(f[off:off+ihl]) != 0 {
			t.Errorf("bad IPv4 header checksum at offset %d", off)
		}
		f[off+4], f[off+5] = 0, 0   // identification
		f[off+10], f[off+11] = 0, 0 // header checksum
	}
	return f
}

func rlIptables(t *testing.T, nsPath string, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + nsPath, "--", "iptables", "-w", "5"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("iptables %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestReliabilityPassive: with vxtrace attached (tcx, and forced clsact),
// the lab's traffic is unchanged: the same packets arrive with the same
// bytes, the skb mark survives the hooks, and no payload byte reaches the
// exports. flannel-layout, because there the vxlan device stays in the
// node's namespace and the encapsulated packet keeps the inner packet's
// mark, so a mark set before vxtrace's TC egress hook on vxlan100 can be
// checked after it.
func TestReliabilityPassive(t *testing.T) {
	requireRoot(t)
	l := upLab(t, lab.FlannelLayout)
	const port, mark, k = 7777, "0x5a17", 5
	c1, c2, n1, n2 := l.NSPath(lab.RoleC1), l.NSPath(lab.RoleC2), l.NSPath(lab.RoleN1), l.NSPath(lab.RoleN2)
	dst := l.ContainerIP(lab.RoleC2)
	vethc1 := "vethc1"

	// Node 1 marks the container's datagrams as they arrive from its veth
	// (before any vxtrace hook on the way out), and counts the encapsulated
	// packets that still carry the mark as they leave its NIC (after the
	// TC egress hooks on vxlan100 and eth0).
	rlIptables(t, n1, "-t", "mangle", "-A", "PREROUTING", "-i", vethc1, "-p", "udp", "--dport", fmt.Sprint(port), "-j", "MARK", "--set-mark", mark)
	rlIptables(t, n1, "-t", "mangle", "-A", "POSTROUTING", "-o", "eth0", "-p", "udp", "--dport", fmt.Sprint(lab.VXLANPort), "-m", "mark", "--mark", mark)
	marked := func() int {
		for _, line := range strings.Split(rlIptables(t, n1, "-t", "mangle", "-nvxL", "POSTROUTING"), "\n") {
			if strings.Contains(line, "mark match "+mark) {
				n, err := strconv.Atoi(strings.Fields(line)[0])
				if err != nil {
					t.Fatalf("parsing %q: %v", line, err)
				}
				return n
			}
		}
		t.Fatal("the mark counter rule is gone")
		return 0
	}

	// A receiver in c2, and a sender in c1 with a fixed source port so that
	// every run sends the same bytes.
	var rx, tx *net.UDPConn
	if err := rlInNetNS(c2, func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := rlInNetNS(c1, func() (err error) {
		tx, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 40777})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	canary := "VXTRACE-PAYLOAD-CANARY-7f3a9c"
	payload := func(i int) []byte { return []byte(fmt.Sprintf("%s-%02d-%s", canary, i, strings.Repeat("z", 64))) }

	type result struct {
		inner, outer [][]byte // normalized frames at c2/eth0 and n2/eth0
		got          []string // what the receiver read
		marked       int
	}
	send := func(t *testing.T) result {
		t.Helper()
		capC2 := rlListen(t, c2, "eth0")
		capN2 := rlListen(t, n2, "eth0")
		m0 := marked()
		var r result
		for i := range k {
			if _, err := tx.WriteToUDP(payload(i), &net.UDPAddr{IP: net.ParseIP(dst), Port: port}); err != nil {
				t.Fatal(err)
			}
			rx.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 2048)
			n, _, err := rx.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("datagram %d did not arrive: %v", i, err)
			}
			r.got = append(r.got, string(buf[:n]))
		}
		for _, f := range capC2.collect(func(f []byte) bool {
			p, _, ok := udpDport(f, 14)
			return ok && p == port
		}, k, 2*time.Second) {
			r.inner = append(r.inner, normalize(t, f, 14))
		}
		for _, f := range capN2.collect(func(f []byte) bool {
			p, off, ok := udpDport(f, 14)
			if !ok || p != lab.VXLANPort {
				return false
			}
			ip, _, ok := udpDport(f, off+8+14)
			return ok && ip == port
		}, k, 2*time.Second) {
			r.outer = append(r.outer, normalize(t, f, 14, 14+20+8+8+14))
		}
		r.marked = marked() - m0
		if len(r.inner) != k || len(r.outer) != k {
			t.Fatalf("captured %d frames at c2 and %d at n2, want %d each", len(r.inner), len(r.outer), k)
		}
		return r
	}

	var baseline result
	t.Run("baseline", func(t *testing.T) {
		baseline = send(t)
		if baseline.marked != k {
			t.Fatalf("%d of %d encapsulated packets kept the mark without vxtrace: the mark check cannot work", baseline.marked, k)
		}
	})
	if t.Failed() {
		return
	}
	for _, mode := range []struct {
		name string
		args []string
	}{{"tcx", nil}, {"clsact", []string{"--force-clsact"}}} {
		t.Run(mode.name, func(t *testing.T) {
			before := leakcheck.Snapshot(t, labPaths(l)...)
			tcBefore := rlTCState(t, labPaths(l))
			args := append([]string{"--dst", dst, "--proto", "udp", "--port", fmt.Sprint(port)}, labScope(l)...)
			b := rlStart(t, append(args, mode.args...), nil)
			r := send(t)
			time.Sleep(300 * time.Millisecond)
			b.cmd.Process.Signal(syscall.SIGINT)
			if code := b.wait(t, 10*time.Second); code != 0 {
				t.Fatalf("exit %d\n%s", code, b.stderr.String())
			}
			d, raw := b.doc(t)
			if n := rlDelivered(d); n != k {
				t.Errorf("vxtrace saw %d delivered datagrams, want %d: it was not really attached\n%s", n, k, b.stdout.String())
			}
			if !slices.Equal(r.got, baseline.got) {
				t.Errorf("received payloads differ:\n%q\n%q", r.got, baseline.got)
			}
			for i := range k {
				if !bytes.Equal(r.inner[i], baseline.inner[i]) {
					t.Errorf("frame %d at c2/eth0 differs under vxtrace:\n%x\n%x", i, r.inner[i], baseline.inner[i])
				}
				if !bytes.Equal(r.outer[i], baseline.outer[i]) {
					t.Errorf("encapsulated frame %d at n2/eth0 differs under vxtrace:\n%x\n%x", i, r.outer[i], baseline.outer[i])
				}
			}
			if r.marked != k {
				t.Errorf("%d of %d packets kept their skb mark under vxtrace", r.marked, k)
			}

			// Exports carry headers only: no form of the payload.
			jsonl, err := os.ReadFile(b.jsonlPath)
			if err != nil {
				t.Fatal(err)
			}
			for _, exp := range []struct {
				name string
				b    []byte
			}{{"JSON", raw}, {"JSONL", jsonl}, {"stdout", []byte(b.stdout.String())}} {
				for _, form := range []string{canary, hex.EncodeToString([]byte(canary)), base64.StdEncoding.EncodeToString([]byte(canary))[:24], "zzzzzzzz"} {
					if bytes.Contains(exp.b, []byte(form)) {
						t.Errorf("%s contains payload bytes (%q)", exp.name, form)
					}
				}
			}
			rlCheckTCState(t, labPaths(l), tcBefore)
			leakcheck.Check(t, before, labPaths(l)...)
		})
	}
}

// TestReliabilityNodeChanges: interfaces and namespaces vanish under a
// running trace. It goes on, and ends cleanly with a valid document.
func TestReliabilityNodeChanges(t *testing.T) {
	requireRoot(t)
	l := upLab(t, lab.DockerLayout)
	paths := labPaths(l)
	ov2, c2 := l.NS(lab.RoleOV2), l.NS(lab.RoleC2)
	ipRun := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	restoreVXLAN := func() error {
		// Rebuilding node 2's VTEP twice puts vxlan0 back as it was.
		if err := l.SetFault(lab.FaultWrongVNI, true); err != nil {
			return err
		}
		return l.SetFault(lab.FaultWrongVNI, false)
	}
	cases := []struct {
		name    string
		args    []string
		change  func() error
		restore func() error
		gone    []string // ns/ifname of the hops that must be marked gone
	}{
		{"vxlan device deleted/tcx", nil, func() error { return ipRun("-n", ov2, "link", "del", "vxlan0") }, restoreVXLAN, []string{ov2 + "/vxlan0"}},
		{"vxlan device deleted/clsact", []string{"--force-clsact"}, func() error { return ipRun("-n", ov2, "link", "del", "vxlan0") }, restoreVXLAN, []string{ov2 + "/vxlan0"}},
		{"container veth deleted/clsact", []string{"--force-clsact"}, func() error { return ipRun("-n", c2, "link", "del", "eth0") }, nil, []string{c2 + "/eth0", ov2 + "/veth0"}},
		{"namespaces deleted/clsact", []string{"--force-clsact"}, func() error {
			// The listener holds c2 open: stop it so the namespace dies.
			if err := l.SetFault(lab.FaultNoListener, true); err != nil {
				return err
			}
			if err := ipRun("netns", "del", ov2); err != nil {
				return err
			}
			return ipRun("netns", "del", c2)
		}, nil, []string{ov2 + "/br0", ov2 + "/vxlan0"}},
		{"namespace deleted/tcx", nil, func() error { return ipRun("netns", "del", l.NS(lab.RoleOV1)) }, nil,
			[]string{l.NS(lab.RoleOV1) + "/br0", l.NS(lab.RoleOV1) + "/veth0", l.NS(lab.RoleOV1) + "/vxlan0"}},
	}
	// The namespaces that are still there: the cases delete some.
	scope := func() []string {
		var args []string
		for _, r := range l.Roles() {
			if _, err := os.Stat(l.NSPath(r)); err == nil {
				args = append(args, "--netns", l.NS(r))
			}
		}
		return args
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := leakcheck.Snapshot(t, paths...)
			args := append(append([]string{"--dst", l.ContainerIP(lab.RoleC2), "--proto", "icmp"}, scope()...), c.args...)
			b := rlStart(t, args, nil)
			_ = rlPing(t, l, 1) // fails once the lab is broken
			if err := c.change(); err != nil {
				t.Fatal(err)
			}
			_ = rlPing(t, l, 1)
			// The session rediscovers the hops every 2s: give it the
			// time to notice.
			for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline) && !strings.Contains(b.stderr.String(), "is gone"); {
				time.Sleep(100 * time.Millisecond)
			}
			if b.exited() {
				t.Fatalf("the trace ended when the node changed (%v)\nstderr:\n%s", b.err, b.stderr.String())
			}
			b.cmd.Process.Signal(syscall.SIGINT)
			code := b.wait(t, 10*time.Second)
			stderr := b.stderr.String()
			if code != 0 || strings.Contains(stderr, "panic") {
				t.Errorf("exit %d\nstderr:\n%s", code, stderr)
			}
			d, _ := b.doc(t)
			t.Logf("document: %d hops, %d packets, verdicts %+v", len(d.Hops), len(d.Packets), d.Summary.Verdicts)
			t.Logf("stderr:\n%s", stderr)
			for _, g := range c.gone {
				if !strings.Contains(stderr, "hop "+g+" is gone") {
					t.Errorf("the CLI does not say that %s is gone", g)
				}
				found := false
				for _, h := range d.Hops {
					if h.NetNS.Name+"/"+h.Ifname == g {
						found = true
						if !h.Gone {
							t.Errorf("hop %s is not marked gone in the JSON", g)
						}
					}
				}
				if !found {
					t.Errorf("hop %s is missing from the JSON", g)
				}
			}
			leakcheck.Check(t, before, paths...)
			if c.restore != nil {
				if err := c.restore(); err != nil {
					t.Fatalf("restoring the lab: %v", err)
				}
				if err := rlPing(t, l, 1); err != nil {
					t.Fatalf("lab not restored: %v", err)
				}
			}
		})
	}
}

// rlRSS is the resident set of a process in KiB.
func rlRSS(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// TestReliabilityOverload: a UDP flood across the lab, beyond what the ring
// holds. The loss is counted and shown, memory stays bounded, and Ctrl-C
// ends the trace within a second while the flood goes on.
func TestReliabilityOverload(t *testing.T) {
	requireRoot(t)
	l := upLab(t, lab.DockerLayout)
	dst := l.ContainerIP(lab.RoleC2)
	const port = 7778
	for _, c := range []struct {
		name     string
		args     []string
		wantLoss bool
	}{
		{"tiny ring", []string{"--ring-size", fmt.Sprint(os.Getpagesize())}, true},
		{"default ring", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := leakcheck.Snapshot(t, labPaths(l)...)
			args := append(append([]string{"-q", "--dst", dst, "--proto", "udp", "--port", fmt.Sprint(port)}, labScope(l)...), c.args...)
			b := rlStart(t, args, nil)

			var conn *net.UDPConn
			if err := rlInNetNS(l.NSPath(lab.RoleC1), func() (err error) {
				conn, err = net.ListenUDP("udp4", nil)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			stop := make(chan struct{})
			var sent int
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				to := &net.UDPAddr{IP: net.ParseIP(dst), Port: port}
				msg := make([]byte, 64)
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := conn.WriteToUDP(msg, to); err == nil {
						sent++
					}
				}
			}()
			defer func() {
				select {
				case <-stop:
				default:
					close(stop)
				}
				wg.Wait()
			}()

			var rss []int
			for range 25 {
				time.Sleep(100 * time.Millisecond)
				rss = append(rss, rlRSS(b.cmd.Process.Pid))
			}
			if b.exited() {
				t.Fatalf("vxtrace died under the flood\n%s", b.stderr.String())
			}
			t0 := time.Now()
			b.cmd.Process.Signal(syscall.SIGINT)
			code := b.wait(t, 10*time.Second)
			exitIn := time.Since(t0)
			close(stop)
			wg.Wait()
			maxRSS := slices.Max(rss)
			t.Logf("flood: %d datagrams in 2.5s; Ctrl-C to exit: %v; RSS KiB samples %v (max %d)", sent, exitIn, rss, maxRSS)
			if code != 0 {
				t.Errorf("exit %d\n%s", code, b.stderr.String())
			}
			// The goal is 1s (measured and reported in the issue note);
			// on a shared CI machine a timing can miss it for reasons that
			// are not the code's, so the test fails only on what no load
			// explains: a shutdown that hangs.
			switch {
			case exitIn > 3*time.Second:
				t.Errorf("Ctrl-C under flood took %v to exit: it hangs (goal 1s)", exitIn)
			case exitIn > time.Second:
				t.Logf("Ctrl-C under flood took %v, above the 1s goal (machine load?)", exitIn)
			}
			if maxRSS > 256<<10 {
				t.Errorf("resident memory reached %d KiB under flood", maxRSS)
			}
			// Bounded: the second half of the flood does not keep growing
			// the process beyond the first half by more than half.
			if mid, last := slices.Max(rss[:12]), slices.Max(rss[12:]); last > mid+mid/2 {
				t.Errorf("memory still growing under flood: %d KiB then %d KiB", mid, last)
			}
			d, _ := b.doc(t)
			t.Logf("document: %d packets kept, %d omitted, summary %+v, lost %+v", len(d.Packets), d.PacketsOmitted, d.Summary, d.LostEvents)
			if d.LostEvents.Total != d.LostEvents.Kernel+d.LostEvents.User {
				t.Errorf("lost_events total %d != kernel %d + user %d", d.LostEvents.Total, d.LostEvents.Kernel, d.LostEvents.User)
			}
			if c.wantLoss && d.LostEvents.Kernel == 0 {
				t.Errorf("a %s ring under a flood of %d datagrams lost nothing: the loss is not counted", c.name, sent)
			}
			if c.wantLoss && !strings.Contains(b.stdout.String(), fmt.Sprintf("lost events: %d", d.LostEvents.Total)) {
				t.Errorf("the loss is not shown in the summary:\n%s", lastLines(b.stdout.String(), 3))
			}
			if len(d.Packets) == 0 {
				t.Errorf("no packet traced under the flood")
			}
			leakcheck.Check(t, before, labPaths(l)...)
		})
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// rlRun runs the binary to its end. Its stderr and exit code are returned.
func rlRun(t *testing.T, bin string, pre, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append(append([]string{}, pre...), bin)
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), rlExitCode(err)
}

// TestReliabilityBadInput: bad input gets exit code 2, one line that says
// what is wrong, and leaves nothing behind; two traces of the same hops both
// work.
func TestReliabilityBadInput(t *testing.T) {
	requireRoot(t)
	l := upLab(t, lab.DockerLayout)
	paths := labPaths(l)
	scope := labScope(l)

	// A read-only directory that root cannot write either.
	roDir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", roDir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a read-only tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", roDir).Run() })

	// A copy of the binary that an unprivileged user may run.
	pubDir, err := os.MkdirTemp("", "vxtrace-rl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pubDir) })
	pubBin := filepath.Join(pubDir, "vxtrace")
	src, err := os.ReadFile(vxtraceBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubBin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pubDir, 0o755); err != nil {
		t.Fatal(err)
	}

	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}
	// Root without CAP_BPF and CAP_PERFMON: capsh drops them from the
	// bounding set, then the shell execs the binary ($0) with its args.
	noBPF := []string{"capsh", "--drop=cap_bpf,cap_perfmon", "--", "-c", `exec "$0" "$@"`}
	cases := []struct {
		name string
		pre  []string // runs the binary under this (setpriv, capsh)
		env  []string
		args []string
		want []string // substrings of the one line
		// noScope: without the lab's --netns list
		noScope bool
	}{
		{name: "unknown flag", args: []string{"--bogus"}, want: []string{"-bogus", "vxtrace trace -h"}},
		{name: "unknown command", args: []string{"bogus"}, want: []string{`unknown command "bogus"`}},
		{name: "stray argument", args: []string{"--dst", "10.0.1.4", "extra"}, want: []string{`unexpected argument "extra"`}},
		{name: "malformed src", args: []string{"--src", "10.0.1.300"}, want: []string{"--src", "10.0.1.300"}},
		{name: "malformed dst", args: []string{"--dst", "c2"}, want: []string{"--dst", `"c2"`}},
		{name: "malformed CIDR", args: []string{"--dst", "10.0.1.0/33"}, want: []string{"--dst", "10.0.1.0/33"}},
		{name: "malformed outer CIDR", args: []string{"--outer-dst", "10.99/8"}, want: []string{"--outer-dst"}},
		{name: "port out of range", args: []string{"--port", "70000"}, want: []string{"--port 70000", "out of range"}},
		{name: "port not a number", args: []string{"--port", "http"}, want: []string{"-port"}},
		{name: "vni 1<<24", args: []string{"--vni", fmt.Sprint(1 << 24)}, want: []string{"--vni 16777216", "out of range"}},
		{name: "vxlan port 0", args: []string{"--vxlan-port", "0"}, want: []string{"--vxlan-port"}},
		{name: "proto bogus", args: []string{"--proto", "bogus"}, want: []string{"--proto", "bogus"}},
		{name: "port with icmp", args: []string{"--proto", "icmp", "--port", "80"}, want: []string{"--port needs --proto tcp or udp"}},
		{name: "negative count", args: []string{"--count", "-1"}, want: []string{"--count -1"}},
		{name: "ring size not a power of two", args: []string{"--ring-size", "5000"}, want: []string{"--ring-size 5000"}},
		{name: "netns not a namespace", args: []string{"--netns", "/etc/passwd"}, want: []string{"--netns /etc/passwd", "not a namespace"}},
		{name: "netns missing name", args: []string{"--netns", "rl-no-such-namespace"}, want: []string{"--netns rl-no-such-namespace"}},
		{name: "json in a missing directory", args: []string{"--json", "/proc/x/y"}, want: []string{"--json /proc/x/y"}},
		{name: "json in a read-only directory", args: []string{"--json", filepath.Join(roDir, "t.json")}, want: []string{"--json " + roDir, "read-only"}},
		{name: "json is a directory", args: []string{"--json", roDir}, want: []string{"is a directory"}},
		{name: "jsonl in a missing directory", args: []string{"--jsonl", "/proc/x/y"}, want: []string{"--jsonl /proc/x/y"}},
		{name: "no root", pre: nobody, want: []string{"missing capabilities", "CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"}},
		{name: "no root, no scope", pre: nobody, noScope: true, want: []string{"missing capabilities", "CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"}},
		{name: "no CAP_BPF", pre: noBPF, want: []string{"missing capabilities", "CAP_BPF", "CAP_PERFMON"}},
		{name: "no BTF", env: []string{"VXTRACE_BTF_PATH=/nonexistent/vmlinux"}, want: []string{"BTF", "/nonexistent/vmlinux"}},
		{name: "docker unreachable", args: []string{"-q", "--container", "nope", "--docker-host", "unix:///nonexistent/docker.sock"}, want: []string{"Docker daemon"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := leakcheck.Snapshot(t, paths...)
			tcBefore := rlTCState(t, paths)
			args := c.args
			if len(args) == 0 || args[0] != "bogus" {
				args = append([]string{"trace"}, args...)
				if !c.noScope {
					args = append(args, scope...)
				}
			}
			bin := vxtraceBin
			if c.pre != nil {
				bin = pubBin
			}
			stdout, stderr, code := rlRun(t, bin, c.pre, c.env, args...)
			t.Logf("exit %d: %s", code, strings.TrimSpace(stderr))
			if code != 2 {
				t.Errorf("exit %d, want 2\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			line := strings.TrimSuffix(stderr, "\n")
			if strings.Contains(line, "\n") || !strings.HasPrefix(line, "vxtrace: ") {
				t.Errorf("want one line 'vxtrace: ...' (and nothing loaded, so no progress line), got:\n%s", stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(line, w) {
					t.Errorf("message %q does not say %q", line, w)
				}
			}
			if stdout != "" {
				t.Errorf("stdout: %q", stdout)
			}
			if got := rlTCState(t, paths); !slices.Equal(got, tcBefore) {
				t.Errorf("TC state changed: %q -> %q", tcBefore, got)
			}
			leakcheck.Check(t, before, paths...)
		})
	}

	// Two traces of the same hops at once: both attach fully and both get
	// the verdict.
	for _, mode := range []struct {
		name string
		args []string
	}{{"tcx", nil}, {"clsact", []string{"--force-clsact"}}} {
		t.Run("second trace of the same hops/"+mode.name, func(t *testing.T) {
			before := leakcheck.Snapshot(t, paths...)
			tcBefore := rlTCState(t, paths)
			args := append(append([]string{"--dst", l.ContainerIP(lab.RoleC2), "--proto", "icmp", "--count", "1"}, scope...), mode.args...)
			first := rlStart(t, args, nil)
			one := rlTCState(t, paths)
			second := rlStart(t, args, nil)
			both := rlTCState(t, paths)
			t.Logf("TC entries: %d before, %d with one trace, %d with two", len(tcBefore), len(one), len(both))
			// Every hop gets the second trace's programs too, and the
			// first's are all still there: the second's sweep left a live
			// trace alone.
			for _, e := range one {
				if !slices.Contains(both, e) {
					t.Errorf("the second trace removed %q", e)
				}
			}
			if n1, n2 := rlOurs(one), rlOurs(both); n1 == 0 || n2 != 2*n1 {
				t.Errorf("vxtrace TC programs: %d with one trace, %d with two; want twice as many", n1, n2)
			}
			if err := rlPing(t, l, 1); err != nil {
				t.Errorf("ping: %v", err)
			}
			for i, b := range []*rlTrace{first, second} {
				if code := b.wait(t, 10*time.Second); code != 0 {
					t.Errorf("trace %d: exit %d\n%s", i+1, code, b.stderr.String())
				}
				if strings.Contains(b.stderr.String(), "blind") {
					t.Errorf("trace %d has blind hops:\n%s", i+1, b.stderr.String())
				}
				d, _ := b.doc(t)
				if rlDelivered(d) != 1 {
					t.Errorf("trace %d: %d delivered, want 1\n%s", i+1, rlDelivered(d), b.stdout.String())
				}
				for _, h := range d.Hops {
					if h.Blind {
						t.Errorf("trace %d: hop %s/%s blind", i+1, h.NetNS.Name, h.Ifname)
					}
				}
			}
			rlCheckTCState(t, paths, tcBefore)
			leakcheck.Check(t, before, paths...)
		})
	}
}

// rlOurs counts vxtrace's TC attachments in a TC state listing.
func rlOurs(state []string) int {
	n := 0
	for _, e := range state {
		if strings.Contains(e, "filter bpf vxtrace ") || strings.HasPrefix(e, "tcx ") && strings.Contains(e, " program tc_") {
			n++
		}
	}
	return n
}

// TestReliabilityVersionFeatures: `vxtrace version --features` prints one
// line per mechanism with what this kernel allows, and the blind list; the
// probe leaves nothing on the loopback it tries TC on.
func TestReliabilityVersionFeatures(t *testing.T) {
	requireRoot(t)
	self := []string{"/proc/self/ns/net"}
	before := leakcheck.Snapshot(t, self...)
	tcBefore := rlTCState(t, self)
	stdout, stderr, code := rlRun(t, vxtraceBin, nil, nil, "version", "--features")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	t.Logf("\n%s", stdout)
	// What the reference kernel (6.18, kprobes compiled out, fentry
	// refused) offers.
	want := map[string]string{
		"btf": "yes", "drop reasons": "yes", "tp_btf": "yes", "raw_tp": "yes",
		"tcx": "yes", "clsact": "yes", "fentry": "no", "kprobe": "no",
	}
	lines := strings.Split(stdout, "\n")
	for name, mark := range want {
		var found string
		for _, line := range lines {
			f := strings.TrimSpace(line)
			if rest, ok := strings.CutPrefix(f, name+" "); ok {
				found = strings.Fields(rest)[0]
			}
		}
		if found != mark {
			t.Errorf("mechanism %q: %q, want %q", name, found, mark)
		}
	}
	i := slices.IndexFunc(lines, func(s string) bool { return strings.HasPrefix(s, "blind or degraded:") })
	if i < 0 {
		t.Fatalf("no blind list")
	}
	if !slices.ContainsFunc(lines[i+1:], func(s string) bool { return strings.HasPrefix(s, "  - bridge devices") }) {
		t.Errorf("the blind list does not name the bridge devices: %q", lines[i+1:])
	}

	stdout, stderr, code = rlRun(t, vxtraceBin, nil, nil, "version", "--features", "--json")
	if code != 0 {
		t.Fatalf("--json: exit %d\n%s", code, stderr)
	}
	var r struct {
		Fentry struct{ OK bool } `json:"fentry"`
		TCX    struct{ OK bool } `json:"tcx"`
		Blind  []string          `json:"blind"`
	}
	dec := json.NewDecoder(strings.NewReader(stdout[strings.Index(stdout, "{"):]))
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	if r.Fentry.OK || !r.TCX.OK || len(r.Blind) == 0 {
		t.Errorf("--json: %+v", r)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Errorf("trailing output after the JSON: %v", err)
	}
	rlCheckTCState(t, self, tcBefore)
	leakcheck.Check(t, before, self...)
}
