package tracer

import (
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
		if !p.pfx.IsValid() {
			continue
		}
		pfx := p.pfx.Masked()
		a := pfx.Addr()
		if a.Is4In6() {
			a = a.Unmap()
			pfx = netip.PrefixFrom(a, pfx.Bits()-96)
		}
		if a.Is4() {
			p.dst.Family = 4
			b := a.As4()
			copy(p.dst.Addr[:], b[:])
		} else {
			p.dst.Family = 6
			p.dst.Addr = a.As16()
		}
		p.dst.Prefixlen = uint8(pfx.Bits())
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
	kc.TrackTtlNs = uint64(c.TrackTTL.Nanoseconds())
	kc.WakeupBytes = c.WakeupBytes
	return kc, nil
}

// vxtraceVxCidrLike has the layout of the anonymous struct vx_cidr fields
// that bpf2go generates inside vxtraceVxConfig.
type vxtraceVxCidrLike struct {
	_         structs.HostLayout
	Addr      [16]uint8
	Prefixlen uint8
	Family    uint8
	Pad       [2]uint8
}
