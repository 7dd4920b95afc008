// The catch-all UDP socket: a dual-stack [::] socket that the steering program feeds datagrams for any port, read
// with recvmsg so each datagram arrives in JS with the destination address and port it was sent to.
#ifndef HONEYTRAP_UDP_CATCH_ALL_H
#define HONEYTRAP_UDP_CATCH_ALL_H

#include <napi.h>

#include <atomic>
#include <vector>

#include "batch-pump.h"

namespace honeytrap {

// Record layout (network byte order), then `stored` payload bytes. Read by src/monitor/ebpf/udp-record.ts.
//  0 u8 version (1)   1 u8 family (4|6)   2 u8 ttl   3 u8 flags (1 truncated, 2 ttl known, 4 destination known)
//  4 u16 src port     6 u16 dst port      8 u32 stored bytes   12 u32 datagram bytes
// 16 src[16]         32 dst[16]          48 payload
constexpr size_t kUdpRecordHeaderBytes = 48;

class UdpCatchAll : public Napi::ObjectWrap<UdpCatchAll> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit UdpCatchAll(const Napi::CallbackInfo& info);
  ~UdpCatchAll() override { Release(); }

 private:
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Port(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void Drain(std::vector<uint8_t>& batch, size_t max_bytes);
  void Release();

  int fd_ = -1;
  int port_ = 0;
  size_t max_payload_ = 0;
  std::vector<uint8_t> buffer_;
  BatchPump pump_;
  std::atomic<uint64_t> datagrams_{0};
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace honeytrap

#endif
