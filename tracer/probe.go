package tracer

import (
	"fmt"
	"io"
	"strings"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/vxtrace/vxtrace/topo"
)

// ProbeResult is whether one mechanism works here, and why not.
type ProbeResult struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// ProbeReport is what `vxtrace version --features` prints.
type ProbeReport struct {
	Kernel      string      `json:"kernel"`
	BTF         ProbeResult `json:"btf"`
	DropReasons ProbeResult `json:"drop_reasons"`
	TPBTF       ProbeResult `json:"tp_btf"`
	RawTP       ProbeResult `json:"raw_tp"`
	TCX         ProbeResult `json:"tcx"`
	Clsact      ProbeResult `json:"clsact"`
	Fentry      ProbeResult `json:"fentry"`
	Kprobe      ProbeResult `json:"kprobe"`
	Blind       []string    `json:"blind"`
}

// Probe loads and attaches each kind of program once (TC on the loopback
// device of the caller's namespace, detached at once) and reports what the
// kernel accepted.
func Probe() (*ProbeReport, error) {
	r := &ProbeReport{}
	var un unix.Utsname
	if unix.Uname(&un) == nil {
		r.Kernel = unix.ByteSliceToString(un.Release[:])
	}
	if spec, err := btf.LoadKernelSpec(); err != nil {
		r.BTF = ProbeResult{Detail: err.Error()}
	} else {
		r.BTF.OK = true
		var e *btf.Enum
		if err := spec.TypeByName("skb_drop_reason", &e); err != nil {
			r.DropReasons = ProbeResult{Detail: "enum skb_drop_reason not in BTF: drops are reported without a reason"}
		} else {
			r.DropReasons = ProbeResult{OK: true, Detail: fmt.Sprintf("%d reasons", len(e.Values))}
		}
	}

	lo := loopbackHop()
	try := func(cfg Config, hops bool) (*Tracer, error) {
		t, err := New(cfg)
		if err != nil {
			return nil, err
		}
		if hops && lo != nil {
			if err := t.AttachHops([]topo.Hop{*lo}); err != nil {
				t.Close()
				return nil, err
			}
		}
		return t, nil
	}

	if t, err := try(Config{}, true); err != nil {
		r.TPBTF = ProbeResult{Detail: err.Error()}
	} else {
		f := t.Features()
		r.TPBTF = ProbeResult{OK: f.Tracepoints == "tp_btf"}
		r.TCX = ProbeResult{OK: f.TC == "tcx"}
		r.Fentry = ProbeResult{OK: f.BridgeProbe == "fentry"}
		r.Kprobe = ProbeResult{OK: f.BridgeProbe == "kprobe" || f.BridgeProbe == "fentry"}
		for _, n := range f.Notices {
			switch {
			case strings.Contains(n, "tp_btf"):
				r.TPBTF.Detail = n
			case strings.Contains(n, "bridge probe"):
				r.Fentry.Detail, r.Kprobe.Detail = n, n
			case strings.Contains(n, "tcx"):
				r.TCX.Detail = n
			}
		}
		t.Close()
	}
	if t, err := try(Config{ForceRawTP: true, NoTC: true}, false); err != nil {
		r.RawTP = ProbeResult{Detail: err.Error()}
	} else {
		r.RawTP.OK = true
		t.Close()
	}
	if t, err := try(Config{NoTracepoints: true, ForceClsact: true}, true); err != nil {
		r.Clsact = ProbeResult{Detail: err.Error()}
	} else {
		r.Clsact.OK = t.Features().TC == "clsact"
		t.Close()
	}

	if !r.TPBTF.OK && !r.RawTP.OK {
		r.Blind = append(r.Blind, "every hop: no tracepoint program can attach, so vxtrace cannot run")
	}
	if !r.TCX.OK && !r.Clsact.OK {
		r.Blind = append(r.Blind, "per-hop TC counters: every hop is blind to traffic that does not match the filter")
	}
	if !r.Fentry.OK && !r.Kprobe.OK {
		r.Blind = append(r.Blind, "bridge devices: forwarding is derived from port rx/tx, not observed")
	}
	if !r.DropReasons.OK {
		r.Blind = append(r.Blind, "drop reasons: drops are reported by location only")
	}
	return r, nil
}

func loopbackHop() *topo.Hop {
	ino, err := topo.NetNSInode("/proc/thread-self/ns/net")
	if err != nil {
		return nil
	}
	return &topo.Hop{Ifname: "lo", Ifindex: 1, NetNS: topo.NetNS{Inode: ino, Path: "/proc/thread-self/ns/net"}}
}

// Print writes the report as a table.
func (r *ProbeReport) Print(w io.Writer) {
	fmt.Fprintf(w, "kernel %s\n", r.Kernel)
	row := func(name string, p ProbeResult, what string) {
		mark := "yes"
		if !p.OK {
			mark = "no "
		}
		fmt.Fprintf(w, "  %-13s %s  %s", name, mark, what)
		if p.Detail != "" {
			fmt.Fprintf(w, " (%s)", p.Detail)
		}
		fmt.Fprintln(w)
	}
	row("btf", r.BTF, "CO-RE and drop-reason names")
	row("drop reasons", r.DropReasons, "kfree_skb reasons from enum skb_drop_reason")
	row("tp_btf", r.TPBTF, "BTF tracepoints: device rx/tx, kfree_skb, consume_skb")
	row("raw_tp", r.RawTP, "raw tracepoints: the fallback for tp_btf")
	row("tcx", r.TCX, "TC links on hop interfaces")
	row("clsact", r.Clsact, "legacy TC (clsact + cls_bpf): the fallback for tcx")
	row("fentry", r.Fentry, "optional bridge-forward probe")
	row("kprobe", r.Kprobe, "optional bridge-forward probe, fallback")
	if len(r.Blind) == 0 {
		fmt.Fprintln(w, "no hop is blind on this kernel")
		return
	}
	fmt.Fprintln(w, "blind or degraded:")
	for _, b := range r.Blind {
		fmt.Fprintf(w, "  - %s\n", b)
	}
}
