#include "batch-pump.h"

#include <cerrno>
#include <ctime>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bpf-error.h"

namespace honeytrap {

namespace {
constexpr size_t kQueuedBatchesMax = 16;  // batches waiting for the JS thread; beyond this the pump keeps appending
constexpr int kRetryMs = 20;              // how soon a batch the queue refused is offered again
}  // namespace

void BatchPump::Start(Napi::Env env, Napi::Function callback, int watch_fd, Drain drain, size_t max_batch_bytes,
                      const char* name, unsigned coalesce_us) {
  watch_fd_ = watch_fd;
  coalesce_us_ = coalesce_us;
  drain_ = std::move(drain);
  max_batch_bytes_ = max_batch_bytes;
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw BpfError(env, "eventfd", errno);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw BpfError(env, "epoll_create1", errno);
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = watch_fd_;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, watch_fd_, &event) != 0) throw BpfError(env, "epoll_ctl(source)", errno);
  event.data.fd = wake_fd_;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event) != 0) throw BpfError(env, "epoll_ctl(wake)", errno);
  tsfn_ = Tsfn::New(env, callback, name, kQueuedBatchesMax, 1);
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void BatchPump::Run() {
  std::vector<uint8_t> pending;
  bool stopping = false;
  while (!stopping) {
    epoll_event events[2];
    int n = epoll_wait(epoll_fd_, events, 2, pending.empty() ? -1 : kRetryMs);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < n; i++) {
      if (events[i].data.fd == wake_fd_) stopping = true;
    }
    if (stopping) break;
    drain_(pending, max_batch_bytes_);
    if (pending.empty()) continue;
    auto* batch = new std::vector<uint8_t>(std::move(pending));
    pending.clear();
    napi_status status = tsfn_.NonBlockingCall(batch);
    if (status == napi_ok) {
      batches_++;
      if (coalesce_us_ > 0) {
        // Records keep arriving in the source while we rest; a stop request waits at most this long.
        timespec rest{0, static_cast<long>(coalesce_us_) * 1000};
        while (nanosleep(&rest, &rest) != 0 && errno == EINTR) {
        }
      }
    } else if (status == napi_queue_full) {
      pending = std::move(*batch);  // the JS thread is behind: keep appending to this batch and offer it again
      delete batch;
    } else {
      delete batch;  // closing: the JS side is going away
      break;
    }
  }
}

void BatchPump::CallJs(Napi::Env env, Napi::Function callback, void*, std::vector<uint8_t>* batch) {
  // env is null when the function is being torn down with batches still queued: free them, call nothing.
  if (env != nullptr && callback != nullptr) {
    try {
      callback.Call({Napi::Buffer<uint8_t>::Copy(env, batch->data(), batch->size())});
    } catch (const Napi::Error& error) {
      // A C++ exception must not cross into Node's C code: hand the JS error back as an uncaught exception.
      error.ThrowAsJavaScriptException();
    }
  }
  delete batch;
}

void BatchPump::Stop() {
  if (!started_) {
    if (wake_fd_ >= 0) close(wake_fd_);
    if (epoll_fd_ >= 0) close(epoll_fd_);
    wake_fd_ = epoll_fd_ = -1;
    return;
  }
  started_ = false;
  uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) < 0) {
    // An eventfd write only fails on overflow, which a single write cannot cause; the join below still ends.
  }
  if (thread_.joinable()) thread_.join();
  tsfn_.Release();
  close(wake_fd_);
  close(epoll_fd_);
  wake_fd_ = epoll_fd_ = -1;
}

}  // namespace honeytrap
