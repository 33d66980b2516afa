#include <gtest/gtest.h>

#include "smartcity/geometry.hpp"

namespace smartcity {
namespace {

TEST(Geometry, LetterboxLandscapeIntoSquare) {
  const SlotGeometry g = ComputeGeometry(768, 576, 640, 640, ResizeMode::kLetterbox);
  EXPECT_EQ(g.dst_w, 640);
  EXPECT_EQ(g.dst_h, 480);
  EXPECT_EQ(g.dst_x, 0);
  EXPECT_EQ(g.dst_y, 80);
  EXPECT_FLOAT_EQ(g.scale_x, 640.f / 768.f);
  EXPECT_FLOAT_EQ(g.scale_y, 480.f / 576.f);
}

TEST(Geometry, LetterboxPortraitCentresHorizontally) {
  const SlotGeometry g = ComputeGeometry(720, 1280, 640, 640, ResizeMode::kLetterbox);
  EXPECT_EQ(g.dst_h, 640);
  EXPECT_EQ(g.dst_w, 360);
  EXPECT_EQ(g.dst_x, 140);
  EXPECT_EQ(g.dst_y, 0);
}

TEST(Geometry, StretchFillsTheSlot) {
  const SlotGeometry g = ComputeGeometry(1920, 1080, 300, 300, ResizeMode::kStretch);
  EXPECT_EQ(g.dst_w, 300);
  EXPECT_EQ(g.dst_h, 300);
  EXPECT_EQ(g.dst_x, 0);
  EXPECT_EQ(g.dst_y, 0);
  EXPECT_FLOAT_EQ(g.scale_x, 300.f / 1920.f);
  EXPECT_FLOAT_EQ(g.scale_y, 300.f / 1080.f);
}

TEST(Geometry, MappingRoundTripsWithinAPixel) {
  for (auto [w, h] : {std::pair{1920, 1080}, std::pair{768, 576}, std::pair{640, 360}, std::pair{1280, 1280}}) {
    const SlotGeometry g = ComputeGeometry(w, h, 640, 640, ResizeMode::kLetterbox);
    for (float x : {0.f, 17.f, w / 2.f, static_cast<float>(w)}) {
      const float model_x = x * g.scale_x + g.pad_x;
      const float back = (model_x - g.pad_x) / g.scale_x;
      EXPECT_NEAR(back, x, 1e-3f);
    }
    // The picture spans the slot exactly along its limiting side.
    EXPECT_TRUE(g.dst_w == 640 || g.dst_h == 640);
  }
}

TEST(Geometry, RejectsNonPositiveSizes) {
  EXPECT_THROW(ComputeGeometry(0, 576, 640, 640, ResizeMode::kLetterbox), std::invalid_argument);
  EXPECT_THROW(ComputeGeometry(768, 576, 640, -1, ResizeMode::kStretch), std::invalid_argument);
}

}  // namespace
}  // namespace smartcity
