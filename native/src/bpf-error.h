// Turning libbpf and syscall failures into JS Errors that name the step, with libbpf's own log lines attached.
#ifndef HONEYTRAP_BPF_ERROR_H
#define HONEYTRAP_BPF_ERROR_H

#include <napi.h>
#include <string>

#include "js-error.h"

namespace honeytrap {

// Routes libbpf's log to a buffer so an error can carry the verifier's explanation. Call once at module load.
void InstallLibbpfLogger();

// Forgets earlier log lines; call before a step whose failure should quote the log.
void ClearLibbpfLog();

// An Error "<step> failed: <strerror(err)>" (+ libbpf log tail) with `.step` and `.errno` set. `err` is a positive
// errno or a negative libbpf return value.
Napi::Error BpfError(Napi::Env env, const std::string& step, int err);

}  // namespace honeytrap

#endif
