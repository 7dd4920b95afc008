// Marks the sensor's per-port TCP listeners so that the NFQUEUE monitor's rules can tell them from any other socket
// (docs/iptables.md, "SYNs to a port the sensor already serves").
#ifndef HONEYTRAP_SERVED_SOCKET_H
#define HONEYTRAP_SERVED_SOCKET_H

#include <napi.h>

namespace honeytrap {

// markServedSocket(fd, family, mark): SO_MARK = mark and IP_TRANSPARENT (IPV6_TRANSPARENT for family 6) on a
// listening socket. The mangle rule `-m socket --transparent --nowildcard --restore-skmark -m mark --mark M/M` then
// matches SYNs to it only. Throws a JS Error naming the option and errno (EPERM without CAP_NET_ADMIN).
// Also sets TCP_SAVE_SYN, so that each connection accepted from it keeps its SYN's headers for ReadSavedSyn.
Napi::Value MarkServedSocket(const Napi::CallbackInfo& info);

// readSavedSyn(fd): the IP and TCP headers of the SYN that opened the accepted socket fd (TCP_SAVED_SYN), as a Buffer,
// or null when the kernel kept none (the listener had no TCP_SAVE_SYN, a SYN cookie, already read). Never throws for
// what the socket holds; the kernel frees its copy on this read.
Napi::Value ReadSavedSyn(const Napi::CallbackInfo& info);

}  // namespace honeytrap

#endif
