package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxtrace/vxtrace/internal/leakcheck"
	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/lab"
	"github.com/vxtrace/vxtrace/report"
)

// End-to-end tests: the real binary, on a real lab in network namespaces,
// with the real kernel. Each asserts the verdict, hop and drop reason that
// the lab's fault table says the kernel produces.

var vxtraceBin string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Getuid() != 0 {
			return m.Run() // the e2e tests skip themselves
		}
		dir, err := os.MkdirTemp("", "vxtrace-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		vxtraceBin = filepath.Join(dir, "vxtrace")
		out, err := exec.Command("go", "build", "-o", vxtraceBin, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building vxtrace: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: real BPF, namespaces and links")
	}
}

// upLab brings up a lab that is torn down when the test ends, pass or fail.
func upLab(t *testing.T, layout lab.Layout) *lab.Lab {
	t.Helper()
	prefix := fmt.Sprintf("e2e%d%s", os.Getpid()%10000, strings.TrimSuffix(string(layout), "-layout")[:2])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = lab.Down(prefix)
	l, err := lab.Up(ctx, lab.Config{Prefix: prefix, Layout: layout}, nil)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// labScope is --netns for every namespace of the lab: other tests' labs use
// the same addresses, so the trace must not see them.
func labScope(l *lab.Lab) []string {
	var args []string
	for _, r := range l.Roles() {
		args = append(args, "--netns", l.NS(r))
	}
	return args
}

type traceRun struct {
	doc    *report.Doc
	stdout string
	stderr string
	code   int
}

// trace runs `vxtrace trace args...`, calls send once it is attached, and
// returns its JSON document.
func trace(t *testing.T, args []string, send func() error) traceRun {
	t.Helper()
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	jsonPath := filepath.Join(dir, "trace.json")
	full := append([]string{"trace", "--json", jsonPath, "--ready-file", ready}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, vxtraceBin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("vxtrace never became ready\nstderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if send != nil {
		_ = send() // a fault makes the probe fail: that is the point
	}
	err := cmd.Wait()
	run := traceRun{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		run.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("vxtrace: %v\nstderr:\n%s", err, run.stderr)
	}
	f, err := os.Open(jsonPath)
	if err != nil {
		t.Fatalf("no JSON written (exit %d): %v\nstderr:\n%s", run.code, err, run.stderr)
	}
	defer f.Close()
	run.doc, err = report.Read(f)
	if err != nil {
		t.Fatalf("reading the JSON document: %v", err)
	}
	st, err := os.Stat(jsonPath)
	if err == nil && st.Mode().Perm() != 0o600 {
		t.Errorf("JSON file mode %v, want 0600", st.Mode().Perm())
	}
	return run
}

// onePacket fails the test unless vxtrace exited with code and traced
// exactly one packet, and returns it.
func onePacket(t *testing.T, run traceRun, code int) report.Packet {
	t.Helper()
	if run.code != code {
		t.Fatalf("exit %d, want %d\n%s", run.code, code, run.stderr)
	}
	if len(run.doc.Packets) != 1 {
		t.Fatalf("%d packets, want 1\n%s", len(run.doc.Packets), run.stdout)
	}
	return run.doc.Packets[0]
}

func hopName(d *report.Doc, id int) (ns, ifname string) {
	for _, h := range d.Hops {
		if h.ID == id {
			return h.NetNS.Name, h.Ifname
		}
	}
	return "", ""
}

func TestE2EHealthy(t *testing.T) {
	requireRoot(t)
	for _, layout := range lab.Layouts() {
		t.Run(string(layout), func(t *testing.T) {
			l := upLab(t, layout)
			before := leakcheck.Snapshot(t, labPaths(l)...)
			ctx := context.Background()
			dst := l.ContainerIP(lab.RoleC2)
			args := append([]string{"--dst", dst, "--proto", "icmp", "--count", "1"}, labScope(l)...)
			run := trace(t, args, func() error { return lab.Ping(ctx, l.NSPath(lab.RoleC1), dst, 2, 0) })
			p := onePacket(t, run, 0)
			if p.Verdict != "delivered" {
				t.Fatalf("verdict %s, want delivered\n%s", p.Verdict, run.stdout)
			}
			if ns, ifn := hopName(run.doc, p.LastHop); ns != l.NS(lab.RoleC2) || ifn != "eth0" {
				t.Fatalf("last hop %s/%s, want %s/eth0", ns, ifn, l.NS(lab.RoleC2))
			}
			if p.VNI == nil || *p.VNI != l.VNI() {
				t.Fatalf("VNI %v, want %d", p.VNI, l.VNI())
			}
			// Headers come in a few of the kernel's records (the first,
			// the first encapsulated one): the journey has both.
			if p.Inner.Src != l.ContainerIP(lab.RoleC1) || p.Inner.Dst != dst {
				t.Errorf("inner %s > %s, want %s > %s", p.Inner.Src, p.Inner.Dst, l.ContainerIP(lab.RoleC1), dst)
			}
			if p.Outer == nil || p.Outer.Src != l.VTEPIP(lab.RoleN1) || p.Outer.Dst != l.VTEPIP(lab.RoleN2) {
				t.Errorf("outer %+v, want %s > %s", p.Outer, l.VTEPIP(lab.RoleN1), l.VTEPIP(lab.RoleN2))
			}
			// The journey crosses both nodes: the sender's container,
			// its node's NIC encapsulated, and the receiver.
			var sawEncapNIC, sawSender bool
			for _, e := range p.Events {
				ns, ifn := hopName(run.doc, e.Hop)
				if ns == l.NS(lab.RoleN1) && ifn == "eth0" && e.Encap {
					sawEncapNIC = true
				}
				if ns == l.NS(lab.RoleC1) && e.Dir == "tx" {
					sawSender = true
				}
			}
			if !sawEncapNIC || !sawSender {
				t.Fatalf("journey misses the sender or the encapsulated NIC hop:\n%s", run.stdout)
			}
			if run.doc.LostEvents.Total != 0 {
				t.Errorf("lost events: %+v", run.doc.LostEvents)
			}
			leakcheck.Check(t, before, labPaths(l)...)
		})
	}
}

func labPaths(l *lab.Lab) []string {
	var out []string
	for _, r := range l.Roles() {
		out = append(out, l.NSPath(r))
	}
	return out
}

func TestE2EFaults(t *testing.T) {
	requireRoot(t)
	for _, layout := range lab.Layouts() {
		t.Run(string(layout), func(t *testing.T) {
			l := upLab(t, layout)
			for _, fi := range lab.FaultTable() {
				t.Run(string(fi.Fault), func(t *testing.T) {
					exp, err := l.Expect(fi.Fault)
					if err != nil {
						t.Skip(err)
					}
					before := leakcheck.Snapshot(t, labPaths(l)...)
					if err := l.SetFault(fi.Fault, true); err != nil {
						t.Fatal(err)
					}
					defer func() {
						if err := l.SetFault(fi.Fault, false); err != nil {
							t.Errorf("clearing fault: %v", err)
						}
					}()
					proto := "icmp"
					if exp.Probe.Kind == lab.ProbeTCP {
						proto = "tcp"
					}
					args := append([]string{"--dst", exp.DstIP, "--proto", proto, "--count", "1", "--fail-on-drop"}, labScope(l)...)
					ctx := context.Background()
					run := trace(t, args, func() error { return l.Send(ctx, exp.Probe) })
					if run.code != 1 {
						t.Errorf("exit %d with --fail-on-drop and a drop, want 1", run.code)
					}
					if len(run.doc.Packets) != 1 {
						t.Fatalf("%d packets, want 1\n%s\n%s", len(run.doc.Packets), run.stdout, run.stderr)
					}
					p := run.doc.Packets[0]
					if p.Verdict != exp.Verdict || p.Drop == nil {
						t.Fatalf("verdict %s, want %s\n%s", p.Verdict, exp.Verdict, run.stdout)
					}
					if p.Drop.Reason != exp.Reason {
						t.Errorf("reason %s, want %s", p.Drop.Reason, exp.Reason)
					}
					if !strings.HasPrefix(p.Drop.Location, exp.Location+"+") {
						t.Errorf("location %s, want %s+...", p.Drop.Location, exp.Location)
					}
					if ns, ifn := hopName(run.doc, p.Drop.Hop); ns != exp.NS || ifn != exp.Ifname {
						t.Errorf("drop hop %s/%s, want %s/%s\n%s", ns, ifn, exp.NS, exp.Ifname, run.stdout)
					}
					if fi.Fault == lab.FaultMissingNeigh {
						// The packet waited for ARP where it was dropped,
						// for an address: shown as a step before the drop.
						waited := false
						for _, e := range p.Events {
							waited = waited || (e.Dir == journey.DirNeigh && e.Hop == p.Drop.Hop && e.NextHop != "")
						}
						if !waited {
							t.Errorf("no neigh step with its next hop at the drop's hop\n%s", run.stdout)
						}
					}
					t.Logf("verdict line: %s", verdictLine(run.stdout))
					leakcheck.Check(t, before, labPaths(l)...)
				})
			}
		})
	}
}

// firstCrossing is a packet's first step past any wait for its next hop's
// address: a sender without an ARP entry parks its first packets (a neigh
// step at its eth0) before it sends them. A zero Event if there is none.
func firstCrossing(p *report.Packet) report.Event {
	for _, e := range p.Events {
		if e.Dir != journey.DirNeigh {
			return e
		}
	}
	return report.Event{}
}

func verdictLine(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "verdict:") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// TestE2ERST: a TCP connection to a port with no listener. The SYN dies in
// the destination container (NO_SOCKET) and the RST it provokes is traced
// back from that container.
func TestE2ERST(t *testing.T) {
	requireRoot(t)
	l := upLab(t, lab.DockerLayout)
	if err := l.SetFault(lab.FaultNoListener, true); err != nil {
		t.Fatal(err)
	}
	exp, err := l.Expect(lab.FaultNoListener)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--proto", "tcp", "--port", fmt.Sprint(exp.Probe.Port), "--count", "2"}, labScope(l)...)
	run := trace(t, args, func() error { return l.Send(context.Background(), exp.Probe) })
	var rst *report.Packet
	for i := range run.doc.Packets {
		p := &run.doc.Packets[i]
		if strings.Contains(p.Inner.TCPFlags, "RST") {
			rst = p
		}
	}
	if rst == nil {
		t.Fatalf("no RST traced\n%s", run.stdout)
	}
	// c2 may first wait for c1's MAC (it has no ARP entry of its own when
	// vxlan0 answered c1's ARP): a neigh step at c2's eth0.
	first := firstCrossing(rst)
	if ns, ifn := hopName(run.doc, first.Hop); ns != l.NS(lab.RoleC2) || ifn != "eth0" || first.Dir != "tx" {
		t.Fatalf("RST first seen at %s/%s %s, want sent by %s/eth0\n%s", ns, ifn, first.Dir, l.NS(lab.RoleC2), run.stdout)
	}
	if rst.Verdict != "delivered" {
		t.Fatalf("RST verdict %s, want delivered to c1", rst.Verdict)
	}
}

// TestE2ENoDropReasonNames forces the fallback of a kernel whose BTF has no
// enum skb_drop_reason: the drop is still reported, at the same hop and
// function, with the reason's number, and a notice says why.
func TestE2ENoDropReasonNames(t *testing.T) {
	requireRoot(t)
	t.Setenv("VXTRACE_FORCE_NO_DROP_REASONS", "1")
	l := upLab(t, lab.DockerLayout)
	if err := l.SetFault(lab.FaultNode2InputDrop, true); err != nil {
		t.Fatal(err)
	}
	exp, err := l.Expect(lab.FaultNode2InputDrop)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--dst", exp.DstIP, "--proto", "icmp", "--count", "1"}, labScope(l)...)
	run := trace(t, args, func() error { return l.Send(context.Background(), exp.Probe) })
	if len(run.doc.Packets) != 1 || run.doc.Packets[0].Drop == nil {
		t.Fatalf("no drop traced\n%s", run.stdout)
	}
	d := run.doc.Packets[0].Drop
	if d.Reason != fmt.Sprintf("reason_%d", exp.ReasonCode) || d.ReasonCode != exp.ReasonCode {
		t.Errorf("reason %q (%d), want reason_%d", d.Reason, d.ReasonCode, exp.ReasonCode)
	}
	if !strings.HasPrefix(d.Location, exp.Location+"+") {
		t.Errorf("location %s, want %s+...", d.Location, exp.Location)
	}
	if !strings.Contains(run.stderr, "names no drop reasons") {
		t.Errorf("no notice about the missing names:\n%s", run.stderr)
	}
}
