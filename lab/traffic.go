package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// busybox is used for ping and the listener: the host has no iputils or
// netcat, and busybox-static is what CI installs.
const busybox = "/usr/bin/busybox"

// ErrLoss is wrapped by Ping when replies are missing.
var ErrLoss = errors.New("packets lost")

var pingStatsRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)

// Ping sends count echoes (payloadSize data bytes; 0 = 56) from the
// namespace fromNS (a name under /run/netns or a path) to dstIP and fails
// unless every one is answered. Intervals and timeouts are short so that a
// fault shows in about a second.
func Ping(ctx context.Context, fromNS, dstIP string, count, payloadSize int) error {
	if count <= 0 {
		count = 1
	}
	if payloadSize <= 0 {
		payloadSize = 56
	}
	deadline := count/5 + 2
	out, err := inNS(ctx, fromNS, busybox, "ping", "-q", "-c", strconv.Itoa(count), "-i", "0.2",
		"-W", "1", "-w", strconv.Itoa(deadline), "-s", strconv.Itoa(payloadSize), dstIP)
	m := pingStatsRE.FindStringSubmatch(out)
	if m == nil {
		if err == nil {
			err = errors.New("no statistics in output")
		}
		return fmt.Errorf("pinging %s from %s: %w", dstIP, fromNS, err)
	}
	sent, _ := strconv.Atoi(m[1])
	got, _ := strconv.Atoi(m[2])
	if got < count {
		return fmt.Errorf("pinging %s from %s with %d bytes: %d of %d answered: %w", dstIP, fromNS, payloadSize, got, sent, ErrLoss)
	}
	return nil
}

// TCPConnect opens (and closes) a TCP connection from fromNS to dstIP:port.
// A refused connection's error wraps syscall.ECONNREFUSED, so tests can tell
// an RST from a timeout.
func TCPConnect(ctx context.Context, fromNS, dstIP string, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addr := net.JoinHostPort(dstIP, strconv.Itoa(port))
	var conn net.Conn
	err := withNetNS(fromNS, func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return fmt.Errorf("connecting to %s from %s: %w", addr, fromNS, err)
	}
	return conn.Close()
}

// Listen opens a TCP listener on port inside ns, owned by the caller (no
// process to clean up: closing it is enough).
func Listen(ns string, port int) (net.Listener, error) {
	var ln net.Listener
	err := withNetNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %d in %s: %w", port, ns, err)
	}
	return ln, nil
}

// withNetNS runs fn on an OS thread switched into the namespace. Sockets
// belong to the namespace they are created in, so fn's sockets stay there
// after the thread switches back.
func withNetNS(ns string, fn func() error) error {
	target, err := os.Open(nsPath(ns))
	if err != nil {
		return fmt.Errorf("opening namespace: %w", err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening own namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering namespace: %w", err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: Go then ends it with the goroutine
		// instead of handing a thread in the wrong namespace to others.
		return errors.Join(ferr, fmt.Errorf("returning to own namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// listenerArgs is the lab's TCP server in c2: busybox nc in persistent
// (-ll) mode, accepting and closing every connection.
func listenerArgs() []string {
	return []string{busybox, "nc", "-ll", "-p", strconv.Itoa(ListenPort), "-e", "/bin/true"}
}

// startListener runs the listener in c2 as a process of its own, not a
// socket of ours: `vxlab up` exits, and the lab must keep listening.
func (l *Lab) startListener(ctx context.Context) error {
	c2 := l.NSPath(RoleC2)
	args := listenerArgs()
	cmd := exec.Command("nsenter", append([]string{"--net=" + c2, "--"}, args...)...)
	// Its own session, so a ^C meant for the vxlab CLI does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting listener in %s: %w", c2, err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	l.reap[pid] = done
	p := Process{PID: pid, Role: RoleC2, What: "listener", Cmdline: strings.Join(args, " ")}
	l.st.Processes = append(l.st.Processes, p)
	// Ready means the socket is in LISTEN in c2.
	return waitPort(ctx, c2, true, done)
}

// waitPort polls c2 (ns: a name or a path) until a socket listens on the
// port (listen) or none does, for at most 5 s; exited, if not nil, says the
// listener died meanwhile.
func waitPort(ctx context.Context, ns string, listen bool, exited <-chan struct{}) error {
	for i := 0; ; i++ {
		on, err := listeningIn(ns, ListenPort)
		if err != nil {
			return err
		}
		if on == listen {
			return nil
		}
		if i > 100 {
			return fmt.Errorf("port %d in %s: listening is still %v after 5s", ListenPort, ns, on)
		}
		select {
		case <-exited:
			return fmt.Errorf("listener in %s exited at start", ns)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stopListener ends the listener and returns once nothing in c2 listens on
// the port. Killing busybox alone is not enough: a connection it has just
// accepted runs in a vforked child that holds the listening socket until it
// execs, so the whole process group (its own session) goes.
func (l *Lab) stopListener(ctx context.Context) error {
	var keep []Process
	for _, p := range l.st.Processes {
		if p.What != "listener" {
			keep = append(keep, p)
			continue
		}
		// Signal the group only while its leader still lives: the group id
		// cannot have been handed to anyone else then.
		if p.PID > 1 && processAlive(p.PID, p.Cmdline) {
			_ = syscall.Kill(-p.PID, syscall.SIGKILL)
		}
		killProcess(p.PID, p.Cmdline)
		if done, ok := l.reap[p.PID]; ok {
			<-done
			delete(l.reap, p.PID)
		}
	}
	l.st.Processes = keep
	return waitPort(ctx, l.NSPath(RoleC2), false, nil)
}

// listeningIn reports whether a TCP socket in the namespace (a name or a
// path) listens on port (state 0A), whoever owns it. busybox binds a
// dual-stack [::] socket, which shows in tcp6 only and takes IPv4 too, even
// with IPv6 disabled on the interfaces.
func listeningIn(ns string, port int) (bool, error) {
	want := fmt.Sprintf(":%04X", port)
	var on bool
	err := withNetNS(ns, func() error {
		for _, file := range []string{"tcp", "tcp6"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + file)
			if err != nil {
				return fmt.Errorf("reading sockets: %w", err)
			}
			for _, line := range strings.Split(string(b), "\n")[1:] {
				f := strings.Fields(line)
				if len(f) > 3 && strings.HasSuffix(f[1], want) && f[3] == "0A" {
					on = true
					return nil
				}
			}
		}
		return nil
	})
	return on, err
}
