// Marks the sensor's per-port TCP listeners so that the NFQUEUE monitor's rules can tell them from any other socket
// (docs/iptables.md, "SYNs to a port the sensor already serves").
#ifndef HONEYTRAP_SERVED_SOCKET_H
#define HONEYTRAP_SERVED_SOCKET_H

#include <napi.h>

namespace honeytrap {

// markServedSocket(fd, family, mark): SO_MARK = mark and IP_TRANSPARENT (IPV6_TRANSPARENT for family 6) on a
// listening socket. The mangle rule `-m socket --transparent --nowildcard --restore-skmark -m mark --mark M/M` then
// matches SYNs to it only. Throws a JS Error naming the option and errno (EPERM without CAP_NET_ADMIN).
Napi::Value MarkServedSocket(const Napi::CallbackInfo& info);

}  // namespace honeytrap

#endif
