// One loaded BPF object file: opened, loaded into the kernel, and closed (maps and programs freed) when it goes.
#ifndef HONEYTRAP_BPF_OBJECT_H
#define HONEYTRAP_BPF_OBJECT_H

#include <bpf/libbpf.h>
#include <napi.h>
#include <string>

namespace honeytrap {

class BpfObject {
 public:
  BpfObject() = default;
  ~BpfObject() { Close(); }
  BpfObject(const BpfObject&) = delete;
  BpfObject& operator=(const BpfObject&) = delete;

  // Opens and loads `path`; throws a JS Error (via C++ exception) naming the step on failure.
  void Load(Napi::Env env, const std::string& path);
  // The program called `name`; throws when the object has none.
  bpf_program* Program(Napi::Env env, const char* name) const;
  // The fd of the map called `name`; throws when the object has none.
  int MapFd(Napi::Env env, const char* name) const;
  void Close();
  bool loaded() const { return object_ != nullptr; }

 private:
  bpf_object* object_ = nullptr;
  std::string path_;
};

// Sums a per-CPU __u64 array entry over every possible CPU; 0 when the lookup fails.
unsigned long long SumPerCpu(int map_fd, unsigned int key);

}  // namespace honeytrap

#endif
