package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxtrace/vxtrace/internal/leakcheck"
	"github.com/vxtrace/vxtrace/lab"
	"github.com/vxtrace/vxtrace/report"
)

// TestE2ETUI drives the real TUI in tmux on a lab with a fault: the drop
// must show at the right hop with the right reason, and pause, filter,
// detail, export and quit must work, leaving nothing attached.
func TestE2ETUI(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed")
	}
	l := upLab(t, lab.DockerLayout)
	before := leakcheck.Snapshot(t, labPaths(l)...)
	if err := l.SetFault(lab.FaultNode2InputDrop, true); err != nil {
		t.Fatal(err)
	}
	session := fmt.Sprintf("vxtui%d", os.Getpid())
	exitFile := filepath.Join(t.TempDir(), "exit")
	cmdline := fmt.Sprintf("%s tui --dst %s %s 2>/dev/null; echo $? > %s",
		vxtraceBin, l.ContainerIP(lab.RoleC2), strings.Join(labScope(l), " "), exitFile)
	if out, err := exec.Command("tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "45", cmdline).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("tmux", "kill-session", "-t", session).Run() })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			_ = lab.Ping(ctx, l.NSPath(lab.RoleC1), l.ContainerIP(lab.RoleC2), 1, 0)
			time.Sleep(200 * time.Millisecond)
		}
	}()

	screen := func() string {
		out, _ := exec.Command("tmux", "capture-pane", "-p", "-t", session).Output()
		return string(out)
	}
	keys := func(k ...string) {
		if err := exec.Command("tmux", append([]string{"send-keys", "-t", session}, k...)...).Run(); err != nil {
			t.Fatalf("send-keys %v: %v", k, err)
		}
	}
	waitFor := func(what string, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			s := screen()
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; screen:\n%s", what, s)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The drop shows on node 2's NIC row, with the kernel's reason.
	nicRow := func(s string) string {
		for _, line := range strings.Split(s, "\n") {
			if strings.Contains(line, "eth0 (NIC)") && strings.Contains(line, l.NS(lab.RoleN2)) {
				return line
			}
		}
		return ""
	}
	// The row turns red on the next drop the UI sees, or when the dropped
	// packet's journey arrives: a drop before the UI's first poll shows in
	// the counters a moment before either.
	s := waitFor("a drop at node 2's NIC, marked", func(s string) bool {
		row := nicRow(s)
		return strings.Contains(row, "NETFILTER_DROP") && strings.Contains(row, "DROPPING")
	})
	t.Logf("screen with the drop:\n%s", s)

	keys("p")
	waitFor("paused", func(s string) bool { return strings.Contains(s, "PAUSED") })
	keys("p")
	waitFor("live again", func(s string) bool { return strings.Contains(s, "LIVE") })

	// Filter the flows by a string no flow has, then by the reason.
	keys("/")
	keys("nosuchflow", "Enter")
	waitFor("an empty flow table", func(s string) bool { return strings.Contains(s, "Flows (0") })
	keys("/")
	keys("C-u", "NETFILTER", "Enter")
	waitFor("flows matching the filter", func(s string) bool { return !strings.Contains(s, "Flows (0") })

	// Detail view of the selected flow: its journey, ending in the drop.
	keys("Tab", "Enter")
	waitFor("the journey", func(s string) bool {
		return strings.Contains(s, "drop") && strings.Contains(s, "nft_do_chain")
	})
	keys("Escape")

	export := filepath.Join(t.TempDir(), "tui.json")
	keys("e")
	waitFor("the export prompt", func(s string) bool { return strings.Contains(s, "export to:") })
	keys("C-u", export, "Enter")
	waitFor("the export confirmation", func(s string) bool { return strings.Contains(s, "exported to") })
	f, err := os.Open(export)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := report.Read(f)
	f.Close()
	if err != nil {
		t.Fatalf("exported JSON: %v", err)
	}
	var dropped bool
	for _, p := range doc.Packets {
		if p.Drop != nil && p.Drop.Reason == "NETFILTER_DROP" {
			dropped = true
		}
	}
	if !dropped {
		t.Fatalf("export has no NETFILTER_DROP packet (%d packets)", len(doc.Packets))
	}

	keys("q")
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(exitFile)
		if err == nil && len(b) > 0 {
			if strings.TrimSpace(string(b)) != "0" {
				t.Fatalf("vxtrace tui exited %s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vxtrace tui did not quit on q; screen:\n%s", screen())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	leakcheck.Check(t, before, labPaths(l)...)
}
