// Batcher: frames of many streams written straight into preallocated batch tensors.
//
// A small pool of buffers, each holding `capacity` slots of one model input (3 x H x W).
// Stream threads acquire a slot in the buffer being filled, convert their frame into it and
// commit it; the consumer (Python's inference loop) takes the buffer as a batch and holds it
// as a lease until it is released, while the streams fill the next buffer.
//
// Device batches (a Batcher made with a CUDA device, builds with CUDA only): each buffer also
// has a copy in device memory. A stream whose frame lies on the GPU (NVDEC) writes its slot
// there with the CUDA kernel and never touches the host copy; a stream decoding on the CPU
// writes the host slot. The lease brings the two together on demand: DeviceData() copies the
// host-written slots up (GPU inference then reads the batch where it is), HostData() copies the
// GPU-written slots down (CPU inference, tests). Nothing is copied that is already in place.
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

// Where a slot's current content lies (device batches; plain batches are always kHost).
enum class SlotPlace : uint8_t { kHost = 0, kDevice = 1, kBoth = 2 };

struct BatchBuffer {
  enum class State { kFree, kFilling, kClosing, kLeased };
  uint8_t* data = nullptr;
  bool pinned = false;           // page-locked (cudaMallocHost) where a GPU is visible
  uint8_t* d_data = nullptr;     // device copy (device batches only)
  std::vector<SlotPlace> place;  // per slot; kept from one use of the buffer to the next
  std::vector<SlotMeta> meta;
  int acquired = 0;
  int committed = 0;
  State state = State::kFree;
};

// Held by a stream thread while it writes one slot.
// The writer sets *place to where it wrote (kHost unless it wrote device_data). Before that,
// *place says where the slot's previous content lies: its host copy is stale when kDevice.
struct SlotTicket {
  BatchBuffer* buffer = nullptr;
  int index = -1;
  uint8_t* data = nullptr;
  uint8_t* device_data = nullptr;  // the slot's device copy; nullptr unless a device batch
  SlotPlace* place = nullptr;
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
  // The host tensor as the streams left it (slots written on the GPU are stale there).
  uint8_t* data() const { return buffer_->data; }
  // The host tensor with every slot in it: GPU-written slots are copied down first.
  uint8_t* HostData();
  // The device tensor with every slot in it (host-written slots copied up first); nullptr
  // unless the batcher is a device batcher. Throws std::runtime_error when a copy fails.
  uint8_t* DeviceData();
  bool DeviceDataAvailable() const { return buffer_->d_data != nullptr; }
  SlotPlace place(int i) const { return buffer_->place.at(static_cast<size_t>(i)); }
  // Slots in place on each side now (tests, statistics).
  int SlotsOn(SlotPlace side) const;
  const std::vector<SlotMeta>& meta() const { return buffer_->meta; }  // first size() entries
  const TensorLayout& layout() const;

 private:
  std::mutex sync_mu_;
  std::shared_ptr<Batcher> owner_;
  BatchBuffer* buffer_;
  int size_;
};

class Batcher : public std::enable_shared_from_this<Batcher> {
 public:
  // device >= 0: a device batcher on that CUDA device (throws std::runtime_error in a build
  // without CUDA, or when the device memory cannot be had).
  Batcher(TensorLayout layout, int capacity, int buffers, int device = -1);
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  const TensorLayout& layout() const { return layout_; }
  int capacity() const { return capacity_; }
  int device() const { return device_; }  // -1: host only

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
  // Copies the first n slots of b whose content is only on the other side to `to` (kHost or
  // kDevice). Called by leases, under the lease's lock.
  void SyncSlots(BatchBuffer* b, int n, SlotPlace to);
  void FreeBuffers();

  const TensorLayout layout_;
  const int capacity_;
  const int device_;
  std::mutex copier_mu_;
  void* copier_ = nullptr;  // cuda::DeviceCopier (device batchers)
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
