#include "netns-query.h"

#include <bpf/bpf.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <unistd.h>
#include <vector>

#include "bpf-error.h"

namespace honeytrap {

namespace {
// The kernel caps programs per netns attach point at 64 (MAX_PROG_ARRAY_SIZE in bpf's netns code); ask for more so a
// future limit is still read whole.
constexpr __u32 kMaxPrograms = 256;
}  // namespace

Napi::Value AttachedLookupPrograms(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "/proc/self/ns/net";
  int netns_fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (netns_fd < 0) throw BpfError(env, "open(" + path + ")", errno);
  std::vector<__u32> ids(kMaxPrograms);
  __u32 count = kMaxPrograms;
  int rc = bpf_prog_query(netns_fd, BPF_SK_LOOKUP, 0, nullptr, ids.data(), &count);
  int err = errno;
  close(netns_fd);
  if (rc != 0) throw BpfError(env, "bpf_prog_query(" + path + ", sk_lookup)", err);
  Napi::Array list = Napi::Array::New(env, count);
  for (__u32 i = 0; i < count; i++) {
    Napi::Object item = Napi::Object::New(env);
    item.Set("id", Napi::Number::New(env, ids[i]));
    std::string name;
    // A program may go away between the query and this lookup; it is then listed without a name.
    int prog_fd = bpf_prog_get_fd_by_id(ids[i]);
    if (prog_fd >= 0) {
      bpf_prog_info prog{};
      __u32 length = sizeof(prog);
      if (bpf_obj_get_info_by_fd(prog_fd, &prog, &length) == 0) name.assign(prog.name, strnlen(prog.name, sizeof(prog.name)));
      close(prog_fd);
    }
    item.Set("name", Napi::String::New(env, name));
    list.Set(i, item);
  }
  return list;
}

}  // namespace honeytrap
