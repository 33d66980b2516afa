// GPU decoding (NVDEC through FFmpeg's CUDA hwaccel) for the streams, with the reasons it is not
// used when it is not. Frames decoded on the GPU stay in device memory and go through the CUDA
// kernel of smartcity/nv12.hpp into the batch slot; only the slot is copied to the host.
//
// What a stream does with `hwaccel`:
//   none  decode on the CPU.
//   auto  decode on the GPU when this build has CUDA, a CUDA device is visible, FFmpeg has the
//         CUDA hwaccel and the codec has an NVDEC path; otherwise on the CPU, silently.
//   cuda  the same, but each fallback to the CPU is reported (the stream's last_error and
//         hwaccel_note say why): the codec, the size or profile the hardware refuses, the decoder
//         session limit, a missing driver.
#pragma once

#include <string>

#include "smartcity/batch.hpp"
#include "smartcity/geometry.hpp"
#include "smartcity/nv12.hpp"

struct AVBufferRef;
struct AVCodec;
struct AVCodecContext;
struct AVFrame;

namespace smartcity {

namespace cuda {
class DeviceSlotWriter;
}

enum class HwAccel { kNone = 0, kAuto = 1, kCuda = 2 };

// "none" | "auto" | "cuda"; throws std::invalid_argument naming the value otherwise.
HwAccel ParseHwAccel(const std::string& name);
const char* HwAccelName(HwAccel h);

// True when this build has CUDA and the CUDA runtime sees a device; otherwise false and *why
// says what is missing.
bool CudaDecodeAvailable(std::string* why);

// Before avcodec_open2: creates a CUDA device on `device` (the device's primary context, shared
// with the conversion kernel), attaches it to `dec` and installs a get_format callback that takes
// CUDA frames when the hardware accepts the stream and software frames when it refuses (then
// *refused, read after decoding, becomes true). Returns "" on success, else why the decoder stays
// on the CPU (nothing attached then). *device_ref receives the device (unref it after the decoder
// is freed).
std::string AttachCudaDecoder(const AVCodec* codec, AVCodecContext* dec, int device, AVBufferRef** device_ref,
                              bool* refused);

// A frame whose planes lie in GPU memory (AV_PIX_FMT_CUDA).
bool IsCudaFrame(const AVFrame* frame);
// The GPU frame's software layout (AV_PIX_FMT_NV12 for 8-bit, P010 for 10-bit ...), -1 if none.
int CudaFrameSwFormat(const AVFrame* frame);
// Copies a GPU frame to host memory (into `host`, which is unreferenced first), properties included.
// Throws std::runtime_error on failure.
void DownloadFrame(const AVFrame* gpu, AVFrame* host);

// Writes NV12 GPU frames into host slots with the CUDA kernel (2-tap bilinear whatever the
// layout's filter). Only in builds with CUDA; elsewhere the constructor throws.
class CudaSlotConverter {
 public:
  CudaSlotConverter(TensorLayout layout, int device);
  ~CudaSlotConverter();
  CudaSlotConverter(const CudaSlotConverter&) = delete;
  CudaSlotConverter& operator=(const CudaSlotConverter&) = delete;

  // frame: IsCudaFrame and CudaFrameSwFormat == NV12. Throws std::runtime_error on failure.
  SlotGeometry ToSlot(const AVFrame* frame, uint8_t* slot);
  // The same into a slot in device memory (a device batch): no copy to the host.
  SlotGeometry ToDeviceSlot(const AVFrame* frame, uint8_t* device_slot);

 private:
  Nv12Params Params(const AVFrame* frame) const;
  TensorLayout layout_;
  cuda::DeviceSlotWriter* writer_ = nullptr;
};

}  // namespace smartcity
