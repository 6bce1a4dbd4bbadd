package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// netnsDir is where `ip netns add` bind-mounts named namespaces.
const netnsDir = "/run/netns"

// nsPath turns a namespace name into the path that opens it. Anything that
// already looks like a path (Docker's sandboxes live under its exec root)
// is taken as is.
func nsPath(ns string) string {
	if strings.Contains(ns, "/") {
		return ns
	}
	return filepath.Join(netnsDir, ns)
}

// cmdError keeps the tool's own message: "exit status 2" alone says nothing
// about why `ip` refused.
func cmdError(args []string, err error, out []byte) error {
	msg := strings.TrimSpace(string(out))
	if msg == "" {
		return fmt.Errorf("running %s: %w", strings.Join(args, " "), err)
	}
	return fmt.Errorf("running %s: %w: %s", strings.Join(args, " "), err, msg)
}

// run runs a command and returns its stdout; stderr goes into the error.
func run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), cmdError(args, err, append(stderr.Bytes(), stdout.Bytes()...))
	}
	return stdout.String(), nil
}

// ip runs `ip` inside ns ("" = the caller's namespace). `ip -n` switches
// namespace itself, which is cheaper than nsenter and keeps /sys alone.
func ip(ctx context.Context, ns string, args ...string) error {
	full := []string{"ip"}
	if ns != "" {
		full = append(full, "-n", ns)
	}
	_, err := run(ctx, append(full, args...)...)
	return err
}

// bridgeCmd is `bridge -n ns ...` (FDB entries).
func bridgeCmd(ctx context.Context, ns string, args ...string) error {
	_, err := run(ctx, append([]string{"bridge", "-n", ns}, args...)...)
	return err
}

// inNS runs a command in a network namespace with nsenter rather than
// `ip netns exec`: the latter remounts /sys, which dockerd and some tools
// dislike, and it only knows names under /run/netns.
func inNS(ctx context.Context, ns string, args ...string) (string, error) {
	full := append([]string{"nsenter", "--net=" + nsPath(ns), "--"}, args...)
	return run(ctx, full...)
}

// sysctl sets net sysctls of a namespace; /proc/sys/net follows the netns
// of the process that opens it, hence nsenter.
func sysctl(ctx context.Context, ns string, kv ...string) error {
	_, err := inNS(ctx, ns, append([]string{"sysctl", "-q", "-w"}, kv...)...)
	return err
}

// iptables runs iptables in ns. -w because the xtables lock file is shared
// by every namespace on the machine and parallel labs contend for it.
func iptables(ctx context.Context, ns string, args ...string) error {
	_, err := inNS(ctx, ns, append([]string{"iptables", "-w", "5"}, args...)...)
	return err
}

// nsExists reports whether a named namespace is mounted.
func nsExists(name string) bool {
	_, err := os.Stat(nsPath(name))
	return err == nil
}
