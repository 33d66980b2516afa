// Kalman filter for a box in image space, as in ByteTrack and DeepSORT.
//
// State (8): cx, cy, a, h, vcx, vcy, va, vh — box centre, aspect ratio w/h, height and their
// velocities per frame; constant-velocity motion. Measurement (4): cx, cy, a, h. Process and
// measurement noise are scaled by the box height (std_weight_position 1/20, std_weight_velocity
// 1/160), the aspect ratio gets fixed small noise (1e-2 position, 1e-5 velocity, 1e-1 measured).
//
// With a diagonal initial covariance, a motion model that couples each quantity only with its own
// velocity and diagonal noise, the 8x8 covariance stays block diagonal: four independent 2x2
// blocks (quantity d, velocity d + 4); every other entry is exactly zero. The state keeps only
// those blocks and the filter works on them, with the same floating-point operations, in the same
// order, as the full 8x8 form (the zero entries contribute nothing): a few dozen flops per
// predict or update instead of several hundred, and no 8x8 matrices to copy.
#pragma once

#include <array>

namespace smartcity {

using Vec4 = std::array<double, 4>;
using Vec8 = std::array<double, 8>;
using Mat8 = std::array<std::array<double, 8>, 8>;

// x1, y1, x2, y2 <-> cx, cy, a, h (inline: the tracker converts every track every frame).
inline Vec4 XyxyToXyah(const float* b) {
  const double w = static_cast<double>(b[2]) - b[0];
  const double h = static_cast<double>(b[3]) - b[1];
  return {b[0] + w / 2, b[1] + h / 2, w / h, h};
}
inline std::array<float, 4> XyahToXyxy(const Vec4& v) {
  const double w = v[2] * v[3];
  return {static_cast<float>(v[0] - w / 2), static_cast<float>(v[1] - v[3] / 2), static_cast<float>(v[0] + w / 2),
          static_cast<float>(v[1] + v[3] / 2)};
}

struct KalmanState {
  Vec8 mean{};
  // Covariance block of quantity d (0..3): {P[d][d], P[d][d+4], P[d+4][d], P[d+4][d+4]}.
  std::array<Vec4, 4> block{};
  Vec4 Xyah() const { return {mean[0], mean[1], mean[2], mean[3]}; }
  // The full 8x8 covariance (zero outside the blocks).
  Mat8 Covariance() const;
};

class KalmanBoxFilter {
 public:
  KalmanBoxFilter() = default;
  // A new track from its first measurement: zero velocity, height-scaled uncertainty.
  KalmanState Initiate(const Vec4& measurement) const;
  // One frame ahead.
  void Predict(KalmanState& s) const;
  // Corrects the state with a measurement (cx, cy, a, h).
  void Update(KalmanState& s, const Vec4& measurement) const;

 private:
  static constexpr double kStdWeightPosition = 1.0 / 20;
  static constexpr double kStdWeightVelocity = 1.0 / 160;
};

}  // namespace smartcity
