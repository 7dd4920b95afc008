// The sk_lookup steering program as a JS object: attach to a netns, fill its maps, read its counters.
#ifndef HONEYTRAP_STEERING_H
#define HONEYTRAP_STEERING_H

#include <napi.h>
#include <string>

#include "bpf-object.h"

namespace honeytrap {

class Steering : public Napi::ObjectWrap<Steering> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Steering(const Napi::CallbackInfo& info);
  ~Steering() override { Release(); }

 private:
  Napi::Value Attach(const Napi::CallbackInfo& info);
  Napi::Value WatchBinds(const Napi::CallbackInfo& info);
  Napi::Value SetSocket(const Napi::CallbackInfo& info);
  Napi::Value PassPort(const Napi::CallbackInfo& info);
  Napi::Value SetAddresses(const Napi::CallbackInfo& info);
  Napi::Value SetSetting(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value ProgramId(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void EnsureOpen(Napi::Env env) const;
  void WriteSetting(Napi::Env env, unsigned int index, unsigned int value);
  void Release();

  BpfObject object_;
  std::string netns_path_;
  bpf_link* link_ = nullptr;  // the netns link: held, never pinned, so process death detaches it
  bpf_link* bind4_link_ = nullptr;  // the cgroup post_bind links, held the same way
  bpf_link* bind6_link_ = nullptr;
  int sockets_fd_ = -1;
  int pass_ports_fd_ = -1;
  int dst_addrs_fd_ = -1;
  int settings_fd_ = -1;
  int counters_fd_ = -1;
};

}  // namespace honeytrap

#endif
