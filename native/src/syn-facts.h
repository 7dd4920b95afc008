// The SYN-facts programs as a JS object: attached to interfaces by links (tcx, or XDP), their ring buffer read on a thread.
#ifndef HONEYTRAP_SYN_FACTS_H
#define HONEYTRAP_SYN_FACTS_H

#include <napi.h>

#include <atomic>
#include <string>
#include <vector>

#include "batch-pump.h"
#include "bpf-object.h"

struct ring_buffer;

namespace honeytrap {

class SynFacts : public Napi::ObjectWrap<SynFacts> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit SynFacts(const Napi::CallbackInfo& info);
  ~SynFacts() override { Release(); }

 private:
  struct Attachment {
    std::string name;
    int ifindex;
    int link_fd;
    const char* mode;  // "tcx", or XDP's "native" or "generic"
  };

  Napi::Value Interfaces(const Napi::CallbackInfo& info);
  Napi::Value Attach(const Napi::CallbackInfo& info);
  Napi::Value Detach(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void AttachInterface(Napi::Env env, const std::string& name);
  Napi::Object Describe(Napi::Env env, const Attachment& a) const;
  static int OnRecord(void* self, void* data, size_t size);
  void Release();

  BpfObject object_;
  std::vector<Attachment> attachments_;
  ring_buffer* ring_ = nullptr;
  int counters_fd_ = -1;
  bool try_tcx_ = true;
  BatchPump pump_;
  std::vector<uint8_t>* filling_ = nullptr;  // the batch OnRecord appends to, set only during a drain
  size_t filling_max_ = 0;
  std::atomic<uint64_t> records_{0};
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace honeytrap

#endif
