/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Layout shared by steer.bpf.c and the addon (native/src/steering.cc). Plain C, fixed-width fields only. */
#ifndef HONEYTRAP_STEER_H
#define HONEYTRAP_STEER_H

#include <linux/types.h>

/* `sockets` keys. 0 and 1 hold dual-stack [::] sockets (IPV6_V6ONLY=0), which bpf_sk_assign accepts for IPv4
 * lookups. With STEER_SET_PER_FAMILY on, key = base + STEER_SOCK_V4_OFFSET or + STEER_SOCK_V6_OFFSET instead:
 * 2 tcp4, 3 udp4, 4 tcp6, 5 udp6. */
#define STEER_SOCK_TCP 0
#define STEER_SOCK_UDP 1
#define STEER_SOCK_V4_OFFSET 2
#define STEER_SOCK_V6_OFFSET 4
#define STEER_SOCK_KEYS 6

#define STEER_PASS_PORTS_MAX 131072 /* every port of both protocols */
#define STEER_ADDRS_MAX 1024

#define STEER_RECENT_BINDS_MAX 16384 /* LRU: ports bound lately, by any process of the sensor's namespace */

/* `settings` indexes; each value a __u32, 0 = off. */
#define STEER_SET_ADDR_FILTER 0 /* 1: steer only destinations found in dst_addrs */
#define STEER_SET_LOOPBACK 1    /* 1: steer traffic arriving on lo too */
#define STEER_SET_PER_FAMILY 2  /* 1: use keys 2..5 instead of 0..1 */
#define STEER_SET_BIND_WINDOW_MS 3 /* how long a port bound lately is left to the kernel (0: not at all) */
#define STEER_SET_NETNS_COOKIE_LO 4 /* the sensor's network namespace cookie, low and high 32 bits: binds in */
#define STEER_SET_NETNS_COOKIE_HI 5 /* other namespaces are not ours to pass */
#define STEER_SET_OWN_TGID 6 /* the sensor's own process: its binds are its own business (it passes them itself) */
#define STEER_SET_COUNT 7

/* `counters` indexes (per-CPU __u64). */
#define STEER_CNT_STEERED 0
#define STEER_CNT_PASSED 1      /* left to the kernel on purpose: pass_ports, address filter, loopback */
#define STEER_CNT_NO_SOCKET 2   /* steering wanted but no socket in the map */
#define STEER_CNT_ASSIGN_ERROR 3
#define STEER_CNT_COUNT 4

struct steer_port_key {
	__u8 protocol; /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 pad;
	__u16 port; /* host byte order */
};

struct steer_addr_key {
	__u32 prefixlen; /* LPM trie: prefix length in bits over addr */
	__u8 addr[16];   /* IPv6, or IPv4 as ::ffff:a.b.c.d (prefix length then counts the 96 mapped bits) */
};

#endif
