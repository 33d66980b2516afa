#include <gtest/gtest.h>

#include <vector>

#include "smartcity/nv12.hpp"

namespace smartcity {
namespace {

TEST(Nv12Reference, GreyFrameAndLetterboxPadding) {
  const int w = 64, h = 48;
  std::vector<uint8_t> y(w * h, 126), uv(w * h / 2, 128);
  Nv12Params p;
  p.src_w = w;
  p.src_h = h;
  p.dst_w = 64;
  p.dst_h = 64;
  std::vector<float> out(3 * 64 * 64);
  Nv12ToTensorCpu(y.data(), uv.data(), p, out.data());
  const float grey = (126.f - 16.f) / 219.f;
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(out[c * 64 * 64 + 32 * 64 + 32], grey, 1e-5);        // inside the picture
    EXPECT_NEAR(out[c * 64 * 64 + 2 * 64 + 10], 114 / 255.f, 1e-6);  // top padding (8 rows)
  }
}

TEST(Nv12Reference, RejectsOddSizes) {
  std::vector<uint8_t> y(9), uv(9);
  Nv12Params p;
  p.src_w = 3;
  p.src_h = 3;
  p.dst_w = 8;
  p.dst_h = 8;
  std::vector<float> out(3 * 64);
  EXPECT_THROW(Nv12ToTensorCpu(y.data(), uv.data(), p, out.data()), std::invalid_argument);
}

}  // namespace
}  // namespace smartcity
