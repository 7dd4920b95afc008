// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * sk_lookup steering for honeytrap-ts (`monitor: ebpf`).
 *
 * Every new inbound TCP connection and every UDP datagram that has no connected socket goes through this program
 * before the kernel looks for a listener. Unless the destination port is in `pass_ports` (a real service, an excluded
 * or ignored port, or a UDP port the sensor has bound itself), it hands the packet to one of the sensor's catch-all
 * sockets in `sockets`. It never drops: on any doubt it returns SK_PASS without assigning, and the kernel's normal
 * lookup decides, exactly as if the program were not there.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "steer.h"

/* Keys: STEER_SOCK_TCP, STEER_SOCK_UDP (dual-stack [::] sockets), then optional per-family ones. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, STEER_SOCK_KEYS);
	__type(key, __u32);
	__type(value, __u64);
} sockets SEC(".maps");

/* Presence means "leave this port to the kernel". Value unused (1). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_PASS_PORTS_MAX);
	__type(key, struct steer_port_key);
	__type(value, __u8);
} pass_ports SEC(".maps");

/* Destination addresses to steer, as IPv6 (IPv4 v4-mapped, ::ffff:a.b.c.d). Only consulted when the filter is on. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STEER_ADDRS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct steer_addr_key);
	__type(value, __u8);
} dst_addrs SEC(".maps");

/* STEER_SET_* switches written by user space; an array so it exists (zeroed) without any update. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STEER_SET_COUNT);
	__type(key, __u32);
	__type(value, __u32);
} settings SEC(".maps");

/*
 * Ports bound lately in the sensor's namespace, with the time of the bind (bpf_ktime_get_ns), written by the
 * post_bind programs below. A program that binds a port and expects a connection or a datagram on it at once (an FTP
 * client's active-mode data port, a TFTP client's reply port, a service starting) is left alone from its bind on,
 * before user space's next read of /proc/net puts the port in pass_ports. Entries age out by themselves (the window
 * is a setting) and the LRU bounds the map, so a port closed since is steered again without user space.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STEER_RECENT_BINDS_MAX);
	__type(key, struct steer_port_key);
	__type(value, __u64);
} recent_binds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_CNT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &which);

	if (value)
		*value += 1;
}

static __always_inline __u32 setting(__u32 which)
{
	__u32 *value = bpf_map_lookup_elem(&settings, &which);

	return value ? *value : 0;
}

static __always_inline int address_wanted(struct bpf_sk_lookup *ctx)
{
	struct steer_addr_key key = { .prefixlen = 128 };

	if (!setting(STEER_SET_ADDR_FILTER))
		return 1;
	if (ctx->family == 2 /* AF_INET */) {
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ctx->local_ip4, 4);
	} else {
		/* Copy word by word: the context only allows 4-byte reads of local_ip6. */
		__u32 w0 = ctx->local_ip6[0], w1 = ctx->local_ip6[1], w2 = ctx->local_ip6[2], w3 = ctx->local_ip6[3];

		__builtin_memcpy(&key.addr[0], &w0, 4);
		__builtin_memcpy(&key.addr[4], &w1, 4);
		__builtin_memcpy(&key.addr[8], &w2, 4);
		__builtin_memcpy(&key.addr[12], &w3, 4);
	}
	return bpf_map_lookup_elem(&dst_addrs, &key) != NULL;
}

static __always_inline int recently_bound(const struct steer_port_key *key)
{
	__u64 window_ns = (__u64)setting(STEER_SET_BIND_WINDOW_MS) * 1000000ULL;
	__u64 *bound_at;

	if (!window_ns)
		return 0;
	bound_at = bpf_map_lookup_elem(&recent_binds, key);
	return bound_at && bpf_ktime_get_ns() - *bound_at < window_ns;
}

SEC("sk_lookup")
int honeytrap_steer(struct bpf_sk_lookup *ctx)
{
	struct steer_port_key port_key = {};
	__u32 sock_key;
	struct bpf_sock *sk;
	long err;

	if (ctx->protocol == IPPROTO_TCP)
		sock_key = STEER_SOCK_TCP;
	else if (ctx->protocol == IPPROTO_UDP)
		sock_key = STEER_SOCK_UDP;
	else
		return SK_PASS;

	/* Loopback is ifindex 1 in every namespace; local clients of local services are not attackers. */
	if (ctx->ingress_ifindex == 1 && !setting(STEER_SET_LOOPBACK))
		goto pass;

	port_key.protocol = ctx->protocol;
	port_key.port = (__u16)ctx->local_port; /* host byte order in this context */
	if (bpf_map_lookup_elem(&pass_ports, &port_key) || recently_bound(&port_key))
		goto pass;
	if (!address_wanted(ctx))
		goto pass;

	/* Per-family sockets, when user space set them, win over the dual-stack one. */
	if (setting(STEER_SET_PER_FAMILY))
		sock_key += ctx->family == 2 ? STEER_SOCK_V4_OFFSET : STEER_SOCK_V6_OFFSET;

	sk = bpf_map_lookup_elem(&sockets, &sock_key);
	if (!sk) {
		count(STEER_CNT_NO_SOCKET);
		return SK_PASS;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(STEER_CNT_ASSIGN_ERROR);
		return SK_PASS;
	}
	count(STEER_CNT_STEERED);
	return SK_PASS;
pass:
	count(STEER_CNT_PASSED);
	return SK_PASS;
}

/* Records a bind in the sensor's namespace (post_bind: the port is the one the kernel gave, also for port 0). */
static __always_inline int note_bind(struct bpf_sock *sk)
{
	__u64 want = ((__u64)setting(STEER_SET_NETNS_COOKIE_HI) << 32) | setting(STEER_SET_NETNS_COOKIE_LO);
	struct steer_port_key key = {};
	__u64 now;

	if (!want || bpf_get_netns_cookie(sk) != want)
		return 1;
	/* The sensor's own per-port sockets are passed and unpassed by the sensor as they open and close: noting them
	 * would keep a port it just closed away from steering for the whole window. */
	if ((bpf_get_current_pid_tgid() >> 32) == setting(STEER_SET_OWN_TGID))
		return 1;
	if ((sk->protocol != IPPROTO_TCP && sk->protocol != IPPROTO_UDP) || sk->src_port == 0 || sk->src_port > 65535)
		return 1;
	key.protocol = (__u8)sk->protocol;
	key.port = (__u16)sk->src_port; /* host byte order in bpf_sock */
	now = bpf_ktime_get_ns();
	bpf_map_update_elem(&recent_binds, &key, &now, BPF_ANY);
	return 1; /* never refuse a bind */
}

SEC("cgroup/post_bind4")
int honeytrap_bind4(struct bpf_sock *sk)
{
	return note_bind(sk);
}

SEC("cgroup/post_bind6")
int honeytrap_bind6(struct bpf_sock *sk)
{
	return note_bind(sk);
}

char LICENSE[] SEC("license") = "GPL";
