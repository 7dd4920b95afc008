// A thread that waits on one fd, lets its owner drain it into a byte batch, and hands each batch to a JS callback
// through a thread-safe function: one JS call per wake-up, however many records arrived, so a busy source costs
// few crossings into JS. With a coalescing interval, the thread also rests that long after each batch it hands
// over: the first record after a quiet spell still goes out at once, and a steady stream goes out in batches at
// most once per interval instead of one wake-up (of this thread and of the JS thread) per record.
#ifndef HONEYTRAP_BATCH_PUMP_H
#define HONEYTRAP_BATCH_PUMP_H

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace honeytrap {

class BatchPump {
 public:
  // Called on the pump thread when the watched fd is readable (or on a retry tick). Appends records to `batch`,
  // keeping it under `max_batch_bytes` (what does not fit is the owner's to count as dropped). Must not block.
  using Drain = std::function<void(std::vector<uint8_t>& batch, size_t max_batch_bytes)>;

  BatchPump() = default;
  ~BatchPump() { Stop(); }
  BatchPump(const BatchPump&) = delete;
  BatchPump& operator=(const BatchPump&) = delete;

  // Starts the thread. Throws a JS Error when the eventfd, epoll or thread cannot be made. `coalesce_us` 0: no rest.
  void Start(Napi::Env env, Napi::Function callback, int watch_fd, Drain drain, size_t max_batch_bytes,
             const char* name, unsigned coalesce_us = 0);
  // Wakes the thread, joins it and releases the JS callback. Safe to call twice and from a destructor.
  void Stop();
  uint64_t batches() const { return batches_.load(); }

 private:
  static void CallJs(Napi::Env env, Napi::Function callback, void* context, std::vector<uint8_t>* batch);
  using Tsfn = Napi::TypedThreadSafeFunction<void, std::vector<uint8_t>, CallJs>;
  void Run();

  Tsfn tsfn_;
  std::thread thread_;
  Drain drain_;
  size_t max_batch_bytes_ = 0;
  unsigned coalesce_us_ = 0;
  int watch_fd_ = -1;
  int wake_fd_ = -1;
  int epoll_fd_ = -1;
  bool started_ = false;
  std::atomic<uint64_t> batches_{0};
};

}  // namespace honeytrap

#endif
