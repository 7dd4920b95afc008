"""Attacker side of test/netns/ebpf-native.test.ts, run inside the attacker namespace. Prints one JSON document.

  tcp <host> <port>...      connects to each port, reads one line; {"results": [{"port", "reply" | "error"}]}
  udp <host> <port>...      sends "probe <port>" to each port
  syn4 <src> <dst> <sport> <dport>   one hand-made IPv4 SYN (raw socket, IP_HDRINCL): the fields the test expects
  syn6 <src> <dst> <sport> <dport>   one hand-made IPv6 SYN (raw TCP socket; the kernel adds the IPv6 header)
  synstream4 <src> <dst> <sport> <dport> <count> <gap_us>
                            <count> IPv4 SYNs from ports sport, sport+1, ... spaced <gap_us> apart (busy wait);
                            {"sent", "elapsedMs"} from the first send to the last
Every socket has a timeout; the port lists are bounded by the caller.
"""
import json
import socket
import struct
import sys
import time

TIMEOUT_S = 3.0
# MSS 1400, SACK permitted, timestamps, NOP, window scale 7: 20 bytes, kinds in wire order 2, 4, 8, 1, 3.
OPTIONS = struct.pack('!BBH', 2, 4, 1400) + bytes([4, 2]) + struct.pack('!BBII', 8, 10, 12345, 0) + bytes([1, 3, 3, 7])
WINDOW = 29200
TTL = 77
IP_ID = 0x1234
HOP_LIMIT = 55


def checksum(data):
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_syn(sport, dport, pseudo):
    offset_words = (20 + len(OPTIONS)) // 4
    header = struct.pack('!HHIIBBHHH', sport, dport, 1000, 0, offset_words << 4, 0x02, WINDOW, 0, 0) + OPTIONS
    if pseudo is None:
        return header
    value = checksum(pseudo + header)
    return header[:16] + struct.pack('!H', value) + header[18:]


def tcp(host, ports):
    results = []
    for port in ports:
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT_S) as s:
                results.append({'port': port, 'reply': s.makefile().readline().strip()})
        except OSError as e:
            results.append({'port': port, 'error': type(e).__name__})
    return {'results': results}


def udp(host, ports):
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        for port in ports:
            s.sendto(b'probe %d' % port, (host, port))
        return {'sent': len(ports), 'sport': s.getsockname()[1]}


def ip4_syn(src, dst, sport, dport):
    segment_len = 20 + len(OPTIONS)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, socket.IPPROTO_TCP, segment_len)
    segment = tcp_syn(sport, dport, pseudo)
    # Version/IHL, TOS, total length, ID, flags+fragment (DF), TTL, protocol, checksum (kernel fills it), addresses.
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + segment_len, IP_ID, 0x4000, TTL, socket.IPPROTO_TCP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return ip + segment


def syn4(src, dst, sport, dport):
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        s.sendto(ip4_syn(src, dst, sport, dport), (dst, 0))
    return {'sent': 1}


def synstream4(src, dst, sport, dport, count, gap_us):
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        started = time.perf_counter()
        due = started
        for i in range(count):
            while time.perf_counter() < due:
                pass
            s.sendto(ip4_syn(src, dst, sport + i, dport), (dst, 0))
            due += gap_us / 1e6
        elapsed_ms = (time.perf_counter() - started) * 1000
    return {'sent': count, 'elapsedMs': elapsed_ms}


def syn6(src, dst, sport, dport):
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_TCP) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, HOP_LIMIT)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, 16)  # the kernel computes the TCP checksum
        s.bind((src, 0))
        s.sendto(tcp_syn(sport, dport, None), (dst, 0))
    return {'sent': 1}


def main(argv):
    command, args = argv[0], argv[1:]
    if command == 'tcp':
        out = tcp(args[0], [int(p) for p in args[1:]])
    elif command == 'udp':
        out = udp(args[0], [int(p) for p in args[1:]])
    elif command == 'syn4':
        out = syn4(args[0], args[1], int(args[2]), int(args[3]))
    elif command == 'synstream4':
        out = synstream4(args[0], args[1], int(args[2]), int(args[3]), int(args[4]), int(args[5]))
    elif command == 'syn6':
        out = syn6(args[0], args[1], int(args[2]), int(args[3]))
    else:
        raise SystemExit('unknown command ' + command)
    print(json.dumps(out))


if __name__ == '__main__':
    main(sys.argv[1:])
