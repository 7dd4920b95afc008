/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The ring-buffer record of synfacts.bpf.c, read by src/monitor/ebpf/syn-record.ts. Keep both in step. */
#ifndef HONEYTRAP_SYNFACTS_H
#define HONEYTRAP_SYNFACTS_H

#include <linux/types.h>

#define SYN_RECORD_VERSION 1
#define SYN_RECORD_BYTES 80
#define SYN_MAX_OPTIONS 16

#define SYN_IP_DF 0x01          /* ip_flags: IPv4 don't-fragment bit */
#define SYN_OPT_HAS_MSS 0x01    /* opt_flags */
#define SYN_OPT_HAS_WSCALE 0x02
#define SYN_OPT_TRUNCATED 0x04  /* more kinds than SYN_MAX_OPTIONS, or an option ran past the header */

/* Every multi-byte field is in network byte order, so the record reads the same on any host. Addresses are 16
 * bytes; an IPv4 address fills the first 4 and the other 12 are zero (family says which). */
struct syn_record {
	__u8 version;        /* 0 */
	__u8 family;         /* 1: 4 or 6 */
	__u8 ttl;            /* 2: TTL or hop limit */
	__u8 ip_flags;       /* 3 */
	__be16 ip_id;        /* 4: 0 for IPv6 */
	__be16 src_port;     /* 6 */
	__be16 dst_port;     /* 8 */
	__be16 window;       /* 10 */
	__be16 mss;          /* 12 */
	__u8 wscale;         /* 14 */
	__u8 tcp_flags;      /* 15 */
	__u8 opt_flags;      /* 16 */
	__u8 opt_count;      /* 17: kinds stored in opt_kinds */
	__u16 reserved;      /* 18 */
	__be32 ifindex;      /* 20: interface the SYN arrived on */
	__be64 ts_ns;        /* 24: bpf_ktime_get_ns(), CLOCK_MONOTONIC like process.hrtime */
	__u8 src[16];        /* 32 */
	__u8 dst[16];        /* 48 */
	__u8 opt_kinds[SYN_MAX_OPTIONS]; /* 64 */
};

/* `synfacts_counters` indexes (per-CPU __u64). */
#define SYN_CNT_RECORDS 0 /* written to the ring */
#define SYN_CNT_LOST 1    /* ring full */
#define SYN_CNT_COUNT 2

#endif
