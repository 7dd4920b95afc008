#include "served-socket.h"

#include <cerrno>
#include <cstdint>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "js-error.h"

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
  const int on = 1;
  // A SYN that skips the queue leaves its header facts nowhere else: the kernel keeps a copy of each SYN's IP and TCP
  // headers for the socket accepted from it, read once with TCP_SAVED_SYN (ReadSavedSyn). Set first: the rule lets
  // SYNs past the queue as soon as the mark and the transparent flag are both set, and each of those needs its copy.
  if (setsockopt(fd, IPPROTO_TCP, TCP_SAVE_SYN, &on, sizeof on) != 0) throw SysError(env, "setsockopt(TCP_SAVE_SYN)", errno);
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) throw SysError(env, "setsockopt(SO_MARK)", errno);
  // Transparent only so that xt_socket's --transparent picks our sockets out of all listening ones: a listener bound
  // to the wildcard address behaves as before (it never binds a foreign address).
  const int level = family == 6 ? SOL_IPV6 : SOL_IP;
  const int option = family == 6 ? IPV6_TRANSPARENT : IP_TRANSPARENT;
  if (setsockopt(fd, level, option, &on, sizeof on) != 0) {
    throw SysError(env, family == 6 ? "setsockopt(IPV6_TRANSPARENT)" : "setsockopt(IP_TRANSPARENT)", errno);
  }
  return env.Undefined();
}

Napi::Value ReadSavedSyn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw ArgError(env, "readSavedSyn(fd): a number expected");
  const int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd < 0) throw ArgError(env, "readSavedSyn: fd >= 0 expected");
  // IPv4 with options (60) and TCP with options (60) fit easily; IPv6 extension headers are what may not, and then
  // the kernel says how much it needs (EINVAL with the length set) and a second call with that size reads it.
  uint8_t stack_buffer[512];
  socklen_t length = sizeof stack_buffer;
  if (getsockopt(fd, IPPROTO_TCP, TCP_SAVED_SYN, stack_buffer, &length) == 0) {
    // Length 0: nothing saved (a connection from a SYN cookie, or the copy was already read).
    if (length == 0) return env.Null();
    return Napi::Buffer<uint8_t>::Copy(env, stack_buffer, length);
  }
  if (errno != EINVAL || length <= sizeof stack_buffer || length > 65535) return env.Null();
  Napi::Buffer<uint8_t> heap_buffer = Napi::Buffer<uint8_t>::New(env, length);
  socklen_t heap_length = length;
  if (getsockopt(fd, IPPROTO_TCP, TCP_SAVED_SYN, heap_buffer.Data(), &heap_length) != 0 || heap_length == 0) return env.Null();
  return heap_length == length ? heap_buffer : Napi::Buffer<uint8_t>::Copy(env, heap_buffer.Data(), heap_length);
}

}  // namespace honeytrap
