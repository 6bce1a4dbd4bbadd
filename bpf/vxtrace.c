// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/* vxtrace: follows overlay packets across devices and namespaces.
 *
 * TC programs on the hop interfaces count every packet per hop and find the
 * packets that match the filter, reading headers where they lie. A matching
 * packet is remembered by its skb address, so it stays followed after
 * encapsulation, decapsulation and namespace crossings, and its drop is
 * attributed even when its headers no longer match. Tracepoints (tp_btf, or
 * raw_tp where BTF tracepoints are refused) see every free of an skb, and
 * every device transition in every namespace: they follow tracked packets
 * across devices that have no TC program (or find packets themselves when no
 * TC program could load). Most packets on a node are not traced, so each
 * program rejects those first, at the lowest cost it can. Nothing here writes
 * to a packet or its mark: the programs only read and return "continue". */

#include "vmlinux.h"
#include "bpf/bpf_helpers.h"
#include "bpf/bpf_core_read.h"
#include "bpf/bpf_tracing.h"
#include "bpf/bpf_endian.h"
#include "vxtrace.h"
#include "parse.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define ARPHRD_ETHER_ 1
#define ARPHRD_LOOPBACK_ 772
#define TC_CONTINUE -1 /* TCX_NEXT for tcx, TC_ACT_UNSPEC for cls_bpf */
#define HDR_UNSET 0xffff
/* The ring adds an 8-byte header to each record. */
#define VX_RING_HDR 8
_Static_assert(VX_EVENT_HEAD_LEN == 56, "tracer.EventHeadSize");
_Static_assert(sizeof(struct vx_batch) == VX_BATCH_SIZE, "batches are whole cache lines");

volatile const struct vx_config cfg = {};

/* Anchors so that bpf2go can generate Go types for structs that only reach
 * user space as ring-buffer bytes or map keys. */
const struct vx_event *unused_event __attribute__((unused));
const enum vx_state *unused_state __attribute__((unused));
const enum vx_event_flags *unused_flags __attribute__((unused));
const struct vx_hop_slot *unused_slot __attribute__((unused));
const struct vx_batch *unused_batch __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* An array's values start 312 bytes into its allocation (after struct
 * bpf_array), so a 64-byte-multiple value straddles two cache lines. An
 * mmapable array's values start on a page: each set's keys are one line. */

/* skb address -> packet identity (struct vx_track_set). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, VX_TRACK_SETS);
	__type(key, __u32);
	__type(value, struct vx_track_set);
} tracked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} netns_filter SEC(".maps");

/* Hops with a TC program attached (user space keeps it current): there the
 * TC program reports the packet, and the rx/tx tracepoints stay quiet. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct vx_hop_key);
	__type(value, __u8);
} tc_hops SEC(".maps");

/* Small shared values (enum vx_state). An array lookup is inlined by the
 * verifier: a load, not a call. Mmapable: both values in one line. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, VX_STATE_MAX);
	__type(key, __u32);
	__type(value, __u64);
} state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct vx_hop_key);
	__type(value, struct vx_hop_stats);
} hop_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VX_HOP_SLOTS);
	__type(key, __u32);
	__type(value, struct vx_hop_slot);
} hop_slots SEC(".maps");

/* max_entries: user space sets it to VX_TC_SLOTS per possible CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, VX_TC_SLOTS);
	__type(key, __u32);
	__type(value, struct vx_tc_slot);
} tc_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct vx_drop_key);
	__type(value, __u64);
} drop_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VX_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* max_entries: user space sets it to the possible CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vx_batch);
} batches SEC(".maps");

struct scratch {
	__u8 buf[VX_BUF_LEN];
	struct vx_parsed p;
	struct vx_parsed in;
	struct vx_fp_key k;
};

/* Packet headers and parse state live here, not on the 512-byte stack. A
 * program can be interrupted on its CPU by another one (a softirq's TC or
 * receive tracepoint during a process-context transmit), so each nesting
 * level gets its own slot; one lookup finds the depth and the slots. */
#define VX_NEST_MAX 4

struct scratch_area {
	__u32 depth;
	__u32 pad;
	struct scratch slot[VX_NEST_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch_area);
} scratch_map SEC(".maps");

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

static __always_inline struct scratch *scratch_get(struct scratch_area **area)
{
	__u32 zero = 0;
	struct scratch_area *a = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!a)
		return NULL;
	__u32 d = a->depth;
	if (d >= VX_NEST_MAX)
		return NULL;
	a->depth = d + 1;
	*area = a;
	struct scratch *s = &a->slot[d];
	__builtin_memset(&s->p, 0, sizeof(s->p));
	return s;
}

static __always_inline void scratch_put(struct scratch_area *a)
{
	if (a->depth)
		a->depth -= 1;
}

static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += n;
}

static __always_inline void stat_inc(__u32 idx)
{
	stat_add(idx, 1);
}

/* key 0 marks an empty entry: no skb has it. */
static __always_inline struct vx_track_set *track_set(__u64 key)
{
	if (!key)
		return NULL;
	__u32 idx = vx_track_set_idx(key);
	return bpf_map_lookup_elem(&tracked, &idx);
}

static __always_inline struct vx_track *track_lookup(__u64 key)
{
	struct vx_track_set *s = track_set(key);
	if (!s)
		return NULL;
#pragma unroll
	for (int w = 0; w < VX_TRACK_WAYS; w++)
		if (s->key[w] == key)
			return &s->val[w];
	return NULL;
}

static __always_inline void track_delete(__u64 key)
{
	struct vx_track_set *s = track_set(key);
	if (!s)
		return;
#pragma unroll
	for (int w = 0; w < VX_TRACK_WAYS; w++)
		if (s->key[w] == key) {
			/* Only if it is still ours: a claim may have taken
			 * it since the lookup. */
			__sync_val_compare_and_swap(&s->key[w], key, 0);
			return;
		}
}

/* A new entry for key (not in the table), or NULL if another CPU's claim
 * won the entry. */
static __always_inline struct vx_track *track_insert(__u64 key, __u64 fp, __u32 chk,
						     __u64 now)
{
	struct vx_track_set *s = track_set(key);
	if (!s)
		return NULL;
	__u32 pick = 0;
	__u64 oldest = ~0ULL;
#pragma unroll
	for (int w = 0; w < VX_TRACK_WAYS; w++) {
		if (!s->key[w]) {
			pick = w;
			break;
		}
		__u64 ts = s->val[w].ts;
		if (now - ts > cfg.track_ttl_ns) {
			pick = w;
			break;
		}
		if (ts < oldest) {
			oldest = ts;
			pick = w;
		}
	}
	pick &= VX_TRACK_WAYS - 1;
	__u64 old = s->key[pick];
	if (__sync_val_compare_and_swap(&s->key[pick], old, key) != old)
		return NULL;
	/* The caller sets the hop fields. */
	struct vx_track *t = &s->val[pick];
	t->fp = fp;
	t->chk = chk;
	t->ts = now;
	t->sent = 0;
	return t;
}

static __always_inline struct vx_hop_stats *hop_counters(__u32 netns,
							 __u32 ifindex)
{
	__u32 idx = vx_hop_slot_idx(netns, ifindex);
	struct vx_hop_slot *slot = bpf_map_lookup_elem(&hop_slots, &idx);
	if (slot && slot->key.netns == netns && slot->key.ifindex == ifindex)
		return &slot->st;
	struct vx_hop_key k = {.netns = netns, .ifindex = ifindex};
	struct vx_hop_stats *s = bpf_map_lookup_elem(&hop_stats, &k);
	if (s)
		return s;
	struct vx_hop_stats zero = {};
	bpf_map_update_elem(&hop_stats, &k, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&hop_stats, &k);
}

/* Each CPU's slot 0 of tc_slots: the TC program's scratch line, written on
 * every packet that CPU's TC programs see, so it is warm where packets are
 * freed. Its `in` says whether anything was ever tracked. */
static __always_inline struct vx_tc_slot *cpu_line(void)
{
	__u32 base = bpf_get_smp_processor_id() << VX_TC_SLOTS_BITS;
	return bpf_map_lookup_elem(&tc_slots, &base);
}

static long set_tracking(__u32 cpu, void *ctx)
{
	__u32 idx = cpu << VX_TC_SLOTS_BITS;
	struct vx_tc_slot *l = bpf_map_lookup_elem(&tc_slots, &idx);
	if (!l)
		return 1; /* past the last possible CPU */
	l->in = 1;
	return 0;
}

/* Tells every CPU, once: a write per tracked packet to one shared line
 * would bounce it between the CPUs that read it on every free. */
static __always_inline void tracking_started(void)
{
	struct vx_tc_slot *l = cpu_line();
	if (l && !l->in)
		bpf_loop(VX_MAX_CPUS, set_tracking, NULL, 0);
}

/* A kernel address as a number, to hash and to keep in a map: the
 * verifier allows no arithmetic on a pointer, but one stored to a map value
 * and loaded back is a scalar (with the pointer-leak rights a tracer has
 * anyway). l: this CPU's scratch line (cpu_line), whose dev field is free. */
static __always_inline __u64 addr_num(struct vx_tc_slot *l, const void *a)
{
	l->dev = (__u64)a;
	return *(volatile __u64 *)&l->dev;
}

/* The key of skb in the tracked table (0 if it cannot tell). */
static __always_inline __u64 skb_key(const void *skb)
{
	struct vx_tc_slot *l = cpu_line();
	return l ? addr_num(l, skb) : 0;
}

/* A scratch slot for a program about to handle skb, and skb's key in the
 * tracked table if the caller has none yet (*key 0). */
static __always_inline struct scratch *scratch_keyed(const void *skb, __u64 *key,
						     struct scratch_area **a)
{
	struct scratch *s = scratch_get(a);
	if (s && !*key)
		*key = skb_key(skb);
	return s;
}

/* The skb's tracked entry, if any, and its key (left alone when it is not
 * tracked). Until the filter has matched once, a program that only
 * follows tracked packets (the free and device tracepoints) has nothing to
 * look up: one load of a warm line answers (the same flag in a map of its
 * own cost 40-70 ns more per free: a cold line). */
static __always_inline struct vx_track *tracked_skb(const void *skb, __u64 *key)
{
	struct vx_tc_slot *l = cpu_line();
	if (!l || !l->in)
		return NULL;
	__u64 k = addr_num(l, skb);
	struct vx_track *t = track_lookup(k);
	if (t)
		*key = k;
	return t;
}

static __always_inline int netns_allowed(__u32 netns)
{
	if (!cfg.filter_netns)
		return 1;
	return bpf_map_lookup_elem(&netns_filter, &netns) != NULL;
}

/* Waking the reader costs more than the rest of the program (an IPI, a VM
 * exit here), so the reader is woken once each time the queue grows by
 * another cfg.wakeup_bytes; while events flow it also polls on a short
 * deadline, so events left without a wakeup still reach it in time. A
 * reader that lags is not woken for every event either. asleep: a reader
 * with nothing to do for a while sleeps without a timer (an idle tracer
 * costs no CPU) and asks to be woken at once. */
static __always_inline __u64 wakeup_flags(__u64 rec_len, int asleep)
{
	if (!cfg.wakeup_bytes)
		return 0;
	if (asleep)
		return BPF_RB_FORCE_WAKEUP;
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 before = avail > rec_len ? avail - rec_len : 0;
	if (avail / cfg.wakeup_bytes != before / cfg.wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline __u64 state_get(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&state, &idx);
	return v ? *v : 0;
}

#define barrier() asm volatile("" ::: "memory")

/* This CPU's batch, taken for the caller; NULL if batching is off or a
 * program this one interrupted holds it. */
static __always_inline struct vx_batch *batch_take(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct vx_batch *b = bpf_map_lookup_elem(&batches, &cpu);
	if (!b || b->busy)
		return NULL;
	b->busy = 1;
	barrier();
	return b;
}

static __always_inline void batch_give(struct vx_batch *b)
{
	barrier();
	b->busy = 0;
}

static __always_inline void batch_flush(struct vx_batch *b, int asleep)
{
	__u32 len = b->len;
	__u32 n = b->n;
	if (!len)
		return;
	if (len > VX_BATCH_BYTES)
		len = VX_BATCH_BYTES;
	if (bpf_ringbuf_output(&events, b->ev, len, wakeup_flags(len + VX_RING_HDR, asleep)) == 0)
		stat_add(VX_STAT_EVENTS, n);
	else
		stat_add(VX_STAT_LOST, n);
	b->len = 0;
	b->n = 0;
}

/* Room for a record of size bytes (a constant at each call: the verifier
 * bounds the offset with it) at the end of the batch b, flushed first if it
 * has none; counted in. */
static __always_inline struct vx_event *batch_slot(struct vx_batch *b, const __u32 size,
						   int asleep)
{
	__u32 off = b->len;
	if (off > VX_BATCH_BYTES - size) {
		batch_flush(b, asleep);
		off = 0;
	}
	b->len = off + size;
	b->n += 1;
	return (struct vx_event *)(b->ev + off);
}

/* ts: the caller's bpf_ktime_get_ns, or 0 to read the clock here (a read
 * costs as much as a map lookup in a VM). */
static __always_inline void emit_head(struct vx_event *e, const struct vx_parsed *p,
				      __u64 fp, __u64 skb, __u32 netns, __u32 ifindex,
				      __u32 len, __u8 hook, __u8 flags, __u32 reason,
				      __u64 location, __u64 ts)
{
	e->ts = ts ? ts : bpf_ktime_get_ns();
	e->skb = skb;
	e->fp = fp;
	e->location = location;
	e->netns = netns;
	e->ifindex = ifindex;
	e->len = len;
	e->reason = reason;
	e->vni = p->vni;
	e->ip_id = p->ip_id;
	e->hook = hook;
	e->flags = p->flags | flags;
}

static __always_inline void emit_headers(struct vx_event *e, const struct vx_parsed *p)
{
	e->flags |= VX_F_HEADERS;
	e->inner = p->inner;
	e->outer = p->outer;
}

/* headers: the record carries the packet's headers (inner and outer
 * tuples). Most events of a followed packet need not: its journey has them
 * from its first event, and the head alone is one cache line of the ring
 * where the whole record spans three. Returns 0 once written. */
static __always_inline int emit(const struct vx_parsed *p, __u64 fp, __u64 skb,
				__u32 netns, __u32 ifindex, __u32 len,
				__u8 hook, __u8 flags, __u32 reason,
				__u64 location, __u64 ts, int headers)
{
	struct vx_event *e;
	__u64 rec;
	/* Both values share one line, warm on every CPU. */
	int asleep = state_get(VX_STATE_READER_ASLEEP) != 0;
	struct vx_batch *b = state_get(VX_STATE_BATCH) ? batch_take() : NULL;
	if (b) {
		/* A sleeping reader wants each event now; a drop is news now. */
		if (!asleep && hook != VX_HOOK_DROP) {
			if (headers) {
				e = batch_slot(b, sizeof(*e), asleep);
				emit_head(e, p, fp, skb, netns, ifindex, len, hook, flags, reason, location, ts);
				emit_headers(e, p);
			} else {
				e = batch_slot(b, VX_EVENT_HEAD_LEN, asleep);
				emit_head(e, p, fp, skb, netns, ifindex, len, hook, flags, reason, location, ts);
			}
			/* Full when not even a head fits. */
			if (b->len > VX_BATCH_BYTES - VX_EVENT_HEAD_LEN)
				batch_flush(b, asleep);
			batch_give(b);
			return 0;
		}
		batch_flush(b, asleep);
		batch_give(b);
	}
	/* Two reservations of constant size: the verifier bounds each. */
	if (headers) {
		rec = sizeof(*e) + VX_RING_HDR;
		e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e)
			goto lost;
		emit_head(e, p, fp, skb, netns, ifindex, len, hook, flags, reason, location, ts);
		emit_headers(e, p);
	} else {
		rec = VX_EVENT_HEAD_LEN + VX_RING_HDR;
		e = bpf_ringbuf_reserve(&events, VX_EVENT_HEAD_LEN, 0);
		if (!e)
			goto lost;
		emit_head(e, p, fp, skb, netns, ifindex, len, hook, flags, reason, location, ts);
	}
	bpf_ringbuf_submit(e, wakeup_flags(rec, asleep));
	stat_inc(VX_STAT_EVENTS);
	return 0;
lost:
	stat_inc(VX_STAT_LOST);
	return -1;
}

/* Whether this event of the tracked packet t must carry its headers:
 * user space has not had them (a lost record, a new packet at the address,
 * the first sighting of the VTEP headers), or may have closed its journey
 * after a silence. now: this event's time, before t->ts moves on. */
static __always_inline int needs_headers(const struct vx_track *t,
					 const struct vx_parsed *p, __u64 now)
{
	if (!(t->sent & VX_SENT_INNER) || now - t->ts > cfg.headers_after_ns)
		return 1;
	return (p->flags & VX_F_ENCAP) && !(t->sent & VX_SENT_OUTER);
}

/* Notes what a whole record of t carried. */
static __always_inline void headers_sent(struct vx_track *t,
					 const struct vx_parsed *p)
{
	if (p->inner.family)
		t->sent |= VX_SENT_INNER;
	if (p->flags & VX_F_ENCAP)
		t->sent |= VX_SENT_OUTER;
}

/* Kernel reads. BTF tracepoints and TC (through bpf_cast_to_kern_ctx) hold
 * pointers the verifier lets the program dereference: a plain load, where
 * bpf_probe_read_kernel is a helper call per field. Raw tracepoints get
 * bare addresses and must probe. `direct` is a constant at every call site,
 * so each program keeps only its own kind of read. */
#define KREAD(direct, obj, ...) ((direct) ? (obj)->__VA_ARGS__ : BPF_CORE_READ(obj, __VA_ARGS__))

static __always_inline __u32 dev_netns(const struct net_device *dev, const int direct)
{
	if (direct)
		return dev->nd_net.net->ns.inum;
	return BPF_CORE_READ(dev, nd_net.net, ns.inum);
}

static __always_inline __u32 sock_netns(const struct sock *sk, const int direct)
{
	if (direct)
		return sk->__sk_common.skc_net.net->ns.inum;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* Reads the IP header at l3 (proto in host order) into t and returns the L4
 * header, or NULL where the full parser must decide (not IP, a fragment,
 * headers past the linear data). */
static __always_inline void *quick_ip(void *l3, void *end, __u16 proto,
				      struct vx_tuple *t, __u16 *ip_id,
				      const int full)
{
	if (proto == ETH_P_IP) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return NULL;
		__u8 vihl = *(__u8 *)ip;
		if ((vihl >> 4) != 4 || (vihl & 0x0f) < 5 ||
		    (ip->frag_off & bpf_htons(0x1fff)))
			return NULL;
		t->family = 4;
		t->proto = ip->protocol;
		if (full)
			*ip_id = bpf_ntohs(ip->id);
		__builtin_memcpy(t->saddr, &ip->saddr, 4);
		__builtin_memcpy(t->daddr, &ip->daddr, 4);
		return l3 + (vihl & 0x0f) * 4;
	}
	if (proto == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end || (*(__u8 *)ip6 >> 4) != 6)
			return NULL;
		t->family = 6;
		t->proto = ip6->nexthdr;
		__builtin_memcpy(t->saddr, &ip6->saddr, 16);
		__builtin_memcpy(t->daddr, &ip6->daddr, 16);
		return ip6 + 1;
	}
	return NULL;
}

/* Fills what parse_l4 fills (!full: the ports only, what the filter
 * reads); -1 when the L4 header is not all in the linear data. */
static __always_inline int quick_l4(void *l4, void *end, struct vx_parsed *p,
				    const int full)
{
	struct vx_tuple *t = &p->inner;
	__be16 *w = l4;
	switch (t->proto) {
	case IPPROTO_TCP_:
		if (l4 + 20 > end)
			return -1;
		t->sport = bpf_ntohs(w[0]);
		t->dport = bpf_ntohs(w[1]);
		if (full) {
			p->tcp_seq = bpf_ntohl(*(__be32 *)(l4 + 4));
			t->l4_info = *(__u8 *)(l4 + 13);
		}
		return 0;
	case IPPROTO_UDP_:
		if (l4 + 8 > end)
			return -1;
		t->sport = bpf_ntohs(w[0]);
		t->dport = bpf_ntohs(w[1]);
		if (full)
			p->udp_csum = bpf_ntohs(w[3]);
		return 0;
	case IPPROTO_ICMP_:
	case IPPROTO_ICMPV6_:
		if (l4 + 8 > end)
			return -1;
		if (full) {
			t->l4_info = *(__u8 *)l4;
			t->sport = bpf_ntohs(w[2]);
			t->dport = bpf_ntohs(w[3]);
		}
		return 0;
	}
	return 0;
}

static __always_inline void *quick_eth(void *l2, void *end, __u16 *proto)
{
	struct ethhdr *eth = l2;
	if ((void *)(eth + 1) > end)
		return NULL;
	__u16 p = bpf_ntohs(eth->h_proto);
	void *l3 = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (p != ETH_P_8021Q && p != ETH_P_8021AD)
			break;
		if (l3 + 4 > end)
			return NULL;
		p = bpf_ntohs(*(__be16 *)(l3 + 2));
		l3 += 4;
	}
	*proto = p;
	return l3;
}

#define TC_Q_OVERLAY 1 /* UDP to a VXLAN port: the hop's tc_overlay counter */
#define TC_Q_MISS 2	   /* a sure filter miss */
#define TC_Q_PARSED 4	   /* p holds what parse_frame would give */

/* Parses the headers where they lie (no copy, no lookup) into p, for the
 * common packet: IP, not a fragment, every header parse_frame reads in the
 * linear data. data to end: a TC program's packet, or a copy of the
 * headers; proto: the L3 protocol (host order) when !l2. Then (TC_Q_PARSED) p holds what parse_frame gives: with
 * full, all of it (the prog.Run parser tests hold the TC program to the Go
 * parser); without, the inner addresses, protocol and ports, all the
 * filter's early miss reads. Anything else is left to the full path.
 * Says too whether the packet is VXLAN. */
static __always_inline int quick_parse_at(void *data, void *end, __u16 proto,
					  int l2, struct vx_parsed *p, const int full)
{
	void *l3 = data;
	int q = 0;
	if (l2 && !(l3 = quick_eth(data, end, &proto)))
		return 0;
	void *l4 = quick_ip(l3, end, proto, &p->inner, &p->ip_id, full);
	if (!l4 || quick_l4(l4, end, p, full) < 0)
		return 0;
	p->flags = VX_F_PARSED;
	if (p->inner.proto == IPPROTO_UDP_ && is_vxlan_port(&cfg, p->inner.dport)) {
		q |= TC_Q_OVERLAY;
		void *vx = l4 + 8;
		if (vx + VXLAN_HLEN > end)
			return q;
		/* Without the I flag it is plain UDP: the outer headers are
		 * the packet. */
		if (*(__u8 *)vx & 0x08) {
			if (full) {
				p->outer = p->inner;
				p->ip_id = 0;
				p->udp_csum = 0;
				p->vni = bpf_ntohl(*(__be32 *)(vx + 4)) >> 8;
				p->flags = VX_F_PARSED | VX_F_ENCAP;
			}
			__builtin_memset(&p->inner, 0, sizeof(p->inner));
			l3 = quick_eth(vx + VXLAN_HLEN, end, &proto);
			if (!l3)
				return q;
			l4 = quick_ip(l3, end, proto, &p->inner, &p->ip_id, full);
			if (!l4 || quick_l4(l4, end, p, full) < 0)
				return q;
		}
	}
	return q | TC_Q_PARSED;
}

static __always_inline int quick_parse(struct __sk_buff *ctx, int l2,
				       struct vx_parsed *p, const int full)
{
	return quick_parse_at((void *)(long)ctx->data, (void *)(long)ctx->data_end,
			      bpf_ntohs(ctx->protocol), l2, p, full);
}

/* Copies the start of the frame into buf. An Ethernet-like device is read
 * from the MAC header; anything else (or an skb with no device, at free time)
 * from the network header, with the L3 protocol taken from skb->protocol. */
static __always_inline int snap_skb(struct sk_buff *skb,
				    const struct net_device *dev, int want_l2,
				    __u8 *buf, __u32 *len, int *l2, __u16 *proto,
				    const int direct)
{
	unsigned char *head = KREAD(direct, skb, head);
	__u16 mac = KREAD(direct, skb, mac_header);
	__u16 net = KREAD(direct, skb, network_header);
	__u32 tail = KREAD(direct, skb, tail);
	__u32 start;

	*l2 = 0;
	if (want_l2 && dev && mac != HDR_UNSET && (net == HDR_UNSET || mac < net)) {
		__u16 type = KREAD(direct, dev, type);
		if (type == ARPHRD_ETHER_ || type == ARPHRD_LOOPBACK_)
			*l2 = 1;
	}
	if (*l2) {
		start = mac;
	} else {
		if (net == HDR_UNSET)
			return -1;
		start = net;
		*proto = bpf_ntohs(KREAD(direct, skb, protocol));
	}
	if (tail <= start)
		return -1;
	__u32 n = tail - start;
	if (n > VX_SNAP_LEN)
		n = VX_SNAP_LEN;
	if (bpf_probe_read_kernel(buf, n, head + start) < 0)
		return -1;
	*len = n;
	return 0;
}

static __always_inline int parse_skb(struct scratch *s, struct sk_buff *skb,
				     const struct net_device *dev, int want_l2,
				     const int direct)
{
	__u32 len = 0;
	__u16 proto = 0;
	int l2;
	if (snap_skb(skb, dev, want_l2, s->buf, &len, &l2, &proto, direct) < 0)
		return -1;
	return parse_frame(&cfg, s->buf, len, l2, proto, &s->p, &s->in);
}

static __always_inline int fully_parsed(const struct vx_parsed *p)
{
	return (p->flags & VX_F_PARSED) &&
	       !(p->flags & (VX_F_TRUNCATED | VX_F_FRAGMENT));
}

/* A device received or is sending the skb at key; s->p holds its headers,
 * parsed if ok. hs: the hop's counters when the caller has them. t: the
 * skb's tracked entry when the caller already looked it up (NULL: look it
 * up here). */
static __always_inline void on_hop(struct scratch *s, __u64 key, int ok,
				   __u64 dev, __u32 netns, __u32 ifindex, __u32 len,
				   __u8 hook, __u8 flags,
				   struct vx_hop_stats *hs, struct vx_track *t,
				   struct vx_tc_slot *ts, __u64 location)
{
	struct vx_parsed *p = &s->p;
	int match = ok && filter_match(&cfg, p);
	/* The common case on a busy node: a packet the filter does not want.
	 * With a filter on inner headers only, a packet this tracer follows
	 * matches at every hop (those headers do not change on the path), so
	 * a whole miss needs no lookup. Outer and VNI filters do not hold
	 * after decapsulation: there the skb decides. */
	if (!match && ok && fully_parsed(p) && !cfg.has_vni &&
	    !cfg.outer_src.family && !cfg.outer_dst.family)
		return;
	__u64 now = bpf_ktime_get_ns();

	if (!t)
		t = track_lookup(key);
	if (t && now - t->ts > cfg.track_ttl_ns) {
		track_delete(key);
		t = NULL;
	}
	if (t && (match || !ok || fully_parsed(p))) {
		__u32 chk = ok ? same_packet(p) : 0;
		if (chk != t->chk) {
			/* The address now holds another packet (one with no
			 * IP header cannot be ours): the old one was freed on
			 * a path that fires no tracepoint. A miss whose headers
			 * are cut short cannot tell, and stays followed. */
			if (!match) {
				track_delete(key);
				stat_inc(VX_STAT_STALE);
				return;
			}
			t->fp = ok ? fingerprint(p, &s->k) : 0;
			t->chk = chk;
			t->sent = 0;
			flags |= VX_F_NEW;
		}
	} else if (!t) {
		if (!match)
			return;
		t = track_insert(key, fingerprint(p, &s->k), same_packet(p), now);
		tracking_started();
		if (!t) {
			stat_inc(VX_STAT_TRACK_FULL);
			return;
		}
		flags |= VX_F_NEW;
	}
	int headers = needs_headers(t, p, now);
	t->ts = now;
	t->dev = dev;
	t->netns = netns;
	t->ifindex = ifindex;
	__u64 fp = t->fp;

	int in = hook == VX_HOOK_RX || hook == VX_HOOK_TC_INGRESS;
	if (hook == VX_HOOK_NEIGH) {
		/* Not a crossing of the device: its counters wait for the
		 * send (or the drop). */
	} else if (ts) {
		if (in)
			ts->rx++;
		else
			ts->tx++;
	} else {
		if (!hs)
			hs = hop_counters(netns, ifindex);
		if (hs) {
			if (in)
				hs->rx++;
			else
				hs->tx++;
			hs->bytes += len;
		}
	}
	if (emit(p, fp, key, netns, ifindex, len, hook, flags, 0, location, now, headers) == 0 && headers)
		headers_sent(t, p);
}

static __always_inline void on_dev_scratch(struct scratch *s,
					   struct sk_buff *skb, __u64 key,
					   const struct net_device *dev,
					   __u32 netns, __u8 hook,
					   struct vx_track *t, const int direct)
{
	int ok = parse_skb(s, skb, dev, 1, direct) == 0;
	on_hop(s, key, ok, (__u64)dev, netns, KREAD(direct, dev, ifindex),
	       KREAD(direct, skb, len), hook, 0, NULL, t, NULL, 0);
}

/* A device received or is sending skb (the rx/tx tracepoints). */
static __always_inline void on_dev(struct sk_buff *skb,
				   const struct net_device *dev, __u8 hook,
				   const int direct)
{
	if (!dev)
		return;
	/* With TC on the hops, only a packet already tracked is news here:
	 * one inlined load decides for a node that traces nothing yet, a
	 * line of the tracked table for the rest. */
	struct vx_track *t = NULL;
	__u64 key = 0;
	if (cfg.tc_primary && !(t = tracked_skb(skb, &key)))
		return;
	__u32 netns = dev_netns(dev, direct);
	if (!netns_allowed(netns))
		return;
	if (cfg.tc_primary) {
		struct vx_hop_key hk = {.netns = netns,
					.ifindex = KREAD(direct, dev, ifindex)};
		if (bpf_map_lookup_elem(&tc_hops, &hk))
			return;
	}
	struct scratch_area *a;
	struct scratch *s = scratch_keyed(skb, &key, &a);
	if (!s)
		return;
	on_dev_scratch(s, skb, key, dev, netns, hook, t, direct);
	scratch_put(a);
}

/* Whether the skb being freed at a tracked address is another packet than
 * the tracked one (its check chk: same_packet), which left on a path that
 * fires no tracepoint (a UDP socket's read frees most datagrams so, on the
 * CPU that made them). Its headers say: one that is not IP at all
 * (netlink, ARP) is another; one whose headers are cut short cannot tell,
 * and counts as ours. The common free has its IP headers in the copy, and
 * the in-place parser reads them: the general one cost ~175 ns a free.
 * Fills s->p. */
static __always_inline int reused_skb(struct scratch *s, struct sk_buff *skb,
				      __u32 chk, const int direct)
{
	struct vx_parsed *p = &s->p;
	__u16 proto = bpf_ntohs(KREAD(direct, skb, protocol));
	if (proto != ETH_P_IP && proto != ETH_P_IPV6)
		return 1;
	__u32 n = 0;
	int l2;
	if (snap_skb(skb, NULL, 0, s->buf, &n, &l2, &proto, direct) < 0)
		return 0;
	if (!(quick_parse_at(s->buf, s->buf + n, proto, 0, p, 1) & TC_Q_PARSED)) {
		/* A partial in-place parse may have left fields behind. */
		__builtin_memset(p, 0, sizeof(*p));
		if (parse_frame(&cfg, s->buf, n, 0, proto, p, &s->in) < 0 || !fully_parsed(p))
			return 0;
	}
	return same_packet(p) != chk;
}

/* skb is being freed: dropped (kfree_skb) or after normal use (consume_skb). */
static __always_inline void on_free_scratch(struct scratch *s,
					    struct sk_buff *skb, __u64 key,
					    struct vx_track *t, void *location,
					    __u32 reason, __u8 hook, __u64 now,
					    const int direct)
{
	__u64 fp;
	/* A socket's receive queue reuses skb->dev as scratch space (UDP
	 * keeps sizes there): at consume_skb it is no pointer, and reading
	 * through it faults, which costs microseconds even when the fault is
	 * caught. The socket says where it was consumed. */
	struct net_device *dev = hook == VX_HOOK_CONSUME ? NULL : KREAD(direct, skb, dev);
	__u32 netns = 0, ifindex = 0;
	__u8 flags = 0;
	struct vx_parsed *p = &s->p;

	int headers = 1;
	if (t) {
		headers = needs_headers(t, p, now);
		fp = t->fp;
		__u32 chk = t->chk;
		__u64 tdev = t->dev;
		netns = t->netns;
		ifindex = t->ifindex;
		track_delete(key);
		/* Freed where it was last seen (or with no device): that hop,
		 * in scope. Most packets end so, and the device, last touched
		 * on another CPU, is not read at all: on a flooded VM that
		 * read alone cost a microsecond. */
		if (dev && (__u64)dev != tdev) {
			netns = dev_netns(dev, direct);
			ifindex = KREAD(direct, dev, ifindex);
			/* It left the scope (another node's namespace on the
			 * same kernel): what happens there is not ours. */
			if (!netns_allowed(netns))
				return;
		} else if (hook == VX_HOOK_CONSUME) {
			/* The hop stays the last one seen (a socket of the
			 * sender's namespace frees a packet the NIC sent); a
			 * socket outside the scope took it out of our view. */
			struct sock *sk = KREAD(direct, skb, sk);
			__u32 sns = sk ? sock_netns(sk, direct) : netns;
			if (sns != netns && !netns_allowed(sns))
				return;
		}
		if (reused_skb(s, skb, chk, direct)) {
			stat_inc(VX_STAT_STALE);
			return;
		}
	} else {
		/* A drop before the first hop (e.g. in the sender's stack):
		 * match it on its own headers. */
		if (!dev)
			return;
		netns = dev_netns(dev, direct);
		ifindex = KREAD(direct, dev, ifindex);
		if (!netns_allowed(netns))
			return;
		if (parse_skb(s, skb, dev, 0, direct) < 0 || !filter_match(&cfg, p))
			return;
		fp = fingerprint(p, &s->k);
		flags |= VX_F_NEW;
	}

	if (hook == VX_HOOK_DROP) {
		struct vx_hop_stats *hs = hop_counters(netns, ifindex);
		if (hs)
			hs->drops++;
		struct vx_drop_key dk = {.netns = netns, .ifindex = ifindex,
					 .reason = reason};
		__u64 *c = bpf_map_lookup_elem(&drop_stats, &dk);
		if (c) {
			*c += 1;
		} else {
			__u64 one = 1;
			bpf_map_update_elem(&drop_stats, &dk, &one, BPF_NOEXIST);
		}
	}
	emit(p, fp, key, netns, ifindex, KREAD(direct, skb, len), hook, flags,
	     reason, (__u64)location, now, headers);
}

/* A free of a tracked packet, or a drop: out of line, as tc_events is, so
 * that consume_skb's miss path stays a few lines of code. t: the skb's
 * tracked entry (NULL: none); args: reason << 8 | hook. */
static __always_inline void on_free_slow(struct sk_buff *skb, void *location,
					 struct vx_track *t, __u64 now, __u64 args,
					 const int direct)
{
	__u64 key = 0;
	struct scratch_area *a;
	struct scratch *s = scratch_keyed(skb, &key, &a);
	if (!s)
		return;
	on_free_scratch(s, skb, key, t, location, args >> 8, args & 0xff, now, direct);
	scratch_put(a);
}

static __noinline void free_btf(struct sk_buff *skb, void *location,
				struct vx_track *t, __u64 now, __u64 args)
{
	on_free_slow(skb, location, t, now, args, 1);
}

static __noinline void free_raw(struct sk_buff *skb, void *location,
				struct vx_track *t, __u64 now, __u64 args)
{
	on_free_slow(skb, location, t, now, args, 0);
}

static __always_inline void on_free(struct sk_buff *skb, void *location,
				    __u32 reason, __u8 hook, const int direct)
{
	/* consume_skb fires for every skb the system frees after use: one
	 * line of the tracked table decides, before anything else, whether it
	 * is ours. */
	__u64 key = 0;
	struct vx_track *t = tracked_skb(skb, &key);
	__u64 now = t ? bpf_ktime_get_ns() : 0;
	if (t && now - t->ts > cfg.track_ttl_ns) {
		track_delete(key);
		t = NULL;
	}
	if (!t && hook != VX_HOOK_DROP)
		return;
	if (direct)
		free_btf(skb, location, t, now, (__u64)reason << 8 | hook);
	else
		free_raw(skb, location, t, now, (__u64)reason << 8 | hook);
}

#define AF_INET_ 2
#define NUD_INCOMPLETE_ 0x01

/* __neigh_event_send queued a packet at the tail of the neighbour's queue:
 * the next hop's link-layer address is being resolved (ARP, NDP), and the
 * packet waits there until it is (then it is sent) or until resolution
 * fails (a NEIGH_FAILED drop, 3 s later with the kernel's defaults).
 * Without this event a journey that waits longer than the timeout would
 * end as vanished, and its drop would come later as a packet of its own.
 * A packet sent by the node itself has crossed no hop yet: it is matched
 * on its own headers, from the network header (the link-layer header is
 * what is missing). The tracepoint fires after the lock is dropped, so the
 * tail may already be another packet of the same queue: it waits there
 * as well. */
static __always_inline void on_neigh(struct neighbour *n, int rc, const int direct)
{
	if (rc != 1 || !n)
		return;
	if (KREAD(direct, n, nud_state) != NUD_INCOMPLETE_ || !KREAD(direct, n, arp_queue.qlen))
		return;
	struct sk_buff *skb = KREAD(direct, n, arp_queue.prev);
	struct net_device *dev = KREAD(direct, n, dev);
	if (!skb || !dev)
		return;
	__u32 netns = dev_netns(dev, direct);
	if (!netns_allowed(netns))
		return;
	__u32 nh = 0;
	__u16 family = direct ? n->tbl->family : BPF_CORE_READ(n, tbl, family);
	if (family == AF_INET_)
		bpf_core_read(&nh, sizeof(nh), &n->primary_key);
	__u64 key = 0;
	struct scratch_area *a;
	struct scratch *s = scratch_keyed(skb, &key, &a);
	if (!s)
		return;
	int ok = parse_skb(s, skb, dev, 0, direct) == 0;
	on_hop(s, key, ok, (__u64)dev, netns, KREAD(direct, dev, ifindex),
	       KREAD(direct, skb, len), VX_HOOK_NEIGH, 0, NULL, NULL, NULL, nh);
	scratch_put(a);
}

/* BTF tracepoints: direct reads. */

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tp_netif_receive_skb, struct sk_buff *skb)
{
	on_dev(skb, skb->dev, VX_HOOK_RX, 1);
	return 0;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tp_net_dev_start_xmit, const struct sk_buff *skb,
	     const struct net_device *dev)
{
	on_dev((struct sk_buff *)skb, dev, VX_HOOK_TX, 1);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_kfree_skb, struct sk_buff *skb, void *location,
	     enum skb_drop_reason reason)
{
	on_free(skb, location, (__u32)reason, VX_HOOK_DROP, 1);
	return 0;
}

SEC("tp_btf/consume_skb")
int BPF_PROG(tp_consume_skb, struct sk_buff *skb, void *location)
{
	on_free(skb, location, 0, VX_HOOK_CONSUME, 1);
	return 0;
}

SEC("tp_btf/neigh_event_send_done")
int BPF_PROG(tp_neigh_event_send_done, struct neighbour *n, int rc)
{
	on_neigh(n, rc, 1);
	return 0;
}

/* Raw tracepoints: the same handlers where tp_btf is refused; every kernel
 * read is a probe. */

SEC("raw_tp/netif_receive_skb")
int BPF_PROG(raw_netif_receive_skb, struct sk_buff *skb)
{
	on_dev(skb, BPF_CORE_READ(skb, dev), VX_HOOK_RX, 0);
	return 0;
}

SEC("raw_tp/net_dev_start_xmit")
int BPF_PROG(raw_net_dev_start_xmit, struct sk_buff *skb,
	     struct net_device *dev)
{
	on_dev(skb, dev, VX_HOOK_TX, 0);
	return 0;
}

SEC("raw_tp/kfree_skb")
int BPF_PROG(raw_kfree_skb, struct sk_buff *skb, void *location,
	     __u32 reason)
{
	on_free(skb, location, reason, VX_HOOK_DROP, 0);
	return 0;
}

SEC("raw_tp/consume_skb")
int BPF_PROG(raw_consume_skb, struct sk_buff *skb, void *location)
{
	on_free(skb, location, 0, VX_HOOK_CONSUME, 0);
	return 0;
}

SEC("raw_tp/neigh_event_send_done")
int BPF_PROG(raw_neigh_event_send_done, struct neighbour *n, int rc)
{
	on_neigh(n, rc, 0);
	return 0;
}

/* TC: per-hop counts of every packet (reading headers in place: no copy),
 * and, with cfg.tc_events, the events of the packets the filter wants. */
/* The miss path's parse: whether the filter surely misses. A miss needs no
 * lookup only with filters on inner headers: those do not change along the
 * path (on_hop's own early miss); anything else is left to that path, so
 * both always agree. Most packets on a node end here. */
static __always_inline int tc_quick(struct __sk_buff *ctx, int l2)
{
	struct vx_parsed p = {};
	int q = quick_parse(ctx, l2, &p, 0);
	if ((q & TC_Q_PARSED) && cfg.tc_events && !cfg.has_vni &&
	    !cfg.outer_src.family && !cfg.outer_dst.family &&
	    !filter_match(&cfg, &p))
		q |= TC_Q_MISS;
	return q;
}

/* A packet the filter may want: its whole parse, in place, into the
 * scratch. Not inlined: inlined, clang splits p into stack slots on every
 * path and the program triples in size. 0 when p is complete. */
static __noinline int tc_parse(struct __sk_buff *ctx, int l2, struct vx_parsed *p)
{
	return (quick_parse(ctx, l2, p, 1) & TC_Q_PARSED) ? 0 : -1;
}

/* l2: TC sees an Ethernet-like device's frame from its MAC header, and an
 * L3 device's (ipip, WireGuard) from its network header. */
static __always_inline void on_tc_events(struct scratch *s,
					 struct __sk_buff *ctx,
					 struct sk_buff *skb, struct vx_tc_slot *line,
					 __u32 netns, __u8 hook, struct vx_hop_stats *hs,
					 struct vx_tc_slot *ts, int l2, int quick)
{
	int ok = 0;
	if (quick && tc_parse(ctx, l2, &s->p) == 0) {
		ok = 1;
	} else {
		/* A partial in-place parse may have left fields behind
		 * (scratch_get cleared them before it). */
		if (quick)
			__builtin_memset(&s->p, 0, sizeof(s->p));
		__u32 n = ctx->len;
		if (n > VX_SNAP_LEN)
			n = VX_SNAP_LEN;
		if (n >= (l2 ? ETH_HLEN : 20) && bpf_skb_load_bytes(ctx, 0, s->buf, n) == 0)
			ok = parse_frame(&cfg, s->buf, n, l2, bpf_ntohs(ctx->protocol),
					 &s->p, &s->in) == 0;
	}
	if (cfg.tc_primary)
		hook = hook == VX_HOOK_TC_INGRESS ? VX_HOOK_RX : VX_HOOK_TX;
	on_hop(s, line ? addr_num(line, skb) : 0, ok, (__u64)skb->dev, netns, ctx->ifindex, ctx->len, hook, VX_F_TC, hs, NULL, ts, 0);
}

/* The path of a packet the filter may want, out of line: a program's
 * image is one function, and the miss path that every packet takes then
 * spans a few cache lines instead of jumping across ~18 KiB of code.
 * args: netns << 32 | hook << 8 | quick << 1 | l2 (a subprogram takes at
 * most five arguments). */
static __noinline void tc_events(struct __sk_buff *ctx, struct vx_tc_slot *line,
				 struct vx_tc_slot *ts, struct vx_hop_stats *hs,
				 __u64 args)
{
	struct scratch_area *a;
	struct scratch *s = scratch_get(&a);
	if (!s)
		return;
	on_tc_events(s, ctx, bpf_cast_to_kern_ctx(ctx), line, args >> 32,
		     (args >> 8) & 0xff, hs, ts, args & 1, args & 2);
	scratch_put(a);
}

static __always_inline void tc_count(__u64 *in, __u64 *out, __u64 *overlay,
				     __u64 *bytes, __u8 hook, int q, __u32 len)
{
	if (hook == VX_HOOK_TC_INGRESS)
		*in += 1;
	else
		*out += 1;
	if (q & TC_Q_OVERLAY)
		*overlay += 1;
	*bytes += len;
}

/* The device's slot, found by its address (d: as a number). line: this
 * CPU's scratch line, which the caller uses again. */
static __always_inline struct vx_tc_slot *tc_slot(const struct net_device *dev,
						  __u64 *d, struct vx_tc_slot **line)
{
	__u32 base = bpf_get_smp_processor_id() << VX_TC_SLOTS_BITS;
	struct vx_tc_slot *scr = bpf_map_lookup_elem(&tc_slots, &base);
	if (!scr)
		return NULL;
	*line = scr;
	*d = addr_num(scr, dev);
	__u32 idx = base | vx_tc_slot_idx(*d);
	return bpf_map_lookup_elem(&tc_slots, &idx);
}

static __always_inline int on_tc(struct __sk_buff *ctx, __u8 hook)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct net_device *dev = skb->dev;
	__u64 d = 0;
	struct vx_tc_slot *line = NULL;
	struct vx_tc_slot *ts = tc_slot(dev, &d, &line);
	struct vx_hop_stats *hs = NULL;
	__u32 netns;
	int l2, q;
	/* The hot path reads nothing of the device but its address: a
	 * device re-created at a freed one's address finds its slot freed
	 * (user space frees the slots of gone hops before it attaches to new
	 * ones). */
	if (ts && (ts->dev & ~1ULL) == d) {
		l2 = ts->dev & 1;
		q = tc_quick(ctx, l2);
		tc_count(&ts->in, &ts->out, &ts->overlay, &ts->bytes, hook, q, ctx->len);
		if (!cfg.tc_events || (q & TC_Q_MISS))
			return TC_CONTINUE;
		netns = ts->netns;
	} else {
		__u32 ifindex = dev->ifindex;
		__u16 type = dev->type;
		l2 = type == ARPHRD_ETHER_ || type == ARPHRD_LOOPBACK_;
		q = tc_quick(ctx, l2);
		netns = dev->nd_net.net->ns.inum;
		if (ts && !ts->dev) {
			/* Claimed for this device from now on; this packet
			 * counts in the hop's other counters. */
			ts->netns = netns;
			ts->ifindex = ifindex;
			ts->dev = d | l2;
		}
		ts = NULL;
		hs = hop_counters(netns, ifindex);
		if (hs)
			tc_count(&hs->tc_in, &hs->tc_out, &hs->tc_overlay,
				 &hs->tc_bytes, hook, q, ctx->len);
		if (!cfg.tc_events || (q & TC_Q_MISS))
			return TC_CONTINUE;
	}
	tc_events(ctx, line, ts, hs, (__u64)netns << 32 | (__u64)hook << 8 |
				     (l2 ? 1 : 0) | ((q & TC_Q_PARSED) ? 2 : 0));
	return TC_CONTINUE;
}

SEC("tc")
int tc_ingress(struct __sk_buff *ctx)
{
	return on_tc(ctx, VX_HOOK_TC_INGRESS);
}

SEC("tc")
int tc_egress(struct __sk_buff *ctx)
{
	return on_tc(ctx, VX_HOOK_TC_EGRESS);
}

/* Optional: a bridge forwarding a tracked packet. The bridge device itself
 * fires no tracepoint when it forwards; without these programs the hop is
 * derived in user space from port rx/tx. Loaded only if the kernel allows. */
static __always_inline void on_br_forward(const struct net_bridge_port *to,
					  struct sk_buff *skb)
{
	__u64 key = skb_key(skb);
	struct vx_track *t = track_lookup(key);
	if (!t)
		return;
	struct net_device *br = BPF_CORE_READ(to, br, dev);
	if (!br)
		return;
	struct vx_parsed p = {};
	__u32 netns = BPF_CORE_READ(br, nd_net.net, ns.inum);
	emit(&p, t->fp, key, netns, BPF_CORE_READ(br, ifindex),
	     BPF_CORE_READ(skb, len), VX_HOOK_BR_FORWARD, 0, 0, 0, 0, 0);
}

SEC("fentry/br_forward")
int BPF_PROG(fentry_br_forward, const struct net_bridge_port *to,
	     struct sk_buff *skb)
{
	on_br_forward(to, skb);
	return 0;
}

SEC("kprobe/br_forward")
int BPF_KPROBE(kprobe_br_forward, const struct net_bridge_port *to,
	       struct sk_buff *skb)
{
	on_br_forward(to, skb);
	return 0;
}

/* Run by user space (BPF_PROG_TEST_RUN on the CPU) where a batch waits: a
 * CPU that went quiet would keep its last events. Returns 1 when a program
 * this run interrupted holds the batch: user space tries again later. */
SEC("raw_tp")
int flush_batch(void *ctx)
{
	struct vx_batch *b = batch_take();
	if (!b)
		return 1;
	batch_flush(b, state_get(VX_STATE_READER_ASLEEP) != 0);
	batch_give(b);
	return 0;
}
