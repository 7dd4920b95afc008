#include "js-error.h"

#include <cstring>

namespace honeytrap {

Napi::Error ArgError(Napi::Env env, const std::string& message) { return Napi::TypeError::New(env, message); }

Napi::Error SysError(Napi::Env env, const std::string& step, int err) {
  Napi::Error error = Napi::Error::New(env, step + " failed: " + strerror(err) + " (errno " + std::to_string(err) + ")");
  error.Set("step", Napi::String::New(env, step));
  error.Set("errno", Napi::Number::New(env, err));
  return error;
}

}  // namespace honeytrap
