package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	defaultExecRoot   = "/var/run/docker"
	defaultConfigFile = "/etc/docker/daemon.json"
)

// findDaemon finds the dockerd behind a unix socket. The socket's peer
// credentials name the process that listens on it: the daemon itself, unless
// the socket was handed over by systemd (socket activation), in which case
// the peer is PID 1 and the daemon is looked up among the dockerd processes.
func findDaemon(ctx context.Context, host string, dial func(context.Context) (net.Conn, error)) (Daemon, error) {
	d := Daemon{Host: host}
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "unix" {
		return d, fmt.Errorf("finding the node namespace of the Docker daemon at %s: needs a unix socket on this machine (set DOCKER_HOST or --docker-host)", host)
	}
	sock := u.Path
	conn, err := dial(ctx)
	if err != nil {
		return d, fmt.Errorf("%w at %s (is dockerd running? set DOCKER_HOST or --docker-host): %v", ErrUnreachable, host, err)
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return d, fmt.Errorf("reading peer credentials of %s: not a unix connection (%T)", host, conn)
	}
	pid, err := peerPID(uc)
	if err != nil {
		return d, fmt.Errorf("reading peer credentials of %s: %w", host, err)
	}
	if comm(pid) != "dockerd" {
		if p := findDockerd(sock); p > 0 {
			pid = p
		}
	}
	d.PID = pid
	d.NetNS = fmt.Sprintf("/proc/%d/ns/net", pid)
	if _, err := os.Stat(d.NetNS); err != nil {
		return d, fmt.Errorf("opening the network namespace of dockerd (pid %d): %w", pid, err)
	}
	args, err := cmdline(pid)
	if err != nil {
		return d, fmt.Errorf("reading the command line of dockerd (pid %d): %w", pid, err)
	}
	if !sameNS(pid, "mnt") {
		d.Root = fmt.Sprintf("/proc/%d/root", pid)
	}
	d.ExecRoot = execRoot(args, func(p string) ([]byte, error) { return os.ReadFile(d.Path(p)) })
	return d, nil
}

func peerPID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	if cred.Pid <= 0 {
		// The peer lives in a PID namespace that ours cannot see.
		return 0, fmt.Errorf("SO_PEERCRED: peer pid not visible from this PID namespace")
	}
	return int(cred.Pid), nil
}

func comm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

// findDockerd picks the dockerd that serves sock: the one whose -H names it,
// or a socket-activated one (-H fd://), or the only dockerd there is.
func findDockerd(sock string) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var all, fd []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || comm(pid) != "dockerd" {
			continue
		}
		args, err := cmdline(pid)
		if err != nil {
			continue
		}
		all = append(all, pid)
		for _, h := range flagValues(args, "-H", "--host") {
			if h == "unix://"+sock || h == sock {
				return pid
			}
			if strings.HasPrefix(h, "fd://") {
				fd = append(fd, pid)
			}
		}
	}
	if len(fd) == 1 {
		return fd[0]
	}
	if len(all) == 1 {
		return all[0]
	}
	return 0
}

// flagValues returns the values of a flag given as "-f v", "-f=v" or "--flag=v".
func flagValues(args []string, names ...string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		for _, n := range names {
			if args[i] == n && i+1 < len(args) {
				out = append(out, args[i+1])
			} else if v, ok := strings.CutPrefix(args[i], n+"="); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// execRoot reads dockerd's --exec-root from its command line, then from its
// config file (--config-file, default /etc/docker/daemon.json).
func execRoot(args []string, read func(string) ([]byte, error)) string {
	if v := flagValues(args, "--exec-root"); len(v) > 0 {
		return filepath.Clean(v[len(v)-1])
	}
	cfg := defaultConfigFile
	if v := flagValues(args, "--config-file"); len(v) > 0 {
		cfg = v[len(v)-1]
	}
	if b, err := read(cfg); err == nil {
		var c struct {
			ExecRoot string `json:"exec-root"`
		}
		if json.Unmarshal(b, &c) == nil && c.ExecRoot != "" {
			return filepath.Clean(c.ExecRoot)
		}
	}
	return defaultExecRoot
}

// sameNS reports whether pid shares this process's namespace of a kind.
func sameNS(pid int, kind string) bool {
	a, err1 := nsInode("/proc/self/ns/" + kind)
	b, err2 := nsInode(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
	return err1 == nil && err2 == nil && a == b
}

// nsInode returns the inode of a namespace file (the kernel's ns.inum).
func nsInode(p string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0, err
	}
	return uint32(st.Ino), nil
}
