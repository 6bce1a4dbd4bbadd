package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxtrace/vxtrace/lab"
)

// TestDemoScript runs the README's first command, scripts/demo.sh, on the
// lab, as `make demo` does off a terminal. Every traced ping must be seen
// from its first hop (c1's eth0): a ping sent before vxtrace had attached
// went unseen, and left the --count trace waiting for good on a cold
// machine.
func TestDemoScript(t *testing.T) {
	requireRoot(t)
	vxlabBin := filepath.Join(filepath.Dir(vxtraceBin), "vxlab")
	if out, err := exec.Command("go", "build", "-o", vxlabBin, "github.com/vxtrace/vxtrace/cmd/vxlab").CombinedOutput(); err != nil {
		t.Fatalf("building vxlab: %v\n%s", err, out)
	}
	script, err := filepath.Abs("../../scripts/demo.sh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Down("vxdemo") }) // only if the script could not
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	// A timeout stops the script's whole group with SIGTERM, so that vxtrace
	// detaches and the script's own trap removes the lab.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	// No Docker socket: the demo takes its lab path even on a Swarm node.
	cmd.Env = append(os.Environ(), "VXTRACE="+vxtraceBin, "VXLAB="+vxlabBin,
		"DOCKER_HOST=unix:///nonexistent/docker.sock", "NO_TUI=1")
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, text)
	}
	faulty, healthy, ok := strings.Cut(text, "== the same ping with the fault switched off")
	if !ok {
		t.Fatalf("demo.sh never reached its healthy ping:\n%s", text)
	}
	for _, c := range []struct {
		part, re string
		want     int
	}{
		{faulty, `(?m)^\s+\+0ns\s+vxdemo-c1\s+eth0\s+tx\s`, 3},
		{faulty, `verdict: dropped NETFILTER_DROP at nft_do_chain\S* \(hop vxdemo-n2/eth0\)`, 3},
		{faulty, `packets: 3 \(delivered 0, dropped 3,`, 1},
		{healthy, `verdict: delivered \(hop vxdemo-c2/eth0\)`, 1},
		{healthy, `packets: 1 \(delivered 1, dropped 0,`, 1},
	} {
		if got := len(regexp.MustCompile(c.re).FindAllString(c.part, -1)); got != c.want {
			t.Errorf("%d matches of %q, want %d:\n%s", got, c.re, c.want, text)
		}
	}
	// The script removes its lab on every exit.
	if st, err := lab.Status("vxdemo"); err != nil {
		t.Error(err)
	} else if st.Exists() {
		t.Errorf("demo.sh left its lab behind: state file %t, namespaces %v", st.State != nil, st.Namespaces)
	}
}
