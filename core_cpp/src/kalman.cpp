#include "smartcity/kalman.hpp"

#include <cmath>

namespace smartcity {

namespace {

// Cholesky factor L (lower) of a symmetric positive definite 4x4 S: S = L L^T.
std::array<Vec4, 4> Cholesky(const std::array<Vec4, 4>& s) {
  std::array<Vec4, 4> l{};
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j <= i; ++j) {
      double sum = s[i][j];
      for (int k = 0; k < j; ++k) sum -= l[i][k] * l[j][k];
      l[i][j] = i == j ? std::sqrt(sum > 0 ? sum : 1e-12) : sum / l[j][j];
    }
  }
  return l;
}

// Solves L L^T x = b.
Vec4 CholeskySolve(const std::array<Vec4, 4>& l, const Vec4& b) {
  Vec4 y{};
  for (int i = 0; i < 4; ++i) {
    double sum = b[i];
    for (int k = 0; k < i; ++k) sum -= l[i][k] * y[k];
    y[i] = sum / l[i][i];
  }
  Vec4 x{};
  for (int i = 3; i >= 0; --i) {
    double sum = y[i];
    for (int k = i + 1; k < 4; ++k) sum -= l[k][i] * x[k];
    x[i] = sum / l[i][i];
  }
  return x;
}

}  // namespace

Vec4 XyxyToXyah(const float* b) {
  const double w = static_cast<double>(b[2]) - b[0];
  const double h = static_cast<double>(b[3]) - b[1];
  return {b[0] + w / 2, b[1] + h / 2, w / h, h};
}

std::array<float, 4> XyahToXyxy(const Vec4& v) {
  const double w = v[2] * v[3];
  return {static_cast<float>(v[0] - w / 2), static_cast<float>(v[1] - v[3] / 2), static_cast<float>(v[0] + w / 2),
          static_cast<float>(v[1] + v[3] / 2)};
}

KalmanState KalmanBoxFilter::Initiate(const Vec4& z) const {
  KalmanState s;
  for (int i = 0; i < 4; ++i) s.mean[i] = z[i];
  const double h = z[3];
  const Vec8 std_dev = {
      2 * std_weight_position_ * h,  2 * std_weight_position_ * h,  1e-2, 2 * std_weight_position_ * h,
      10 * std_weight_velocity_ * h, 10 * std_weight_velocity_ * h, 1e-5, 10 * std_weight_velocity_ * h};
  for (int i = 0; i < 8; ++i) s.covariance[i][i] = std_dev[i] * std_dev[i];
  return s;
}

void KalmanBoxFilter::Predict(KalmanState& s) const {
  const double h = s.mean[3];
  const Vec8 std_dev = {std_weight_position_ * h, std_weight_position_ * h, 1e-2, std_weight_position_ * h,
                        std_weight_velocity_ * h, std_weight_velocity_ * h, 1e-5, std_weight_velocity_ * h};
  for (int i = 0; i < 4; ++i) s.mean[i] += s.mean[i + 4];
  // P <- F P F^T + Q with F = [[I, I], [0, I]]: add row i+4 to row i, then column j+4 to column j.
  Mat8& p = s.covariance;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 8; ++j) p[i][j] += p[i + 4][j];
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 4; ++j) p[i][j] += p[i][j + 4];
  for (int i = 0; i < 8; ++i) p[i][i] += std_dev[i] * std_dev[i];
}

void KalmanBoxFilter::Update(KalmanState& s, const Vec4& z) const {
  const double h = s.mean[3];
  const Vec4 r = {std_weight_position_ * h, std_weight_position_ * h, 1e-1, std_weight_position_ * h};
  Mat8& p = s.covariance;
  // Innovation covariance S = H P H^T + R (H picks the first four state entries).
  std::array<Vec4, 4> innovation_cov{};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) innovation_cov[i][j] = p[i][j] + (i == j ? r[i] * r[i] : 0.0);
  // Gain K = P H^T S^-1: row k of K solves S x = (P H^T)[k] (S is symmetric).
  const std::array<Vec4, 4> chol = Cholesky(innovation_cov);  // factored once, solved 8 times
  std::array<Vec4, 8> gain{};
  for (int k = 0; k < 8; ++k) gain[k] = CholeskySolve(chol, {p[k][0], p[k][1], p[k][2], p[k][3]});
  Vec4 y{};
  for (int i = 0; i < 4; ++i) y[i] = z[i] - s.mean[i];
  for (int k = 0; k < 8; ++k)
    for (int i = 0; i < 4; ++i) s.mean[k] += gain[k][i] * y[i];
  // P <- P - K S K^T = P - K (P H^T)^T.
  Mat8 pht_kt{};
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) {
      double sum = 0;
      for (int m = 0; m < 4; ++m) sum += gain[i][m] * p[j][m];
      pht_kt[i][j] = sum;
    }
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) p[i][j] -= pht_kt[i][j];
}

}  // namespace smartcity
