// JS Errors for the addons' argument checks and failed system calls; no libbpf, so the socket addon can use them.
#ifndef HONEYTRAP_JS_ERROR_H
#define HONEYTRAP_JS_ERROR_H

#include <napi.h>
#include <string>

namespace honeytrap {

// A TypeError for a bad argument from JS.
Napi::Error ArgError(Napi::Env env, const std::string& message);

// An Error "<step> failed: <strerror(err)> (errno N)" with `.step` and `.errno` set; `err` is a positive errno.
Napi::Error SysError(Napi::Env env, const std::string& step, int err);

}  // namespace honeytrap

#endif
