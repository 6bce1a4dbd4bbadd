/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The kernel/user ABI of vxtrace. Go types are generated from this file by
 * bpf2go (-type ...); tracer/layout_test.go fails if their layout drifts. */
#ifndef VXTRACE_H
#define VXTRACE_H

#define VX_MAX_VXLAN_PORTS 4
/* Bytes of headers copied out of a packet for parsing. Outer Ethernet + VLAN +
 * IPv6 + UDP + VXLAN + inner Ethernet + IPv6 + TCP fit in 152 bytes; a power
 * of two lets the parser bound offsets with a mask. */
#define VX_SNAP_LEN 256

enum vx_hook {
	VX_HOOK_RX = 1,		/* tracepoint netif_receive_skb: a device received it */
	VX_HOOK_TX = 2,		/* tracepoint net_dev_start_xmit: a device sends it */
	VX_HOOK_DROP = 3,	/* tracepoint kfree_skb: the kernel dropped it */
	VX_HOOK_CONSUME = 4,	/* tracepoint consume_skb: freed after normal use */
	VX_HOOK_TC_INGRESS = 5, /* TC ingress on a hop interface */
	VX_HOOK_TC_EGRESS = 6,	/* TC egress on a hop interface */
	VX_HOOK_BR_FORWARD = 7, /* optional fentry/kprobe on br_forward */
	/* tracepoint neigh_event_send_done: parked until the next hop's
	 * link-layer address resolves (location: its IPv4 address) */
	VX_HOOK_NEIGH = 8,
};

enum vx_event_flags {
	VX_F_ENCAP = 1 << 0,	 /* VXLAN outer headers present at this hop */
	VX_F_PARSED = 1 << 1,	 /* headers were parsed at this hop */
	VX_F_NEW = 1 << 2,	 /* first sighting of this skb by the tracer */
	VX_F_TRUNCATED = 1 << 3, /* headers ended before the L4 header */
	VX_F_FRAGMENT = 1 << 4,	 /* inner IPv4 fragment: no L4 header */
	VX_F_TC = 1 << 5,	 /* seen by a TC program on a hop interface */
	/* The record goes on past the head with the inner and outer tuples:
	 * a ring record holds a sequence of events (a CPU's batch), each
	 * sized by this flag. */
	VX_F_HEADERS = 1 << 6,
};

/* Index of struct vx_stats counters in the per-CPU "stats" array. */
enum vx_stat {
	VX_STAT_EVENTS = 0,	 /* events written to the ring */
	VX_STAT_LOST = 1,	 /* ring reserve failures: events lost in the kernel */
	VX_STAT_TRACK_FULL = 2,	 /* tracked-skb map insert failures */
	VX_STAT_STALE = 3,	 /* tracked entries found reused by another packet */
	VX_STAT_MAX = 4,
};

/* Index of the u64 values in the "state" array. */
enum vx_state {
	VX_STATE_READER_ASLEEP = 0, /* set by user space: wake it for every event */
	VX_STATE_BATCH = 1,	    /* set by user space: it flushes the batches (vx_batch) */
	VX_STATE_MAX = 2,
};

struct vx_tuple {
	__u8 saddr[16]; /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u16 sport; /* TCP/UDP port; ICMP echo: identifier */
	__u16 dport; /* TCP/UDP port; ICMP echo: sequence */
	__u8 proto;
	__u8 family;  /* 4, 6, or 0 when no IP header was parsed */
	__u8 l4_info; /* TCP flags, or ICMP type */
	__u8 pad;
};

/* An event's record is the whole struct when it carries the packet's
 * headers, and only its head (up to inner: one 64-byte line with the ring's
 * header) when user space has them already: see VX_SENT_*. */
struct vx_event {
	__u64 ts;	/* bpf_ktime_get_ns */
	__u64 skb;	/* kernel address: correlates one node's events only */
	__u64 fp;	/* packet fingerprint, the same on every node */
	__u64 location; /* drops: kernel address that freed the skb;
			 * VX_HOOK_NEIGH: the IPv4 next hop (network order), 0 for IPv6 */
	__u32 netns;	/* network namespace inode of the device */
	__u32 ifindex;
	__u32 len; /* skb->len at this hop */
	__u32 reason;
	__u32 vni; /* valid with VX_F_ENCAP */
	__u16 ip_id;
	__u8 hook;
	__u8 flags;
	struct vx_tuple inner; /* the overlay packet (or the only one) */
	struct vx_tuple outer; /* the VTEP headers, with VX_F_ENCAP */
};

#define VX_EVENT_HEAD_LEN __builtin_offsetof(struct vx_event, inner)

/* Records wait in their CPU's batch and reach the ring together, as many
 * as fit in VX_BATCH_BYTES (a head is VX_EVENT_HEAD_LEN bytes, a whole
 * event sizeof(struct vx_event), told apart by VX_F_HEADERS): a
 * reservation takes the ring's lock with interrupts off, and in this kind
 * of guest turning them back on is dear. A batch goes to the ring when it
 * is full, before a drop of its CPU (a drop is news now, and each CPU's
 * records stay in order), and when user space flushes it: it runs
 * flush_batch on a CPU whose batch waits, at least every few ms. busy: a
 * program on this CPU is using the batch; one that interrupts it (an
 * interrupt nests, it does not interleave) writes to the ring directly.
 * One value per possible CPU in an mmapable array, so that user space sees
 * which CPUs wait without a system call. */
#define VX_BATCH_SIZE 2048
#define VX_BATCH_BYTES (VX_BATCH_SIZE - 8)

struct vx_batch {
	__u32 len; /* bytes of ev in use */
	__u16 n;   /* events in ev */
	__u16 busy;
	__u8 ev[VX_BATCH_BYTES];
};

/* addr and mask are in network byte order, as four 32-bit words (IPv4 uses
 * the first); user space masks addr, so a match is (a & mask) == addr. */
struct vx_cidr {
	__u32 addr[4];
	__u32 mask[4];
	__u8 family; /* 0: any address */
	__u8 pad[3];
};

struct vx_config {
	struct vx_cidr src;	  /* inner (or only) source */
	struct vx_cidr dst;	  /* inner (or only) destination */
	struct vx_cidr outer_src; /* VTEP source, encapsulated packets only */
	struct vx_cidr outer_dst;
	__u64 track_ttl_ns;	  /* a tracked skb unseen this long is forgotten */
	/* A tracked skb's event after a silence this long carries its
	 * headers again: user space may have ended its journey. */
	__u64 headers_after_ns;
	__u32 vni;
	__u32 wakeup_bytes; /* wake the reader once this much is queued */
	__u16 vxlan_ports[VX_MAX_VXLAN_PORTS];
	__u16 port; /* inner sport or dport; 0: any */
	__u8 proto; /* inner L4 protocol; 0: any */
	__u8 has_vni;
	__u8 filter_netns; /* only namespaces in the netns_filter map */
	__u8 tc_events;	   /* TC programs emit events, not only counts */
	/* TC programs on the hop interfaces find the packets (as rx/tx events);
	 * the rx/tx tracepoints only follow packets already tracked, across
	 * devices that have no TC program. */
	__u8 tc_primary;
	__u8 pad;
};

struct vx_hop_key {
	__u32 netns;
	__u32 ifindex;
};

/* Per-hop counters. The rx/tx/drop fields count packets that match the
 * filter (from the tracepoints); the tc_* fields count every packet that
 * crossed a TC hook, matching or not. */
struct vx_hop_stats {
	__u64 rx;
	__u64 tx;
	__u64 drops;
	__u64 bytes;
	__u64 tc_in;
	__u64 tc_out;
	__u64 tc_overlay; /* VXLAN-encapsulated packets seen by TC */
	__u64 tc_bytes;
};

/* Per-hop counters also live in a per-CPU array, in the slot that
 * vx_hop_slot_idx gives the hop: an array lookup is inlined, a hash lookup
 * costs about as much as the rest of a TC program. User space writes the
 * key of each hop it attaches into its slot (one hop per slot; a hop whose
 * slot is taken counts in the hash map). tracer.hopSlot mirrors the index. */
#define VX_HOP_SLOTS_BITS 10
#define VX_HOP_SLOTS (1 << VX_HOP_SLOTS_BITS)

struct vx_hop_slot {
	struct vx_hop_key key;
	struct vx_hop_stats st;
};

static inline __u32 vx_hop_slot_idx(__u32 netns, __u32 ifindex)
{
	__u32 h = (netns * 0x9E3779B1u) ^ (ifindex * 0x85EBCA77u);
	return h >> (32 - VX_HOP_SLOTS_BITS);
}

/* TC counters: one 64-byte line per (CPU, device), in an mmapable array
 * (page-aligned, so every slot is one cache line) indexed
 * cpu << VX_TC_SLOTS_BITS | vx_tc_slot_idx(device address). The device's
 * address is a value the program already holds, so a hop counted here costs
 * no read of its namespace and no pointer table (the per-CPU array's).
 * The kernel claims an empty slot on first sight; a device whose slot is
 * held by another counts in hop_slots/hop_stats. Slot 0 of each CPU is the
 * program's scratch line (see addr_num and cpu_line). User space sums the slots by
 * (netns, ifindex) and frees those of hops that went away. */
#define VX_TC_SLOTS_BITS 10
#define VX_TC_SLOTS (1 << VX_TC_SLOTS_BITS)
#define VX_MAX_CPUS 8192 /* bounds the loop over the CPUs' lines */

struct vx_tc_slot {
	/* The device's address; bit 0 (net_devices are aligned): TC sees
	 * its frames from the MAC header (see on_tc_events). */
	__u64 dev;
	__u32 netns;
	__u32 ifindex;
	__u64 in; /* every packet, as in vx_hop_stats */
	__u64 out;
	__u64 overlay;
	__u64 bytes;
	__u64 rx; /* packets the filter wanted; their bytes are not counted */
	__u64 tx;
};

static inline __u32 vx_tc_slot_idx(__u64 dev)
{
	/* net_devices are cache-line aligned: the low bits say nothing. */
	__u32 h = (__u32)(((dev >> 6) * 0x9E3779B97F4A7C15ull) >> (64 - VX_TC_SLOTS_BITS));
	return h ? h : 1;
}

struct vx_drop_key {
	__u32 netns;
	__u32 ifindex;
	__u32 reason;
	__u32 pad;
};

/* vx_track.sent: which headers a whole record of this packet carried. */
enum vx_sent {
	VX_SENT_INNER = 1 << 0,
	VX_SENT_OUTER = 1 << 1, /* the VTEP headers */
};

struct vx_track {
	__u64 fp;
	__u64 ts;
	__u64 dev;   /* struct net_device * of the last hop: compared, never read */
	__u32 netns; /* last hop that saw it */
	__u32 ifindex;
	__u32 sent; /* enum vx_sent */
	__u32 chk;  /* same_packet's check of the packet's headers; never 0 */
};

/* The tracked skbs: a set-associative table in an array, so that a lookup
 * is an inlined array access and a compare of one line of keys, and an
 * insert or a delete is a compare-and-swap: a hash map's lookup hashed and
 * walked a bucket list, and an LRU map's insert and delete each took two
 * locks with interrupts off. An skb address hashes to one set; an entry
 * there is claimed by swapping its key from empty (0), from an entry past
 * its time to live, or else from the set's oldest entry (frees that fire no
 * tracepoint leave entries behind: their age evicts them, as the LRU did).
 * A packet is handled by one CPU at a time, so only a claim races with
 * another claim of the same entry. */
#define VX_TRACK_WAYS 8
#define VX_TRACK_SETS_BITS 13
#define VX_TRACK_SETS (1 << VX_TRACK_SETS_BITS)

struct vx_track_set {
	__u64 key[VX_TRACK_WAYS]; /* skb addresses; 0: empty */
	struct vx_track val[VX_TRACK_WAYS];
};

static inline __u32 vx_track_set_idx(__u64 skb)
{
	/* skbs come from a slab of 256-byte objects: the low bits say
	 * nothing. */
	return (__u32)(((skb >> 8) * 0x9E3779B97F4A7C15ull) >> (64 - VX_TRACK_SETS_BITS));
}

#endif
