package tracer

import (
	"encoding/binary"
	"net/netip"
)

// Parsed is what the BPF parser (bpf/parse.h) extracts from a frame. This Go
// mirror of it is the reference the prog.Run tests compare the kernel
// against, and what the fuzz targets exercise.
type Parsed struct {
	Inner   Tuple
	Outer   Tuple
	VNI     uint32
	TCPSeq  uint32
	IPID    uint16
	UDPCsum uint16
	Flags   uint8
}

// SnapLen is VX_SNAP_LEN: the parser sees only this many bytes.
const SnapLen = 256

const (
	etherTypeIPv4   = 0x0800
	etherTypeIPv6   = 0x86DD
	etherType8021Q  = 0x8100
	etherType8021AD = 0x88A8
	protoICMP       = 1
	protoTCP        = 6
	protoUDP        = 17
	protoICMPv6     = 58
)

type rawTuple struct {
	saddr, daddr [16]byte
	sport, dport uint16
	proto, fam   uint8
	l4           uint8
}

type rawParsed struct {
	inner, outer rawTuple
	vni, seq     uint32
	ipID, csum   uint16
	flags        uint8
}

// ParseFrame parses b as the BPF programs do. l2 says b starts with an
// Ethernet header; otherwise proto is its EtherType. ok is false when no IP
// header was found.
func ParseFrame(b []byte, l2 bool, proto uint16, vxlanPorts []uint16) (p Parsed, ok bool) {
	var r rawParsed
	if !parseFrame(b, l2, proto, vxlanPorts, &r) {
		return p, false
	}
	p = r.export()
	return p, true
}

func (r *rawParsed) export() Parsed {
	return Parsed{Inner: r.inner.export(), Outer: r.outer.export(), VNI: r.vni, TCPSeq: r.seq, IPID: r.ipID, UDPCsum: r.csum, Flags: r.flags}
}

func (t *rawTuple) export() Tuple {
	out := Tuple{Family: t.fam, Proto: t.proto, L4Info: t.l4, Sport: t.sport, Dport: t.dport}
	switch t.fam {
	case 4:
		out.Src = netip.AddrFrom4([4]byte(t.saddr[:4]))
		out.Dst = netip.AddrFrom4([4]byte(t.daddr[:4]))
	case 6:
		out.Src = netip.AddrFrom16(t.saddr)
		out.Dst = netip.AddrFrom16(t.daddr)
	}
	return out
}

func parseFrame(b []byte, l2 bool, proto uint16, ports []uint16, p *rawParsed) bool {
	if len(b) > SnapLen {
		b = b[:SnapLen]
	}
	off := 0
	if l2 {
		if off = parseEth(b, 0, &proto); off < 0 {
			return false
		}
	}
	l4 := parseIP(b, off, proto, &p.inner, &p.ipID)
	if l4 == -1 {
		return false
	}
	p.flags |= FlagParsed
	if l4 == -2 {
		p.flags |= FlagFragment
		return true
	}
	if !parseL4(b, l4, &p.inner, &p.seq, &p.csum) {
		p.flags |= FlagTruncated
		return true
	}
	if p.inner.proto != protoUDP || !isVXLANPort(ports, p.inner.dport) {
		return true
	}
	vx := l4 + 8
	if vx+8 > len(b) || b[vx]&0x08 == 0 {
		return true
	}
	var in rawParsed
	in.vni = binary.BigEndian.Uint32(b[vx+4:]) >> 8
	ioff := parseEth(b, vx+8, &proto)
	if ioff < 0 {
		return true
	}
	il4 := parseIP(b, ioff, proto, &in.inner, &in.ipID)
	if il4 == -1 {
		return true
	}
	in.flags = FlagParsed | FlagEncap
	if il4 == -2 {
		in.flags |= FlagFragment
	} else if !parseL4(b, il4, &in.inner, &in.seq, &in.csum) {
		in.flags |= FlagTruncated
	}
	in.outer = p.inner
	*p = in
	return true
}

func isVXLANPort(ports []uint16, port uint16) bool {
	for i, p := range ports {
		if i >= 4 {
			break
		}
		if p != 0 && p == port {
			return true
		}
	}
	return false
}

func parseEth(b []byte, off int, proto *uint16) int {
	if off+14 > len(b) {
		return -1
	}
	p := binary.BigEndian.Uint16(b[off+12:])
	off += 14
	for range 2 {
		if p != etherType8021Q && p != etherType8021AD {
			break
		}
		if off+4 > len(b) {
			return -1
		}
		p = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	}
	*proto = p
	return off
}

func parseIP(b []byte, off int, proto uint16, t *rawTuple, ipID *uint16) int {
	switch proto {
	case etherTypeIPv4:
		if off+20 > len(b) {
			return -1
		}
		ihl := int(b[off]&0x0f) * 4
		if b[off]>>4 != 4 || ihl < 20 {
			return -1
		}
		t.fam = 4
		t.proto = b[off+9]
		*ipID = binary.BigEndian.Uint16(b[off+4:])
		copy(t.saddr[:4], b[off+12:off+16])
		copy(t.daddr[:4], b[off+16:off+20])
		if binary.BigEndian.Uint16(b[off+6:])&0x1fff != 0 {
			return -2
		}
		return off + ihl
	case etherTypeIPv6:
		if off+40 > len(b) || b[off]>>4 != 6 {
			return -1
		}
		t.fam = 6
		t.proto = b[off+6]
		copy(t.saddr[:], b[off+8:off+24])
		copy(t.daddr[:], b[off+24:off+40])
		return off + 40
	}
	return -1
}

func parseL4(b []byte, off int, t *rawTuple, seq *uint32, csum *uint16) bool {
	switch t.proto {
	case protoTCP:
		if off+20 > len(b) {
			return false
		}
		t.sport = binary.BigEndian.Uint16(b[off:])
		t.dport = binary.BigEndian.Uint16(b[off+2:])
		*seq = binary.BigEndian.Uint32(b[off+4:])
		t.l4 = b[off+13]
	case protoUDP:
		if off+8 > len(b) {
			return false
		}
		t.sport = binary.BigEndian.Uint16(b[off:])
		t.dport = binary.BigEndian.Uint16(b[off+2:])
		*csum = binary.BigEndian.Uint16(b[off+6:])
	case protoICMP, protoICMPv6:
		if off+8 > len(b) {
			return false
		}
		t.l4 = b[off]
		t.sport = binary.BigEndian.Uint16(b[off+4:])
		t.dport = binary.BigEndian.Uint16(b[off+6:])
	}
	return true
}

// Fingerprint computes the packet identity exactly as bpf/parse.h does.
func Fingerprint(p *Parsed) uint64 {
	var k [56]byte
	putAddr := func(dst []byte, a netip.Addr, fam uint8) {
		switch fam {
		case 4:
			b := a.As4()
			copy(dst, b[:])
		case 6:
			b := a.As16()
			copy(dst, b[:])
		}
	}
	putAddr(k[0:16], p.Inner.Src, p.Inner.Family)
	putAddr(k[16:32], p.Inner.Dst, p.Inner.Family)
	le := binary.LittleEndian
	if p.Inner.Proto == protoTCP {
		le.PutUint32(k[32:], p.TCPSeq)
	}
	le.PutUint16(k[36:], p.IPID)
	le.PutUint16(k[38:], p.Inner.Sport)
	le.PutUint16(k[40:], p.Inner.Dport)
	if p.Inner.Proto == protoUDP && p.Inner.Family == 6 {
		le.PutUint16(k[42:], p.UDPCsum)
	}
	k[44] = p.Inner.Proto
	k[45] = p.Inner.Family
	if p.Inner.Proto == protoICMP || p.Inner.Proto == protoICMPv6 {
		k[46] = p.Inner.L4Info
	}
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(k); i += 8 {
		h ^= le.Uint64(k[i:])
		h *= 0x100000001b3
		h ^= h >> 29
	}
	return h ^ (h >> 32)
}
