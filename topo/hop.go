// Package topo owns the hop chain: it discovers, with netlink and across
// network namespaces, the interfaces an overlay packet crosses (container
// veth, bridge port, bridge, vxlan device, underlay NIC) and classifies them.
package topo

// Kind is the role of an interface on the overlay path.
type Kind string

const (
	KindContainer Kind = "container" // a container's end of a veth pair
	KindVeth      Kind = "veth"      // the host/sandbox end of a container veth
	KindBridge    Kind = "bridge"
	KindVXLAN     Kind = "vxlan"
	KindNIC       Kind = "nic" // the underlay interface towards the remote VTEPs
	KindOther     Kind = "other"
)

// NetNS names a network namespace.
type NetNS struct {
	Inode uint32 `json:"inode"`
	Name  string `json:"name,omitempty"` // e.g. "vxlab-n1" or Docker's "1-6ttr438f3y"
	Path  string `json:"-"`              // a bind mount or /proc/PID/ns/net that opens it
}

// Key identifies an interface across namespaces, as the BPF programs see it.
type Key struct {
	NetNS   uint32
	Ifindex uint32
}

// FDBEntry is one forwarding entry of a vxlan device.
type FDBEntry struct {
	MAC string `json:"mac"`
	Dst string `json:"dst"` // remote VTEP IP
}

// Neigh is one neighbour (ARP/NDP) entry.
type Neigh struct {
	IP    string `json:"ip"`
	MAC   string `json:"mac"`
	State string `json:"state,omitempty"` // e.g. "permanent", "reachable", "failed"
}

// Hop is one interface on the path.
type Hop struct {
	ID      int    `json:"id"`
	Ifname  string `json:"ifname"`
	Ifindex uint32 `json:"ifindex"`
	Kind    Kind   `json:"kind"`
	NetNS   NetNS  `json:"netns"`
	MTU     int    `json:"mtu"`
	Node    string `json:"node,omitempty"` // name of the node namespace this hop belongs to
	Master  string `json:"master,omitempty"`

	// NodeNetNS is the inode of the node namespace named by Node. For a
	// vxlan hop it is where the device's UDP socket lives, which differs
	// from NetNS in the Docker layout.
	NodeNetNS uint32   `json:"node_netns,omitempty"`
	LinkType  string   `json:"link_type,omitempty"` // netlink kind: veth, bridge, vxlan, device...
	MAC       string   `json:"mac,omitempty"`
	Addrs     []string `json:"addrs,omitempty"` // CIDRs on the interface

	// veth: where the other end is.
	PeerNetNS   uint32 `json:"peer_netns,omitempty"`
	PeerIfindex uint32 `json:"peer_ifindex,omitempty"`

	// vxlan only.
	VNI    *uint32    `json:"vni,omitempty"`
	Port   uint16     `json:"port,omitempty"`
	Local  string     `json:"local,omitempty"`
	Remote string     `json:"remote,omitempty"`
	FDB    []FDBEntry `json:"fdb,omitempty"`
	Neigh  []Neigh    `json:"neigh,omitempty"`

	// nic only: the remote VTEPs routed through it.
	Peers []string `json:"peers,omitempty"`

	// Blind is set by the tracer when a TC probe could not attach here.
	Blind bool `json:"blind,omitempty"`
	// Gone is set when the interface disappeared during the trace.
	Gone bool `json:"gone,omitempty"`
}

// Key returns the hop's BPF map key.
func (h *Hop) Key() Key { return Key{NetNS: h.NetNS.Inode, Ifindex: h.Ifindex} }

// Topology is the set of hops in scope.
type Topology struct {
	Hops  []Hop
	byKey map[Key]int
	// version counts Adds: only an Add moves Hops or re-points a key, so
	// a lookup cached at one version stays right until it changes.
	version uint64

	// nss is what Discover was given, for Refresh.
	nss []NetNS
}

// NewTopology indexes hops, assigning IDs in order.
func NewTopology(hops []Hop) *Topology {
	t := &Topology{Hops: hops, byKey: make(map[Key]int, len(hops))}
	for i := range t.Hops {
		t.Hops[i].ID = i
		t.byKey[t.Hops[i].Key()] = i
	}
	return t
}

// Lookup finds the hop of an interface, if it is known.
func (t *Topology) Lookup(netns, ifindex uint32) (*Hop, bool) {
	if t == nil {
		return nil, false
	}
	i, ok := t.byKey[Key{NetNS: netns, Ifindex: ifindex}]
	if !ok {
		return nil, false
	}
	return &t.Hops[i], true
}

// Add appends a hop found late (e.g. an interface first seen in an event)
// and returns it.
func (t *Topology) Add(h Hop) *Hop {
	if t.byKey == nil {
		t.byKey = make(map[Key]int)
	}
	h.ID = len(t.Hops)
	t.Hops = append(t.Hops, h)
	t.byKey[h.Key()] = h.ID
	t.version++
	return &t.Hops[h.ID]
}

// Version changes whenever a lookup's answer (or the hop it points to)
// may have moved. Read it under the same lock as Lookup.
func (t *Topology) Version() uint64 {
	if t == nil {
		return 0
	}
	return t.version
}

// ByName finds a hop by interface name inside one namespace; the correlator
// uses it to find a port's bridge from Hop.Master.
func (t *Topology) ByName(netns uint32, name string) (*Hop, bool) {
	if t == nil {
		return nil, false
	}
	for i := range t.Hops {
		if t.Hops[i].NetNS.Inode == netns && t.Hops[i].Ifname == name {
			return &t.Hops[i], true
		}
	}
	return nil, false
}
