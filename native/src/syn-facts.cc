#include "syn-facts.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include "../bpf/synfacts.h"
#include "bpf-error.h"

namespace honeytrap {

namespace {
constexpr size_t kMaxBatchBytes = 4096 * SYN_RECORD_BYTES;  // records waiting for JS beyond this are dropped
// At most one batch of facts per millisecond: at thousands of SYNs a second a wake-up per SYN cost the reader thread
// about 24 µs each (15 % of a core at 6,000/s on the 2-core VM). A session waits up to 100 ms for its facts
// (LATE_FACTS_MS in the supervisor), far longer than this delay.
constexpr unsigned kCoalesceUs = 1000;
// BPF_TCX_INGRESS (Linux 6.6): Debian 12's headers (6.1) predate it, and the kernel answers EINVAL where it is unknown.
constexpr int kTcxIngress = 46;
}

Napi::Function SynFacts::Define(Napi::Env env) {
  return DefineClass(env, "SynFacts",
                     {InstanceMethod("interfaces", &SynFacts::Interfaces), InstanceMethod("attach", &SynFacts::Attach),
                      InstanceMethod("detach", &SynFacts::Detach), InstanceMethod("stats", &SynFacts::Stats),
                      InstanceMethod("close", &SynFacts::Close)});
}

// new SynFacts({ objectPath, interfaces, onRecords, hook? }): loads, attaches to every interface, starts the reader.
// hook 'auto' (default) tries tc ingress (tcx) first; 'xdp' uses XDP only.
// Any failure undoes what was done so far before the Error reaches JS.
SynFacts::SynFacts(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SynFacts>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgError(env, "openSynFacts needs an options object");
  Napi::Object options = info[0].As<Napi::Object>();
  if (!options.Get("objectPath").IsString()) throw ArgError(env, "objectPath must be a string");
  if (!options.Get("interfaces").IsArray()) throw ArgError(env, "interfaces must be an array of names");
  if (!options.Get("onRecords").IsFunction()) throw ArgError(env, "onRecords must be a function");
  Napi::Array names = options.Get("interfaces").As<Napi::Array>();
  Napi::Value hook = options.Get("hook");
  if (!hook.IsUndefined()) {
    if (!hook.IsString()) throw ArgError(env, "hook must be 'auto' or 'xdp'");
    std::string which = hook.As<Napi::String>().Utf8Value();
    if (which != "auto" && which != "xdp") throw ArgError(env, "hook must be 'auto' or 'xdp'");
    try_tcx_ = which == "auto";
  }
  try {
    object_.Load(env, options.Get("objectPath").As<Napi::String>().Utf8Value());
    counters_fd_ = object_.MapFd(env, "synfacts_counters");
    ring_ = ring_buffer__new(object_.MapFd(env, "syn_ring"), &SynFacts::OnRecord, this, nullptr);
    if (ring_ == nullptr) throw BpfError(env, "ring_buffer__new", errno);
    for (uint32_t i = 0; i < names.Length(); i++) {
      Napi::Value name = names.Get(i);
      if (!name.IsString()) throw ArgError(env, "interface names must be strings");
      AttachInterface(env, name.As<Napi::String>().Utf8Value());
    }
    auto drain = [this](std::vector<uint8_t>& batch, size_t max_bytes) {
      filling_ = &batch;
      filling_max_ = max_bytes;
      ring_buffer__consume(ring_);
      filling_ = nullptr;
    };
    pump_.Start(env, options.Get("onRecords").As<Napi::Function>(), ring_buffer__epoll_fd(ring_), drain,
                kMaxBatchBytes, "honeytrap-synfacts", kCoalesceUs);
  } catch (...) {
    Release();
    throw;
  }
}

// A link per interface, so the program leaves with the process. tc ingress through a tcx link first (Linux 6.6+): it
// sees the skb after GRO and leaves the receive path alone, where XDP makes veth copy each large segment and generic
// XDP linearise it, which cut bulk receive on veth to a seventh. Then XDP: native (driver) mode, and generic (SKB)
// mode when the driver refuses, which costs speed, not correctness.
void SynFacts::AttachInterface(Napi::Env env, const std::string& name) {
  unsigned int ifindex = if_nametoindex(name.c_str());
  if (ifindex == 0) throw BpfError(env, "if_nametoindex(" + name + ")", errno);
  if (try_tcx_) {
    int tc_fd = bpf_program__fd(object_.Program(env, "honeytrap_synfacts_tc"));
    LIBBPF_OPTS(bpf_link_create_opts, tcx_opts);
    int fd = bpf_link_create(tc_fd, static_cast<int>(ifindex), static_cast<enum bpf_attach_type>(kTcxIngress), &tcx_opts);
    if (fd >= 0) {
      attachments_.push_back({name, static_cast<int>(ifindex), fd, "tcx"});
      return;
    }
    // EINVAL: a kernel without tcx. Anything else would fail XDP too, which then reports it.
  }
  int prog_fd = bpf_program__fd(object_.Program(env, "honeytrap_synfacts"));
  LIBBPF_OPTS(bpf_link_create_opts, native_opts, .flags = XDP_FLAGS_DRV_MODE);
  int fd = bpf_link_create(prog_fd, static_cast<int>(ifindex), BPF_XDP, &native_opts);
  const char* mode = "native";
  if (fd < 0) {
    int native_err = errno;
    LIBBPF_OPTS(bpf_link_create_opts, generic_opts, .flags = XDP_FLAGS_SKB_MODE);
    fd = bpf_link_create(prog_fd, static_cast<int>(ifindex), BPF_XDP, &generic_opts);
    mode = "generic";
    if (fd < 0) {
      int generic_err = errno;
      throw BpfError(env,
                     "attaching XDP to " + name + " (native mode: " + strerror(native_err) + "; generic mode)",
                     generic_err);
    }
  }
  attachments_.push_back({name, static_cast<int>(ifindex), fd, mode});
}

int SynFacts::OnRecord(void* self, void* data, size_t size) {
  auto* facts = static_cast<SynFacts*>(self);
  std::vector<uint8_t>* batch = facts->filling_;
  if (batch == nullptr || size != SYN_RECORD_BYTES) return 0;
  if (batch->size() + size > facts->filling_max_) {
    facts->dropped_++;
    return 0;
  }
  auto* bytes = static_cast<uint8_t*>(data);
  batch->insert(batch->end(), bytes, bytes + size);
  facts->records_++;
  return 0;
}

Napi::Object SynFacts::Describe(Napi::Env env, const Attachment& a) const {
  Napi::Object item = Napi::Object::New(env);
  item.Set("name", a.name);
  item.Set("ifindex", a.ifindex);
  item.Set("mode", a.mode);
  return item;
}

Napi::Value SynFacts::Interfaces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array list = Napi::Array::New(env, attachments_.size());
  for (size_t i = 0; i < attachments_.size(); i++) list.Set(static_cast<uint32_t>(i), Describe(env, attachments_[i]));
  return list;
}

// attach(name): one more interface, for one that appeared after the start. Returns its attachment.
Napi::Value SynFacts::Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!object_.loaded()) throw Napi::Error::New(env, "syn facts are closed");
  if (!info[0].IsString()) throw ArgError(env, "attach(name) takes an interface name");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  for (const Attachment& a : attachments_) {
    if (a.name == name) throw ArgError(env, "already attached to " + name);
  }
  AttachInterface(env, name);
  return Describe(env, attachments_.back());
}

// detach(name): closes that interface's link (an interface that was deleted took XDP with it; this frees the link).
// Returns whether there was one.
Napi::Value SynFacts::Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw ArgError(env, "detach(name) takes an interface name");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  for (auto it = attachments_.begin(); it != attachments_.end(); ++it) {
    if (it->name != name) continue;
    close(it->link_fd);
    attachments_.erase(it);
    return Napi::Boolean::New(env, true);
  }
  return Napi::Boolean::New(env, false);
}

Napi::Value SynFacts::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  bool open = object_.loaded();
  result.Set("records", Napi::Number::New(env, static_cast<double>(records_.load())));
  result.Set("dropped", Napi::Number::New(env, static_cast<double>(dropped_.load())));
  result.Set("batches", Napi::Number::New(env, static_cast<double>(pump_.batches())));
  result.Set("lost", Napi::Number::New(env, open ? static_cast<double>(SumPerCpu(counters_fd_, SYN_CNT_LOST)) : 0));
  result.Set("kernelRecords",
             Napi::Number::New(env, open ? static_cast<double>(SumPerCpu(counters_fd_, SYN_CNT_RECORDS)) : 0));
  return result;
}

Napi::Value SynFacts::Close(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

void SynFacts::Release() {
  pump_.Stop();
  for (const Attachment& a : attachments_) close(a.link_fd);  // closing the link detaches XDP from the interface
  attachments_.clear();
  if (ring_ != nullptr) ring_buffer__free(ring_);
  ring_ = nullptr;
  object_.Close();
}

}  // namespace honeytrap
