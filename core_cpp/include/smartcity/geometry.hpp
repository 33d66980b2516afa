// Letterbox / stretch geometry: where a source frame lands inside a model's input tensor.
// Header-only and free of FFmpeg and CUDA so that every path (swscale, CUDA kernel, CPU
// reference, Python) computes the very same placement.
#pragma once

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace smartcity {

enum class ResizeMode { kLetterbox = 0, kStretch = 1 };

// Placement of a src_w x src_h frame inside a dst_w x dst_h tensor slot.
// Model coordinates map back to frame pixels with x = (x' - pad_x) / scale_x.
struct SlotGeometry {
  int src_w = 0;
  int src_h = 0;
  int dst_x = 0;  // left edge of the picture inside the slot (= pad_x)
  int dst_y = 0;  // top edge (= pad_y)
  int dst_w = 0;  // width of the resized picture
  int dst_h = 0;  // height of the resized picture
  float scale_x = 1.f;
  float scale_y = 1.f;
  float pad_x = 0.f;
  float pad_y = 0.f;

  // Same placement (the scales and pads follow from these).
  bool SamePlacement(const SlotGeometry& o) const {
    return src_w == o.src_w && src_h == o.src_h && dst_x == o.dst_x && dst_y == o.dst_y && dst_w == o.dst_w &&
           dst_h == o.dst_h;
  }
};

inline SlotGeometry ComputeGeometry(int src_w, int src_h, int dst_w, int dst_h, ResizeMode mode) {
  if (src_w <= 0 || src_h <= 0 || dst_w <= 0 || dst_h <= 0) {
    throw std::invalid_argument("ComputeGeometry: sizes must be positive (src " + std::to_string(src_w) + "x" +
                                std::to_string(src_h) + ", dst " + std::to_string(dst_w) + "x" + std::to_string(dst_h) +
                                ")");
  }
  SlotGeometry g;
  g.src_w = src_w;
  g.src_h = src_h;
  if (mode == ResizeMode::kStretch) {
    g.dst_w = dst_w;
    g.dst_h = dst_h;
  } else {
    const double s = std::min(static_cast<double>(dst_w) / src_w, static_cast<double>(dst_h) / src_h);
    g.dst_w = std::clamp(static_cast<int>(std::lround(src_w * s)), 1, dst_w);
    g.dst_h = std::clamp(static_cast<int>(std::lround(src_h * s)), 1, dst_h);
    g.dst_x = (dst_w - g.dst_w) / 2;
    g.dst_y = (dst_h - g.dst_h) / 2;
  }
  g.scale_x = static_cast<float>(g.dst_w) / static_cast<float>(src_w);
  g.scale_y = static_cast<float>(g.dst_h) / static_cast<float>(src_h);
  g.pad_x = static_cast<float>(g.dst_x);
  g.pad_y = static_cast<float>(g.dst_y);
  return g;
}

}  // namespace smartcity
