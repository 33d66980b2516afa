// CPU reference of the NV12 -> tensor conversion (see smartcity/nv12.hpp for the maths).
// Plain loops on purpose: this is what the CUDA kernel is tested against, not a fast path.
#include "smartcity/nv12.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace smartcity {
namespace {

float Clamp(float v, float lo, float hi) { return std::min(std::max(v, lo), hi); }

// Bilinear sample of an 8-bit plane at (x, y), both already clamped to the plane. `step` is the
// distance in bytes between horizontal neighbours (1 for Y, 2 for the interleaved U or V).
float Bilinear(const uint8_t* plane, int pitch, int step, int w, int h, float x, float y) {
  const int x0 = static_cast<int>(std::floor(x));
  const int y0 = static_cast<int>(std::floor(y));
  const int x1 = std::min(x0 + 1, w - 1);
  const int y1 = std::min(y0 + 1, h - 1);
  const float fx = x - static_cast<float>(x0);
  const float fy = y - static_cast<float>(y0);
  const uint8_t* row0 = plane + static_cast<std::ptrdiff_t>(y0) * pitch;
  const uint8_t* row1 = plane + static_cast<std::ptrdiff_t>(y1) * pitch;
  const float p00 = row0[x0 * step];
  const float p01 = row0[x1 * step];
  const float p10 = row1[x0 * step];
  const float p11 = row1[x1 * step];
  const float top = p00 + fx * (p01 - p00);
  const float bottom = p10 + fx * (p11 - p10);
  return top + fy * (bottom - top);
}

// Converts one pixel of the slot into rgb[0..2] (R, G, B order), values in [0, 1].
void ConvertPixel(const uint8_t* y_plane, const uint8_t* uv_plane, const Nv12Params& p, const SlotGeometry& g,
                  const YuvToRgbCoeffs& c, int x, int y, float rgb[3]) {
  const bool inside = x >= g.dst_x && x < g.dst_x + g.dst_w && y >= g.dst_y && y < g.dst_y + g.dst_h;
  if (!inside) {
    rgb[0] = rgb[1] = rgb[2] = p.pad_value;
    return;
  }
  const int uv_w = p.src_w / 2;
  const int uv_h = p.src_h / 2;
  const float sx = (static_cast<float>(x - g.dst_x) + 0.5f) / g.scale_x - 0.5f;
  const float sy = (static_cast<float>(y - g.dst_y) + 0.5f) / g.scale_y - 0.5f;
  const float ux = (sx + 0.5f) * 0.5f - 0.5f;
  const float uy = (sy + 0.5f) * 0.5f - 0.5f;

  const float lum = Bilinear(y_plane, Nv12YPitch(p), 1, p.src_w, p.src_h, Clamp(sx, 0.f, p.src_w - 1.f),
                             Clamp(sy, 0.f, p.src_h - 1.f));
  const float cx = Clamp(ux, 0.f, uv_w - 1.f);
  const float cy = Clamp(uy, 0.f, uv_h - 1.f);
  const float u = Bilinear(uv_plane, Nv12UvPitch(p), 2, uv_w, uv_h, cx, cy) - 128.f;
  const float v = Bilinear(uv_plane + 1, Nv12UvPitch(p), 2, uv_w, uv_h, cx, cy) - 128.f;

  const float l = c.y_scale * (lum - c.y_offset);
  rgb[0] = Clamp(l + c.r_v * v, 0.f, 1.f);
  rgb[1] = Clamp(l + c.g_u * u + c.g_v * v, 0.f, 1.f);
  rgb[2] = Clamp(l + c.b_u * u, 0.f, 1.f);
}

template <typename T, typename Store>
void Convert(const uint8_t* y_plane, const uint8_t* uv_plane, const Nv12Params& p, T* dst, Store store) {
  ValidateNv12Params(p);
  const SlotGeometry g = ComputeGeometry(p.src_w, p.src_h, p.dst_w, p.dst_h, p.mode);
  const YuvToRgbCoeffs c = ComputeYuvToRgbCoeffs(p.matrix, p.full_range);
  const std::size_t plane = static_cast<std::size_t>(p.dst_w) * static_cast<std::size_t>(p.dst_h);
  T* first = dst;              // R, or B when bgr
  T* second = dst + plane;     // G
  T* third = dst + 2 * plane;  // B, or R when bgr
  if (p.bgr) std::swap(first, third);
  for (int y = 0; y < p.dst_h; ++y) {
    for (int x = 0; x < p.dst_w; ++x) {
      float rgb[3];
      ConvertPixel(y_plane, uv_plane, p, g, c, x, y, rgb);
      const std::size_t i = static_cast<std::size_t>(y) * p.dst_w + x;
      first[i] = store(rgb[0]);
      second[i] = store(rgb[1]);
      third[i] = store(rgb[2]);
    }
  }
}

}  // namespace

void Nv12ToTensorCpu(const uint8_t* y, const uint8_t* uv, const Nv12Params& params, float* dst_slot) {
  Convert(y, uv, params, dst_slot, [](float v) { return v; });
}

void Nv12ToTensorU8Cpu(const uint8_t* y, const uint8_t* uv, const Nv12Params& params, uint8_t* dst_slot) {
  Convert(y, uv, params, dst_slot, [](float v) { return ToU8(v); });
}

}  // namespace smartcity
