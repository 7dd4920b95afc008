#include "listening-ports.h"

#include <arpa/inet.h>
#include <cerrno>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <set>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include "bpf-error.h"

namespace honeytrap {

namespace {

// Why not /proc/net/tcp: reading it walks every bucket of the kernel's established-socket hash (shared by all
// namespaces, hundreds of thousands of buckets on a large host) and every connection in it, once a second. Asked for
// listening sockets only, sock_diag walks the listening hash alone.
constexpr size_t kReceiveBytes = 32 * 1024;
constexpr int kTimeoutMs = 2000;  // a dump is answered at once; this bounds a kernel that never says done

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// One dump: the local ports of the sockets of `family` and `protocol` in the states of the `states` bit mask.
void Dump(Napi::Env env, uint8_t family, uint8_t protocol, uint32_t states, std::set<uint16_t>& ports) {
  const std::string what = std::string("sock_diag(") + (family == AF_INET ? "inet" : "inet6") + ", " +
                           (protocol == IPPROTO_TCP ? "tcp" : "udp") + ")";
  Fd fd(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (fd.get() < 0) throw BpfError(env, what + " socket", errno);
  timeval timeout{kTimeoutMs / 1000, (kTimeoutMs % 1000) * 1000};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));

  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  message.request.sdiag_family = family;
  message.request.sdiag_protocol = protocol;
  message.request.idiag_states = states;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd.get(), &message, sizeof(message), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
    throw BpfError(env, what + " send", errno);
  }

  std::vector<char> buffer(kReceiveBytes);
  for (;;) {
    ssize_t length = recv(fd.get(), buffer.data(), buffer.size(), 0);
    if (length < 0 && errno == EINTR) continue;
    if (length < 0) throw BpfError(env, what + " recv", errno);
    if (length == 0) throw BpfError(env, what + " recv (closed before done)", EPROTO);
    int remaining = static_cast<int>(length);
    for (auto* header = reinterpret_cast<nlmsghdr*>(buffer.data()); NLMSG_OK(header, remaining);
         header = NLMSG_NEXT(header, remaining)) {
      if (header->nlmsg_type == NLMSG_DONE) return;
      if (header->nlmsg_type == NLMSG_ERROR) {
        const auto* error = static_cast<const nlmsgerr*>(NLMSG_DATA(header));
        int code = header->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr)) ? -error->error : EPROTO;
        if (code == 0) continue;  // an acknowledgement, not an error
        throw BpfError(env, what, code);
      }
      if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY || header->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) {
        continue;
      }
      const auto* socket_info = static_cast<const inet_diag_msg*>(NLMSG_DATA(header));
      ports.insert(ntohs(socket_info->id.idiag_sport));
    }
  }
}

Napi::Array ToArray(Napi::Env env, const std::set<uint16_t>& ports) {
  Napi::Array list = Napi::Array::New(env, ports.size());
  uint32_t i = 0;
  for (uint16_t port : ports) list.Set(i++, Napi::Number::New(env, port));
  return list;
}

}  // namespace

Napi::Value ListeningPorts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::set<uint16_t> tcp;
  std::set<uint16_t> udp;
  for (uint8_t family : {AF_INET, AF_INET6}) {
    Dump(env, family, IPPROTO_TCP, 1U << TCP_LISTEN, tcp);
    // An unconnected UDP socket is in TCP_CLOSE, the state /proc/net/udp shows as 07; a connected one takes
    // datagrams from its one peer only, so it does not own the port for anyone else.
    Dump(env, family, IPPROTO_UDP, 1U << TCP_CLOSE, udp);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("tcp", ToArray(env, tcp));
  result.Set("udp", ToArray(env, udp));
  return result;
}

}  // namespace honeytrap
