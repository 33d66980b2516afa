// Kalman filter for a box in image space, as in ByteTrack and DeepSORT.
//
// State (8): cx, cy, a, h, vcx, vcy, va, vh — box centre, aspect ratio w/h, height and their
// velocities per frame; constant-velocity motion. Measurement (4): cx, cy, a, h. Process and
// measurement noise are scaled by the box height (std_weight_position 1/20, std_weight_velocity
// 1/160), the aspect ratio gets fixed small noise (1e-2 position, 1e-5 velocity, 1e-1 measured).
#pragma once

#include <array>

namespace smartcity {

using Vec4 = std::array<double, 4>;
using Vec8 = std::array<double, 8>;
using Mat8 = std::array<std::array<double, 8>, 8>;

// x1, y1, x2, y2 <-> cx, cy, a, h.
Vec4 XyxyToXyah(const float* xyxy);
std::array<float, 4> XyahToXyxy(const Vec4& xyah);

struct KalmanState {
  Vec8 mean{};
  Mat8 covariance{};
  Vec4 Xyah() const { return {mean[0], mean[1], mean[2], mean[3]}; }
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
  const double std_weight_position_ = 1.0 / 20;
  const double std_weight_velocity_ = 1.0 / 160;
};

}  // namespace smartcity
