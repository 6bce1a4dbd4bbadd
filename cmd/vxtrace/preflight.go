package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Capabilities vxtrace needs, and why: loading and attaching BPF programs
// (CAP_BPF, CAP_PERFMON for tracing programs), attaching TC programs and
// entering other network namespaces (CAP_NET_ADMIN, CAP_SYS_ADMIN for
// setns), reading kernel addresses in /proc/kallsyms (CAP_SYSLOG).
var neededCaps = []struct {
	bit  uint
	name string
}{
	{unix.CAP_BPF, "CAP_BPF"},
	{unix.CAP_PERFMON, "CAP_PERFMON"},
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"},
	{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"},
}

// preflight checks what a trace needs before anything is created, so that
// a missing requirement costs one clear line and leaves nothing behind.
func preflight() error {
	missing, err := missingCaps()
	if err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	if len(missing) > 0 {
		return usagef("missing capabilities %v: run as root (sudo vxtrace ...)", missing)
	}
	btf := os.Getenv("VXTRACE_BTF_PATH")
	if btf == "" {
		btf = "/sys/kernel/btf/vmlinux"
	}
	if _, err := os.Stat(btf); err != nil {
		return usagef("no kernel BTF at %s: vxtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y", btf)
	}
	return nil
}

func missingCaps() ([]string, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil, err
	}
	var missing []string
	for _, c := range neededCaps {
		if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
			missing = append(missing, c.name)
		}
	}
	return missing, nil
}
