// honeytrap-ts socket addon: the socket options Node cannot set on the NFQUEUE monitor's listeners. Apart from the
// eBPF addon so that the NFQUEUE monitor loads neither libbpf nor libelf (about half a megabyte resident) for them.
// Loaded only by src/monitor/served-socket.ts.
#include <napi.h>

#include "served-socket.h"

namespace honeytrap {

Napi::Object InitSocketAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("markServedSocket", Napi::Function::New(env, MarkServedSocket, "markServedSocket"));
  exports.Set("readSavedSyn", Napi::Function::New(env, ReadSavedSyn, "readSavedSyn"));
  return exports;
}

}  // namespace honeytrap

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return honeytrap::InitSocketAddon(env, exports); }

NODE_API_MODULE(honeytrap_socket, InitAddon)
