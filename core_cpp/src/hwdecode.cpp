#include "smartcity/hwdecode.hpp"

#include <stdexcept>
#include <string>

#ifdef SMARTCITY_WITH_CUDA
#include <dlfcn.h>
#endif

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/buffer.h>
#include <libavutil/dict.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/hwcontext.h>
#include <libavutil/pixdesc.h>
#ifdef SMARTCITY_WITH_CUDA
#include <libavutil/hwcontext_cuda.h>
#endif
}

#include "av_error.hpp"
#include "smartcity/nv12.hpp"

namespace smartcity {

namespace {

// Takes CUDA frames when FFmpeg offers them. FFmpeg leaves AV_PIX_FMT_CUDA out of the list when
// the hwaccel could not start for this stream (profile, size, no decoder session left), and then
// the first software format is taken and the refusal is recorded.
AVPixelFormat PickFormat(AVCodecContext* ctx, const AVPixelFormat* formats) {
  for (const AVPixelFormat* p = formats; *p != AV_PIX_FMT_NONE; ++p) {
    if (*p == AV_PIX_FMT_CUDA) return *p;
  }
  if (ctx->opaque) *static_cast<bool*>(ctx->opaque) = true;
  for (const AVPixelFormat* p = formats; *p != AV_PIX_FMT_NONE; ++p) {
    const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(*p);
    if (d && !(d->flags & AV_PIX_FMT_FLAG_HWACCEL)) return *p;
  }
  return AV_PIX_FMT_NONE;
}

#ifdef SMARTCITY_WITH_CUDA
// The CUDA runtime's primary context of `device` (made current on this thread), or nullptr and
// *why. Read with the driver's cuCtxGetCurrent, looked up in the driver library the runtime has
// loaded already: the core does not link the driver, so that it loads where there is none.
void* RuntimeContext(int device, std::string* why) {
  try {
    cuda::ActivateDevice(device);
  } catch (const std::exception& e) {
    *why = e.what();
    return nullptr;
  }
  using GetCurrent = int (*)(void**);
  static const GetCurrent get_current = [] {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW);
    return lib ? reinterpret_cast<GetCurrent>(dlsym(lib, "cuCtxGetCurrent")) : nullptr;
  }();
  void* ctx = nullptr;
  if (!get_current || get_current(&ctx) != 0 || !ctx) {
    *why = "cannot read the CUDA context of device " + std::to_string(device) + " (cuCtxGetCurrent)";
    return nullptr;
  }
  return ctx;
}
#endif

}  // namespace

HwAccel ParseHwAccel(const std::string& name) {
  if (name == "none") return HwAccel::kNone;
  if (name == "auto") return HwAccel::kAuto;
  if (name == "cuda") return HwAccel::kCuda;
  throw std::invalid_argument("hwaccel must be 'none', 'auto' or 'cuda', got '" + name + "'");
}

const char* HwAccelName(HwAccel h) {
  switch (h) {
    case HwAccel::kNone: return "none";
    case HwAccel::kAuto: return "auto";
    case HwAccel::kCuda: return "cuda";
  }
  return "none";
}

bool CudaDecodeAvailable(std::string* why) {
#ifdef SMARTCITY_WITH_CUDA
  if (cuda::DeviceCount() <= 0) {
    if (why) *why = "no CUDA device is visible (no GPU, or no NVIDIA driver)";
    return false;
  }
  if (av_hwdevice_find_type_by_name("cuda") != AV_HWDEVICE_TYPE_CUDA) {
    if (why) *why = "this FFmpeg was built without CUDA";
    return false;
  }
  return true;
#else
  if (why) *why = "this build has no CUDA (built without a CUDA toolkit)";
  return false;
#endif
}

std::string AttachCudaDecoder(const AVCodec* codec, AVCodecContext* dec, int device, AVBufferRef** device_ref,
                              bool* refused) {
  *device_ref = nullptr;
  std::string why;
  if (!CudaDecodeAvailable(&why)) return why;
  bool has_config = false;
  for (int i = 0;; ++i) {
    const AVCodecHWConfig* c = avcodec_get_hw_config(codec, i);
    if (!c) break;
    if (c->device_type == AV_HWDEVICE_TYPE_CUDA && (c->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX)) {
      has_config = true;
      break;
    }
  }
  if (!has_config) return std::string("FFmpeg has no NVDEC path for the ") + codec->name + " decoder";
#ifdef SMARTCITY_WITH_CUDA
  // FFmpeg decodes in the CUDA runtime's own primary context, handed over as a user context:
  // the conversion kernel then reads the decoder's frames in the same context, and FFmpeg never
  // sets the context's flags (its primary_ctx option refuses a context that another library,
  // ONNX Runtime or TensorRT say, started first with other flags).
  void* ctx = RuntimeContext(device, &why);
  if (!ctx) return why;
  *device_ref = av_hwdevice_ctx_alloc(AV_HWDEVICE_TYPE_CUDA);
  if (!*device_ref) return "out of memory";
  auto* device_ctx = reinterpret_cast<AVHWDeviceContext*>((*device_ref)->data);
  auto* cuda_ctx = static_cast<AVCUDADeviceContext*>(device_ctx->hwctx);
  cuda_ctx->cuda_ctx = static_cast<CUcontext>(ctx);
  cuda_ctx->stream = nullptr;  // the legacy default stream: DeviceSlotWriter's stream waits for it
  const int ret = av_hwdevice_ctx_init(*device_ref);
  if (ret < 0) {
    av_buffer_unref(device_ref);
    return "cannot open CUDA device " + std::to_string(device) + " for decoding: " + AvError(ret);
  }
#else
  (void)device;
  return why;
#endif
  dec->hw_device_ctx = av_buffer_ref(*device_ref);
  if (!dec->hw_device_ctx) {
    av_buffer_unref(device_ref);
    return "out of memory";
  }
  *refused = false;
  dec->thread_count = 1;  // NVDEC decodes asynchronously already; frame threads only add copies
  dec->opaque = refused;
  dec->get_format = &PickFormat;
  return "";
}

bool IsCudaFrame(const AVFrame* frame) { return frame && frame->format == AV_PIX_FMT_CUDA; }

int CudaFrameSwFormat(const AVFrame* frame) {
  if (!IsCudaFrame(frame) || !frame->hw_frames_ctx) return -1;
  return reinterpret_cast<const AVHWFramesContext*>(frame->hw_frames_ctx->data)->sw_format;
}

void DownloadFrame(const AVFrame* gpu, AVFrame* host) {
  av_frame_unref(host);
  int ret = av_hwframe_transfer_data(host, gpu, 0);
  if (ret >= 0) ret = av_frame_copy_props(host, gpu);
  if (ret < 0) throw std::runtime_error("cannot copy the GPU frame to host memory: " + AvError(ret));
}

#ifdef SMARTCITY_WITH_CUDA

CudaSlotConverter::CudaSlotConverter(TensorLayout layout, int device)
    : layout_(layout), writer_(new cuda::DeviceSlotWriter(device)) {
  layout_.Validate();
}

CudaSlotConverter::~CudaSlotConverter() { delete writer_; }

Nv12Params CudaSlotConverter::Params(const AVFrame* frame) const {
  if (CudaFrameSwFormat(frame) != AV_PIX_FMT_NV12) {
    throw std::runtime_error("CudaSlotConverter takes NV12 GPU frames only");
  }
  Nv12Params p;
  p.src_w = frame->width & ~1;  // the kernel takes even sizes; an odd last column or row is dropped
  p.src_h = frame->height & ~1;
  p.y_pitch = frame->linesize[0];
  p.uv_pitch = frame->linesize[1];
  p.dst_w = layout_.width;
  p.dst_h = layout_.height;
  p.mode = layout_.resize;
  p.pad_value = layout_.pad_value / 255.f;
  p.matrix = frame->colorspace == AVCOL_SPC_BT709 ? ColorMatrix::kBt709 : ColorMatrix::kBt601;
  p.full_range = frame->color_range == AVCOL_RANGE_JPEG;
  p.bgr = false;
  return p;
}

SlotGeometry CudaSlotConverter::ToSlot(const AVFrame* frame, uint8_t* slot) {
  const Nv12Params p = Params(frame);
  writer_->Write(frame->data[0], frame->data[1], p, layout_.dtype == DType::kUint8, slot);
  return ComputeGeometry(p.src_w, p.src_h, layout_.width, layout_.height, layout_.resize);
}

SlotGeometry CudaSlotConverter::ToDeviceSlot(const AVFrame* frame, uint8_t* device_slot) {
  const Nv12Params p = Params(frame);
  writer_->WriteDevice(frame->data[0], frame->data[1], p, layout_.dtype == DType::kUint8, device_slot);
  return ComputeGeometry(p.src_w, p.src_h, layout_.width, layout_.height, layout_.resize);
}

#else

CudaSlotConverter::CudaSlotConverter(TensorLayout layout, int) : layout_(layout) {
  throw std::runtime_error("this build has no CUDA (built without a CUDA toolkit)");
}

CudaSlotConverter::~CudaSlotConverter() = default;

SlotGeometry CudaSlotConverter::ToSlot(const AVFrame*, uint8_t*) {
  throw std::runtime_error("this build has no CUDA (built without a CUDA toolkit)");
}

SlotGeometry CudaSlotConverter::ToDeviceSlot(const AVFrame*, uint8_t*) {
  throw std::runtime_error("this build has no CUDA (built without a CUDA toolkit)");
}

Nv12Params CudaSlotConverter::Params(const AVFrame*) const {
  throw std::runtime_error("this build has no CUDA (built without a CUDA toolkit)");
}

#endif

}  // namespace smartcity
