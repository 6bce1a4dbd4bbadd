package tracer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"structs"
)

// kernelConfig turns the Go config into the BPF program's constant.
func (c *Config) kernelConfig() (vxtraceVxConfig, error) {
	var kc vxtraceVxConfig
	for _, p := range []struct {
		pfx netip.Prefix
		dst *vxtraceVxCidrLike
	}{
		{c.Src, (*vxtraceVxCidrLike)(&kc.Src)},
		{c.Dst, (*vxtraceVxCidrLike)(&kc.Dst)},
		{c.OuterSrc, (*vxtraceVxCidrLike)(&kc.OuterSrc)},
		{c.OuterDst, (*vxtraceVxCidrLike)(&kc.OuterDst)},
	} {
		if p.pfx.IsValid() {
			p.dst.set(p.pfx)
		}
	}
	kc.Proto = c.Proto
	kc.Port = c.Port
	if c.VNI != nil {
		if *c.VNI >= 1<<24 {
			return kc, fmt.Errorf("VNI %d does not fit in 24 bits", *c.VNI)
		}
		kc.HasVni = 1
		kc.Vni = *c.VNI
	}
	copy(kc.VxlanPorts[:], c.VXLANPorts)
	if len(c.NetNS) > 0 {
		kc.FilterNetns = 1
	}
	if c.TCEvents {
		kc.TcEvents = 1
	}
	if c.tcPrimary() {
		kc.TcEvents = 1
		kc.TcPrimary = 1
	}
	kc.TrackTtlNs = uint64(c.TrackTTL.Nanoseconds())
	kc.HeadersAfterNs = uint64(c.HeadersAfter.Nanoseconds())
	kc.WakeupBytes = c.WakeupBytes
	return kc, nil
}

// tcPrimary: TC programs find the packets and the tracepoints only follow
// them, which spares every untraced packet a parse at each device. It needs
// both kinds of program.
func (c *Config) tcPrimary() bool {
	return !c.NoTC && !c.NoTracepoints && !c.TracepointsFind
}

// vxtraceVxCidrLike has the layout of the anonymous struct vx_cidr fields
// that bpf2go generates inside vxtraceVxConfig.
type vxtraceVxCidrLike struct {
	_      structs.HostLayout
	Addr   [4]uint32
	Mask   [4]uint32
	Family uint8
	Pad    [3]uint8
}

// set stores a prefix as the BPF program compares it: address and mask as
// network-order words, the address already masked.
func (c *vxtraceVxCidrLike) set(pfx netip.Prefix) {
	pfx = pfx.Masked()
	a := pfx.Addr()
	bits := pfx.Bits()
	var b [16]byte
	n := 16
	if a.Is4In6() {
		a = a.Unmap()
		bits -= 96
	}
	if a.Is4() {
		c.Family = 4
		v := a.As4()
		copy(b[:], v[:])
		n = 4
	} else {
		c.Family = 6
		b = a.As16()
	}
	var mask [16]byte
	for i := 0; i < n && bits > 0; i++ {
		m := min(bits, 8)
		mask[i] = byte(0xff << (8 - m))
		bits -= m
	}
	for i := range 4 {
		// The program reads the packet's bytes as native-endian words;
		// building the words the same way from the same bytes keeps
		// the comparison byte-for-byte.
		c.Addr[i] = binary.NativeEndian.Uint32(b[4*i:]) & binary.NativeEndian.Uint32(mask[4*i:])
		c.Mask[i] = binary.NativeEndian.Uint32(mask[4*i:])
	}
}
