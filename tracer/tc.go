package tracer

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxtrace/vxtrace/internal/nsexec"
	"github.com/vxtrace/vxtrace/topo"
)

// FilterName names vxtrace's legacy cls_bpf filters, so that a later run can
// find and remove the ones a killed run left behind.
const FilterName = "vxtrace"

// tcAttachment is what one hop holds: two tcx links, or two cls_bpf filters
// (and the clsact qdisc when vxtrace created it).
type tcAttachment struct {
	hop     topo.Key
	links   []link.Link
	nsPath  string
	filters []*netlink.BpfFilter
	// ownQdisc: vxtrace created the clsact qdisc, or found it holding
	// only another running vxtrace's filters. Close removes it once no
	// filter at all is left on it, so the last trace out removes it and
	// nobody else's filter goes with it.
	ownQdisc bool
	ifindex  int
}

// AttachHops attaches the TC programs to each hop, inside the hop's own
// namespace. A hop that cannot be attached is marked Blind and reported in
// the returned error; the others stay attached.
func (t *Tracer) AttachHops(hops []topo.Hop) error {
	if t.tc.Ingress == nil {
		return nil
	}
	t.sweepStale(hops)
	var errs []error
	for i := range hops {
		h := &hops[i]
		if h.Ifindex == 0 || h.NetNS.Path == "" {
			continue
		}
		// The slot first: the hop's first packets count there.
		if err := t.assignSlot(h.Key()); err != nil {
			errs = append(errs, fmt.Errorf("hop %s in %s: %w", h.Ifname, nsLabel(h.NetNS), err))
		}
		a, err := t.attachHop(h)
		if err != nil {
			h.Blind = true
			errs = append(errs, fmt.Errorf("attaching TC to %s in %s: %w", h.Ifname, nsLabel(h.NetNS), err))
			continue
		}
		t.tcHops = append(t.tcHops, a)
		// From here the hop's TC program reports its packets, and the
		// tracepoints leave this device alone.
		k := h.Key()
		if err := t.maps.TcHops.Put(vxtraceVxHopKey{Netns: k.NetNS, Ifindex: k.Ifindex}, uint8(1)); err != nil {
			errs = append(errs, fmt.Errorf("registering hop %s in %s: %w", h.Ifname, nsLabel(h.NetNS), err))
		}
	}
	if len(errs) > 0 {
		// A hop without TC is seen by the device tracepoints, for the
		// packets a TC program elsewhere found.
		if err := t.attachDeviceTracepoints(); err != nil {
			errs = append(errs, fmt.Errorf("attaching the device tracepoints: %w", err))
		}
	}
	return errors.Join(errs...)
}

func nsLabel(ns topo.NetNS) string {
	if ns.Name != "" {
		return ns.Name
	}
	return fmt.Sprintf("netns %d", ns.Inode)
}

func (t *Tracer) attachHop(h *topo.Hop) (*tcAttachment, error) {
	a := &tcAttachment{hop: h.Key(), nsPath: h.NetNS.Path, ifindex: int(h.Ifindex)}
	if !t.cfg.ForceClsact {
		err := nsexec.Do(h.NetNS.Path, func() error {
			for _, x := range []struct {
				prog *ebpf.Program
				at   ebpf.AttachType
			}{{t.tc.Ingress, ebpf.AttachTCXIngress}, {t.tc.Egress, ebpf.AttachTCXEgress}} {
				l, err := link.AttachTCX(link.TCXOptions{Interface: int(h.Ifindex), Program: x.prog, Attach: x.at})
				if err != nil {
					return err
				}
				a.links = append(a.links, l)
			}
			return nil
		})
		if err == nil {
			t.feat.TC = "tcx"
			return a, nil
		}
		a.close()
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return nil, err
		}
		t.feat.notice("tcx links not supported: using clsact and cls_bpf")
		a = &tcAttachment{hop: h.Key(), nsPath: h.NetNS.Path, ifindex: int(h.Ifindex)}
	}
	if err := a.attachClsact(t.tc.Ingress, t.tc.Egress); err != nil {
		a.close()
		return nil, err
	}
	t.feat.TC = "clsact"
	return a, nil
}

func (a *tcAttachment) attachClsact(ingress, egress *ebpf.Program) error {
	nh, err := netlinkHandle(a.nsPath)
	if err != nil {
		return err
	}
	defer nh.Close()
	switch err := nh.QdiscAdd(clsact(a.ifindex)); {
	case err == nil:
		a.ownQdisc = true
	case errors.Is(err, unix.EEXIST):
		all, ours, err := filtersOn(nh, a.ifindex)
		a.ownQdisc = err == nil && all > 0 && all == ours
	default:
		return fmt.Errorf("adding clsact qdisc: %w", err)
	}
	for _, x := range []struct {
		prog   *ebpf.Program
		parent uint32
	}{{ingress, netlink.HANDLE_MIN_INGRESS}, {egress, netlink.HANDLE_MIN_EGRESS}} {
		// A priority already taken (by another vxtrace tracing the same
		// hop, or by another tool) is skipped rather than failing the hop.
		var err error
		for prio := uint16(1); prio <= maxFilterPrio; prio++ {
			f := &netlink.BpfFilter{
				FilterAttrs: netlink.FilterAttrs{LinkIndex: a.ifindex, Parent: x.parent, Handle: 1, Protocol: unix.ETH_P_ALL, Priority: prio},
				Fd:          x.prog.FD(), Name: FilterName, DirectAction: true,
			}
			if err = nh.FilterAdd(f); err == nil {
				a.filters = append(a.filters, f)
				break
			}
			if !errors.Is(err, unix.EEXIST) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("adding cls_bpf filter: %w", err)
		}
	}
	return nil
}

// maxFilterPrio bounds the search for a free cls_bpf priority.
const maxFilterPrio = 16

func netlinkHandle(nsPath string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("opening namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

func (a *tcAttachment) close() error {
	var errs []error
	for _, l := range a.links {
		errs = append(errs, l.Close())
	}
	a.links = nil
	if len(a.filters) == 0 && !a.ownQdisc {
		return errors.Join(errs...)
	}
	nh, err := netlinkHandle(a.nsPath)
	if err != nil {
		// The namespace is gone, and with it the filters.
		return errors.Join(errs...)
	}
	defer nh.Close()
	for _, f := range a.filters {
		if err := nh.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("removing cls_bpf filter: %w", err))
		}
	}
	a.filters = nil
	// Removing the qdisc removes every filter on it: it goes only when
	// no filter is left, whoever added it after us.
	if all, _, err := filtersOn(nh, a.ifindex); a.ownQdisc && err == nil && all == 0 {
		if err := nh.QdiscDel(clsact(a.ifindex)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("removing clsact qdisc: %w", err))
		}
	}
	a.ownQdisc = false
	return errors.Join(errs...)
}
