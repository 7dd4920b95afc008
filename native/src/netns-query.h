// Which sk_lookup programs are attached to a network namespace: a second sensor must not steer beside a first.
#ifndef HONEYTRAP_NETNS_QUERY_H
#define HONEYTRAP_NETNS_QUERY_H

#include <napi.h>

namespace honeytrap {

// attachedLookupPrograms(netnsPath?) -> [{ id, name }], in the order the kernel runs them.
Napi::Value AttachedLookupPrograms(const Napi::CallbackInfo& info);

}  // namespace honeytrap

#endif
