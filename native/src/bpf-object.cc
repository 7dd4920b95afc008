#include "bpf-object.h"

#include <bpf/bpf.h>
#include <cerrno>
#include <vector>

#include "bpf-error.h"

namespace honeytrap {

void BpfObject::Load(Napi::Env env, const std::string& path) {
  Close();
  path_ = path;
  ClearLibbpfLog();
  bpf_object* object = bpf_object__open_file(path.c_str(), nullptr);
  if (object == nullptr) throw BpfError(env, "bpf_object__open_file(" + path + ")", errno);
  int err = bpf_object__load(object);
  if (err != 0) {
    bpf_object__close(object);
    throw BpfError(env, "bpf_object__load(" + path + ")", err);
  }
  object_ = object;
}

bpf_program* BpfObject::Program(Napi::Env env, const char* name) const {
  bpf_program* program = bpf_object__find_program_by_name(object_, name);
  if (program == nullptr) throw BpfError(env, std::string("finding program ") + name + " in " + path_, ENOENT);
  return program;
}

int BpfObject::MapFd(Napi::Env env, const char* name) const {
  bpf_map* map = bpf_object__find_map_by_name(object_, name);
  int fd = map == nullptr ? -ENOENT : bpf_map__fd(map);
  if (fd < 0) throw BpfError(env, std::string("finding map ") + name + " in " + path_, fd);
  return fd;
}

void BpfObject::Close() {
  if (object_ != nullptr) bpf_object__close(object_);
  object_ = nullptr;
}

unsigned long long SumPerCpu(int map_fd, unsigned int key) {
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return 0;
  std::vector<unsigned long long> values(static_cast<size_t>(cpus));
  if (bpf_map_lookup_elem(map_fd, &key, values.data()) != 0) return 0;
  unsigned long long sum = 0;
  for (unsigned long long v : values) sum += v;
  return sum;
}

}  // namespace honeytrap
