package tracer

import (
	"encoding/binary"
	"net/netip"
)

// Frame builders for the parser tests: just enough of each header for the
// fields vxtrace reads; checksums are left zero.

func ethHdr(etherType uint16, vlans ...uint16) []byte {
	b := []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1}
	for _, v := range vlans {
		b = binary.BigEndian.AppendUint16(b, etherType8021Q)
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return binary.BigEndian.AppendUint16(b, etherType)
}

func ipv4Hdr(src, dst string, proto uint8, id uint16, frag uint16, payloadLen int) []byte {
	b := make([]byte, 20)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+payloadLen))
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = 64
	b[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	return b
}

func ipv6Hdr(src, dst string, next uint8, payloadLen int) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(payloadLen))
	b[6] = next
	b[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return b
}

func udpHdr(sport, dport uint16, payloadLen int, csum uint16) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+payloadLen))
	binary.BigEndian.PutUint16(b[6:], csum)
	return b
}

func tcpHdr(sport, dport uint16, seq uint32, flags uint8) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	b[12] = 5 << 4
	b[13] = flags
	return b
}

func icmpEcho(typ uint8, id, seq uint16) []byte {
	b := make([]byte, 8)
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	return b
}

func vxlanHdr(vni uint32) []byte {
	b := make([]byte, 8)
	b[0] = 0x08
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	return b
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// pingFrame is an ICMP echo request from src to dst.
func pingFrame(src, dst string, id, seq, ipID uint16) []byte {
	icmp := append(icmpEcho(8, id, seq), make([]byte, 56)...)
	return cat(ethHdr(etherTypeIPv4), ipv4Hdr(src, dst, protoICMP, ipID, 0, len(icmp)), icmp)
}

// vxlanWrap encapsulates an inner Ethernet frame between two VTEPs.
func vxlanWrap(inner []byte, vtepSrc, vtepDst string, dport uint16, vni uint32) []byte {
	udp := udpHdr(51000, dport, 8+len(inner), 0)
	return cat(ethHdr(etherTypeIPv4), ipv4Hdr(vtepSrc, vtepDst, protoUDP, 777, 0x4000, 8+8+len(inner)), udp, vxlanHdr(vni), inner)
}

// namedFrames is the crafted corpus shared by the parser, fingerprint and
// prog.Run tests, and seeds the fuzz targets.
func namedFrames() map[string][]byte {
	ping := pingFrame("10.0.1.3", "10.0.1.4", 0x1234, 7, 4242)
	tcp := cat(ethHdr(etherTypeIPv4), ipv4Hdr("10.0.1.3", "10.0.1.4", protoTCP, 99, 0x4000, 20), tcpHdr(40000, 8080, 123456789, 0x02))
	udp6Payload := make([]byte, 12)
	udp6 := cat(ethHdr(etherTypeIPv6), ipv6Hdr("fd00::3", "fd00::4", protoUDP, 8+len(udp6Payload)), udpHdr(5353, 53, len(udp6Payload), 0xbeef), udp6Payload)
	return map[string][]byte{
		"icmp":           ping,
		"tcp_syn":        tcp,
		"udp6":           udp6,
		"vlan_icmp":      cat(ethHdr(etherTypeIPv4, 100), ping[14:]),
		"qinq_icmp":      cat(ethHdr(etherTypeIPv4, 100, 200), ping[14:]),
		"vxlan_icmp":     vxlanWrap(ping, "10.99.1.2", "10.99.2.2", 4789, 4097),
		"vxlan_tcp":      vxlanWrap(tcp, "10.99.1.2", "10.99.2.2", 4789, 4097),
		"flannel_8472":   vxlanWrap(ping, "10.99.1.2", "10.99.2.2", 8472, 1),
		"vxlan_6in4":     vxlanWrap(udp6, "10.99.1.2", "10.99.2.2", 4789, 100),
		"vxlan_in_vxlan": vxlanWrap(vxlanWrap(ping, "172.16.0.1", "172.16.0.2", 4789, 5), "10.99.1.2", "10.99.2.2", 4789, 4097),
		"udp_4789_no_i":  cat(ethHdr(etherTypeIPv4), ipv4Hdr("10.99.1.2", "10.99.2.2", protoUDP, 1, 0, 16), udpHdr(1, 4789, 8, 0), make([]byte, 8)),
		"vxlan_trunc":    vxlanWrap(ping, "10.99.1.2", "10.99.2.2", 4789, 4097)[:50+14+20],
		"zero_len_udp":   cat(ethHdr(etherTypeIPv4), ipv4Hdr("10.0.1.3", "10.0.1.4", protoUDP, 5, 0, 0), udpHdr(1000, 2000, -8, 0)),
		"fragment":       cat(ethHdr(etherTypeIPv4), ipv4Hdr("10.0.1.3", "10.0.1.4", protoUDP, 6, 0x00b9, 8), make([]byte, 8)),
		"bad_ihl":        cat(ethHdr(etherTypeIPv4), func() []byte { h := ipv4Hdr("10.0.1.3", "10.0.1.4", protoTCP, 1, 0, 20); h[0] = 0x43; return h }(), tcpHdr(1, 2, 3, 4)),
		"ihl_60":         cat(ethHdr(etherTypeIPv4), func() []byte { h := ipv4Hdr("10.0.1.3", "10.0.1.4", protoUDP, 1, 0, 48); h[0] = 0x4f; return h }(), make([]byte, 40), udpHdr(7, 9, 0, 0)),
		"ipv6_ext":       cat(ethHdr(etherTypeIPv6), ipv6Hdr("fd00::3", "fd00::4", 0 /* hop-by-hop */, 8+8), []byte{17, 0, 0, 0, 0, 0, 0, 0}, udpHdr(1, 2, 0, 0)),
		"truncated_ip":   ping[:14+10],
		"arp":            cat(ethHdr(0x0806), make([]byte, 28)),
		"garbage":        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 0x08, 0x00, 0x99, 0x99},
		"jumbo_tcp":      append(cat(ethHdr(etherTypeIPv4), ipv4Hdr("10.0.1.3", "10.0.1.4", protoTCP, 1, 0x4000, 20+3000), tcpHdr(1, 2, 3, 0x10)), make([]byte, 3000)...),
	}
}
