package topo

import (
	"bytes"
	"strings"
	"testing"
)

// A hand-built topology: path logic and rendering need no kernel.
func testTopology() *Topology {
	vni := uint32(4097)
	c := NetNS{Inode: 30, Name: "c1"}
	sb := NetNS{Inode: 20, Name: "1-6ttr438f3y"}
	node := NetNS{Inode: 10, Name: "n1"}
	return NewTopology([]Hop{
		{Ifname: "eth0", Ifindex: 2, Kind: KindNIC, NetNS: node, MTU: 1400, Peers: []string{"10.99.2.2"}, NodeNetNS: 10},
		{Ifname: "eth0", Ifindex: 46, Kind: KindContainer, NetNS: c, MTU: 1450, PeerNetNS: 20, PeerIfindex: 47, NodeNetNS: 10, Node: "n1"},
		{Ifname: "br0", Ifindex: 2, Kind: KindBridge, NetNS: sb, MTU: 1450, NodeNetNS: 10, Node: "n1"},
		{Ifname: "vxlan0", Ifindex: 43, Kind: KindVXLAN, NetNS: sb, MTU: 1450, Master: "br0", VNI: &vni, Port: 4789,
			NodeNetNS: 10, Node: "n1",
			FDB:   []FDBEntry{{MAC: "02:42:0a:00:02:05", Dst: "10.99.2.2"}, {MAC: "02:42:0a:00:02:06", Dst: "10.99.3.2"}},
			Neigh: []Neigh{{IP: "10.0.2.5", MAC: "02:42:0a:00:02:05", State: "permanent"}, {IP: "10.0.2.6", MAC: "02:42:0a:00:02:06"}}},
		{Ifname: "veth1", Ifindex: 47, Kind: KindVeth, NetNS: sb, MTU: 1450, Master: "br0", PeerNetNS: 30, PeerIfindex: 46, NodeNetNS: 10, Node: "n1"},
		{Ifname: "eth0", Ifindex: 3, Kind: KindNIC, NetNS: NetNS{Inode: 99, Name: "other-node"}, MTU: 1500, Peers: []string{"10.99.2.2"}},
	})
}

func TestPathFromHandBuilt(t *testing.T) {
	topo := testTopology()
	var got []string
	for _, h := range topo.PathFrom(30) {
		got = append(got, h.NetNS.Name+"/"+h.Ifname)
	}
	want := "c1/eth0 1-6ttr438f3y/veth1 1-6ttr438f3y/br0 1-6ttr438f3y/vxlan0 n1/eth0"
	if strings.Join(got, " ") != want {
		t.Errorf("path %v, want %s", got, want)
	}
	if p := topo.PathFrom(12345); p != nil {
		t.Errorf("unknown netns gave %v", p)
	}
}

func TestFormatTo(t *testing.T) {
	topo := testTopology()
	path := topo.PathFrom(30)
	var b bytes.Buffer
	if err := topo.FormatTo(&b, path, []byte{10, 0, 2, 5}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("\n%s", out)
	for _, want := range []string{
		"netns 1-6ttr438f3y [20]  (node n1)",
		"neigh 10.0.2.5 → 02:42:0a:00:02:05 permanent",
		"fdb   02:42:0a:00:02:05 → 10.99.2.2",
		"udp socket in node n1 [10]",
		"! mtu 1400 is below 1500",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "10.99.3.2") || strings.Contains(out, "10.0.2.6") {
		t.Error("entries for other destinations shown")
	}
	if strings.Count(out, "veth peer") != 1 {
		t.Error("the veth peer should be printed once, on the container hop")
	}

	b.Reset()
	topo.Hops[3].FDB = topo.Hops[3].FDB[1:]
	topo.FormatTo(&b, path, []byte{10, 0, 2, 5})
	if !strings.Contains(b.String(), "fdb   none for 02:42:0a:00:02:05") {
		t.Errorf("a missing fdb entry is not reported:\n%s", b.String())
	}
}
