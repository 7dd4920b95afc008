// Which local ports this network namespace's sockets take new traffic on, from the kernel's sock_diag netlink
// interface: the eBPF monitor leaves those ports to their real services.
#ifndef HONEYTRAP_LISTENING_PORTS_H
#define HONEYTRAP_LISTENING_PORTS_H

#include <napi.h>

namespace honeytrap {

// listeningPorts() -> { tcp: number[], udp: number[] }: listening TCP sockets and unconnected UDP sockets, IPv4 and
// IPv6, each port once. Throws a JS Error (with errno and syscall) when the kernel cannot answer, e.g. no udp_diag.
Napi::Value ListeningPorts(const Napi::CallbackInfo& info);

}  // namespace honeytrap

#endif
