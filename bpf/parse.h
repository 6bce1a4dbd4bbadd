/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Header parser shared by the tracepoint and TC programs. It works on a copy
 * of the first VX_SNAP_LEN bytes of a frame, so it never depends on the
 * skb's inner_* offsets and behaves the same on the outer packet before decap
 * and after encap. tracer/parse.go mirrors it in Go; the prog.Run tests check
 * that both agree. */
#ifndef VXTRACE_PARSE_H
#define VXTRACE_PARSE_H

#include "vxtrace.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_ICMPV6_ 58
#define VXLAN_HLEN 8

/* The scratch buffer is larger than the snapshot so that every bounded read
 * below (offset < VX_SNAP_LEN, width <= 64) stays inside it; the verifier
 * proves that without per-byte checks. */
#define VX_BUF_LEN (VX_SNAP_LEN + 64)
#define OFF(x) ((x) & (VX_SNAP_LEN - 1)) /* VX_SNAP_LEN is a power of two */

struct vx_parsed {
	struct vx_tuple inner;
	struct vx_tuple outer;
	__u32 vni;
	__u32 tcp_seq;
	__u16 ip_id;
	__u16 udp_csum;
	__u8 flags;
};

static __always_inline __u16 rd16(const __u8 *b, __u32 off)
{
	off = OFF(off);
	return ((__u16)b[off] << 8) | b[off + 1];
}

static __always_inline __u32 rd32(const __u8 *b, __u32 off)
{
	off = OFF(off);
	return ((__u32)b[off] << 24) | ((__u32)b[off + 1] << 16) |
	       ((__u32)b[off + 2] << 8) | b[off + 3];
}

/* Copies an address: 4 bytes (the rest of dst is already zero) or 16. */
static __always_inline void cp_addr(__u8 *dst, const __u8 *b, __u32 off, int n)
{
	off = OFF(off);
	if (n == 4)
		__builtin_memcpy(dst, b + off, 4);
	else
		__builtin_memcpy(dst, b + off, 16);
}

/* Skips Ethernet and up to two VLAN tags. Returns the L3 offset or -1. */
static __always_inline int parse_eth(const __u8 *b, __u32 len, __u32 off,
				     __u16 *proto)
{
	if (off + ETH_HLEN > len)
		return -1;
	__u16 p = rd16(b, off + 12);
	off += ETH_HLEN;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (p != ETH_P_8021Q && p != ETH_P_8021AD)
			break;
		if (off + 4 > len)
			return -1;
		p = rd16(b, off + 2);
		off += 4;
	}
	*proto = p;
	return off;
}

/* Parses an IP header at off. Fills addresses and protocol and returns the
 * L4 offset, or -1 when the header is not there. A non-first IPv4 fragment
 * returns -2: it has no L4 header to read. */
static __always_inline int parse_ip(const __u8 *b, __u32 len, __u32 off,
				    __u16 proto, struct vx_tuple *t,
				    __u16 *ip_id)
{
	if (proto == ETH_P_IP) {
		if (off + 20 > len)
			return -1;
		__u8 vihl = b[OFF(off)];
		__u32 ihl = (vihl & 0x0f) * 4;
		if ((vihl >> 4) != 4 || ihl < 20)
			return -1;
		t->family = 4;
		t->proto = b[OFF(off + 9)];
		*ip_id = rd16(b, off + 4);
		cp_addr(t->saddr, b, off + 12, 4);
		cp_addr(t->daddr, b, off + 16, 4);
		__u16 frag = rd16(b, off + 6);
		if (frag & 0x1fff)
			return -2;
		return off + ihl;
	}
	if (proto == ETH_P_IPV6) {
		if (off + 40 > len)
			return -1;
		if ((b[OFF(off)] >> 4) != 6)
			return -1;
		t->family = 6;
		t->proto = b[OFF(off + 6)];
		cp_addr(t->saddr, b, off + 8, 16);
		cp_addr(t->daddr, b, off + 24, 16);
		/* Extension headers are not walked: the next header is
		 * reported as the protocol and no ports are read. */
		return off + 40;
	}
	return -1;
}

/* Fills ports (or ICMP id/seq) and returns 0, or -1 if truncated. */
static __always_inline int parse_l4(const __u8 *b, __u32 len, __u32 off,
				    struct vx_tuple *t, __u32 *tcp_seq,
				    __u16 *udp_csum)
{
	switch (t->proto) {
	case IPPROTO_TCP_:
		if (off + 20 > len)
			return -1;
		t->sport = rd16(b, off);
		t->dport = rd16(b, off + 2);
		if (tcp_seq)
			*tcp_seq = rd32(b, off + 4);
		t->l4_info = b[OFF(off + 13)];
		return 0;
	case IPPROTO_UDP_:
		if (off + 8 > len)
			return -1;
		t->sport = rd16(b, off);
		t->dport = rd16(b, off + 2);
		if (udp_csum)
			*udp_csum = rd16(b, off + 6);
		return 0;
	case IPPROTO_ICMP_:
	case IPPROTO_ICMPV6_:
		if (off + 8 > len)
			return -1;
		t->l4_info = b[OFF(off)];
		t->sport = rd16(b, off + 4);
		t->dport = rd16(b, off + 6);
		return 0;
	}
	return 0;
}

static __always_inline int is_vxlan_port(const volatile struct vx_config *c, __u16 port)
{
#pragma unroll
	for (int i = 0; i < VX_MAX_VXLAN_PORTS; i++)
		if (c->vxlan_ports[i] && c->vxlan_ports[i] == port)
			return 1;
	return 0;
}

/* Parses a frame. l2 says whether it starts with an Ethernet header; if not,
 * proto is its L3 protocol (host order). Returns 0 when at least an IP header
 * was found. On a VXLAN packet the outer headers go to p->outer and the
 * encapsulated packet to p->inner. */
static __always_inline int parse_frame(const volatile struct vx_config *c, const __u8 *b,
				       __u32 len, int l2, __u16 proto,
				       struct vx_parsed *p, struct vx_parsed *in)
{
	int off = 0;
	__u16 ip_id = 0;

	if (l2) {
		off = parse_eth(b, len, 0, &proto);
		if (off < 0)
			return -1;
	}
	int l4 = parse_ip(b, len, off, proto, &p->inner, &ip_id);
	if (l4 == -1)
		return -1;
	p->flags |= VX_F_PARSED;
	p->ip_id = ip_id;
	if (l4 == -2) {
		p->flags |= VX_F_FRAGMENT;
		return 0;
	}
	if (parse_l4(b, len, l4, &p->inner, &p->tcp_seq, &p->udp_csum) < 0) {
		p->flags |= VX_F_TRUNCATED;
		return 0;
	}
	if (p->inner.proto != IPPROTO_UDP_ || !is_vxlan_port(c, p->inner.dport))
		return 0;

	/* VXLAN: the I flag must be set, else it is just UDP to that port. */
	__u32 vx = l4 + 8;
	if (vx + VXLAN_HLEN > len || !(b[OFF(vx)] & 0x08))
		return 0;
	__builtin_memset(in, 0, sizeof(*in));
	in->vni = rd32(b, vx + 4) >> 8;
	int ioff = parse_eth(b, len, vx + VXLAN_HLEN, &proto);
	if (ioff < 0)
		return 0;
	int il4 = parse_ip(b, len, ioff, proto, &in->inner, &in->ip_id);
	if (il4 == -1)
		return 0;
	in->flags = VX_F_PARSED | VX_F_ENCAP;
	if (il4 == -2)
		in->flags |= VX_F_FRAGMENT;
	else if (parse_l4(b, len, il4, &in->inner, &in->tcp_seq, &in->udp_csum) < 0)
		in->flags |= VX_F_TRUNCATED;
	in->outer = p->inner;
	*p = *in;
	return 0;
}

static __always_inline int cidr_match(const volatile struct vx_cidr *c,
				      const __u8 *a, __u8 family)
{
	if (!c->family)
		return 1;
	if (c->family != family)
		return 0;
	__u32 w[4];
	__builtin_memcpy(w, a, 16);
	if ((w[0] & c->mask[0]) != c->addr[0])
		return 0;
	if (family == 4)
		return 1;
	return (w[1] & c->mask[1]) == c->addr[1] &&
	       (w[2] & c->mask[2]) == c->addr[2] &&
	       (w[3] & c->mask[3]) == c->addr[3];
}

static __always_inline int filter_match(const volatile struct vx_config *c,
					const struct vx_parsed *p)
{
	if (!(p->flags & VX_F_PARSED))
		return 0;
	if (!cidr_match(&c->src, p->inner.saddr, p->inner.family) ||
	    !cidr_match(&c->dst, p->inner.daddr, p->inner.family))
		return 0;
	if (c->outer_src.family || c->outer_dst.family) {
		if (!(p->flags & VX_F_ENCAP))
			return 0;
		if (!cidr_match(&c->outer_src, p->outer.saddr, p->outer.family) ||
		    !cidr_match(&c->outer_dst, p->outer.daddr, p->outer.family))
			return 0;
	}
	if (c->proto && p->inner.proto != c->proto)
		return 0;
	if (c->port) {
		if (p->inner.proto != IPPROTO_TCP_ && p->inner.proto != IPPROTO_UDP_)
			return 0;
		if (p->inner.sport != c->port && p->inner.dport != c->port)
			return 0;
	}
	if (c->has_vni && (!(p->flags & VX_F_ENCAP) || p->vni != c->vni))
		return 0;
	return 1;
}

/* The fingerprint hashes only fields that stay the same along the path and
 * between nodes, so two nodes' traces of one packet share an id. tracer's
 * Go Fingerprint must compute the same value. */
struct vx_fp_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 seq; /* TCP sequence number */
	__u16 ip_id;
	__u16 sport;
	__u16 dport;
	__u16 csum; /* UDP over IPv6 has no IP id: its checksum stands in */
	__u8 proto;
	__u8 family;
	__u8 l4; /* ICMP type: an echo reply shares id and seq with its request */
	__u8 pad[9];
};

static __always_inline __u64 fp_mix(__u64 h, __u64 w)
{
	h ^= w;
	h *= 0x100000001b3ULL;
	h ^= h >> 29;
	return h;
}

/* Which fields name a packet besides its addresses, ports, IP id,
 * protocol and family: the one place that says so, for the fingerprint and
 * its check (same_packet). */
static __always_inline int fp_has_seq(const struct vx_parsed *p)
{
	return p->inner.proto == IPPROTO_TCP_;
}

static __always_inline int fp_has_l4(const struct vx_parsed *p)
{
	return p->inner.proto == IPPROTO_ICMP_ || p->inner.proto == IPPROTO_ICMPV6_;
}

static __always_inline int fp_has_csum(const struct vx_parsed *p)
{
	return p->inner.proto == IPPROTO_UDP_ && p->inner.family == 6;
}

static __always_inline __u64 fingerprint(const struct vx_parsed *p,
					 struct vx_fp_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->saddr, p->inner.saddr, 16);
	__builtin_memcpy(k->daddr, p->inner.daddr, 16);
	k->proto = p->inner.proto;
	k->family = p->inner.family;
	k->ip_id = p->ip_id;
	k->sport = p->inner.sport;
	k->dport = p->inner.dport;
	if (fp_has_seq(p))
		k->seq = p->tcp_seq;
	if (fp_has_l4(p))
		k->l4 = p->inner.l4_info;
	if (fp_has_csum(p))
		k->csum = p->udp_csum;

	const __u64 *w = (const __u64 *)k;
	__u64 h = 0xcbf29ce484222325ULL;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(*k) / 8); i++)
		h = fp_mix(h, w[i]);
	return h ^ (h >> 32);
}

static __always_inline __u32 rol32(__u32 w, int n)
{
	return (w << n) | (w >> (32 - n));
}

/* Whether a packet found at a tracked skb's address is still the one
 * followed, told without the fingerprint: the same fields, folded with
 * rotates and xors where the fingerprint chains seven multiplies (a tenth
 * of a traced TC run, in a profile). Read from p, not from a key written
 * for it: wide loads of a key just written field by field stall (~100 ns
 * a traced packet, in a profile). A 32-bit fold matches another packet only
 * by a 1 in 2^32 chance. Never 0: an entry's 0 matches no packet. */
static __always_inline __u32 same_packet(const struct vx_parsed *p)
{
	const __u32 *s = (const __u32 *)p->inner.saddr;
	const __u32 *d = (const __u32 *)p->inner.daddr;
	__u32 h = (s[0] ^ s[1]) ^ (s[2] ^ s[3]);
	/* Rotated, so that a reply (addresses and ports swapped) differs. */
	h = rol32(h, 11) ^ (d[0] ^ d[1]) ^ (d[2] ^ d[3]);
	h = rol32(h, 11) ^ ((__u32)p->inner.sport << 16 | p->inner.dport);
	h ^= (__u32)p->ip_id << 16 | (__u32)p->inner.proto << 8 | p->inner.family;
	if (fp_has_seq(p))
		h = rol32(h, 11) ^ p->tcp_seq;
	if (fp_has_l4(p))
		h ^= (__u32)p->inner.l4_info << 24;
	if (fp_has_csum(p))
		h = rol32(h, 11) ^ p->udp_csum;
	return h | 1;
}

#endif
