// NV12 frame -> normalized planar RGB tensor slot (resize + letterbox/stretch + colour conversion).
//
// One function per path computes the very same maths:
//   * Nv12ToTensorCpu      the reference (plain loops, core_cpp/src/nv12.cpp), no CUDA needed;
//   * cuda::Nv12ToTensor   the CUDA kernel (core_cpp/src/nv12_cuda.cu), built when CUDA is found.
//
// For every pixel (x, y) of the dst_w x dst_h slot:
//   * outside the picture placed by ComputeGeometry (geometry.hpp): pad_value in all 3 channels;
//   * inside: source coordinate with half-pixel centres
//       sx = (x - dst_x + 0.5) / scale_x - 0.5     (same for y)
//     bilinear sample of the Y plane at sx clamped to [0, src_w - 1],
//     bilinear sample of the half-resolution UV plane at
//       ux = (sx + 0.5) / 2 - 0.5                  clamped to [0, src_w / 2 - 1] (same for y),
//     YUV -> RGB with BT.601 or BT.709, limited (16..235/240) or full range,
//     each channel clamped to [0, 1].
// The slot is written as three planes R, G, B (B, G, R when bgr), each dst_h rows of dst_w values.
// The uint8 variants write round(255 * value) instead of value.
//
// This header needs neither CUDA nor FFmpeg headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "smartcity/geometry.hpp"

namespace smartcity {

enum class ColorMatrix { kBt601 = 0, kBt709 = 1 };

struct Nv12Params {
  int src_w = 0;     // frame width in pixels, even
  int src_h = 0;     // frame height in pixels, even
  int y_pitch = 0;   // bytes between rows of the Y plane; 0 means src_w
  int uv_pitch = 0;  // bytes between rows of the interleaved UV plane; 0 means src_w
  int dst_w = 0;     // tensor width
  int dst_h = 0;     // tensor height
  ResizeMode mode = ResizeMode::kLetterbox;
  float pad_value = 114.f / 255.f;  // value of the pixels outside the picture, in [0, 1] units
  ColorMatrix matrix = ColorMatrix::kBt601;
  bool full_range = false;  // false: Y in 16..235, UV in 16..240 (video); true: 0..255 (JPEG)
  bool bgr = false;         // write planes in B, G, R order
};

// YUV -> RGB in [0, 1] units:
//   R = y_scale * (Y - y_offset)                       + r_v * (V - 128)
//   G = y_scale * (Y - y_offset) + g_u * (U - 128)     + g_v * (V - 128)
//   B = y_scale * (Y - y_offset) + b_u * (U - 128)
struct YuvToRgbCoeffs {
  float y_offset = 0.f;
  float y_scale = 0.f;
  float r_v = 0.f;
  float g_u = 0.f;
  float g_v = 0.f;
  float b_u = 0.f;
};

inline YuvToRgbCoeffs ComputeYuvToRgbCoeffs(ColorMatrix matrix, bool full_range) {
  const double kr = matrix == ColorMatrix::kBt709 ? 0.2126 : 0.299;
  const double kb = matrix == ColorMatrix::kBt709 ? 0.0722 : 0.114;
  const double kg = 1.0 - kr - kb;
  const double y_range = full_range ? 255.0 : 219.0;
  const double c_range = full_range ? 255.0 : 224.0;
  YuvToRgbCoeffs c;
  c.y_offset = full_range ? 0.f : 16.f;
  c.y_scale = static_cast<float>(1.0 / y_range);
  c.r_v = static_cast<float>(2.0 * (1.0 - kr) / c_range);
  c.g_u = static_cast<float>(-2.0 * kb * (1.0 - kb) / kg / c_range);
  c.g_v = static_cast<float>(-2.0 * kr * (1.0 - kr) / kg / c_range);
  c.b_u = static_cast<float>(2.0 * (1.0 - kb) / c_range);
  return c;
}

inline int Nv12YPitch(const Nv12Params& p) { return p.y_pitch > 0 ? p.y_pitch : p.src_w; }
inline int Nv12UvPitch(const Nv12Params& p) { return p.uv_pitch > 0 ? p.uv_pitch : p.src_w; }

// Throws std::invalid_argument when sizes are not positive, the frame size is odd or a pitch is
// smaller than the width.
inline void ValidateNv12Params(const Nv12Params& p) {
  if (p.src_w <= 0 || p.src_h <= 0 || p.dst_w <= 0 || p.dst_h <= 0) {
    throw std::invalid_argument("Nv12Params: sizes must be positive (src " + std::to_string(p.src_w) + "x" +
                                std::to_string(p.src_h) + ", dst " + std::to_string(p.dst_w) + "x" +
                                std::to_string(p.dst_h) + ")");
  }
  if (p.src_w % 2 != 0 || p.src_h % 2 != 0) {
    throw std::invalid_argument("Nv12Params: NV12 frame size must be even, got " + std::to_string(p.src_w) + "x" +
                                std::to_string(p.src_h));
  }
  if (Nv12YPitch(p) < p.src_w || Nv12UvPitch(p) < p.src_w) {
    throw std::invalid_argument("Nv12Params: pitch smaller than width (y_pitch " + std::to_string(p.y_pitch) +
                                ", uv_pitch " + std::to_string(p.uv_pitch) + ", width " + std::to_string(p.src_w) +
                                ")");
  }
}

// How the uint8 variants store a value (pad_value included): round(255 * value), clamped to 0..255.
inline uint8_t ToU8(float value) {
  const float v = value * 255.f + 0.5f;
  return static_cast<uint8_t>(v <= 0.f ? 0.f : (v >= 255.f ? 255.f : v));
}

// CPU reference. y: Y plane (src_h rows of y_pitch bytes); uv: interleaved UV plane (src_h / 2 rows
// of uv_pitch bytes); dst_slot: 3 * dst_h * dst_w floats. Throws std::invalid_argument on bad params.
void Nv12ToTensorCpu(const uint8_t* y, const uint8_t* uv, const Nv12Params& params, float* dst_slot);
// Same, values round(255 * value) as uint8 (3 * dst_h * dst_w bytes).
void Nv12ToTensorU8Cpu(const uint8_t* y, const uint8_t* uv, const Nv12Params& params, uint8_t* dst_slot);

namespace cuda {

// Number of CUDA devices; 0 when the CUDA runtime reports an error (no device, no or too old driver).
int DeviceCount();

// Device pointers; stream is a cudaStream_t (nullptr: the default stream). Asynchronous: returns
// after the launch. Throws std::invalid_argument on bad params, std::runtime_error with the CUDA
// error string when the launch fails. Defined only when built with CUDA (SMARTCITY_WITH_CUDA).
void Nv12ToTensor(const uint8_t* d_y, const uint8_t* d_uv, const Nv12Params& params, float* d_dst_slot, void* stream);
void Nv12ToTensorU8(const uint8_t* d_y, const uint8_t* d_uv, const Nv12Params& params, uint8_t* d_dst_slot,
                    void* stream);

// Converts NV12 frames that lie in device memory (NVDEC's output) into a slot in host memory:
// the kernel writes a device staging buffer (kept between frames), then one copy brings the
// slot (3 x dst_h x dst_w values, about 1-5 MB) to the host. Synchronous; one per stream thread.
// Runs on a CUDA stream of its own, created blocking: it waits for work queued before on the
// legacy default stream, where FFmpeg's NVDEC copies its frames when the decoder runs in the
// runtime's primary context (smartcity/hwdecode.hpp hands FFmpeg that context), and it does
// not wait for the other streams' writers.
class DeviceSlotWriter {
 public:
  explicit DeviceSlotWriter(int device = 0) : device_(device) {}
  ~DeviceSlotWriter();
  DeviceSlotWriter(const DeviceSlotWriter&) = delete;
  DeviceSlotWriter& operator=(const DeviceSlotWriter&) = delete;

  // u8: the slot holds uint8 values (Nv12ToTensorU8), else float32. Throws std::invalid_argument
  // on bad params, std::runtime_error with the CUDA error when a call fails.
  void Write(const uint8_t* d_y, const uint8_t* d_uv, const Nv12Params& params, bool u8, void* host_slot);
  // The same conversion written straight into a slot in device memory (a device batch,
  // smartcity/batch.hpp): no staging buffer, no copy to the host. Synchronous.
  void WriteDevice(const uint8_t* d_y, const uint8_t* d_uv, const Nv12Params& params, bool u8, void* device_slot);

 private:
  void* Stream();  // created on first use
  int device_ = 0;
  void* stream_ = nullptr;  // cudaStream_t
  void* d_buf_ = nullptr;
  size_t bytes_ = 0;
};

// Makes `device` current on this thread and its primary context (the CUDA runtime's, shared by
// every library of the process that uses the runtime) active. Throws std::runtime_error.
void ActivateDevice(int device);

// Page-locked host memory (cudaMallocHost): copies from the device into it run at full DMA
// speed, without the driver's staging through pageable memory. nullptr when it cannot be had
// (no device, out of memory). Free with FreePinnedHost.
void* AllocPinnedHost(size_t bytes);
void FreePinnedHost(void* p);

// Device memory (cudaMalloc on `device`); nullptr when it cannot be had. Free with FreeDevice.
void* AllocDevice(size_t bytes, int device);
void FreeDevice(void* p);

// Copies between host and device memory on a CUDA stream of its own: the calls queue copies,
// Wait() blocks until they are done (std::runtime_error with the CUDA error when one failed).
class DeviceCopier {
 public:
  explicit DeviceCopier(int device);
  ~DeviceCopier();
  DeviceCopier(const DeviceCopier&) = delete;
  DeviceCopier& operator=(const DeviceCopier&) = delete;

  void ToDevice(void* d_dst, const void* h_src, size_t bytes);
  void ToHost(void* h_dst, const void* d_src, size_t bytes);
  void Wait();

 private:
  int device_ = 0;
  void* stream_ = nullptr;  // cudaStream_t
};

// Test and tooling helper: copies host planes to the device, runs Nv12ToTensor, copies the slot
// back to dst_slot (host). Synchronous.
void Nv12ToTensorFromHost(const uint8_t* y, const uint8_t* uv, const Nv12Params& params, float* dst_slot);

}  // namespace cuda
}  // namespace smartcity
