#include "served-socket.h"

#include <cerrno>
#include <cstdint>
#include <netinet/in.h>
#include <sys/socket.h>

#include "bpf-error.h"

namespace honeytrap {

Napi::Value MarkServedSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    throw ArgError(env, "markServedSocket(fd, family, mark): three numbers expected");
  }
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const int family = info[1].As<Napi::Number>().Int32Value();
  const double mark_value = info[2].As<Napi::Number>().DoubleValue();
  if (fd < 0 || (family != 4 && family != 6) || mark_value < 1 || mark_value > 0xffffffff) {
    throw ArgError(env, "markServedSocket: fd >= 0, family 4 or 6 and a mark from 1 to 0xffffffff expected");
  }
  const uint32_t mark = static_cast<uint32_t>(mark_value);
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) throw BpfError(env, "setsockopt(SO_MARK)", errno);
  // Transparent only so that xt_socket's --transparent picks our sockets out of all listening ones: a listener bound
  // to the wildcard address behaves as before (it never binds a foreign address).
  const int on = 1;
  const int level = family == 6 ? SOL_IPV6 : SOL_IP;
  const int option = family == 6 ? IPV6_TRANSPARENT : IP_TRANSPARENT;
  if (setsockopt(fd, level, option, &on, sizeof on) != 0) {
    throw BpfError(env, family == 6 ? "setsockopt(IPV6_TRANSPARENT)" : "setsockopt(IP_TRANSPARENT)", errno);
  }
  return env.Undefined();
}

}  // namespace honeytrap
