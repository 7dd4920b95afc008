#include "udp-catch-all.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bpf-error.h"

namespace honeytrap {

namespace {
constexpr int kDatagramsPerDrain = 256;                  // then the pump hands over a batch and comes back
constexpr size_t kMaxBatchBytes = 4 * 1024 * 1024;       // datagrams beyond this, while JS is behind, are dropped
constexpr size_t kDefaultMaxPayload = 65535;

void PutU16(uint8_t* at, uint16_t value) {
  uint16_t be = htons(value);
  memcpy(at, &be, 2);
}

void PutU32(uint8_t* at, uint32_t value) {
  uint32_t be = htonl(value);
  memcpy(at, &be, 4);
}

// A v4-mapped address (how a dual-stack socket sees IPv4 peers) becomes family 4 with the address in bytes 0..3.
void PutAddress(uint8_t* at, const sockaddr_storage& address, uint8_t* family, uint16_t* port) {
  if (address.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
    memcpy(at, &v4->sin_addr, 4);
    *family = 4;
    *port = ntohs(v4->sin_port);
  } else if (address.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      memcpy(at, &v6->sin6_addr.s6_addr[12], 4);
      *family = 4;
    } else {
      memcpy(at, &v6->sin6_addr, 16);
      *family = 6;
    }
    *port = ntohs(v6->sin6_port);
  }
}
}  // namespace

Napi::Function UdpCatchAll::Define(Napi::Env env) {
  return DefineClass(env, "UdpCatchAll",
                     {InstanceMethod("fd", &UdpCatchAll::Fd), InstanceMethod("port", &UdpCatchAll::Port),
                      InstanceMethod("stats", &UdpCatchAll::Stats), InstanceMethod("close", &UdpCatchAll::Close)});
}

// new UdpCatchAll({ port?, maxPayloadBytes?, onDatagrams }): binds [::]:port (0 = any) with IPV6_V6ONLY off.
UdpCatchAll::UdpCatchAll(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpCatchAll>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgError(env, "openUdpCatchAll needs an options object");
  Napi::Object options = info[0].As<Napi::Object>();
  if (!options.Get("onDatagrams").IsFunction()) throw ArgError(env, "onDatagrams must be a function");
  int64_t port = options.Get("port").IsNumber() ? options.Get("port").As<Napi::Number>().Int64Value() : 0;
  if (port < 0 || port > 65535) throw ArgError(env, "port must be 0-65535");
  int64_t max_payload = options.Get("maxPayloadBytes").IsNumber()
                            ? options.Get("maxPayloadBytes").As<Napi::Number>().Int64Value()
                            : static_cast<int64_t>(kDefaultMaxPayload);
  if (max_payload < 0 || max_payload > 65535) throw ArgError(env, "maxPayloadBytes must be 0-65535");
  max_payload_ = static_cast<size_t>(max_payload);
  buffer_.resize(65536);
  try {
    fd_ = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw BpfError(env, "socket(AF_INET6, SOCK_DGRAM)", errno);
    int off = 0, on = 1;
    // IPv4 datagrams on this IPv6 socket carry IPv4 control messages, so both levels are switched on.
    if (setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) != 0) throw BpfError(env, "IPV6_V6ONLY", errno);
    if (setsockopt(fd_, IPPROTO_IP, IP_RECVORIGDSTADDR, &on, sizeof(on)) != 0)
      throw BpfError(env, "IP_RECVORIGDSTADDR", errno);
    if (setsockopt(fd_, IPPROTO_IPV6, IPV6_RECVORIGDSTADDR, &on, sizeof(on)) != 0)
      throw BpfError(env, "IPV6_RECVORIGDSTADDR", errno);
    if (setsockopt(fd_, IPPROTO_IP, IP_RECVTTL, &on, sizeof(on)) != 0) throw BpfError(env, "IP_RECVTTL", errno);
    if (setsockopt(fd_, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof(on)) != 0)
      throw BpfError(env, "IPV6_RECVHOPLIMIT", errno);
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_any;
    address.sin6_port = htons(static_cast<uint16_t>(port));
    if (bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0)
      throw BpfError(env, "bind([::]:" + std::to_string(port) + ")", errno);
    socklen_t length = sizeof(address);
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) throw BpfError(env, "getsockname", errno);
    port_ = ntohs(address.sin6_port);
    pump_.Start(env, options.Get("onDatagrams").As<Napi::Function>(), fd_,
                [this](std::vector<uint8_t>& batch, size_t max_bytes) { Drain(batch, max_bytes); }, kMaxBatchBytes,
                "honeytrap-udp");
  } catch (...) {
    Release();
    throw;
  }
}

void UdpCatchAll::Drain(std::vector<uint8_t>& batch, size_t max_bytes) {
  for (int i = 0; i < kDatagramsPerDrain; i++) {
    sockaddr_storage source{};
    alignas(cmsghdr) char control[256];
    iovec iov{buffer_.data(), buffer_.size()};
    msghdr message{};
    message.msg_name = &source;
    message.msg_namelen = sizeof(source);
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    ssize_t received = recvmsg(fd_, &message, MSG_DONTWAIT | MSG_TRUNC);
    if (received < 0) return;  // EAGAIN: drained; other errors (ICMP-reported) are per-datagram and not ours
    datagrams_++;
    size_t stored = static_cast<size_t>(received) < max_payload_ ? static_cast<size_t>(received) : max_payload_;
    if (stored > buffer_.size()) stored = buffer_.size();
    if (batch.size() + kUdpRecordHeaderBytes + stored > max_bytes) {
      dropped_++;
      continue;
    }
    uint8_t header[kUdpRecordHeaderBytes] = {};
    uint8_t family = 0, flags = 0, ttl = 0;
    uint16_t src_port = 0, dst_port = 0;
    header[0] = 1;
    PutAddress(&header[16], source, &family, &src_port);
    for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
      if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_ORIGDSTADDR) ||
          (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR)) {
        sockaddr_storage destination{};
        memcpy(&destination, CMSG_DATA(c), c->cmsg_len - CMSG_LEN(0) < sizeof(destination)
                                               ? c->cmsg_len - CMSG_LEN(0)
                                               : sizeof(destination));
        uint8_t dst_family = 0;
        PutAddress(&header[32], destination, &dst_family, &dst_port);
        flags |= 4;
      } else if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) ||
                 (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT)) {
        int value = 0;
        memcpy(&value, CMSG_DATA(c), sizeof(value));
        ttl = static_cast<uint8_t>(value);
        flags |= 2;
      }
    }
    if (message.msg_flags & MSG_TRUNC || stored < static_cast<size_t>(received)) flags |= 1;
    header[1] = family;
    header[2] = ttl;
    header[3] = flags;
    PutU16(&header[4], src_port);
    PutU16(&header[6], dst_port);
    PutU32(&header[8], static_cast<uint32_t>(stored));
    PutU32(&header[12], static_cast<uint32_t>(received));
    batch.insert(batch.end(), header, header + kUdpRecordHeaderBytes);
    batch.insert(batch.end(), buffer_.data(), buffer_.data() + stored);
  }
}

Napi::Value UdpCatchAll::Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

Napi::Value UdpCatchAll::Port(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_); }

Napi::Value UdpCatchAll::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  result.Set("datagrams", Napi::Number::New(env, static_cast<double>(datagrams_.load())));
  result.Set("dropped", Napi::Number::New(env, static_cast<double>(dropped_.load())));
  result.Set("batches", Napi::Number::New(env, static_cast<double>(pump_.batches())));
  return result;
}

Napi::Value UdpCatchAll::Close(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

void UdpCatchAll::Release() {
  pump_.Stop();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

}  // namespace honeytrap
