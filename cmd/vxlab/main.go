// Command vxlab builds, breaks and removes the overlay labs of package lab.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/vxtrace/vxtrace/lab"
)

const usage = `usage:
  vxlab up [--layout docker-layout|flannel-layout] [--fault F]... [--prefix P] [--docker]
  vxlab down [--prefix P]
  vxlab status [--prefix P] [--json]
  vxlab fault F on|off [--prefix P]
  vxlab faults [--json]
  vxlab ping [--prefix P] [--count N] [--size BYTES | --big]
  vxlab connect [--prefix P] [--port N]`

// usageError makes main exit 2 rather than 1.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

var stdout io.Writer = os.Stdout

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "vxlab: "+strings.ReplaceAll(err.Error(), "\n", "; "))
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("no command (run `vxlab help`)")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "up":
		return cmdUp(ctx, rest)
	case "down":
		return cmdDown(rest)
	case "status":
		return cmdStatus(rest)
	case "fault":
		return cmdFault(rest)
	case "faults":
		return cmdFaults(rest)
	case "ping":
		return cmdPing(ctx, rest)
	case "connect":
		return cmdConnect(ctx, rest)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return usagef("unknown command %q (run `vxlab help`)", cmd)
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse lets flags come after positional arguments too
// (`vxlab fault wrong-vni on --prefix t1`), which package flag alone stops at.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

type faultList []lab.Fault

func (f *faultList) String() string { return fmt.Sprint(*f) }

func (f *faultList) Set(s string) error {
	for _, name := range strings.Split(s, ",") {
		fi, err := lab.LookupFault(strings.TrimSpace(name))
		if err != nil {
			return err
		}
		*f = append(*f, fi.Fault)
	}
	return nil
}

func progress(msg string) { fmt.Fprintln(os.Stderr, "vxlab: "+msg) }

func cmdUp(ctx context.Context, args []string) error {
	fs := newFlags("up")
	prefix := fs.String("prefix", lab.DefaultPrefix, "")
	layout := fs.String("layout", string(lab.DockerLayout), "")
	docker := fs.Bool("docker", false, "")
	var faults faultList
	fs.Var(&faults, "fault", "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("up: unexpected argument %q", pos[0])
	}
	l, err := lab.ParseLayout(*layout)
	if err != nil {
		return usageError{err.Error()}
	}
	cfg := lab.Config{Prefix: *prefix, Layout: l, Faults: faults}
	up := lab.Up
	if *docker {
		up = lab.UpDocker
	}
	lb, err := up(ctx, cfg, progress)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lab %s is up (%s); c1 %s -> c2 %s; `vxlab down --prefix %s` removes it\n",
		lb.Prefix(), lb.Layout(), lb.ContainerIP(lab.RoleC1), lb.ContainerIP(lab.RoleC2), lb.Prefix())
	return nil
}

func cmdDown(args []string) error {
	fs := newFlags("down")
	prefix := fs.String("prefix", lab.DefaultPrefix, "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("down: unexpected argument %q", pos[0])
	}
	return lab.Down(*prefix)
}

func cmdStatus(args []string) error {
	fs := newFlags("status")
	prefix := fs.String("prefix", lab.DefaultPrefix, "")
	asJSON := fs.Bool("json", false, "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("status: unexpected argument %q", pos[0])
	}
	st, err := lab.Status(*prefix)
	if err != nil {
		return err
	}
	if *asJSON {
		out := struct {
			*lab.LabStatus
			Exists  bool `json:"exists"`
			Healthy bool `json:"healthy"`
		}{st, st.Exists(), st.Healthy()}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printStatus(stdout, st)
	return nil
}

func printStatus(w io.Writer, st *lab.LabStatus) {
	if !st.Exists() {
		fmt.Fprintf(w, "lab %s: not found\n", st.Prefix)
		return
	}
	s := st.State
	if s == nil {
		fmt.Fprintf(w, "lab %s: no state file, leftover namespaces %s (`vxlab down --prefix %s` removes them)\n",
			st.Prefix, strings.Join(st.Namespaces, ", "), st.Prefix)
		return
	}
	health := "healthy"
	if !st.Healthy() {
		health = "DAMAGED"
	}
	mode := "netns"
	if s.Docker {
		mode = "docker"
	}
	fmt.Fprintf(w, "lab %s: %s, %s mode, %s, created %s\n", s.Prefix, s.Layout, mode, health, s.Created.Format("2006-01-02 15:04:05Z"))
	faults := "none"
	if len(s.Faults) > 0 {
		var names []string
		for _, f := range s.Faults {
			names = append(names, string(f))
		}
		faults = strings.Join(names, ", ")
	}
	fmt.Fprintf(w, "faults: %s\n", faults)
	fmt.Fprintf(w, "overlay: VNI %d, UDP %d, device %s\n", s.VNI, s.Port, s.VXLANDev)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tNAMESPACE\tADDRESS\tMAC")
	for _, r := range []lab.Role{lab.RoleSW, lab.RoleN1, lab.RoleN2, lab.RoleOV1, lab.RoleOV2, lab.RoleC1, lab.RoleC2} {
		ns, ok := s.Namespaces[r]
		if !ok {
			continue
		}
		addr, mac := s.VTEPIPs[r], s.ContainerMACs[r]
		if a := s.ContainerIPs[r]; a != "" {
			addr = a
		}
		name := ns.Name
		for _, m := range st.Missing {
			if m == ns.Name {
				name += " (MISSING)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r, name, dash(addr), dash(mac))
	}
	tw.Flush()
	for _, p := range s.Processes {
		state := "running"
		for _, d := range st.Dead {
			if d.PID == p.PID {
				state = "NOT RUNNING"
			}
		}
		fmt.Fprintf(w, "%s: pid %d in %s, %s\n", p.What, p.PID, p.Role, state)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdFault(args []string) error {
	fs := newFlags("fault")
	prefix := fs.String("prefix", lab.DefaultPrefix, "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || (pos[1] != "on" && pos[1] != "off") {
		return usagef("fault: want `vxlab fault F on|off`")
	}
	fi, err := lab.LookupFault(pos[0])
	if err != nil {
		return usageError{err.Error()}
	}
	l, err := lab.Open(*prefix)
	if err != nil {
		return err
	}
	if err := l.SetFault(fi.Fault, pos[1] == "on"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s is %s\n", l.Prefix(), fi.Fault, pos[1])
	return nil
}

func cmdFaults(args []string) error {
	fs := newFlags("faults")
	asJSON := fs.Bool("json", false, "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("faults: unexpected argument %q", pos[0])
	}
	table := lab.FaultTable()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(table)
	}
	for _, fi := range table {
		d, f := fi.Hop[lab.DockerLayout], fi.Hop[lab.FlannelLayout]
		fmt.Fprintf(stdout, "%s\n    %s\n    expect: %s, %s (%d) at %s; hop %s/%s (docker-layout), %s/%s (flannel-layout)\n",
			fi.Fault, fi.Description, fi.Verdict, fi.Reason, fi.ReasonCode, fi.Location, d.Role, d.Ifname, f.Role, f.Ifname)
	}
	return nil
}

func cmdPing(ctx context.Context, args []string) error {
	fs := newFlags("ping")
	prefix := fs.String("prefix", lab.DefaultPrefix, "")
	count := fs.Int("count", 3, "")
	size := fs.Int("size", 0, "")
	big := fs.Bool("big", false, "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("ping: unexpected argument %q", pos[0])
	}
	if *big {
		*size = lab.BigPayload
	}
	l, err := lab.Open(*prefix)
	if err != nil {
		return err
	}
	dst := l.ContainerIP(lab.RoleC2)
	if err := lab.Ping(ctx, l.NSPath(lab.RoleC1), dst, *count, *size); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "c1 -> c2 (%s): %d of %d answered\n", dst, *count, *count)
	return nil
}

func cmdConnect(ctx context.Context, args []string) error {
	fs := newFlags("connect")
	prefix := fs.String("prefix", lab.DefaultPrefix, "")
	port := fs.Int("port", lab.ListenPort, "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("connect: unexpected argument %q", pos[0])
	}
	l, err := lab.Open(*prefix)
	if err != nil {
		return err
	}
	dst := l.ContainerIP(lab.RoleC2)
	if err := lab.TCPConnect(ctx, l.NSPath(lab.RoleC1), dst, *port); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "c1 -> c2 (%s:%d): connected\n", dst, *port)
	return nil
}
