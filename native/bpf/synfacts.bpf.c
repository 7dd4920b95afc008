// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * SYN facts for honeytrap-ts (`monitor: ebpf`), at tc ingress (tcx) where the kernel has it, at XDP otherwise.
 *
 * Reads the headers of each TCP SYN (without ACK) arriving on the interface and writes one struct syn_record to a
 * ring buffer: the facts a fingerprint needs, taken from the wire before IP and TCP touch the packet. Only TCP SYNs
 * are reported; UDP is not (the UDP catch-all reads the first datagram's addresses itself). Both programs always let
 * the packet pass: they observe, they never decide.
 *
 * Parsed: Ethernet, up to two VLAN tags (802.1Q / 802.1ad), IPv4 (options skipped by IHL; fragments other than the
 * first ignored), IPv6 whose next header is TCP (SYNs behind extension headers are not reported).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "synfacts.h"

#define RING_BYTES (256 * 1024)
#define TCP_OPTIONS_MAX 40

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING_BYTES);
} syn_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SYN_CNT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} synfacts_counters SEC(".maps");

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

static __always_inline void count(__u32 which)
{
	__u64 *value = bpf_map_lookup_elem(&synfacts_counters, &which);

	if (value)
		*value += 1;
}

/* Hides the mask from clang, which would otherwise drop it as redundant, so the verifier sees the bound. */
/* SYN set, ACK clear: the first packet of a connection attempt. */
static __always_inline int is_syn(const struct tcphdr *tcp)
{
	return (((const __u8 *)tcp)[13] & 0x12) == 0x02;
}

/* A zeroed record of `family` in the ring buffer, or NULL (counted as lost) when the ring is full. */
static __always_inline struct syn_record *new_record(__u8 family)
{
	struct syn_record *rec = bpf_ringbuf_reserve(&syn_ring, sizeof(*rec), 0);

	if (!rec) {
		count(SYN_CNT_LOST);
		return NULL;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->family = family;
	return rec;
}

static __always_inline __u64 within64(__u64 index)
{
	asm volatile("%0 &= 63" : "+r"(index));
	return index;
}

/* State of one option walk; lives on the program's stack and is handed to bpf_loop's callback. */
struct option_walk {
	__u8 opts[64]; /* the option bytes, zero beyond len */
	__u8 kinds[SYN_MAX_OPTIONS];
	__u32 len;
	__u32 off;
	__u32 count;
	__u8 mss[2];
	__u8 wscale;
	__u8 flags;
};

/*
 * One step of the walk: one option. A bpf_loop callback is verified once, whatever the option bytes, where an
 * unrolled or bounded loop made the verifier explore every path through 40 bytes of options.
 */
static long option_step(__u32 index, void *ctx)
{
	struct option_walk *w = ctx;
	__u32 off = w->off;
	__u8 kind, optlen;

	if (off >= w->len || off >= TCP_OPTIONS_MAX)
		return 1;
	kind = w->opts[within64(off)];
	if (w->count < SYN_MAX_OPTIONS)
		w->kinds[w->count & (SYN_MAX_OPTIONS - 1)] = kind;
	else
		w->flags |= SYN_OPT_TRUNCATED;
	w->count++;
	if (kind == 0) /* end of option list */
		return 1;
	if (kind == 1) { /* no-operation */
		w->off = off + 1;
		return 0;
	}
	if (off + 1 >= w->len) {
		w->flags |= SYN_OPT_TRUNCATED;
		return 1;
	}
	optlen = w->opts[within64(off + 1)];
	if (optlen < 2 || off + optlen > w->len) {
		w->flags |= SYN_OPT_TRUNCATED;
		return 1;
	}
	if (kind == 2 && optlen == 4) {
		w->mss[0] = w->opts[within64(off + 2)];
		w->mss[1] = w->opts[within64(off + 3)];
		w->flags |= SYN_OPT_HAS_MSS;
	} else if (kind == 3 && optlen == 3) {
		w->wscale = w->opts[within64(off + 2)];
		w->flags |= SYN_OPT_HAS_WSCALE;
	}
	w->off = off + optlen;
	return 0;
}

/* Walks the option bytes (copied to the stack) and fills kinds, MSS and window scale. */
static __always_inline void read_options(struct syn_record *rec, struct option_walk *w)
{
	bpf_loop(TCP_OPTIONS_MAX, option_step, w, 0);
	rec->opt_count = w->count < SYN_MAX_OPTIONS ? w->count : SYN_MAX_OPTIONS;
	__builtin_memcpy(rec->opt_kinds, w->kinds, SYN_MAX_OPTIONS);
	__builtin_memcpy(&rec->mss, w->mss, 2);
	rec->wscale = w->wscale;
	rec->opt_flags |= w->flags;
}

/*
 * The parse shared by both attachments. `ctx` is the xdp_md or __sk_buff the option bytes are copied from
 * (`is_tc` says which; each caller passes a constant, so clang keeps one branch per program). Always lets the packet
 * go on: the caller returns its own "pass".
 */
static __always_inline void report_syn(void *ctx, int is_tc, void *data, void *data_end, __u32 ifindex)
{
	struct ethhdr *eth = data;
	struct syn_record *rec;
	struct tcphdr *tcp;
	struct option_walk walk = {}; /* zeroed: variable-offset stack reads are allowed only of initialised bytes */
	__u32 off, optlen;
	__be16 proto;
	long loaded;
	int i;

	if ((void *)(eth + 1) > data_end)
		return;
	proto = eth->h_proto;
	off = sizeof(*eth);
#pragma unroll
	for (i = 0; i < 2; i++) {
		struct vlan_tag *tag = data + off;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(tag + 1) > data_end)
			return;
		proto = tag->proto;
		off += sizeof(*tag);
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		__u32 ihl;

		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP)
			return;
		if (ip->frag_off & bpf_htons(0x1fff)) /* a later fragment carries no TCP header */
			return;
		ihl = ip->ihl * 4;
		if (ihl < sizeof(*ip))
			return;
		tcp = data + off + ihl;
		if ((void *)(tcp + 1) > data_end)
			return;
		if (!is_syn(tcp))
			return;
		rec = new_record(4);
		if (!rec)
			return;
		rec->ttl = ip->ttl;
		rec->ip_id = ip->id;
		rec->ip_flags = (ip->frag_off & bpf_htons(0x4000)) ? SYN_IP_DF : 0;
		__builtin_memcpy(rec->src, &ip->saddr, 4);
		__builtin_memcpy(rec->dst, &ip->daddr, 4);
		off += ihl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_TCP)
			return;
		tcp = (void *)(ip6 + 1);
		if ((void *)(tcp + 1) > data_end)
			return;
		if (!is_syn(tcp))
			return;
		rec = new_record(6);
		if (!rec)
			return;
		rec->ttl = ip6->hop_limit;
		__builtin_memcpy(rec->src, &ip6->saddr, 16);
		__builtin_memcpy(rec->dst, &ip6->daddr, 16);
		off += sizeof(*ip6);
	} else {
		return;
	}

	rec->version = SYN_RECORD_VERSION;
	rec->src_port = tcp->source;
	rec->dst_port = tcp->dest;
	rec->window = tcp->window;
	rec->tcp_flags = ((__u8 *)tcp)[13];
	rec->ifindex = bpf_htonl(ifindex);
	rec->ts_ns = bpf_cpu_to_be64(bpf_ktime_get_ns());
	optlen = tcp->doff * 4;
	optlen = optlen > sizeof(*tcp) ? optlen - sizeof(*tcp) : 0;
	if (optlen > TCP_OPTIONS_MAX)
		optlen = TCP_OPTIONS_MAX;
	/* Copying to the stack keeps the option walk's bounds simple for the verifier. */
	walk.len = optlen;
	loaded = -1;
	if (optlen > 0)
		loaded = is_tc ? bpf_skb_load_bytes(ctx, off + sizeof(*tcp), walk.opts, optlen)
			       : bpf_xdp_load_bytes(ctx, off + sizeof(*tcp), walk.opts, optlen);
	if (loaded == 0)
		read_options(rec, &walk);
	else if (optlen > 0)
		rec->opt_flags |= SYN_OPT_TRUNCATED;
	bpf_ringbuf_submit(rec, 0);
	count(SYN_CNT_RECORDS);
}

/* At the driver (or generic) XDP hook: where the kernel has no tcx (before Linux 6.6). */
SEC("xdp")
int honeytrap_synfacts(struct xdp_md *ctx)
{
	report_syn(ctx, 0, (void *)(long)ctx->data, (void *)(long)ctx->data_end, ctx->ingress_ifindex);
	return XDP_PASS;
}

/*
 * At tc ingress through a tcx link (Linux 6.6+). Preferred: it runs on the skb after GRO, so it leaves the driver's
 * receive path as it is, where an XDP program makes a veth copy every large segment and generic XDP linearise it.
 */
SEC("tc")
int honeytrap_synfacts_tc(struct __sk_buff *skb)
{
	report_syn(skb, 1, (void *)(long)skb->data, (void *)(long)skb->data_end, skb->ingress_ifindex);
	return -1; /* TCX_NEXT: an observer, so whatever runs after it decides */
}

char LICENSE[] SEC("license") = "GPL";
