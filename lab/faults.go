package lab

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf/btf"
)

// Fault is a named breakage a lab can switch on and off.
type Fault string

const (
	FaultSwitchDrop     Fault = "switch-drop-4789"
	FaultNode2InputDrop Fault = "node2-input-drop-4789"
	FaultUnderlayMTU    Fault = "underlay-mtu"
	FaultMissingFDB     Fault = "missing-fdb"
	FaultMissingNeigh   Fault = "missing-neigh"
	FaultWrongVNI       Fault = "wrong-vni"
	FaultNoListener     Fault = "no-listener"
)

// FaultMTU is what underlay-mtu sets sw's port towards n1 to: below the
// 1500 bytes a full 1450-byte overlay packet needs once encapsulated.
const FaultMTU = 1400

// ProbeKind is the kind of traffic that shows a fault.
type ProbeKind string

const (
	ProbePing ProbeKind = "ping" // ICMP echo c1 -> c2
	ProbeTCP  ProbeKind = "tcp"  // TCP connect c1 -> c2
)

// Probe is traffic from c1 to c2 that a fault breaks and a healthy lab
// carries.
type Probe struct {
	Kind        ProbeKind `json:"kind"`
	PayloadSize int       `json:"payload_size,omitempty"` // ping: ICMP data bytes (0 = busybox default 56)
	Port        int       `json:"port,omitempty"`         // tcp: destination port
}

// HopRef names an interface by the role of its namespace, so a table entry
// can be resolved against any lab prefix.
type HopRef struct {
	Role   Role   `json:"role"`
	Ifname string `json:"ifname"`
}

// FaultInfo says what a fault does and what vxtrace must report for the
// probe packet it breaks. Reason names come from the kernel's enum
// skb_drop_reason; ReasonCode is the running kernel's number for the name,
// read from its BTF (0 without one): numbers move between kernels, even
// between 6.18 builds, names do not. Location is the function kfree_skb
// reports. Hop is the interface the packet was on when freed (skb->dev).
type FaultInfo struct {
	Fault       Fault             `json:"fault"`
	Seed        string            `json:"seed"` // the incident it reproduces
	Description string            `json:"description"`
	Probe       Probe             `json:"probe"`
	Verdict     string            `json:"verdict"` // a journey.Verdict value
	Reason      string            `json:"reason"`
	ReasonCode  uint32            `json:"reason_code"` // filled by FaultTable
	Location    string            `json:"location"`
	Hop         map[Layout]HopRef `json:"hop"`
	// Reply is traffic the fault makes come back, if any ("RST").
	Reply string `json:"reply,omitempty"`
}

var bigPing = Probe{Kind: ProbePing, PayloadSize: BigPayload}
var smallPing = Probe{Kind: ProbePing}

// faultTable: the "seen" comments are bpftrace's
// tracepoint:skb:kfree_skb { @[args->reason, ksym(args->location), dev] }
// on this machine (6.18) while sending the probe, both layouts unless said.
var faultTable = []FaultInfo{
	{
		// seen: 12 NETFILTER_DROP nft_do_chain dev=to-n1 (ns sw), one per echo.
		Fault:       FaultSwitchDrop,
		Seed:        "000: top-of-rack switch silently dropping VXLAN",
		Description: "the top-of-rack router sw drops forwarded UDP 4789 (iptables FORWARD DROP)",
		Probe:       smallPing,
		Verdict:     "dropped", Reason: "NETFILTER_DROP", Location: "nft_do_chain",
		Hop: map[Layout]HopRef{
			DockerLayout:  {RoleSW, SWPortN1},
			FlannelLayout: {RoleSW, SWPortN1},
		},
	},
	{
		// seen: 12 NETFILTER_DROP nft_do_chain dev=eth0 (ns n2).
		Fault:       FaultNode2InputDrop,
		Seed:        "001: node firewall without the 4789/udp rule",
		Description: "node n2's firewall drops incoming UDP 4789 (iptables INPUT DROP)",
		Probe:       smallPing,
		Verdict:     "dropped", Reason: "NETFILTER_DROP", Location: "nft_do_chain",
		Hop: map[Layout]HopRef{
			DockerLayout:  {RoleN2, NodeNIC},
			FlannelLayout: {RoleN2, NodeNIC},
		},
	},
	{
		// seen: 2 NOT_SPECIFIED __dev_forward_skb2 dev=eth0 (ns n1), len 1514
		// (the 1500-byte outer packet plus Ethernet). veth_xmit checks the
		// frame against the PEER's MTU, so a smaller MTU on the sw side of
		// the link drops at n1's eth0 without any ICMP; the outer header has
		// DF clear, so n1 itself would fragment rather than drop if its own
		// eth0 were the small one. Small pings pass.
		Fault:       FaultUnderlayMTU,
		Seed:        "none: the classic overlay MTU black hole (LAB-NOTES)",
		Description: fmt.Sprintf("sw's port towards n1 has MTU %d, so a 1450-byte overlay packet (1500 encapsulated) is dropped by the veth; small packets pass", FaultMTU),
		Probe:       bigPing,
		Verdict:     "dropped", Reason: "NOT_SPECIFIED", Location: "__dev_forward_skb2",
		Hop: map[Layout]HopRef{
			DockerLayout:  {RoleN1, NodeNIC},
			FlannelLayout: {RoleN1, NodeNIC},
		},
	},
	{
		// seen: NO_TX_TARGET (113 on 6.18.0, 114 on 6.18.44) vxlan_xmit dev=vxlan0 (ns ov1) /
		// dev=vxlan100 (ns n1).
		Fault:       FaultMissingFDB,
		Seed:        "003: the remote endpoint's FDB entry was never programmed",
		Description: "node n1's vxlan device has no FDB entry for the remote side (container MAC in docker-layout, remote vxlan100 MAC in flannel-layout)",
		Probe:       smallPing,
		Verdict:     "dropped", Reason: "NO_TX_TARGET", Location: "vxlan_xmit",
		Hop: map[Layout]HopRef{
			DockerLayout:  {RoleOV1, dockerVXLAN},
			FlannelLayout: {RoleN1, flannelVXLAN},
		},
	},
	{
		// seen: 58 NEIGH_FAILED neigh_invalidate dev=eth0 (ns c1) /
		// dev=vxlan100 (ns n1), about 3 s after each echo, when the ARP
		// probes run out. The echo waits in the ARP queue of whoever needs
		// the answer: c1 itself in docker-layout, where vxlan0's proxy ARP
		// has nothing to answer from, n1 in flannel-layout, routing to the
		// remote vxlan100 address.
		Fault:       FaultMissingNeigh,
		Seed:        "003: the remote side's ARP entry was never programmed (Swarm gossip on 7946 blocked, 000/001)",
		Description: "node n1's vxlan device has no neighbour entry for the remote side (container 2's IP in docker-layout, remote vxlan100's address in flannel-layout), so ARP for it goes unanswered",
		Probe:       smallPing,
		Verdict:     "dropped", Reason: "NEIGH_FAILED", Location: "neigh_invalidate",
		Hop: map[Layout]HopRef{
			DockerLayout:  {RoleC1, "eth0"},
			FlannelLayout: {RoleN1, flannelVXLAN},
		},
	},
	{
		// seen: VXLAN_VNI_NOT_FOUND (110 on 6.18.0, 111 on 6.18.44) vxlan_rcv dev=eth0 (ns n2): the
		// socket finds no device for the VNI, so the packet is still on
		// the NIC it came in by.
		Fault:       FaultWrongVNI,
		Seed:        "003: the two nodes' vxlan devices disagree on the VNI",
		Description: fmt.Sprintf("node n2's vxlan device uses VNI %d instead of %d", WrongVNI, VNI),
		Probe:       smallPing,
		Verdict:     "dropped", Reason: "VXLAN_VNI_NOT_FOUND", Location: "vxlan_rcv",
		Hop: map[Layout]HopRef{
			DockerLayout:  {RoleN2, NodeNIC},
			FlannelLayout: {RoleN2, NodeNIC},
		},
	},
	{
		// seen: 3 NO_SOCKET tcp_v4_rcv dev=eth0 (ns c2) for the SYN; the RST
		// goes back and c1's connect fails with ECONNREFUSED.
		Fault:       FaultNoListener,
		Seed:        "002: connection reset at handshake",
		Description: fmt.Sprintf("nothing listens on TCP %d in c2: the SYN is dropped there and an RST answers", ListenPort),
		Probe:       Probe{Kind: ProbeTCP, Port: ListenPort},
		Verdict:     "dropped", Reason: "NO_SOCKET", Location: "tcp_v4_rcv",
		Hop: map[Layout]HopRef{
			DockerLayout:  {RoleC2, "eth0"},
			FlannelLayout: {RoleC2, "eth0"},
		},
		Reply: "RST",
	},
}

// FaultTable returns every fault the lab knows, with what vxtrace should
// find for each.
func FaultTable() []FaultInfo {
	out := slices.Clone(faultTable)
	codes := reasonCodes()
	for i := range out {
		out[i].ReasonCode = codes[out[i].Reason]
		m := make(map[Layout]HopRef, len(out[i].Hop))
		for k, v := range out[i].Hop {
			m[k] = v
		}
		out[i].Hop = m
	}
	return out
}

// reasonCodes is the running kernel's enum skb_drop_reason by name (without
// the SKB_DROP_REASON_ prefix); empty when the kernel has no BTF for it.
var reasonCodes = sync.OnceValue(func() map[string]uint32 {
	m := map[string]uint32{}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return m
	}
	var e *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &e); err != nil {
		return m
	}
	for _, v := range e.Values {
		m[strings.TrimPrefix(v.Name, "SKB_DROP_REASON_")] = uint32(v.Value)
	}
	return m
})

// LookupFault finds a fault by name.
func LookupFault(name string) (FaultInfo, error) {
	for _, fi := range FaultTable() {
		if string(fi.Fault) == name {
			return fi, nil
		}
	}
	names := make([]string, len(faultTable))
	for i, fi := range faultTable {
		names[i] = string(fi.Fault)
	}
	return FaultInfo{}, fmt.Errorf("unknown fault %q (known: %s)", name, strings.Join(names, ", "))
}

// Expectation is a FaultInfo resolved against one lab: the probe to send
// and where exactly the probe packet must be reported dropped.
type Expectation struct {
	FaultInfo
	From, To Role // probe from c1 to c2
	DstIP    string
	HopRole  Role
	NS       string // namespace name of the hop
	NSPath   string
	Ifname   string
}

// Expect resolves a fault's expectation for this lab.
func (l *Lab) Expect(f Fault) (Expectation, error) {
	fi, err := LookupFault(string(f))
	if err != nil {
		return Expectation{}, err
	}
	hop, ok := fi.Hop[l.st.Layout]
	if !ok {
		return Expectation{}, fmt.Errorf("fault %s has no expectation for layout %s", f, l.st.Layout)
	}
	return Expectation{
		FaultInfo: fi,
		From:      RoleC1, To: RoleC2,
		DstIP:   l.ContainerIP(RoleC2),
		HopRole: hop.Role,
		NS:      l.NS(hop.Role),
		NSPath:  l.NSPath(hop.Role),
		Ifname:  hop.Ifname,
	}, nil
}

// Send sends a probe from c1 to c2 and reports whether it got through.
func (l *Lab) Send(ctx context.Context, p Probe) error {
	from, dst := l.NSPath(RoleC1), l.ContainerIP(RoleC2)
	switch p.Kind {
	case ProbeTCP:
		return TCPConnect(ctx, from, dst, p.Port)
	default:
		return Ping(ctx, from, dst, 3, p.PayloadSize)
	}
}

// SetFault switches a fault on or off; switching to the state it is
// already in does nothing.
func (l *Lab) SetFault(f Fault, on bool) error {
	if _, err := LookupFault(string(f)); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.faultOn(f) == on {
		return nil
	}
	prev := slices.Clone(l.st.Faults)
	if on {
		l.st.Faults = append(l.st.Faults, f)
	} else {
		l.st.Faults = slices.DeleteFunc(l.st.Faults, func(x Fault) bool { return x == f })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.applyFault(ctx, f, on); err != nil {
		l.st.Faults = prev
		return fmt.Errorf("setting fault %s %s: %w", f, onOff(on), err)
	}
	return l.save()
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// applyFault changes the machine; l.st.Faults already says the new state.
func (l *Lab) applyFault(ctx context.Context, f Fault, on bool) error {
	switch f {
	case FaultSwitchDrop:
		return dropVXLAN(ctx, l.NS(RoleSW), "FORWARD", on)
	case FaultNode2InputDrop:
		return dropVXLAN(ctx, l.NS(RoleN2), "INPUT", on)
	case FaultUnderlayMTU:
		mtu := UnderlayMTU
		if on {
			mtu = FaultMTU
		}
		return ip(ctx, l.NS(RoleSW), "link", "set", SWPortN1, "mtu", fmt.Sprint(mtu))
	case FaultMissingFDB:
		if l.st.Docker {
			return l.dockerFDB(on)
		}
		if on {
			return l.delFDB(ctx, RoleN1)
		}
		return l.addFDB(ctx, RoleN1)
	case FaultMissingNeigh:
		if l.st.Docker {
			return l.dockerNeigh(on)
		}
		var err error
		if on {
			err = l.delNeigh(ctx, RoleN1)
		} else {
			err = l.addNeigh(ctx, RoleN1)
		}
		if err != nil || l.st.Layout != DockerLayout {
			return err
		}
		// On, c1 would go on using the MAC it has cached and never ask
		// vxlan0. Off, a resolution the fault left running still gives up
		// when its probes run out, taking the pings sent after the restore
		// with it; a fresh entry asks at once.
		return l.flushPeerNeigh(ctx)
	case FaultWrongVNI:
		if l.st.Docker {
			return l.dockerVNI(l.vniFor(RoleN2))
		}
		return l.rebuildVTEP(ctx, RoleN2)
	case FaultNoListener:
		if on {
			return l.stopListener(ctx)
		}
		return l.startListener(ctx)
	}
	return fmt.Errorf("fault %s has no implementation", f)
}

// dropVXLAN adds or removes a DROP rule for UDP 4789 in a chain. Removal
// loops so that duplicates left by an interrupted run go too.
func dropVXLAN(ctx context.Context, ns, chain string, on bool) error {
	spec := []string{"-p", "udp", "--dport", fmt.Sprint(VXLANPort), "-j", "DROP"}
	present := func() bool { return iptables(ctx, ns, append([]string{"-C", chain}, spec...)...) == nil }
	if on {
		if present() {
			return nil
		}
		if err := iptables(ctx, ns, append([]string{"-I", chain}, spec...)...); err != nil {
			return fmt.Errorf("adding %s rule in %s: %w", chain, ns, err)
		}
		return nil
	}
	for i := 0; present(); i++ {
		if i > 10 {
			return fmt.Errorf("removing %s rule in %s: still there", chain, ns)
		}
		if err := iptables(ctx, ns, append([]string{"-D", chain}, spec...)...); err != nil {
			return fmt.Errorf("removing %s rule in %s: %w", chain, ns, err)
		}
	}
	return nil
}
