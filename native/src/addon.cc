// honeytrap-ts eBPF addon: the entry points JS sees. Loaded only by src/monitor/ebpf/bpf-native.ts.
#include <napi.h>

#include "../bpf/synfacts.h"
#include "bpf-error.h"
#include "listening-ports.h"
#include "netns-query.h"
#include "steering.h"
#include "syn-facts.h"
#include "udp-catch-all.h"

namespace honeytrap {

namespace {

struct Constructors {
  Napi::FunctionReference steering;
  Napi::FunctionReference syn_facts;
  Napi::FunctionReference udp;
};

Napi::Value Construct(const Napi::CallbackInfo& info, Napi::FunctionReference Constructors::*which) {
  Constructors* constructors = info.Env().GetInstanceData<Constructors>();
  return (constructors->*which).New({info[0]});
}

Napi::Value OpenSteering(const Napi::CallbackInfo& info) { return Construct(info, &Constructors::steering); }
Napi::Value OpenSynFacts(const Napi::CallbackInfo& info) { return Construct(info, &Constructors::syn_facts); }
Napi::Value OpenUdpCatchAll(const Napi::CallbackInfo& info) { return Construct(info, &Constructors::udp); }

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfLogger();
  auto* constructors = new Constructors();
  constructors->steering = Napi::Persistent(Steering::Define(env));
  constructors->syn_facts = Napi::Persistent(SynFacts::Define(env));
  constructors->udp = Napi::Persistent(UdpCatchAll::Define(env));
  env.SetInstanceData(constructors);
  exports.Set("openSteering", Napi::Function::New(env, OpenSteering, "openSteering"));
  exports.Set("openSynFacts", Napi::Function::New(env, OpenSynFacts, "openSynFacts"));
  exports.Set("attachedLookupPrograms", Napi::Function::New(env, AttachedLookupPrograms, "attachedLookupPrograms"));
  exports.Set("listeningPorts", Napi::Function::New(env, ListeningPorts, "listeningPorts"));
  exports.Set("openUdpCatchAll", Napi::Function::New(env, OpenUdpCatchAll, "openUdpCatchAll"));
  exports.Set("SYN_RECORD_BYTES", Napi::Number::New(env, SYN_RECORD_BYTES));
  exports.Set("UDP_RECORD_HEADER_BYTES", Napi::Number::New(env, kUdpRecordHeaderBytes));
  return exports;
}

}  // namespace honeytrap

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return honeytrap::Init(env, exports); }

NODE_API_MODULE(honeytrap_bpf, InitAddon)
