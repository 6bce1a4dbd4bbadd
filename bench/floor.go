package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/vxtrace/vxtrace/internal/nsexec"
)

// floor holds empty BPF programs, attached where vxtrace's programs run: an
// empty TC program on every interface of the lab and an empty BTF
// tracepoint on consume_skb. What bpf_stats reports for them is its own
// cost (a clock read on each side of the run) and the hook's: the floor
// under every ns/run figure in the P4 table.
type floor struct {
	tc, tp *ebpf.Program
	links  []link.Link
}

// FloorTC and FloorTP name the empty programs in the P4 rows.
const (
	FloorTC = "empty_tc"
	FloorTP = "empty_tp_btf"
)

func attachFloor(ifaces []iface) (f *floor, err error) {
	f = &floor{}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	f.tc, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: FloorTC, Type: ebpf.SchedCLS, License: "GPL",
		// -1: TCX_NEXT / TC_ACT_UNSPEC, as vxtrace's own programs.
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		return f, fmt.Errorf("loading the empty TC program: %w", err)
	}
	f.tp, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: FloorTP, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "consume_skb", License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return f, fmt.Errorf("loading the empty tracepoint program: %w", err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: f.tp})
	if err != nil {
		return f, fmt.Errorf("attaching the empty tracepoint program: %w", err)
	}
	f.links = append(f.links, l)
	for _, i := range ifaces {
		if err := f.attachTC(i); err != nil {
			return f, err
		}
	}
	return f, nil
}

func (f *floor) attachTC(i iface) error {
	return nsexec.Do(filepath.Join("/var/run/netns", i.NS), func() error {
		nl, err := netlink.LinkByName(i.Name)
		if err != nil {
			return fmt.Errorf("finding %s in %s: %w", i.Name, i.NS, err)
		}
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			l, err := link.AttachTCX(link.TCXOptions{Interface: nl.Attrs().Index, Program: f.tc, Attach: at})
			if err != nil {
				return fmt.Errorf("attaching the empty TC program to %s in %s: %w", i.Name, i.NS, err)
			}
			f.links = append(f.links, l)
		}
		return nil
	})
}

// Stats reads the empty programs' accounting.
func (f *floor) Stats() ([]ProgRun, error) {
	var out []ProgRun
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{{FloorTC, f.tc}, {FloorTP, f.tp}} {
		st, err := p.prog.Stats()
		if err != nil {
			return nil, fmt.Errorf("reading %s stats: %w", p.name, err)
		}
		r := ProgRun{Name: p.name, Runs: st.RunCount, RunTimeNs: uint64(st.Runtime.Nanoseconds()), Recursion: st.RecursionMisses}
		if r.Runs > 0 {
			r.NsPerRun = float64(r.RunTimeNs) / float64(r.Runs)
		}
		out = append(out, r)
	}
	return out, nil
}

func (f *floor) Close() error {
	var errs []error
	for i := len(f.links) - 1; i >= 0; i-- {
		errs = append(errs, f.links[i].Close())
	}
	f.links = nil
	for _, p := range []*ebpf.Program{f.tc, f.tp} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	f.tc, f.tp = nil, nil
	return errors.Join(errs...)
}
