package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StateDir holds one state file per lab. /run is tmpfs: a reboot forgets the
// labs together with their namespaces.
const StateDir = "/run/vxlab"

// StatePath is where the state of the lab with this prefix is kept.
func StatePath(prefix string) string { return filepath.Join(StateDir, prefix+".json") }

// claim reserves a prefix. Creating the state file with O_EXCL makes two
// concurrent Ups of the same prefix fail cleanly instead of both building.
func claim(prefix string) error {
	names, err := labNamespaces(prefix)
	if err != nil {
		return err
	}
	if len(names) > 0 {
		return fmt.Errorf("lab %q already exists (namespaces %s); run `vxlab down --prefix %s` first",
			prefix, strings.Join(names, ", "), prefix)
	}
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", StateDir, err)
	}
	f, err := os.OpenFile(StatePath(prefix), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("lab %q already exists (%s); run `vxlab down --prefix %s` first",
			prefix, StatePath(prefix), prefix)
	}
	if err != nil {
		return fmt.Errorf("creating state file: %w", err)
	}
	defer f.Close()
	st := State{Version: stateVersion, Prefix: prefix, Created: time.Now().UTC().Truncate(time.Second)}
	if err := json.NewEncoder(f).Encode(&st); err != nil {
		return fmt.Errorf("writing state file: %w", err)
	}
	return nil
}

// save writes the state file atomically, so a reader never sees half of it.
func (l *Lab) save() error {
	return WriteState(&l.st)
}

// WriteState writes a lab's state file (Docker mode uses it too).
func WriteState(st *State) error {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", StateDir, err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	tmp := StatePath(st.Prefix) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing state file: %w", err)
	}
	if err := os.Rename(tmp, StatePath(st.Prefix)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing state file: %w", err)
	}
	return nil
}

func readState(prefix string) (*State, error) {
	b, err := os.ReadFile(StatePath(prefix))
	if err != nil {
		return nil, fmt.Errorf("reading lab state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("reading lab state %s: %w", StatePath(prefix), err)
	}
	return &st, nil
}

func removeState(prefix string) error {
	for _, p := range []string{StatePath(prefix), StatePath(prefix) + ".tmp"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing state file: %w", err)
		}
	}
	return nil
}

// labNamespaces lists the named namespaces of a prefix. Only "<prefix>-X"
// with no further dash counts: otherwise Down("vxlab") would also take
// "vxlab-t1-n1", which belongs to the lab "vxlab-t1".
func labNamespaces(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", netnsDir, err)
	}
	var out []string
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix+"-")
		if ok && rest != "" && !strings.Contains(rest, "-") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// deleteNS stops whatever still runs in the namespace (a process would keep
// the namespace, and so its interfaces and VXLAN socket, alive after the
// name is gone), then deletes it.
func deleteNS(name string) error {
	if !nsExists(name) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := run(ctx, "ip", "netns", "pids", name)
	if err == nil {
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				killProcess(pid, "")
			}
		}
	}
	if err := ip(ctx, "", "netns", "del", name); err != nil && nsExists(name) {
		return fmt.Errorf("deleting namespace %s: %w", name, err)
	}
	return nil
}

// processAlive reports whether pid runs and, if cmdline is set, runs that
// command line.
func processAlive(pid int, cmdline string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if len(b) == 0 {
		// Empty for a zombie, and also for a moment while the process
		// execs (nsenter becoming dockerd): the state tells them apart.
		// Its identity cannot be checked then.
		return cmdline == "" && procState(pid) != 'Z' && procState(pid) != 0
	}
	if cmdline == "" {
		return true
	}
	return strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ") == cmdline
}

// procState is the state letter of /proc/PID/stat (R, S, Z, ...), or 0.
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name in parentheses may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// killProcess stops pid, politely first.
func killProcess(pid int, cmdline string) {
	if pid <= 1 || !processAlive(pid, cmdline) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 20; i++ {
		if !processAlive(pid, cmdline) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 40 && processAlive(pid, cmdline); i++ {
		time.Sleep(50 * time.Millisecond)
	}
}
