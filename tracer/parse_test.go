package tracer

import (
	"testing"
)

var testPorts = DefaultVXLANPorts

func mustParse(t *testing.T, name string) Parsed {
	t.Helper()
	p, ok := ParseFrame(namedFrames()[name], true, 0, testPorts)
	if !ok {
		t.Fatalf("%s: not parsed", name)
	}
	return p
}

func TestParseFrames(t *testing.T) {
	ping := mustParse(t, "icmp")
	if ping.Inner.Src.String() != "10.0.1.3" || ping.Inner.Dst.String() != "10.0.1.4" ||
		ping.Inner.Proto != protoICMP || ping.Inner.Sport != 0x1234 || ping.Inner.Dport != 7 ||
		ping.Inner.L4Info != 8 || ping.IPID != 4242 || ping.Flags&FlagEncap != 0 {
		t.Fatalf("icmp: %+v", ping)
	}

	vx := mustParse(t, "vxlan_icmp")
	if vx.Flags&FlagEncap == 0 || vx.VNI != 4097 || vx.Outer.Src.String() != "10.99.1.2" ||
		vx.Outer.Dst.String() != "10.99.2.2" || vx.Outer.Dport != 4789 {
		t.Fatalf("vxlan outer: %+v", vx)
	}
	if vx.Inner != ping.Inner || vx.IPID != ping.IPID {
		t.Fatalf("vxlan inner %+v differs from the plain packet %+v", vx.Inner, ping.Inner)
	}

	if p := mustParse(t, "flannel_8472"); p.VNI != 1 || p.Flags&FlagEncap == 0 {
		t.Fatalf("flannel: %+v", p)
	}
	if p := mustParse(t, "vlan_icmp"); p.Inner != ping.Inner {
		t.Fatalf("vlan: %+v", p)
	}
	if p := mustParse(t, "qinq_icmp"); p.Inner != ping.Inner {
		t.Fatalf("qinq: %+v", p)
	}
	tcp := mustParse(t, "tcp_syn")
	if tcp.Inner.Dport != 8080 || tcp.TCPSeq != 123456789 || tcp.Inner.L4Info != 0x02 {
		t.Fatalf("tcp: %+v", tcp)
	}
	if p := mustParse(t, "vxlan_tcp"); p.Inner != tcp.Inner || p.TCPSeq != tcp.TCPSeq {
		t.Fatalf("vxlan tcp: %+v", p)
	}
	u6 := mustParse(t, "udp6")
	if u6.Inner.Family != 6 || u6.Inner.Src.String() != "fd00::3" || u6.UDPCsum != 0xbeef {
		t.Fatalf("udp6: %+v", u6)
	}
	if p := mustParse(t, "vxlan_6in4"); p.Inner != u6.Inner || p.Outer.Family != 4 || p.VNI != 100 {
		t.Fatalf("6in4: %+v", p)
	}

	// Only one level of VXLAN is decoded; the nested one is plain UDP to
	// 4789 as far as the outer VTEPs are concerned, so it must not be
	// attributed to the innermost addresses.
	if p := mustParse(t, "vxlan_in_vxlan"); p.VNI != 4097 || p.Inner.Src.String() != "172.16.0.1" || p.Inner.Dport != 4789 {
		t.Fatalf("vxlan in vxlan: %+v", p)
	}
	if p := mustParse(t, "udp_4789_no_i"); p.Flags&FlagEncap != 0 || p.Inner.Dport != 4789 {
		t.Fatalf("udp 4789 without the I flag was decoded as VXLAN: %+v", p)
	}
	// Cut inside the inner L4 header: addresses yes, ports no.
	if p := mustParse(t, "vxlan_trunc"); p.Flags&FlagTruncated == 0 || p.Flags&FlagEncap == 0 || p.Inner.Sport != 0 || p.Inner.Dst.String() != "10.0.1.4" {
		t.Fatalf("truncated VXLAN: %+v", p)
	}
	if p := mustParse(t, "fragment"); p.Flags&FlagFragment == 0 || p.Inner.Sport != 0 {
		t.Fatalf("fragment: %+v", p)
	}
	if p := mustParse(t, "zero_len_udp"); p.Inner.Sport != 1000 {
		t.Fatalf("zero-length udp: %+v", p)
	}
	if p := mustParse(t, "ihl_60"); p.Inner.Sport != 7 || p.Inner.Dport != 9 {
		t.Fatalf("ihl 60: %+v", p)
	}
	if p := mustParse(t, "ipv6_ext"); p.Inner.Proto != 0 || p.Inner.Sport != 0 {
		t.Fatalf("ipv6 extension header: %+v", p)
	}
	if p := mustParse(t, "jumbo_tcp"); p.Inner.Sport != 1 || p.Inner.Dport != 2 {
		t.Fatalf("jumbo: %+v", p)
	}
	for _, name := range []string{"bad_ihl", "truncated_ip", "arp", "garbage"} {
		if p, ok := ParseFrame(namedFrames()[name], true, 0, testPorts); ok {
			t.Errorf("%s parsed: %+v", name, p)
		}
	}
	// Without the port in the VXLAN set, a VXLAN packet is plain UDP.
	if p, _ := ParseFrame(namedFrames()["flannel_8472"], true, 0, []uint16{4789}); p.Flags&FlagEncap != 0 {
		t.Fatalf("8472 decoded as VXLAN with ports {4789}")
	}
	// L3 start, as the kfree_skb hook reads it.
	if p, ok := ParseFrame(namedFrames()["vxlan_icmp"][14:], false, etherTypeIPv4, testPorts); !ok || p.VNI != 4097 || p.Inner != ping.Inner {
		t.Fatalf("from L3: %+v", p)
	}
}

func TestFingerprint(t *testing.T) {
	fp := func(name string) uint64 { p := mustParse(t, name); return Fingerprint(&p) }
	if fp("icmp") != fp("vxlan_icmp") || fp("icmp") != fp("vlan_icmp") || fp("icmp") != fp("flannel_8472") {
		t.Fatal("a packet's fingerprint changes with encapsulation or VLAN tags")
	}
	if fp("tcp_syn") != fp("vxlan_tcp") {
		t.Fatal("TCP fingerprint changes with encapsulation")
	}
	if fp("icmp") == fp("tcp_syn") {
		t.Fatal("different packets share a fingerprint")
	}
	// The echo reply carries the request's id and seq: the ICMP type keeps
	// them apart even if the IP id were the same.
	req := pingFrame("10.0.1.3", "10.0.1.4", 1, 1, 9)
	rep := pingFrame("10.0.1.3", "10.0.1.4", 1, 1, 9)
	rep[14+20] = 0
	a, _ := ParseFrame(req, true, 0, testPorts)
	b, _ := ParseFrame(rep, true, 0, testPorts)
	if Fingerprint(&a) == Fingerprint(&b) {
		t.Fatal("echo request and reply share a fingerprint")
	}
	next := pingFrame("10.0.1.3", "10.0.1.4", 1, 2, 10)
	c, _ := ParseFrame(next, true, 0, testPorts)
	if Fingerprint(&a) == Fingerprint(&c) {
		t.Fatal("consecutive pings share a fingerprint")
	}
}

func FuzzParseFrame(f *testing.F) {
	for _, b := range namedFrames() {
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, l2 bool) {
		p, ok := ParseFrame(b, l2, etherTypeIPv4, testPorts)
		if !ok {
			return
		}
		if p.Flags&FlagParsed == 0 {
			t.Fatal("parsed without the parsed flag")
		}
		if p.Inner.Family != 4 && p.Inner.Family != 6 {
			t.Fatalf("family %d", p.Inner.Family)
		}
		if p.Flags&FlagEncap != 0 {
			if p.Outer.Proto != protoUDP || p.VNI >= 1<<24 {
				t.Fatalf("encapsulated without a UDP outer header: %+v", p)
			}
		} else if p.Outer.Family != 0 {
			t.Fatalf("outer set without encapsulation: %+v", p)
		}
		_ = Fingerprint(&p)
		// Only the first SnapLen bytes may influence the result.
		if len(b) > SnapLen {
			q, _ := ParseFrame(b[:SnapLen], l2, etherTypeIPv4, testPorts)
			if q != p {
				t.Fatalf("bytes past the snap length changed the result")
			}
		}
	})
}
