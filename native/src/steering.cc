#include "steering.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <cerrno>
#include <climits>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include "../bpf/steer.h"
#include "bpf-error.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // Linux 5.14; older libc headers lack the name
#endif

namespace honeytrap {

namespace {

unsigned int ProtocolNumber(Napi::Env env, const Napi::Value& value) {
  std::string name = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  if (name == "tcp") return IPPROTO_TCP;
  if (name == "udp") return IPPROTO_UDP;
  throw ArgError(env, "protocol must be 'tcp' or 'udp'");
}

// "198.18.0.1", "fd00::/8", "10.0.0.0/8": IPv4 is stored v4-mapped, so its prefix length gains the 96 mapped bits.
steer_addr_key ParsePrefix(Napi::Env env, const std::string& text) {
  steer_addr_key key{};
  std::string address = text;
  long bits = -1;
  size_t slash = text.find('/');
  if (slash != std::string::npos) {
    address = text.substr(0, slash);
    char* end = nullptr;
    bits = strtol(text.c_str() + slash + 1, &end, 10);
    if (*end != '\0' || slash + 1 == text.size()) bits = LONG_MAX;
  }
  in_addr v4{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    if (bits == -1) bits = 32;
    if (bits < 0 || bits > 32) throw ArgError(env, "bad IPv4 prefix length in " + text);
    key.addr[10] = 0xff;
    key.addr[11] = 0xff;
    memcpy(&key.addr[12], &v4, 4);
    key.prefixlen = static_cast<__u32>(96 + bits);
    return key;
  }
  if (inet_pton(AF_INET6, address.c_str(), key.addr) == 1) {
    if (bits == -1) bits = 128;
    if (bits < 0 || bits > 128) throw ArgError(env, "bad IPv6 prefix length in " + text);
    key.prefixlen = static_cast<__u32>(bits);
    return key;
  }
  throw ArgError(env, "not an IP address or prefix: " + text);
}

}  // namespace

Napi::Function Steering::Define(Napi::Env env) {
  return DefineClass(env, "Steering",
                     {InstanceMethod("attach", &Steering::Attach), InstanceMethod("watchBinds", &Steering::WatchBinds),
                      InstanceMethod("setSocket", &Steering::SetSocket),
                      InstanceMethod("passPort", &Steering::PassPort),
                      InstanceMethod("setAddresses", &Steering::SetAddresses),
                      InstanceMethod("setSetting", &Steering::SetSetting),
                      InstanceMethod("counters", &Steering::Counters),
                      InstanceMethod("programId", &Steering::ProgramId), InstanceMethod("close", &Steering::Close)});
}

// new Steering({ objectPath, netnsPath? }): loads the object now; attach() is a separate step so the maps can be
// filled (sockets, pass ports) before the first packet is steered.
Steering::Steering(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Steering>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgError(env, "openSteering needs an options object");
  Napi::Object options = info[0].As<Napi::Object>();
  if (!options.Get("objectPath").IsString()) throw ArgError(env, "objectPath must be a string");
  Napi::Value netns = options.Get("netnsPath");
  netns_path_ = netns.IsString() ? netns.As<Napi::String>().Utf8Value() : "/proc/self/ns/net";
  object_.Load(env, options.Get("objectPath").As<Napi::String>().Utf8Value());
  object_.Program(env, "honeytrap_steer");
  sockets_fd_ = object_.MapFd(env, "sockets");
  pass_ports_fd_ = object_.MapFd(env, "pass_ports");
  dst_addrs_fd_ = object_.MapFd(env, "dst_addrs");
  settings_fd_ = object_.MapFd(env, "settings");
  counters_fd_ = object_.MapFd(env, "counters");
}

void Steering::EnsureOpen(Napi::Env env) const {
  if (!object_.loaded()) throw Napi::Error::New(env, "steering is closed");
}

Napi::Value Steering::Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  if (link_ != nullptr) throw Napi::Error::New(env, "steering is already attached");
  int netns_fd = open(netns_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (netns_fd < 0) throw BpfError(env, "open(" + netns_path_ + ")", errno);
  ClearLibbpfLog();
  bpf_link* link = bpf_program__attach_netns(object_.Program(env, "honeytrap_steer"), netns_fd);
  int err = errno;
  close(netns_fd);
  if (link == nullptr) throw BpfError(env, "bpf_program__attach_netns(" + netns_path_ + ")", err);
  link_ = link;
  return env.Undefined();
}

// watchBinds(windowMs, cgroupPath?): attaches the post_bind4/6 programs to a cgroup (the cgroup v2 root by default:
// every process of the host) through links held like the netns one. They record each port bound in this process's
// network namespace, and sk_lookup leaves it to the kernel for windowMs from the bind.
Napi::Value Steering::WatchBinds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  if (bind4_link_ != nullptr) throw Napi::Error::New(env, "bind watching is already attached");
  if (!info[0].IsNumber()) throw ArgError(env, "watchBinds(windowMs, cgroupPath?) takes a number of milliseconds");
  double window = info[0].As<Napi::Number>().DoubleValue();
  if (!(window >= 1 && window <= 3600000)) throw ArgError(env, "windowMs must be 1 to 3600000");
  std::string cgroup = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "/sys/fs/cgroup";

  // The namespace cookie of this process's netns: binds in any other namespace are not ours to pass.
  int probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (probe < 0) throw BpfError(env, "socket()", errno);
  __u64 cookie = 0;
  socklen_t length = sizeof(cookie);
  int rc = getsockopt(probe, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &length);
  int err = errno;
  close(probe);
  if (rc != 0) throw BpfError(env, "getsockopt(SO_NETNS_COOKIE)", err);

  int cgroup_fd = open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgroup_fd < 0) throw BpfError(env, "open(" + cgroup + ")", errno);
  ClearLibbpfLog();
  bpf_link* bind4 = bpf_program__attach_cgroup(object_.Program(env, "honeytrap_bind4"), cgroup_fd);
  err = errno;
  if (bind4 == nullptr) {
    close(cgroup_fd);
    throw BpfError(env, "bpf_program__attach_cgroup(post_bind4, " + cgroup + ")", err);
  }
  bpf_link* bind6 = bpf_program__attach_cgroup(object_.Program(env, "honeytrap_bind6"), cgroup_fd);
  err = errno;
  close(cgroup_fd);
  if (bind6 == nullptr) {
    bpf_link__destroy(bind4);
    throw BpfError(env, "bpf_program__attach_cgroup(post_bind6, " + cgroup + ")", err);
  }
  bind4_link_ = bind4;
  bind6_link_ = bind6;
  WriteSetting(env, STEER_SET_NETNS_COOKIE_LO, static_cast<unsigned int>(cookie & 0xffffffffULL));
  WriteSetting(env, STEER_SET_NETNS_COOKIE_HI, static_cast<unsigned int>(cookie >> 32));
  WriteSetting(env, STEER_SET_BIND_WINDOW_MS, static_cast<unsigned int>(window));
  // The kernel compares the tgid it sees; outside a PID namespace that is this getpid().
  WriteSetting(env, STEER_SET_OWN_TGID, static_cast<unsigned int>(getpid()));
  return env.Undefined();
}

// setSocket(key, fd): fd < 0 removes the entry, so packets for that key go back to the kernel's lookup.
Napi::Value Steering::SetSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  if (!info[0].IsNumber() || !info[1].IsNumber()) throw ArgError(env, "setSocket(key, fd) takes two numbers");
  int64_t key_value = info[0].As<Napi::Number>().Int64Value();
  int64_t fd = info[1].As<Napi::Number>().Int64Value();
  if (key_value < 0 || key_value >= STEER_SOCK_KEYS) throw ArgError(env, "socket key out of range");
  __u32 key = static_cast<__u32>(key_value);
  if (fd < 0) {
    if (bpf_map_delete_elem(sockets_fd_, &key) != 0 && errno != ENOENT) throw BpfError(env, "removing socket", errno);
    return env.Undefined();
  }
  __u64 value = static_cast<__u64>(fd);
  if (bpf_map_update_elem(sockets_fd_, &key, &value, BPF_ANY) != 0)
    throw BpfError(env, "adding socket fd " + std::to_string(fd) + " at key " + std::to_string(key), errno);
  return env.Undefined();
}

// passPort(proto, port, on): on = leave this port to the kernel's normal lookup.
Napi::Value Steering::PassPort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  steer_port_key key{};
  key.protocol = static_cast<__u8>(ProtocolNumber(env, info[0]));
  if (!info[1].IsNumber()) throw ArgError(env, "port must be a number");
  int64_t port = info[1].As<Napi::Number>().Int64Value();
  if (port < 1 || port > 65535) throw ArgError(env, "port must be 1-65535");
  key.port = static_cast<__u16>(port);
  if (info[2].ToBoolean().Value()) {
    __u8 one = 1;
    if (bpf_map_update_elem(pass_ports_fd_, &key, &one, BPF_ANY) != 0) throw BpfError(env, "adding pass port", errno);
  } else if (bpf_map_delete_elem(pass_ports_fd_, &key) != 0 && errno != ENOENT) {
    throw BpfError(env, "removing pass port", errno);
  }
  return env.Undefined();
}

// setAddresses([...prefixes]): an empty list steers every local address again.
Napi::Value Steering::SetAddresses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  if (!info[0].IsArray()) throw ArgError(env, "setAddresses takes an array of address strings");
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<steer_addr_key> wanted;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value item = list.Get(i);
    if (!item.IsString()) throw ArgError(env, "addresses must be strings");
    wanted.push_back(ParsePrefix(env, item.As<Napi::String>().Utf8Value()));
  }
  if (wanted.size() > STEER_ADDRS_MAX) throw ArgError(env, "too many addresses");
  // Filter off while the trie is rewritten: for that instant every address is steered, never none.
  WriteSetting(env, STEER_SET_ADDR_FILTER, 0);
  steer_addr_key key{};
  while (bpf_map_get_next_key(dst_addrs_fd_, nullptr, &key) == 0) {
    if (bpf_map_delete_elem(dst_addrs_fd_, &key) != 0) throw BpfError(env, "clearing address filter", errno);
  }
  for (const steer_addr_key& k : wanted) {
    __u8 one = 1;
    if (bpf_map_update_elem(dst_addrs_fd_, &k, &one, BPF_ANY) != 0) throw BpfError(env, "adding address", errno);
  }
  if (!wanted.empty()) WriteSetting(env, STEER_SET_ADDR_FILTER, 1);
  return env.Undefined();
}

// setSetting(name, on) for 'loopback' (steer traffic arriving on lo) and 'per-family' (keys 2..5).
Napi::Value Steering::SetSetting(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  unsigned int value = info[1].ToBoolean().Value() ? 1 : 0;
  if (name == "loopback") WriteSetting(env, STEER_SET_LOOPBACK, value);
  else if (name == "per-family") WriteSetting(env, STEER_SET_PER_FAMILY, value);
  else throw ArgError(env, "setting must be 'loopback' or 'per-family'");
  return env.Undefined();
}

void Steering::WriteSetting(Napi::Env env, unsigned int index, unsigned int value) {
  __u32 key = index;
  __u32 v = value;
  if (bpf_map_update_elem(settings_fd_, &key, &v, BPF_ANY) != 0) throw BpfError(env, "writing setting", errno);
}

Napi::Value Steering::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  Napi::Object result = Napi::Object::New(env);
  result.Set("steered", Napi::Number::New(env, static_cast<double>(SumPerCpu(counters_fd_, STEER_CNT_STEERED))));
  result.Set("passed", Napi::Number::New(env, static_cast<double>(SumPerCpu(counters_fd_, STEER_CNT_PASSED))));
  result.Set("noSocket", Napi::Number::New(env, static_cast<double>(SumPerCpu(counters_fd_, STEER_CNT_NO_SOCKET))));
  result.Set("assignErrors",
             Napi::Number::New(env, static_cast<double>(SumPerCpu(counters_fd_, STEER_CNT_ASSIGN_ERROR))));
  result.Set("attached", Napi::Boolean::New(env, link_ != nullptr));
  return result;
}

// The kernel's id of the loaded sk_lookup program: what bpf_prog_query lists once it is attached.
Napi::Value Steering::ProgramId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  bpf_prog_info prog{};
  __u32 length = sizeof(prog);
  if (bpf_obj_get_info_by_fd(bpf_program__fd(object_.Program(env, "honeytrap_steer")), &prog, &length) != 0)
    throw BpfError(env, "bpf_obj_get_info_by_fd(honeytrap_steer)", errno);
  return Napi::Number::New(env, prog.id);
}

Napi::Value Steering::Close(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

void Steering::Release() {
  // Closing the last link fd detaches the program; the kernel's normal lookup is back from the next packet.
  if (link_ != nullptr) bpf_link__destroy(link_);
  link_ = nullptr;
  if (bind4_link_ != nullptr) bpf_link__destroy(bind4_link_);
  if (bind6_link_ != nullptr) bpf_link__destroy(bind6_link_);
  bind4_link_ = nullptr;
  bind6_link_ = nullptr;
  object_.Close();
}

}  // namespace honeytrap
