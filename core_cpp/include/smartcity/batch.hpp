// Batcher: frames of many streams written straight into preallocated batch tensors.
//
// A small pool of buffers, each holding `capacity` slots of one model input (3 x H x W).
// Stream threads acquire a slot in the buffer being filled, convert their frame into it and
// commit it; the consumer (Python's inference loop) takes the buffer as a batch and holds it
// as a lease until it is released, while the streams fill the next buffer.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "smartcity/geometry.hpp"

namespace smartcity {

enum class DType { kFloat32 = 0, kUint8 = 1 };

// How frames are resized. Models are sensitive to this: match what the model was trained with.
//   kAuto          bilinear, area averaging for downscales of 2x and more (the default)
//   kBilinear      swscale's bilinear (its filter widens on downscale: anti-aliased)
//   kFastBilinear  2-tap bilinear without anti-aliasing, as cv2.INTER_LINEAR and tf.image.resize
//   kArea          area averaging, as cv2.INTER_AREA
enum class ResizeFilter { kAuto = 0, kBilinear = 1, kFastBilinear = 2, kArea = 3 };

const char* DTypeName(DType d);
const char* ResizeModeName(ResizeMode m);

struct TensorLayout {
  int width = 640;
  int height = 640;
  ResizeMode resize = ResizeMode::kLetterbox;
  DType dtype = DType::kFloat32;
  int pad_value = 114;  // 0..255; float tensors hold pad_value / 255
  ResizeFilter filter = ResizeFilter::kAuto;

  size_t ElementSize() const { return dtype == DType::kFloat32 ? 4 : 1; }
  size_t PlaneElements() const { return static_cast<size_t>(width) * static_cast<size_t>(height); }
  size_t SlotBytes() const { return 3 * PlaneElements() * ElementSize(); }
  void Validate() const;  // throws std::invalid_argument naming the bad field
};

// What the consumer learns about one slot.
struct SlotMeta {
  std::string camera_id;
  int64_t frame_number = 0;     // per stream, counts decoded frames from 0
  double pts_s = 0;             // presentation time in seconds (monotonic across file loops)
  int64_t capture_wall_ns = 0;  // wall clock when the frame left the decoder
  SlotGeometry geometry;
  bool valid = false;  // false: the conversion failed, the slot holds padding only
};

class Batcher;

struct BatchBuffer {
  enum class State { kFree, kFilling, kClosing, kLeased };
  uint8_t* data = nullptr;
  bool pinned = false;  // page-locked (cudaMallocHost) where a GPU is visible
  std::vector<SlotMeta> meta;
  int acquired = 0;
  int committed = 0;
  State state = State::kFree;
};

// Held by a stream thread while it writes one slot.
struct SlotTicket {
  BatchBuffer* buffer = nullptr;
  int index = -1;
  uint8_t* data = nullptr;
  SlotMeta* meta = nullptr;
};

// A batch handed to the consumer. The buffer returns to the pool when the lease is destroyed.
class BatchLease {
 public:
  BatchLease(std::shared_ptr<Batcher> owner, BatchBuffer* buffer, int size);
  ~BatchLease();
  BatchLease(const BatchLease&) = delete;
  BatchLease& operator=(const BatchLease&) = delete;

  int size() const { return size_; }
  uint8_t* data() const { return buffer_->data; }
  const std::vector<SlotMeta>& meta() const { return buffer_->meta; }  // first size() entries
  const TensorLayout& layout() const;

 private:
  std::shared_ptr<Batcher> owner_;
  BatchBuffer* buffer_;
  int size_;
};

class Batcher : public std::enable_shared_from_this<Batcher> {
 public:
  Batcher(TensorLayout layout, int capacity, int buffers);
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  const TensorLayout& layout() const { return layout_; }
  int capacity() const { return capacity_; }

  // Stream side. Returns false when no slot is free (the frame is to be dropped) or, with
  // block=true, only once `stop` turns true or the batcher is closed.
  bool Acquire(SlotTicket* ticket, bool block, const std::atomic<bool>* stop);
  void Commit(const SlotTicket& ticket);

  // Consumer side: waits up to max_wait_ms for max_batch slots; returns what is there at the
  // deadline, or nullptr when nothing arrived.
  std::shared_ptr<BatchLease> Next(int max_batch, int max_wait_ms);

  // Wakes every waiter; later calls return at once.
  void Close();
  // Wakes stream threads blocked in Acquire so they can see their stop flag.
  void WakeProducers();

  int free_buffers() const;

 private:
  friend class BatchLease;
  void Release(BatchBuffer* buffer);

  const TensorLayout layout_;
  const int capacity_;
  std::vector<std::unique_ptr<BatchBuffer>> buffers_;
  mutable std::mutex mu_;
  std::condition_variable producers_;
  std::condition_variable consumer_;
  BatchBuffer* filling_ = nullptr;
  // Full buffers waiting for the consumer, oldest first (state kClosing: their last slots may
  // still be being written). A full buffer moves here so that the streams go on filling the
  // next free one while the consumer is busy: every buffer of the pool absorbs bursts.
  std::deque<BatchBuffer*> ready_;
  int fill_limit_;
  bool closed_ = false;
};

}  // namespace smartcity
