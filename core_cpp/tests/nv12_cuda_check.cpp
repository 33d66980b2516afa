// Checks the NV12 -> tensor conversion: first the CPU reference against known answers (runs
// everywhere), then the CUDA kernel against the CPU reference on synthetic frames (max abs
// difference <= 1/255), then times the kernel. Plain executable, no test framework.
// Exit status: 0 pass, 1 fail, 77 (ctest SKIP_RETURN_CODE) when no CUDA device is visible.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "smartcity/nv12.hpp"

namespace {

using smartcity::ColorMatrix;
using smartcity::Nv12Params;
using smartcity::ResizeMode;

constexpr int kSkip = 77;
constexpr float kTolerance = 1.f / 255.f;

struct Frame {
  int w = 0;
  int h = 0;
  int y_pitch = 0;
  int uv_pitch = 0;
  std::vector<uint8_t> y;   // h rows of y_pitch bytes
  std::vector<uint8_t> uv;  // h / 2 rows of uv_pitch bytes
};

// Pitch padding is filled with 0xAB: it must never reach the output.
Frame AllocFrame(int w, int h, int y_pitch, int uv_pitch) {
  Frame f;
  f.w = w;
  f.h = h;
  f.y_pitch = y_pitch;
  f.uv_pitch = uv_pitch;
  f.y.assign(static_cast<size_t>(y_pitch) * h, 0xAB);
  f.uv.assign(static_cast<size_t>(uv_pitch) * (h / 2), 0xAB);
  return f;
}

uint8_t Sat(double v) { return static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L)); }

// Gradients over the whole 0..255 range plus noise, so clamping and all slopes are exercised.
Frame MakeNoisyFrame(int w, int h, int y_pitch, int uv_pitch, uint32_t seed) {
  Frame f = AllocFrame(w, h, y_pitch, uv_pitch);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> noise(-24, 24);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const double base = 255.0 * (0.6 * x / (w - 1) + 0.4 * y / (h - 1));
      f.y[static_cast<size_t>(y) * y_pitch + x] = Sat(base + noise(rng));
    }
  }
  for (int y = 0; y < h / 2; ++y) {
    for (int x = 0; x < w / 2; ++x) {
      uint8_t* p = &f.uv[static_cast<size_t>(y) * uv_pitch + 2 * x];
      p[0] = Sat(255.0 * y / (h / 2 - 1) + noise(rng));
      p[1] = Sat(255.0 * x / (w / 2 - 1) + noise(rng));
    }
  }
  return f;
}

Frame MakeUniformFrame(int w, int h, uint8_t yv, uint8_t u, uint8_t v) {
  Frame f = AllocFrame(w, h, w, w);
  std::fill(f.y.begin(), f.y.end(), yv);
  for (size_t i = 0; i < f.uv.size(); i += 2) {
    f.uv[i] = u;
    f.uv[i + 1] = v;
  }
  return f;
}

Nv12Params ParamsFor(const Frame& f, int dst_w, int dst_h, ResizeMode mode) {
  Nv12Params p;
  p.src_w = f.w;
  p.src_h = f.h;
  p.y_pitch = f.y_pitch;
  p.uv_pitch = f.uv_pitch;
  p.dst_w = dst_w;
  p.dst_h = dst_h;
  p.mode = mode;
  return p;
}

std::vector<float> RunCpu(const Frame& f, const Nv12Params& p) {
  std::vector<float> out(3 * static_cast<size_t>(p.dst_w) * p.dst_h, -1.f);
  smartcity::Nv12ToTensorCpu(f.y.data(), f.uv.data(), p, out.data());
  return out;
}

const char* ModeName(ResizeMode m) { return m == ResizeMode::kLetterbox ? "letterbox" : "stretch"; }

// ------------------------------------------------------------------ CPU checks of the reference
struct CpuChecks {
  int failures = 0;

  void Report(const std::string& name, bool ok, const std::string& detail = "") {
    std::printf("CPU check %-56s %s%s%s\n", name.c_str(), ok ? "ok" : "FAIL", detail.empty() ? "" : "  ",
                detail.c_str());
    if (!ok) ++failures;
  }

  static float At(const std::vector<float>& t, const Nv12Params& p, int c, int x, int y) {
    return t[(static_cast<size_t>(c) * p.dst_h + y) * p.dst_w + x];
  }

  // Grey frame: every channel (126 - 16) / 219 inside the picture, pad outside.
  void Grey() {
    const Frame f = MakeUniformFrame(1920, 1080, 126, 128, 128);
    const Nv12Params p = ParamsFor(f, 640, 640, ResizeMode::kLetterbox);
    const std::vector<float> t = RunCpu(f, p);
    const float expect = (126.f - 16.f) / 219.f;
    float worst = 0.f;
    int picture_rows = 0;
    for (int y = 0; y < p.dst_h; ++y) {
      const bool in_rows = y >= 140 && y < 500;  // 1080 * 640 / 1920 = 360 rows, centred
      picture_rows += in_rows;
      for (int x = 0; x < p.dst_w; ++x) {
        for (int c = 0; c < 3; ++c) {
          const float want = in_rows ? expect : p.pad_value;
          worst = std::max(worst, std::fabs(At(t, p, c, x, y) - want));
          if (std::isnan(At(t, p, c, x, y))) worst = INFINITY;
        }
      }
    }
    Report("grey 1920x1080 -> 640x640 letterbox", worst <= 1e-6f && picture_rows == 360,
           "max err " + std::to_string(worst));
  }

  // Left half white, right half black: the white lands in the left half of the picture columns.
  void HalfWhite(int w, int h, int margin) {
    Frame f = MakeUniformFrame(w, h, 16, 128, 128);
    for (int y = 0; y < h; ++y) std::fill_n(&f.y[static_cast<size_t>(y) * w], w / 2, uint8_t{235});
    const Nv12Params p = ParamsFor(f, 640, 640, ResizeMode::kLetterbox);
    const smartcity::SlotGeometry g = smartcity::ComputeGeometry(w, h, 640, 640, ResizeMode::kLetterbox);
    const std::vector<float> t = RunCpu(f, p);
    const int mid = g.dst_x + g.dst_w / 2;
    bool ok = true;
    for (int y = 0; y < p.dst_h; ++y) {
      for (int x = 0; x < p.dst_w; ++x) {
        const bool inside = x >= g.dst_x && x < g.dst_x + g.dst_w && y >= g.dst_y && y < g.dst_y + g.dst_h;
        for (int c = 0; c < 3; ++c) {
          const float v = At(t, p, c, x, y);
          if (!inside) {
            ok = ok && v == p.pad_value;
          } else if (x < mid - margin) {
            ok = ok && std::fabs(v - 1.f) <= 1e-6f;
          } else if (x >= mid + margin) {
            ok = ok && std::fabs(v) <= 1e-6f;
          } else {
            ok = ok && v >= 0.f && v <= 1.f;
          }
        }
      }
    }
    Report("left half white " + std::to_string(w) + "x" + std::to_string(h) + " -> 640x640 letterbox", ok,
           "picture x in [" + std::to_string(g.dst_x) + ", " + std::to_string(g.dst_x + g.dst_w) + "), white below x " +
               std::to_string(mid));
  }

  // Saturated red for each matrix / range; bgr swaps the first and third planes.
  void Red(const char* name, ColorMatrix m, bool full, uint8_t yv, uint8_t u, uint8_t v, bool bgr) {
    const Frame f = MakeUniformFrame(64, 48, yv, u, v);
    Nv12Params p = ParamsFor(f, 32, 32, ResizeMode::kStretch);
    p.matrix = m;
    p.full_range = full;
    p.bgr = bgr;
    const std::vector<float> t = RunCpu(f, p);
    const float want[3] = {bgr ? 0.f : 1.f, 0.f, bgr ? 1.f : 0.f};
    float worst = 0.f;
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < p.dst_h; ++y) {
        for (int x = 0; x < p.dst_w; ++x) worst = std::max(worst, std::fabs(At(t, p, c, x, y) - want[c]));
      }
    }
    Report(std::string("red ") + name, worst <= 0.02f, "max err " + std::to_string(worst));
  }

  // Same size stretch is the identity on Y: every channel is (Y - 16) / 219 clamped when U = V = 128.
  void Identity() {
    Frame f = MakeNoisyFrame(64, 48, 64, 64, 7);
    for (size_t i = 0; i < f.uv.size(); ++i) f.uv[i] = 128;
    const Nv12Params p = ParamsFor(f, 64, 48, ResizeMode::kStretch);
    const std::vector<float> t = RunCpu(f, p);
    float worst = 0.f;
    for (int y = 0; y < 48; ++y) {
      for (int x = 0; x < 64; ++x) {
        const float want = std::clamp((f.y[static_cast<size_t>(y) * 64 + x] - 16.f) / 219.f, 0.f, 1.f);
        for (int c = 0; c < 3; ++c) worst = std::max(worst, std::fabs(At(t, p, c, x, y) - want));
      }
    }
    Report("identity stretch 64x48", worst <= 1e-6f, "max err " + std::to_string(worst));
  }

  // Pitch padding is never read: a padded copy of a frame gives bit-identical output.
  void Pitch() {
    const Frame a = MakeNoisyFrame(768, 576, 768, 768, 11);
    Frame b = AllocFrame(768, 576, 768 + 37, 768 + 64);
    for (int y = 0; y < 576; ++y)
      std::memcpy(&b.y[static_cast<size_t>(y) * b.y_pitch], &a.y[static_cast<size_t>(y) * 768], 768);
    for (int y = 0; y < 288; ++y)
      std::memcpy(&b.uv[static_cast<size_t>(y) * b.uv_pitch], &a.uv[static_cast<size_t>(y) * 768], 768);
    const std::vector<float> ta = RunCpu(a, ParamsFor(a, 640, 384, ResizeMode::kLetterbox));
    const std::vector<float> tb = RunCpu(b, ParamsFor(b, 640, 384, ResizeMode::kLetterbox));
    Report("pitch > width gives the same output", ta == tb);
  }

  // The uint8 variant stores ToU8 of the float variant.
  void U8() {
    const Frame f = MakeNoisyFrame(1280, 720, 1280, 1280, 13);
    const Nv12Params p = ParamsFor(f, 640, 640, ResizeMode::kLetterbox);
    const std::vector<float> t = RunCpu(f, p);
    std::vector<uint8_t> u(t.size());
    smartcity::Nv12ToTensorU8Cpu(f.y.data(), f.uv.data(), p, u.data());
    bool ok = true;
    for (size_t i = 0; i < t.size(); ++i) ok = ok && u[i] == smartcity::ToU8(t[i]);
    Report("uint8 variant = round(255 * float)", ok && u[0] == 114);
  }

  // Odd frame sizes and short pitches are refused.
  void Invalid() {
    Nv12Params p;
    p.src_w = 1917;
    p.src_h = 1079;
    p.dst_w = p.dst_h = 640;
    bool threw = false;
    try {
      smartcity::ValidateNv12Params(p);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    p.src_w = 1920;
    p.src_h = 1080;
    p.y_pitch = 1900;
    bool threw_pitch = false;
    try {
      smartcity::ValidateNv12Params(p);
    } catch (const std::invalid_argument&) {
      threw_pitch = true;
    }
    Report("odd size and short pitch are refused", threw && threw_pitch);
  }
};

// ------------------------------------------------------------------ GPU comparison
void Check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
  }
}

template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t count = 0;
  explicit DeviceBuffer(size_t n) : count(n) { Check(cudaMalloc(&ptr, n * sizeof(T)), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

struct DeviceFrame {
  DeviceBuffer<uint8_t> y;
  DeviceBuffer<uint8_t> uv;
  explicit DeviceFrame(const Frame& f) : y(f.y.size()), uv(f.uv.size()) {
    Check(cudaMemcpy(y.ptr, f.y.data(), f.y.size(), cudaMemcpyHostToDevice), "cudaMemcpy frame Y");
    Check(cudaMemcpy(uv.ptr, f.uv.data(), f.uv.size(), cudaMemcpyHostToDevice), "cudaMemcpy frame UV");
  }
};

// Max abs difference (NaN counts as infinite).
template <typename T>
double MaxDiff(const T* a, const T* b, size_t n) {
  double worst = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  return worst;
}

// Writes slot 1 of a 2-slot batch pre-filled with 0xFF bytes; slot 0 must stay untouched.
template <typename T>
std::vector<T> RunGpu(const DeviceFrame& d, const Nv12Params& p, bool* other_slot_untouched) {
  const size_t slot = 3 * static_cast<size_t>(p.dst_w) * p.dst_h;
  DeviceBuffer<T> batch(2 * slot);
  Check(cudaMemset(batch.ptr, 0xFF, 2 * slot * sizeof(T)), "cudaMemset");
  if constexpr (std::is_same_v<T, float>) {
    smartcity::cuda::Nv12ToTensor(d.y.ptr, d.uv.ptr, p, batch.ptr + slot, nullptr);
  } else {
    smartcity::cuda::Nv12ToTensorU8(d.y.ptr, d.uv.ptr, p, batch.ptr + slot, nullptr);
  }
  Check(cudaDeviceSynchronize(), "kernel");
  std::vector<T> host(2 * slot);
  Check(cudaMemcpy(host.data(), batch.ptr, 2 * slot * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy result");
  std::vector<uint8_t> ff(slot * sizeof(T), 0xFF);
  *other_slot_untouched = std::memcmp(host.data(), ff.data(), ff.size()) == 0;
  return std::vector<T>(host.begin() + static_cast<std::ptrdiff_t>(slot), host.end());
}

struct GpuCase {
  int w, h;
  bool padded_pitch;
  ColorMatrix matrix;
  bool full_range;
  bool bgr;
};

int RunGpuCases() {
  const GpuCase frames[] = {
      {768, 576, false, ColorMatrix::kBt601, false, false}, {1920, 1080, true, ColorMatrix::kBt709, false, false},
      {1280, 720, true, ColorMatrix::kBt601, true, true},   {640, 360, false, ColorMatrix::kBt709, true, false},
      {320, 240, true, ColorMatrix::kBt601, false, true},  // upscaling
  };
  struct Dst {
    int w, h;
    ResizeMode mode;
  };
  const Dst dsts[] = {{640, 640, ResizeMode::kLetterbox},
                      {640, 640, ResizeMode::kStretch},
                      {640, 384, ResizeMode::kLetterbox},
                      {640, 384, ResizeMode::kStretch},
                      {300, 300, ResizeMode::kStretch}};
  int failures = 0;
  uint32_t seed = 1;
  for (const GpuCase& fc : frames) {
    // A padded pitch as NVDEC gives it: rounded up to 256 bytes plus one more block.
    const int pitch = fc.padded_pitch ? (fc.w + 255) / 256 * 256 + 256 : fc.w;
    const Frame f = MakeNoisyFrame(fc.w, fc.h, pitch, pitch, seed++);
    const DeviceFrame d(f);
    for (const Dst& dst : dsts) {
      Nv12Params p = ParamsFor(f, dst.w, dst.h, dst.mode);
      p.matrix = fc.matrix;
      p.full_range = fc.full_range;
      p.bgr = fc.bgr;
      const std::vector<float> ref = RunCpu(f, p);
      std::vector<uint8_t> ref_u8(ref.size());
      smartcity::Nv12ToTensorU8Cpu(f.y.data(), f.uv.data(), p, ref_u8.data());
      bool untouched_f = false;
      bool untouched_u = false;
      const std::vector<float> got = RunGpu<float>(d, p, &untouched_f);
      const std::vector<uint8_t> got_u8 = RunGpu<uint8_t>(d, p, &untouched_u);
      const double diff = MaxDiff(ref.data(), got.data(), ref.size());
      const double diff_u8 = MaxDiff(ref_u8.data(), got_u8.data(), ref_u8.size());
      const bool ok = diff <= kTolerance && diff_u8 <= 1.0 && untouched_f && untouched_u;
      failures += !ok;
      std::printf("GPU %4dx%-4d pitch %4d %s %-4s%s -> %3dx%-3d %-9s  max|diff| f32 %.3g  u8 %.0f%s  %s\n", fc.w, fc.h,
                  pitch, fc.matrix == ColorMatrix::kBt709 ? "bt709" : "bt601", fc.full_range ? "full" : "ltd",
                  fc.bgr ? " bgr" : "    ", dst.w, dst.h, ModeName(dst.mode), diff, diff_u8,
                  untouched_f && untouched_u ? "" : "  (wrote outside its slot)", ok ? "ok" : "FAIL");
    }
  }
  return failures;
}

template <typename T>
void Time(int w, int h, int dst_w, int dst_h) {
  const Frame f = MakeNoisyFrame(w, h, w, w, 99);
  const DeviceFrame d(f);
  const Nv12Params p = ParamsFor(f, dst_w, dst_h, ResizeMode::kLetterbox);
  DeviceBuffer<T> out(3 * static_cast<size_t>(dst_w) * dst_h);
  auto launch = [&] {
    if constexpr (std::is_same_v<T, float>) {
      smartcity::cuda::Nv12ToTensor(d.y.ptr, d.uv.ptr, p, out.ptr, nullptr);
    } else {
      smartcity::cuda::Nv12ToTensorU8(d.y.ptr, d.uv.ptr, p, out.ptr, nullptr);
    }
  };
  for (int i = 0; i < 10; ++i) launch();
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  Check(cudaEventCreate(&start), "cudaEventCreate");
  Check(cudaEventCreate(&stop), "cudaEventCreate");
  constexpr int kLaunches = 100;
  Check(cudaEventRecord(start), "cudaEventRecord");
  for (int i = 0; i < kLaunches; ++i) launch();
  Check(cudaEventRecord(stop), "cudaEventRecord");
  Check(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float ms = 0.f;
  Check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::printf("TIME %4dx%-4d -> %dx%d letterbox %s: mean %.2f us per launch over %d launches\n", w, h, dst_w, dst_h,
              std::is_same_v<T, float> ? "f32" : "u8 ", 1000.0 * ms / kLaunches, kLaunches);
}

}  // namespace

int main() {
  CpuChecks cpu;
  try {
    cpu.Grey();
    cpu.HalfWhite(360, 640, 0);    // scale 1: exact columns
    cpu.HalfWhite(1920, 1080, 2);  // downscaled: 2 blended columns either side of the edge
    cpu.Red("bt601 limited", ColorMatrix::kBt601, false, 81, 90, 240, false);
    cpu.Red("bt601 limited bgr", ColorMatrix::kBt601, false, 81, 90, 240, true);
    cpu.Red("bt709 limited", ColorMatrix::kBt709, false, 63, 102, 240, false);
    cpu.Red("bt601 full", ColorMatrix::kBt601, true, 76, 85, 255, false);
    cpu.Red("bt709 full", ColorMatrix::kBt709, true, 54, 99, 255, false);
    cpu.Identity();
    cpu.Pitch();
    cpu.U8();
    cpu.Invalid();
  } catch (const std::exception& e) {
    std::printf("FAIL: CPU checks threw: %s\n", e.what());
    return 1;
  }
  if (cpu.failures > 0) {
    std::printf("FAIL: %d CPU check(s) failed\n", cpu.failures);
    return 1;
  }

  int devices = 0;
  try {
    devices = smartcity::cuda::DeviceCount();
  } catch (const std::exception&) {
    devices = 0;
  }
  if (devices == 0) {
    std::printf("SKIP: no CUDA device\n");
    return kSkip;
  }
  try {
    cudaDeviceProp prop{};
    Check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    int runtime = 0;
    int driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    std::printf("GPU: %s (sm_%d%d), CUDA runtime %d, driver %d\n", prop.name, prop.major, prop.minor, runtime, driver);
    int failures = RunGpuCases();
    {
      // The host-to-host helper that the Python binding nv12_to_tensor(device="cuda") calls.
      const Frame f = MakeNoisyFrame(1280, 720, 1280, 1280, 99);
      const Nv12Params p = ParamsFor(f, 640, 640, ResizeMode::kLetterbox);
      const std::vector<float> ref = RunCpu(f, p);
      std::vector<float> got(ref.size());
      smartcity::cuda::Nv12ToTensorFromHost(f.y.data(), f.uv.data(), p, got.data());
      const double diff = MaxDiff(got.data(), ref.data(), ref.size());
      const bool ok = diff <= 1.0 / 255.0;
      std::printf("%s Nv12ToTensorFromHost 1280x720 -> 640x640 letterbox: max|diff| %.3g\n", ok ? "ok  " : "FAIL",
                  diff);
      failures += ok ? 0 : 1;
    }
    Time<float>(1920, 1080, 640, 640);
    Time<uint8_t>(1920, 1080, 640, 640);
    Time<float>(3840, 2160, 640, 640);
    if (failures > 0) {
      std::printf("FAIL: %d GPU case(s) differ from the CPU reference by more than 1/255\n", failures);
      return 1;
    }
  } catch (const std::exception& e) {
    std::printf("FAIL: %s\n", e.what());
    return 1;
  }
  std::printf("PASS\n");
  return 0;
}
