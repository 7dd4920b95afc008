#include "bpf-error.h"

#include <bpf/libbpf.h>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace honeytrap {

namespace {

constexpr size_t kLogKeepBytes = 4096;  // the verifier's last lines are the ones that explain a rejection
std::mutex log_mutex;
std::string log_text;

int KeepLibbpfLog(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof(line), format, args);
  if (n < 0) return 0;
  std::lock_guard<std::mutex> lock(log_mutex);
  log_text.append(line);
  if (log_text.size() > kLogKeepBytes) log_text.erase(0, log_text.size() - kLogKeepBytes);
  return n;
}

}  // namespace

void InstallLibbpfLogger() { libbpf_set_print(KeepLibbpfLog); }

void ClearLibbpfLog() {
  std::lock_guard<std::mutex> lock(log_mutex);
  log_text.clear();
}

Napi::Error BpfError(Napi::Env env, const std::string& step, int err) {
  int code = err < 0 ? -err : err;
  char text[256];
  if (libbpf_strerror(code, text, sizeof(text)) != 0) snprintf(text, sizeof(text), "%s", strerror(code));
  std::string message = step + " failed: " + text + " (errno " + std::to_string(code) + ")";
  {
    std::lock_guard<std::mutex> lock(log_mutex);
    if (!log_text.empty()) message += "\nlibbpf log:\n" + log_text;
    log_text.clear();
  }
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("step", Napi::String::New(env, step));
  error.Set("errno", Napi::Number::New(env, code));
  return error;
}

}  // namespace honeytrap
