#include "smartcity/kalman.hpp"

#include <cmath>

namespace smartcity {

// The block form below performs, for every non-zero entry, the same operations in the same order
// as the dense 8x8 filter (P <- F P F^T + Q; S = H P H^T + R factored by Cholesky; K = P H^T S^-1
// by forward and back substitution; x <- x + K y; P <- P - K (P H^T)^T): S is diagonal, so its
// Cholesky factor is sqrt of the diagonal and each gain entry is (P[k][d] / l) / l. Results are
// bit-identical to the dense form (test_tracker.cpp checks the two agree and the tracker keeps
// the outputs recorded before this form).

Mat8 KalmanState::Covariance() const {
  Mat8 p{};
  for (int d = 0; d < 4; ++d) {
    p[d][d] = block[d][0];
    p[d][d + 4] = block[d][1];
    p[d + 4][d] = block[d][2];
    p[d + 4][d + 4] = block[d][3];
  }
  return p;
}

KalmanState KalmanBoxFilter::Initiate(const Vec4& z) const {
  KalmanState s;
  for (int i = 0; i < 4; ++i) s.mean[i] = z[i];
  const double h = z[3];
  const Vec8 std_dev = {2 * kStdWeightPosition * h,  2 * kStdWeightPosition * h,  1e-2, 2 * kStdWeightPosition * h,
                        10 * kStdWeightVelocity * h, 10 * kStdWeightVelocity * h, 1e-5, 10 * kStdWeightVelocity * h};
  for (int d = 0; d < 4; ++d) {
    s.block[d][0] = std_dev[d] * std_dev[d];
    s.block[d][3] = std_dev[d + 4] * std_dev[d + 4];
  }
  return s;
}

void KalmanBoxFilter::Predict(KalmanState& s) const {
  const double h = s.mean[3];
  const Vec8 std_dev = {kStdWeightPosition * h, kStdWeightPosition * h, 1e-2, kStdWeightPosition * h,
                        kStdWeightVelocity * h, kStdWeightVelocity * h, 1e-5, kStdWeightVelocity * h};
  for (int i = 0; i < 4; ++i) s.mean[i] += s.mean[i + 4];
  // F = [[I, I], [0, I]]: row d += row d+4, then column d += column d+4, then + Q.
  for (int d = 0; d < 4; ++d) {
    Vec4& b = s.block[d];
    const double p00 = b[0] + b[2];  // row step
    const double p01 = b[1] + b[3];
    b[0] = p00 + p01;  // column step
    b[1] = p01;
    b[2] = b[2] + b[3];
    b[0] += std_dev[d] * std_dev[d];
    b[3] += std_dev[d + 4] * std_dev[d + 4];
  }
}

void KalmanBoxFilter::Update(KalmanState& s, const Vec4& z) const {
  const double h = s.mean[3];
  const Vec4 r = {kStdWeightPosition * h, kStdWeightPosition * h, 1e-1, kStdWeightPosition * h};
  Vec4 y{};
  for (int d = 0; d < 4; ++d) y[d] = z[d] - s.mean[d];
  for (int d = 0; d < 4; ++d) {
    Vec4& b = s.block[d];
    const double sdd = b[0] + r[d] * r[d];  // innovation variance S[d][d]
    const double l = std::sqrt(sdd > 0 ? sdd : 1e-12);
    const double g0 = b[0] / l / l;  // gain K[d][d]
    const double g1 = b[2] / l / l;  // gain K[d+4][d]
    s.mean[d] += g0 * y[d];
    s.mean[d + 4] += g1 * y[d];
    const double p00 = b[0], p10 = b[2];
    b[0] = p00 - g0 * p00;
    b[1] = b[1] - g0 * p10;
    b[2] = p10 - g1 * p00;
    b[3] = b[3] - g1 * p10;
  }
}

}  // namespace smartcity
