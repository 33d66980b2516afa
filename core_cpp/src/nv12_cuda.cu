// CUDA kernel of the NV12 -> tensor conversion; same maths as the CPU reference in nv12.cpp
// (see smartcity/nv12.hpp). One thread per slot pixel writes its 3 channels; threads of a warp
// cover consecutive x, so reads of the planes and writes of each channel plane are coalesced.
#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>

#include "smartcity/nv12.hpp"

namespace smartcity {
namespace cuda {
namespace {

struct KernelArgs {
  const uint8_t* y_plane;
  const uint8_t* uv_plane;
  int y_pitch;
  int uv_pitch;
  int src_w;
  int src_h;
  int dst_w;
  int dst_h;
  int pic_x;  // picture placement inside the slot (SlotGeometry::dst_x ...)
  int pic_y;
  int pic_w;
  int pic_h;
  float scale_x;
  float scale_y;
  float pad_value;
  YuvToRgbCoeffs c;
  bool bgr;
};

__device__ __forceinline__ float Clamp(float v, float lo, float hi) { return fminf(fmaxf(v, lo), hi); }

__device__ __forceinline__ float Bilinear(const uint8_t* __restrict__ plane, int pitch, int step, int w, int h, float x,
                                          float y) {
  const int x0 = static_cast<int>(floorf(x));
  const int y0 = static_cast<int>(floorf(y));
  const int x1 = min(x0 + 1, w - 1);
  const int y1 = min(y0 + 1, h - 1);
  const float fx = x - static_cast<float>(x0);
  const float fy = y - static_cast<float>(y0);
  const uint8_t* row0 = plane + static_cast<ptrdiff_t>(y0) * pitch;
  const uint8_t* row1 = plane + static_cast<ptrdiff_t>(y1) * pitch;
  const float p00 = __ldg(row0 + x0 * step);
  const float p01 = __ldg(row0 + x1 * step);
  const float p10 = __ldg(row1 + x0 * step);
  const float p11 = __ldg(row1 + x1 * step);
  const float top = p00 + fx * (p01 - p00);
  const float bottom = p10 + fx * (p11 - p10);
  return top + fy * (bottom - top);
}

__device__ __forceinline__ float StoreValue(float v, float*) { return v; }
__device__ __forceinline__ uint8_t StoreValue(float v, uint8_t*) {
  // Same rounding as smartcity::ToU8.
  return static_cast<uint8_t>(Clamp(v * 255.f + 0.5f, 0.f, 255.f));
}

template <typename T>
__global__ void Nv12ToTensorKernel(KernelArgs a, T* __restrict__ dst) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= a.dst_w || y >= a.dst_h) return;

  float r = a.pad_value;
  float g = a.pad_value;
  float b = a.pad_value;
  if (x >= a.pic_x && x < a.pic_x + a.pic_w && y >= a.pic_y && y < a.pic_y + a.pic_h) {
    const int uv_w = a.src_w / 2;
    const int uv_h = a.src_h / 2;
    const float sx = (static_cast<float>(x - a.pic_x) + 0.5f) / a.scale_x - 0.5f;
    const float sy = (static_cast<float>(y - a.pic_y) + 0.5f) / a.scale_y - 0.5f;
    const float ux = (sx + 0.5f) * 0.5f - 0.5f;
    const float uy = (sy + 0.5f) * 0.5f - 0.5f;

    const float lum = Bilinear(a.y_plane, a.y_pitch, 1, a.src_w, a.src_h, Clamp(sx, 0.f, a.src_w - 1.f),
                               Clamp(sy, 0.f, a.src_h - 1.f));
    const float cx = Clamp(ux, 0.f, uv_w - 1.f);
    const float cy = Clamp(uy, 0.f, uv_h - 1.f);
    const float u = Bilinear(a.uv_plane, a.uv_pitch, 2, uv_w, uv_h, cx, cy) - 128.f;
    const float v = Bilinear(a.uv_plane + 1, a.uv_pitch, 2, uv_w, uv_h, cx, cy) - 128.f;

    const float l = a.c.y_scale * (lum - a.c.y_offset);
    r = Clamp(l + a.c.r_v * v, 0.f, 1.f);
    g = Clamp(l + a.c.g_u * u + a.c.g_v * v, 0.f, 1.f);
    b = Clamp(l + a.c.b_u * u, 0.f, 1.f);
  }
  if (a.bgr) {
    const float t = r;
    r = b;
    b = t;
  }
  const size_t plane = static_cast<size_t>(a.dst_w) * static_cast<size_t>(a.dst_h);
  const size_t i = static_cast<size_t>(y) * a.dst_w + x;
  dst[i] = StoreValue(r, dst);
  dst[plane + i] = StoreValue(g, dst);
  dst[2 * plane + i] = StoreValue(b, dst);
}

void ThrowOnError(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
  }
}

template <typename T>
void Launch(const uint8_t* d_y, const uint8_t* d_uv, const Nv12Params& p, T* d_dst, void* stream, const char* name) {
  ValidateNv12Params(p);
  if (d_y == nullptr || d_uv == nullptr || d_dst == nullptr) {
    throw std::invalid_argument(std::string(name) + ": null device pointer");
  }
  const SlotGeometry geo = ComputeGeometry(p.src_w, p.src_h, p.dst_w, p.dst_h, p.mode);
  KernelArgs a{};
  a.y_plane = d_y;
  a.uv_plane = d_uv;
  a.y_pitch = Nv12YPitch(p);
  a.uv_pitch = Nv12UvPitch(p);
  a.src_w = p.src_w;
  a.src_h = p.src_h;
  a.dst_w = p.dst_w;
  a.dst_h = p.dst_h;
  a.pic_x = geo.dst_x;
  a.pic_y = geo.dst_y;
  a.pic_w = geo.dst_w;
  a.pic_h = geo.dst_h;
  a.scale_x = geo.scale_x;
  a.scale_y = geo.scale_y;
  a.pad_value = p.pad_value;
  a.c = ComputeYuvToRgbCoeffs(p.matrix, p.full_range);
  a.bgr = p.bgr;

  const dim3 block(32, 8);
  const dim3 grid((p.dst_w + block.x - 1) / block.x, (p.dst_h + block.y - 1) / block.y);
  Nv12ToTensorKernel<T><<<grid, block, 0, static_cast<cudaStream_t>(stream)>>>(a, d_dst);
  ThrowOnError(cudaGetLastError(), name);
}

}  // namespace

int DeviceCount() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear it: "no device" / "no driver" is an answer, not a failure
    return 0;
  }
  return n;
}

void Nv12ToTensor(const uint8_t* d_y, const uint8_t* d_uv, const Nv12Params& params, float* d_dst_slot, void* stream) {
  Launch(d_y, d_uv, params, d_dst_slot, stream, "cuda::Nv12ToTensor");
}

void Nv12ToTensorU8(const uint8_t* d_y, const uint8_t* d_uv, const Nv12Params& params, uint8_t* d_dst_slot,
                    void* stream) {
  Launch(d_y, d_uv, params, d_dst_slot, stream, "cuda::Nv12ToTensorU8");
}

void ActivateDevice(int device) {
  ThrowOnError(cudaSetDevice(device), "cudaSetDevice");
  ThrowOnError(cudaFree(nullptr), "cudaFree(0) (activating the primary context)");
}

void* AllocPinnedHost(size_t bytes) {
  void* p = nullptr;
  if (cudaMallocHost(&p, bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return p;
}

void FreePinnedHost(void* p) {
  if (p) cudaFreeHost(p);
}

DeviceSlotWriter::~DeviceSlotWriter() {
  if (d_buf_) cudaFree(d_buf_);
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

void* DeviceSlotWriter::Stream() {
  ThrowOnError(cudaSetDevice(device_), "cudaSetDevice");
  if (!stream_) {
    cudaStream_t s = nullptr;
    ThrowOnError(cudaStreamCreate(&s), "cudaStreamCreate");
    stream_ = s;
  }
  return stream_;
}

void DeviceSlotWriter::Write(const uint8_t* d_y, const uint8_t* d_uv, const Nv12Params& params, bool u8,
                             void* host_slot) {
  ValidateNv12Params(params);
  if (host_slot == nullptr) throw std::invalid_argument("DeviceSlotWriter::Write: null host slot");
  const auto stream = static_cast<cudaStream_t>(Stream());
  const size_t bytes = 3 * static_cast<size_t>(params.dst_w) * params.dst_h * (u8 ? 1 : sizeof(float));
  if (bytes > bytes_) {
    if (d_buf_) cudaFree(d_buf_);
    d_buf_ = nullptr;
    bytes_ = 0;
    ThrowOnError(cudaMalloc(&d_buf_, bytes), "cudaMalloc (slot staging buffer)");
    bytes_ = bytes;
  }
  if (u8) {
    Nv12ToTensorU8(d_y, d_uv, params, static_cast<uint8_t*>(d_buf_), stream);
  } else {
    Nv12ToTensor(d_y, d_uv, params, static_cast<float*>(d_buf_), stream);
  }
  ThrowOnError(cudaMemcpyAsync(host_slot, d_buf_, bytes, cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync (slot to host)");
  ThrowOnError(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

void DeviceSlotWriter::WriteDevice(const uint8_t* d_y, const uint8_t* d_uv, const Nv12Params& params, bool u8,
                                   void* device_slot) {
  ValidateNv12Params(params);
  if (device_slot == nullptr) throw std::invalid_argument("DeviceSlotWriter::WriteDevice: null device slot");
  const auto stream = static_cast<cudaStream_t>(Stream());
  if (u8) {
    Nv12ToTensorU8(d_y, d_uv, params, static_cast<uint8_t*>(device_slot), stream);
  } else {
    Nv12ToTensor(d_y, d_uv, params, static_cast<float*>(device_slot), stream);
  }
  ThrowOnError(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

void* AllocDevice(size_t bytes, int device) {
  void* p = nullptr;
  if (cudaSetDevice(device) != cudaSuccess || cudaMalloc(&p, bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return p;
}

void FreeDevice(void* p) {
  if (p) cudaFree(p);
}

DeviceCopier::DeviceCopier(int device) : device_(device) {
  ThrowOnError(cudaSetDevice(device_), "cudaSetDevice");
  cudaStream_t s = nullptr;
  ThrowOnError(cudaStreamCreate(&s), "cudaStreamCreate");
  stream_ = s;
}

DeviceCopier::~DeviceCopier() {
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

void DeviceCopier::ToDevice(void* d_dst, const void* h_src, size_t bytes) {
  ThrowOnError(cudaSetDevice(device_), "cudaSetDevice");
  ThrowOnError(cudaMemcpyAsync(d_dst, h_src, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream_)),
               "cudaMemcpyAsync (slot to the device)");
}

void DeviceCopier::ToHost(void* h_dst, const void* d_src, size_t bytes) {
  ThrowOnError(cudaSetDevice(device_), "cudaSetDevice");
  ThrowOnError(cudaMemcpyAsync(h_dst, d_src, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream_)),
               "cudaMemcpyAsync (slot to the host)");
}

void DeviceCopier::Wait() {
  ThrowOnError(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "cudaStreamSynchronize (batch copies)");
}

void Nv12ToTensorFromHost(const uint8_t* y, const uint8_t* uv, const Nv12Params& params, float* dst_slot) {
  ValidateNv12Params(params);
  const size_t y_bytes = static_cast<size_t>(Nv12YPitch(params)) * params.src_h;
  const size_t uv_bytes = static_cast<size_t>(Nv12UvPitch(params)) * (params.src_h / 2);
  const size_t dst_bytes = 3 * static_cast<size_t>(params.dst_w) * params.dst_h * sizeof(float);
  uint8_t* d_y = nullptr;
  uint8_t* d_uv = nullptr;
  float* d_dst = nullptr;
  const auto free_all = [&] {
    cudaFree(d_y);
    cudaFree(d_uv);
    cudaFree(d_dst);
  };
  try {
    ThrowOnError(cudaMalloc(&d_y, y_bytes), "cudaMalloc");
    ThrowOnError(cudaMalloc(&d_uv, uv_bytes), "cudaMalloc");
    ThrowOnError(cudaMalloc(&d_dst, dst_bytes), "cudaMalloc");
    ThrowOnError(cudaMemcpy(d_y, y, y_bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    ThrowOnError(cudaMemcpy(d_uv, uv, uv_bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    Nv12ToTensor(d_y, d_uv, params, d_dst, nullptr);
    ThrowOnError(cudaMemcpy(dst_slot, d_dst, dst_bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
  } catch (...) {
    free_all();
    throw;
  }
  free_all();
}

}  // namespace cuda
}  // namespace smartcity
