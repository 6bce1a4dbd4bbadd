package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vxtrace/vxtrace/report"
	"github.com/vxtrace/vxtrace/topo"
	"github.com/vxtrace/vxtrace/tracer"
)

// usageError is bad input: the message says what to do, the exit code is 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// filterFlags are shared by trace, tui and topology.
type filterFlags struct {
	netns              stringList
	src, dst           string
	outerSrc, outerDst string
	proto              string
	port               int
	vni                int
	vxlanPorts         stringList
	container, to      string
	dockerHost         string

	// hidden: force each kernel fallback so tests can cover them
	forceRawTP, forceClsact, noTC bool
}

func (f *filterFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.netns, "netns", "trace this network namespace: a name in /run/netns or a path (repeatable; default: every namespace)")
	fs.StringVar(&f.src, "src", "", "inner source address or CIDR")
	fs.StringVar(&f.dst, "dst", "", "inner destination address or CIDR")
	fs.StringVar(&f.outerSrc, "outer-src", "", "outer (VTEP) source address or CIDR of encapsulated packets")
	fs.StringVar(&f.outerDst, "outer-dst", "", "outer (VTEP) destination address or CIDR")
	fs.StringVar(&f.proto, "proto", "", "inner protocol: icmp, icmpv6, tcp, udp or a number")
	fs.IntVar(&f.port, "port", 0, "inner TCP/UDP port, source or destination")
	fs.IntVar(&f.vni, "vni", -1, "VXLAN network identifier")
	fs.Var(&f.vxlanPorts, "vxlan-port", "UDP port that carries VXLAN (repeatable; default 4789 and 8472)")
	fs.StringVar(&f.container, "container", "", "trace this Docker container's path (name or ID)")
	fs.StringVar(&f.to, "to", "", "with --container: only packets to this container (name or ID) or IP")
	fs.StringVar(&f.dockerHost, "docker-host", "", "Docker daemon socket (default: $DOCKER_HOST or unix:///var/run/docker.sock)")
	fs.BoolVar(&f.forceRawTP, "force-raw-tp", os.Getenv("VXTRACE_FORCE_RAW_TP") != "", "")
	fs.BoolVar(&f.forceClsact, "force-clsact", os.Getenv("VXTRACE_FORCE_CLSACT") != "", "")
	fs.BoolVar(&f.noTC, "no-tc", false, "")
}

// hiddenFlags are for tests and are left out of -h.
var hiddenFlags = map[string]bool{"force-raw-tp": true, "force-clsact": true, "no-tc": true, "ready-file": true, "ring-size": true}

func parsePrefix(flagName, v string) (netip.Prefix, error) {
	if v == "" {
		return netip.Prefix{}, nil
	}
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return p, usagef("--%s %q is not an address or CIDR (e.g. 10.0.1.4 or 10.0.1.0/24)", flagName, v)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, usagef("--%s %q is not an address or CIDR (e.g. 10.0.1.4 or 10.0.1.0/24)", flagName, v)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

var protoNumbers = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "icmp6": 58}

func parseProto(v string) (uint8, error) {
	if v == "" {
		return 0, nil
	}
	if n, ok := protoNumbers[strings.ToLower(v)]; ok {
		return n, nil
	}
	n, err := strconv.ParseUint(v, 10, 8)
	if err != nil || n == 0 {
		return 0, usagef("--proto %q is not a protocol (icmp, icmpv6, tcp, udp, or a number 1-255)", v)
	}
	return uint8(n), nil
}

// tracerConfig validates the filter flags.
func (f *filterFlags) tracerConfig() (tracer.Config, report.Filter, error) {
	var c tracer.Config
	var rf report.Filter
	var err error
	for _, x := range []struct {
		name string
		v    string
		dst  *netip.Prefix
		echo *string
	}{
		{"src", f.src, &c.Src, &rf.Src}, {"dst", f.dst, &c.Dst, &rf.Dst},
		{"outer-src", f.outerSrc, &c.OuterSrc, &rf.OuterSrc}, {"outer-dst", f.outerDst, &c.OuterDst, &rf.OuterDst},
	} {
		if *x.dst, err = parsePrefix(x.name, x.v); err != nil {
			return c, rf, err
		}
		if x.dst.IsValid() {
			*x.echo = x.dst.String()
		}
	}
	if c.Proto, err = parseProto(f.proto); err != nil {
		return c, rf, err
	}
	if c.Proto != 0 {
		rf.Proto = report.ProtoName(c.Proto)
	}
	if f.port < 0 || f.port > 65535 {
		return c, rf, usagef("--port %d is out of range (1-65535)", f.port)
	}
	if f.port != 0 && c.Proto != 0 && c.Proto != 6 && c.Proto != 17 {
		return c, rf, usagef("--port needs --proto tcp or udp, not %s", f.proto)
	}
	c.Port = uint16(f.port)
	rf.Port = c.Port
	if f.vni != -1 {
		if f.vni < 0 || f.vni >= 1<<24 {
			return c, rf, usagef("--vni %d is out of range (0-16777215)", f.vni)
		}
		v := uint32(f.vni)
		c.VNI = &v
		rf.VNI = &v
	}
	for _, p := range f.vxlanPorts {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return c, rf, usagef("--vxlan-port %q is not a UDP port (1-65535)", p)
		}
		c.VXLANPorts = append(c.VXLANPorts, uint16(n))
	}
	if len(c.VXLANPorts) > 4 {
		return c, rf, usagef("--vxlan-port: at most 4 ports")
	}
	if f.to != "" && f.container == "" {
		return c, rf, usagef("--to needs --container")
	}
	c.ForceRawTP, c.ForceClsact, c.NoTC = f.forceRawTP, f.forceClsact, f.noTC
	return c, rf, nil
}

// scope resolves --netns to namespaces.
func (f *filterFlags) scope() ([]topo.NetNS, error) {
	var out []topo.NetNS
	for _, arg := range f.netns {
		ns, err := topo.ResolveNetNS(arg)
		if err != nil {
			return nil, usagef("--netns %s: %v", arg, err)
		}
		out = append(out, ns)
	}
	return out, nil
}

// parseFlags parses args; -h prints usage and returns flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string, usage string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(os.Stdout, fs, usage)
		return err
	}
	if err != nil {
		return usagef("%v (see 'vxtrace %s -h')", err, fs.Name())
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (see 'vxtrace %s -h')", fs.Arg(0), fs.Name())
	}
	return nil
}

func printUsage(w io.Writer, fs *flag.FlagSet, usage string) {
	fmt.Fprintln(w, usage)
	fmt.Fprintln(w, "\nFlags:")
	fs.VisitAll(func(f *flag.Flag) {
		if hiddenFlags[f.Name] {
			return
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "-1" && f.DefValue != "[]" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "  --%-14s %s%s\n", f.Name, f.Usage, def)
	})
}

func durationFlag(name string, d time.Duration, min time.Duration) error {
	if d < min {
		return usagef("--%s %v is too short (at least %v)", name, d, min)
	}
	return nil
}
