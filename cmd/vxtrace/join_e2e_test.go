package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxtrace/vxtrace/lab"
	"github.com/vxtrace/vxtrace/report"
)

// TestE2EJoin traces each node of the lab on its own, as two nodes of a
// real cluster would, and joins the traces. With the top-of-rack switch
// dropping UDP 4789, neither node can see the drop; the join must say the
// packet was lost between them.
func TestE2EJoin(t *testing.T) {
	requireRoot(t)
	l := upLab(t, lab.DockerLayout)
	node1 := []lab.Role{lab.RoleC1, lab.RoleOV1, lab.RoleN1}
	node2 := []lab.Role{lab.RoleN2, lab.RoleOV2, lab.RoleC2}

	run := func(t *testing.T) (verdicts map[string]string, text string) {
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var cmds []*exec.Cmd
		var files []string
		for i, roles := range [][]lab.Role{node1, node2} {
			name := []string{"n1", "n2"}[i]
			file := filepath.Join(dir, name+".json")
			ready := filepath.Join(dir, name+".ready")
			args := []string{"trace", "-q", "--node", name, "--dst", l.ContainerIP(lab.RoleC2), "--proto", "icmp",
				"--duration", "4s", "--json", file, "--ready-file", ready}
			for _, r := range roles {
				args = append(args, "--netns", l.NS(r))
			}
			cmd := exec.CommandContext(ctx, vxtraceBin, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, cmd)
			files = append(files, file)
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if _, err := os.Stat(ready); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("trace %s not ready: %s", name, stderr.String())
				}
			}
		}
		_ = lab.Ping(ctx, l.NSPath(lab.RoleC1), l.ContainerIP(lab.RoleC2), 2, 0)
		for _, c := range cmds {
			if err := c.Wait(); err != nil {
				t.Fatalf("trace: %v", err)
			}
		}
		jsonOut := filepath.Join(dir, "joined.json")
		out, err := exec.Command(vxtraceBin, append([]string{"join", "--json", jsonOut}, files...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("join: %v\n%s", err, out)
		}
		b, err := os.ReadFile(jsonOut)
		if err != nil {
			t.Fatal(err)
		}
		var j report.Joined
		if err := json.Unmarshal(b, &j); err != nil || j.Schema != report.JoinSchema {
			t.Fatalf("joined document: %v %q", err, j.Schema)
		}
		verdicts = map[string]string{}
		for _, p := range j.Packets {
			verdicts[p.ID] = p.Verdict + "@" + p.Node
		}
		return verdicts, string(out)
	}

	t.Run("healthy", func(t *testing.T) {
		v, text := run(t)
		if len(v) < 2 {
			t.Fatalf("%d packets joined, want the 2 pings\n%s", len(v), text)
		}
		for id, got := range v {
			if got != "delivered@n2" {
				t.Errorf("packet %s: %s, want delivered@n2\n%s", id, got, text)
			}
		}
	})
	t.Run("switch drops 4789", func(t *testing.T) {
		if err := l.SetFault(lab.FaultSwitchDrop, true); err != nil {
			t.Fatal(err)
		}
		defer l.SetFault(lab.FaultSwitchDrop, false)
		v, text := run(t)
		if len(v) < 2 {
			t.Fatalf("%d packets joined, want the 2 pings\n%s", len(v), text)
		}
		for id, got := range v {
			if got != report.LostBetweenNodes+"@n1" {
				t.Errorf("packet %s: %s, want %s@n1\n%s", id, got, report.LostBetweenNodes, text)
			}
		}
		if !strings.Contains(text, "the underlay lost it") {
			t.Errorf("join text does not say where:\n%s", text)
		}
		t.Logf("join output:\n%s", text)
	})
}
