#include "smartcity/batch.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#ifdef SMARTCITY_WITH_CUDA
#include "smartcity/nv12.hpp"  // cuda::AllocPinnedHost
#endif

namespace smartcity {

const char* DTypeName(DType d) { return d == DType::kFloat32 ? "float32" : "uint8"; }
const char* ResizeModeName(ResizeMode m) { return m == ResizeMode::kLetterbox ? "letterbox" : "stretch"; }

void TensorLayout::Validate() const {
  if (width < 16 || width > 4096)
    throw std::invalid_argument("width must be in 16..4096, got " + std::to_string(width));
  if (height < 16 || height > 4096)
    throw std::invalid_argument("height must be in 16..4096, got " + std::to_string(height));
  if (pad_value < 0 || pad_value > 255)
    throw std::invalid_argument("pad_value must be in 0..255, got " + std::to_string(pad_value));
}

BatchLease::BatchLease(std::shared_ptr<Batcher> owner, BatchBuffer* buffer, int size)
    : owner_(std::move(owner)), buffer_(buffer), size_(size) {}

BatchLease::~BatchLease() { owner_->Release(buffer_); }

uint8_t* BatchLease::HostData() {
  std::lock_guard<std::mutex> lock(sync_mu_);
  if (buffer_->d_data) owner_->SyncSlots(buffer_, size_, SlotPlace::kHost);
  return buffer_->data;
}

uint8_t* BatchLease::DeviceData() {
  std::lock_guard<std::mutex> lock(sync_mu_);
  if (!buffer_->d_data) return nullptr;
  owner_->SyncSlots(buffer_, size_, SlotPlace::kDevice);
  return buffer_->d_data;
}

int BatchLease::SlotsOn(SlotPlace side) const {
  int n = 0;
  for (int i = 0; i < size_; ++i) {
    const SlotPlace p = buffer_->place[i];
    n += p == side || p == SlotPlace::kBoth;
  }
  return n;
}

const TensorLayout& BatchLease::layout() const { return owner_->layout(); }

Batcher::Batcher(TensorLayout layout, int capacity, int buffers, int device)
    : layout_(layout), capacity_(capacity), device_(device < 0 ? -1 : device), fill_limit_(capacity) {
  layout_.Validate();
  if (capacity < 1 || capacity > 256)
    throw std::invalid_argument("max_batch must be in 1..256, got " + std::to_string(capacity));
  if (buffers < 2 || buffers > 16)
    throw std::invalid_argument("buffers must be in 2..16, got " + std::to_string(buffers));
  const size_t bytes = layout_.SlotBytes() * static_cast<size_t>(capacity);
  const size_t aligned = (bytes + 63) / 64 * 64;
#ifdef SMARTCITY_WITH_CUDA
  if (device_ >= 0 && device_ >= cuda::DeviceCount()) {
    throw std::runtime_error("a device batch on CUDA device " + std::to_string(device_) + " needs that device, and " +
                             std::to_string(cuda::DeviceCount()) + " CUDA device(s) are visible here");
  }
#else
  if (device_ >= 0) throw std::runtime_error("a device batch needs a build with CUDA (this one has none)");
#endif
#ifdef SMARTCITY_WITH_CUDA
  // Where a GPU is visible, page-locked buffers: GPU-decoded frames reach their slots (and
  // inference on the GPU reads them) by DMA at full speed.
  [[maybe_unused]] const bool pinned = cuda::DeviceCount() > 0;
#else
  [[maybe_unused]] const bool pinned = false;
#endif
  for (int i = 0; i < buffers; ++i) {
    auto b = std::make_unique<BatchBuffer>();
#ifdef SMARTCITY_WITH_CUDA
    if (pinned) {
      b->data = static_cast<uint8_t*>(cuda::AllocPinnedHost(aligned));
      b->pinned = b->data != nullptr;
    }
#endif
    if (!b->data) b->data = static_cast<uint8_t*>(std::aligned_alloc(64, aligned));
    if (!b->data) throw std::bad_alloc();
    std::memset(b->data, 0, aligned);  // fault the pages in now, not in the video path
    b->meta.resize(capacity);
    b->place.assign(capacity, SlotPlace::kHost);
    buffers_.push_back(std::move(b));
  }
#ifdef SMARTCITY_WITH_CUDA
  if (device_ >= 0) {
    try {
      for (auto& b : buffers_) {
        b->d_data = static_cast<uint8_t*>(cuda::AllocDevice(aligned, device_));
        if (!b->d_data) {
          throw std::runtime_error("cannot allocate " + std::to_string(aligned) +
                                   " bytes of device memory for a batch on CUDA device " + std::to_string(device_));
        }
      }
      copier_ = new cuda::DeviceCopier(device_);
    } catch (...) {
      FreeBuffers();
      throw;
    }
  }
#endif
}

Batcher::~Batcher() { FreeBuffers(); }

void Batcher::FreeBuffers() {
#ifdef SMARTCITY_WITH_CUDA
  delete static_cast<cuda::DeviceCopier*>(copier_);
  copier_ = nullptr;
#endif
  for (auto& b : buffers_) {
#ifdef SMARTCITY_WITH_CUDA
    cuda::FreeDevice(b->d_data);
    b->d_data = nullptr;
    if (b->pinned) {
      cuda::FreePinnedHost(b->data);
      continue;
    }
#endif
    std::free(b->data);
  }
}

bool Batcher::Acquire(SlotTicket* ticket, bool block, const std::atomic<bool>* stop) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (closed_ || (stop && stop->load())) return false;
    if (!filling_) {
      for (auto& b : buffers_) {
        if (b->state == BatchBuffer::State::kFree) {
          filling_ = b.get();
          filling_->state = BatchBuffer::State::kFilling;
          filling_->acquired = 0;
          filling_->committed = 0;
          break;
        }
      }
    }
    if (filling_ && filling_->acquired < fill_limit_) {
      const int i = filling_->acquired++;
      ticket->buffer = filling_;
      ticket->index = i;
      const size_t offset = layout_.SlotBytes() * static_cast<size_t>(i);
      ticket->data = filling_->data + offset;
      ticket->device_data = filling_->d_data ? filling_->d_data + offset : nullptr;
      ticket->place = &filling_->place[i];
      ticket->meta = &filling_->meta[i];
      return true;
    }
    if (filling_) {
      // Full: it waits for the consumer in the ready queue, and the next free buffer (if
      // any) takes this frame.
      filling_->state = BatchBuffer::State::kClosing;
      ready_.push_back(filling_);
      filling_ = nullptr;
      consumer_.notify_all();
      continue;
    }
    if (!block) return false;
    producers_.wait(lock);
  }
}

void Batcher::Commit(const SlotTicket& ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  BatchBuffer* b = ticket.buffer;
  ++b->committed;
  if (b->state == BatchBuffer::State::kClosing ? b->committed == b->acquired : b->committed >= fill_limit_) {
    consumer_.notify_all();
  }
}

std::shared_ptr<BatchLease> Batcher::Next(int max_batch, int max_wait_ms) {
  if (max_batch < 1) throw std::invalid_argument("max_batch must be at least 1");
  if (max_wait_ms < 0) throw std::invalid_argument("max_wait_ms must not be negative");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(max_wait_ms);
  std::unique_lock<std::mutex> lock(mu_);
  fill_limit_ = max_batch < capacity_ ? max_batch : capacity_;
  producers_.notify_all();  // a raised limit frees slots for blocked producers
  BatchBuffer* taken = nullptr;
  for (;;) {
    if (closed_) return nullptr;
    if (!ready_.empty()) {  // full buffers first, oldest first
      taken = ready_.front();
      ready_.pop_front();
      break;
    }
    BatchBuffer* f = filling_;
    if (f && f->committed >= fill_limit_) {
      taken = f;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      if (f && f->acquired > 0) taken = f;
      break;
    }
    consumer_.wait_until(lock, deadline);
  }
  if (!taken) return nullptr;
  if (taken == filling_) filling_ = nullptr;
  taken->state = BatchBuffer::State::kClosing;
  // Slots acquired before the close are being written right now: wait for them.
  consumer_.wait(lock, [&] { return taken->committed == taken->acquired || closed_; });
  taken->state = BatchBuffer::State::kLeased;
  const int n = taken->acquired;
  producers_.notify_all();  // a free buffer may be picked up as the next filling one
  lock.unlock();
  return std::make_shared<BatchLease>(shared_from_this(), taken, n);
}

void Batcher::SyncSlots(BatchBuffer* b, int n, SlotPlace to) {
#ifdef SMARTCITY_WITH_CUDA
  if (!b->d_data) return;
  const SlotPlace from = to == SlotPlace::kHost ? SlotPlace::kDevice : SlotPlace::kHost;
  const size_t slot = layout_.SlotBytes();
  std::lock_guard<std::mutex> lock(copier_mu_);  // one copier stream for every lease
  auto* copier = static_cast<cuda::DeviceCopier*>(copier_);
  bool any = false;
  for (int i = 0; i < n; ++i) {
    if (b->place[i] != from) continue;
    const size_t off = slot * static_cast<size_t>(i);
    if (to == SlotPlace::kDevice) {
      copier->ToDevice(b->d_data + off, b->data + off, slot);
    } else {
      copier->ToHost(b->data + off, b->d_data + off, slot);
    }
    any = true;
  }
  if (!any) return;
  copier->Wait();
  for (int i = 0; i < n; ++i) {
    if (b->place[i] == from) b->place[i] = SlotPlace::kBoth;
  }
#else
  (void)b;
  (void)n;
  (void)to;
#endif
}

void Batcher::Release(BatchBuffer* buffer) {
  std::lock_guard<std::mutex> lock(mu_);
  buffer->state = BatchBuffer::State::kFree;
  buffer->acquired = 0;
  buffer->committed = 0;
  producers_.notify_all();
}

void Batcher::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  producers_.notify_all();
  consumer_.notify_all();
}

void Batcher::WakeProducers() {
  std::lock_guard<std::mutex> lock(mu_);
  producers_.notify_all();
}

int Batcher::free_buffers() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& b : buffers_) n += b->state == BatchBuffer::State::kFree;
  return n;
}

}  // namespace smartcity
