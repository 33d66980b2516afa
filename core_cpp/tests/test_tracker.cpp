// ByteTrack, its Kalman filter and the assignment solver. Expected values come from the scripted
// motion in each test (or from brute force for the solver), never from the code under test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "smartcity/assignment.hpp"
#include "smartcity/kalman.hpp"
#include "smartcity/tracker.hpp"

namespace smartcity {
namespace {

// ---- Kalman filter ---------------------------------------------------------------------------

TEST(Kalman, ConvergesOnConstantVelocityBox) {
  const KalmanBoxFilter kf;
  const double vx = 3.0, vy = -2.0, vh = 0.5;
  auto truth = [&](int k) { return Vec4{100 + vx * k, 300 + vy * k, 0.5, 80 + vh * k}; };
  KalmanState s = kf.Initiate(truth(0));
  const double initial_var = s.Covariance()[0][0];
  for (int k = 1; k <= 60; ++k) {
    kf.Predict(s);
    kf.Update(s, truth(k));
  }
  EXPECT_NEAR(s.mean[4], vx, 0.05);
  EXPECT_NEAR(s.mean[5], vy, 0.05);
  EXPECT_NEAR(s.mean[7], vh, 0.05);
  EXPECT_NEAR(s.mean[6], 0.0, 1e-3);
  // The prediction for the next frame lands on the next true box.
  kf.Predict(s);
  const Vec4 next = truth(61);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(s.mean[i], next[i], 0.2) << "component " << i;
  // Converged position variance is below its start (relative to the box height).
  const Mat8 p = s.Covariance();
  EXPECT_LT(p[0][0] / (s.mean[3] * s.mean[3]), initial_var / (80.0 * 80.0));
  // The covariance stays symmetric.
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) EXPECT_NEAR(p[i][j], p[j][i], 1e-9);
}

TEST(Kalman, PredictWithoutUpdateExtrapolatesAndGrowsUncertainty) {
  const KalmanBoxFilter kf;
  KalmanState s = kf.Initiate({50, 60, 1.0, 40});
  s.mean[4] = 2.0;  // 2 px per frame to the right
  const double var0 = s.Covariance()[0][0];
  for (int k = 0; k < 5; ++k) kf.Predict(s);
  EXPECT_DOUBLE_EQ(s.mean[0], 60.0);
  EXPECT_DOUBLE_EQ(s.mean[1], 60.0);
  EXPECT_GT(s.Covariance()[0][0], var0);
}

TEST(Kalman, BoxConversionRoundTrip) {
  const float box[4] = {10.f, 20.f, 50.f, 100.f};
  const Vec4 xyah = XyxyToXyah(box);
  EXPECT_DOUBLE_EQ(xyah[0], 30.0);
  EXPECT_DOUBLE_EQ(xyah[1], 60.0);
  EXPECT_DOUBLE_EQ(xyah[2], 0.5);
  EXPECT_DOUBLE_EQ(xyah[3], 80.0);
  const std::array<float, 4> back = XyahToXyxy(xyah);
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(back[i], box[i]);
}

// The dense 8x8 filter (ByteTrack's formulation), as a reference for the block form.
struct DenseKalman {
  Vec8 mean{};
  Mat8 p{};
  void Initiate(const Vec4& z) {
    for (int i = 0; i < 4; ++i) mean[i] = z[i];
    const double h = z[3];
    const Vec8 sd = {2.0 / 20 * h,   2.0 / 20 * h,   1e-2, 2.0 / 20 * h,
                     10.0 / 160 * h, 10.0 / 160 * h, 1e-5, 10.0 / 160 * h};
    for (int i = 0; i < 8; ++i) p[i][i] = sd[i] * sd[i];
  }
  void Predict() {
    const double h = mean[3];
    const Vec8 sd = {h / 20, h / 20, 1e-2, h / 20, h / 160, h / 160, 1e-5, h / 160};
    Mat8 f{};
    for (int i = 0; i < 8; ++i) f[i][i] = 1;
    for (int i = 0; i < 4; ++i) f[i][i + 4] = 1;
    Vec8 m{};
    Mat8 fp{}, q{};
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) m[i] += f[i][j] * mean[j];
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j)
        for (int k = 0; k < 8; ++k) fp[i][j] += f[i][k] * p[k][j];
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j)
        for (int k = 0; k < 8; ++k) q[i][j] += fp[i][k] * f[j][k];
    for (int i = 0; i < 8; ++i) q[i][i] += sd[i] * sd[i];
    mean = m;
    p = q;
  }
  void Update(const Vec4& z) {
    const double h = mean[3];
    const Vec4 r = {h / 20, h / 20, 1e-1, h / 20};
    double s[4][4];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) s[i][j] = p[i][j] + (i == j ? r[i] * r[i] : 0.0);
    // S^-1 by Gauss-Jordan (S is small and well conditioned here).
    double inv[4][8];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 8; ++j) inv[i][j] = j < 4 ? s[i][j] : (j - 4 == i ? 1 : 0);
    for (int c = 0; c < 4; ++c) {
      const double d = inv[c][c];
      for (int j = 0; j < 8; ++j) inv[c][j] /= d;
      for (int i = 0; i < 4; ++i) {
        if (i == c) continue;
        const double fct = inv[i][c];
        for (int j = 0; j < 8; ++j) inv[i][j] -= fct * inv[c][j];
      }
    }
    double k[8][4] = {};  // K = P H^T S^-1
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 4; ++j)
        for (int m = 0; m < 4; ++m) k[i][j] += p[i][m] * inv[m][j + 4];
    Vec4 y{};
    for (int j = 0; j < 4; ++j) y[j] = z[j] - mean[j];
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 4; ++j) mean[i] += k[i][j] * y[j];
    Mat8 kp{};  // K H P
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j)
        for (int m = 0; m < 4; ++m) kp[i][j] += k[i][m] * p[m][j];
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) p[i][j] -= kp[i][j];
  }
};

TEST(Kalman, BlockFormEqualsTheDenseFilter) {
  // A box that accelerates, jitters and is missed now and then; the block filter must follow the
  // dense one to rounding.
  const KalmanBoxFilter kf;
  DenseKalman ref;
  const Vec4 z0 = {320, 240, 0.45, 120};
  KalmanState s = kf.Initiate(z0);
  ref.Initiate(z0);
  auto expect_close = [&](int step) {
    const Mat8 p = s.Covariance();
    for (int i = 0; i < 8; ++i) {
      ASSERT_NEAR(s.mean[i], ref.mean[i], 1e-9 * (1 + std::fabs(ref.mean[i]))) << "step " << step << " mean " << i;
      for (int j = 0; j < 8; ++j)
        ASSERT_NEAR(p[i][j], ref.p[i][j], 1e-9 * (1 + std::fabs(ref.p[i][j]))) << "step " << step << " P " << i << j;
    }
  };
  for (int step = 1; step <= 200; ++step) {
    kf.Predict(s);
    ref.Predict();
    expect_close(step);
    if (step % 7 == 3) continue;  // missed
    const double t = step;
    const Vec4 z = {320 + 2.5 * t + 0.01 * t * t + std::sin(t) * 3, 240 - 1.5 * t + std::cos(1.3 * t) * 2,
                    0.45 + 0.02 * std::sin(0.2 * t), 120 + 0.3 * t + std::sin(0.7 * t)};
    kf.Update(s, z);
    ref.Update(z);
    expect_close(step);
  }
}

// ---- Assignment ------------------------------------------------------------------------------

// Objective of a partial matching: matched costs + limit / 2 per unmatched row and column.
double Objective(const std::vector<double>& c, int rows, int cols, double limit, const std::vector<int>& r2c) {
  double total = 0;
  int matched = 0;
  for (int i = 0; i < rows; ++i) {
    if (r2c[i] >= 0) {
      total += c[static_cast<size_t>(i) * cols + r2c[i]];
      ++matched;
    }
  }
  return total + limit / 2 * (rows + cols - 2 * matched);
}

// Every partial matching, recursively over rows.
double BruteForce(const std::vector<double>& c, int rows, int cols, double limit) {
  std::vector<int> r2c(rows, -1);
  std::vector<char> used(cols, 0);
  double best = std::numeric_limits<double>::infinity();
  std::function<void(int)> go = [&](int i) {
    if (i == rows) {
      best = std::min(best, Objective(c, rows, cols, limit, r2c));
      return;
    }
    r2c[i] = -1;
    go(i + 1);
    for (int j = 0; j < cols; ++j) {
      if (used[j]) continue;
      used[j] = 1;
      r2c[i] = j;
      go(i + 1);
      used[j] = 0;
      r2c[i] = -1;
    }
  };
  go(0);
  return best;
}

void ExpectConsistent(const Assignment& a, const std::vector<double>& c, int rows, int cols, double limit) {
  ASSERT_EQ(a.row_to_col.size(), static_cast<size_t>(rows));
  ASSERT_EQ(a.col_to_row.size(), static_cast<size_t>(cols));
  for (int i = 0; i < rows; ++i) {
    const int j = a.row_to_col[i];
    if (j < 0) continue;
    ASSERT_LT(j, cols);
    EXPECT_EQ(a.col_to_row[j], i);
    EXPECT_LE(c[static_cast<size_t>(i) * cols + j], limit);
  }
  for (int j = 0; j < cols; ++j)
    if (a.col_to_row[j] >= 0) EXPECT_EQ(a.row_to_col[a.col_to_row[j]], j);
}

TEST(Assignment, MatchesBruteForceOnRandomMatrices) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> size(0, 6);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  int nontrivial = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const int rows = size(rng), cols = size(rng);
    const double limit = 0.1 + 0.9 * unit(rng);
    std::vector<double> c(static_cast<size_t>(rows) * cols);
    const bool coarse = trial % 3 == 0;  // many ties
    for (double& x : c) x = coarse ? std::floor(unit(rng) * 4) / 4 : unit(rng);
    const Assignment a = SolveAssignment(c, rows, cols, limit);
    ExpectConsistent(a, c, rows, cols, limit);
    const double best = BruteForce(c, rows, cols, limit);
    ASSERT_NEAR(Objective(c, rows, cols, limit, a.row_to_col), best, 1e-9)
        << "trial " << trial << " rows " << rows << " cols " << cols;
    if (std::count_if(a.row_to_col.begin(), a.row_to_col.end(), [](int j) { return j >= 0; }) >= 2) ++nontrivial;
  }
  EXPECT_GT(nontrivial, 500);  // the trials did exercise real matchings
}

TEST(Assignment, ReusedWorkspaceGivesTheSameResult) {
  // One workspace across problems of every size and density, as the tracker uses it: stale
  // buffers must not leak from one solve into the next.
  std::mt19937 rng(777);
  std::uniform_int_distribution<int> size(0, 40);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  AssignmentWorkspace ws;
  Assignment reused;
  for (int trial = 0; trial < 500; ++trial) {
    const int rows = size(rng), cols = size(rng);
    const double density = unit(rng) * 0.3, limit = 0.2 + 0.8 * unit(rng);
    std::vector<AssignmentEdge> edges;
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j)
        if (unit(rng) < density) edges.push_back({i, j, unit(rng)});
    const Assignment fresh = SolveAssignmentSparse(edges, rows, cols, limit);
    SolveAssignmentSparse(edges.data(), edges.size(), rows, cols, limit, ws, reused);
    ASSERT_EQ(reused.row_to_col, fresh.row_to_col) << "trial " << trial;
    ASSERT_EQ(reused.col_to_row, fresh.col_to_row) << "trial " << trial;
    // The sparse form agrees with the dense one on the objective.
    std::vector<double> dense(static_cast<size_t>(rows) * cols, 1.0 + limit);
    for (const AssignmentEdge& e : edges) dense[static_cast<size_t>(e.row) * cols + e.col] = e.cost;
    const Assignment d = SolveAssignment(dense, rows, cols, limit);
    ASSERT_NEAR(Objective(dense, rows, cols, limit, d.row_to_col),
                Objective(dense, rows, cols, limit, fresh.row_to_col), 1e-9);
  }
}

TEST(Assignment, PrefersGlobalOptimumOverGreedy) {
  // Greedy takes (0,0) at 0.1 and leaves row 1 with 0.9; the optimum is 0.2 + 0.2.
  const std::vector<double> c = {0.1, 0.2, 0.2, 0.9};
  const Assignment a = SolveAssignment(c, 2, 2, 1.0);
  EXPECT_EQ(a.row_to_col, (std::vector<int>{1, 0}));
}

TEST(Assignment, NothingAboveTheLimit) {
  const std::vector<double> c = {0.95, 0.99, 0.97, 0.96};
  const Assignment a = SolveAssignment(c, 2, 2, 0.8);
  EXPECT_EQ(a.row_to_col, (std::vector<int>{-1, -1}));
  EXPECT_EQ(a.col_to_row, (std::vector<int>{-1, -1}));
}

TEST(Assignment, RefusesBadInput) {
  EXPECT_THROW(SolveAssignment({0.1, 0.2}, 2, 2, 0.5), std::invalid_argument);
  EXPECT_THROW(SolveAssignment({std::nan("")}, 1, 1, 0.5), std::invalid_argument);
  EXPECT_THROW(SolveAssignment({0.1}, 1, 1, std::numeric_limits<double>::infinity()), std::invalid_argument);
}

// ---- Tracker ---------------------------------------------------------------------------------

struct Obj {
  float x1, y1, x2, y2, score;
  int32_t cls;
};

Detections Dets(const std::vector<Obj>& objs) {
  Detections d;
  for (const Obj& o : objs) {
    d.xyxy.insert(d.xyxy.end(), {o.x1, o.y1, o.x2, o.y2});
    d.score.push_back(o.score);
    d.class_id.push_back(o.cls);
  }
  return d;
}

Obj Box(float cx, float cy, float w, float h, float score = 0.9f, int32_t cls = 0) {
  return {cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score, cls};
}

// Index of the output row with this id, -1 when absent.
int Row(const Tracks& t, int64_t id) {
  for (size_t i = 0; i < t.size(); ++i)
    if (t.track_id[i] == id) return static_cast<int>(i);
  return -1;
}

float CentreX(const Tracks& t, int row) { return (t.xyxy[4 * row] + t.xyxy[4 * row + 2]) / 2; }

TEST(Tracker, FirstFrameConfirmsAndIdsStartAtOnePerInstance) {
  ByteTracker a, b;
  const Tracks ta = a.Update(Dets({Box(100, 100, 40, 80), Box(300, 100, 40, 80)}));
  ASSERT_EQ(ta.size(), 2u);
  EXPECT_EQ(ta.track_id, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(ta.state[0], static_cast<int8_t>(TrackState::kConfirmed));
  const Tracks tb = b.Update(Dets({Box(500, 100, 40, 80)}));
  ASSERT_EQ(tb.size(), 1u);
  EXPECT_EQ(tb.track_id[0], 1);  // b counts its own ids
  a.Reset();
  const Tracks again = a.Update(Dets({Box(700, 100, 40, 80)}));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again.track_id[0], 1);
}

TEST(Tracker, NewObjectIsTentativeForOneFrameThenConfirmed) {
  ByteTracker t;
  t.Update(Dets({}));
  EXPECT_EQ(t.Update(Dets({Box(100, 100, 40, 80)})).size(), 0u);  // tentative
  ASSERT_EQ(t.active_tracks().size(), 1u);
  EXPECT_EQ(t.active_tracks()[0].state, TrackState::kTentative);
  const Tracks out = t.Update(Dets({Box(102, 100, 40, 80)}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out.track_id[0], 1);
  // A one-frame false positive dies tentative and uses up no id.
  t.Update(Dets({Box(104, 100, 40, 80), Box(500, 300, 30, 30)}));
  t.Update(Dets({Box(106, 100, 40, 80)}));
  t.Update(Dets({Box(108, 100, 40, 80), Box(700, 300, 30, 30)}));
  const Tracks last = t.Update(Dets({Box(110, 100, 40, 80), Box(702, 300, 30, 30)}));
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(Row(last, 1), 0);
  EXPECT_GE(Row(last, 2), 0);
}

TEST(Tracker, BoxesFollowTheDetections) {
  ByteTracker t;
  Tracks out;
  for (int k = 0; k < 20; ++k) out = t.Update(Dets({Box(100 + 5.f * k, 200, 40, 80)}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_NEAR(out.xyxy[0], 100 + 5 * 19 - 20, 1.0);
  EXPECT_NEAR(out.xyxy[1], 160, 1.0);
  EXPECT_NEAR(out.xyxy[2], 100 + 5 * 19 + 20, 1.0);
  EXPECT_NEAR(out.xyxy[3], 240, 1.0);
  EXPECT_FLOAT_EQ(out.score[0], 0.9f);
}

TEST(Tracker, CrossingObjectsKeepTheirIds) {
  // Two people walking towards each other on nearly the same line; they overlap completely
  // around frame 20.
  ByteTracker t;
  int64_t left_id = -1, right_id = -1;
  int seen_both = 0;
  for (int k = 0; k < 40; ++k) {
    const float xl = 100 + 10.f * k, xr = 500 - 10.f * k;
    const Tracks out = t.Update(Dets({Box(xl, 200, 40, 100), Box(xr, 205, 40, 100)}));
    if (k == 0) {
      ASSERT_EQ(out.size(), 2u);
      left_id = out.track_id[CentreX(out, 0) < CentreX(out, 1) ? 0 : 1];
      right_id = out.track_id[CentreX(out, 0) < CentreX(out, 1) ? 1 : 0];
      continue;
    }
    const int l = Row(out, left_id), r = Row(out, right_id);
    if (l >= 0) EXPECT_NEAR(CentreX(out, l), xl, 8.f) << "frame " << k;
    if (r >= 0) EXPECT_NEAR(CentreX(out, r), xr, 8.f) << "frame " << k;
    for (int64_t id : out.track_id) EXPECT_TRUE(id == left_id || id == right_id) << "new id at frame " << k;
    if (l >= 0 && r >= 0) ++seen_both;
  }
  EXPECT_GE(seen_both, 36);
}

TEST(Tracker, MissedForFewerFramesThanTheBufferKeepsItsId) {
  TrackerConfig c;
  c.frame_rate = 10;
  c.track_buffer = 30;  // 10 frames at 10 fps
  ByteTracker t(c);
  ASSERT_EQ(t.max_frames_lost(), 10);
  int k = 0;
  for (; k < 10; ++k) t.Update(Dets({Box(100 + 4.f * k, 200, 40, 80)}));
  for (int miss = 0; miss < 6; ++miss, ++k) {
    EXPECT_EQ(t.Update(Dets({})).size(), 0u);
    ASSERT_EQ(t.lost_tracks().size(), 1u);
    EXPECT_EQ(t.lost_tracks()[0].state, TrackState::kLost);
  }
  const Tracks back = t.Update(Dets({Box(100 + 4.f * k, 200, 40, 80)}));
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back.track_id[0], 1);
  EXPECT_TRUE(t.lost_tracks().empty());
}

TEST(Tracker, MissedForLongerThanTheBufferGetsANewId) {
  TrackerConfig c;
  c.frame_rate = 10;
  c.track_buffer = 30;
  ByteTracker t(c);
  for (int k = 0; k < 10; ++k) t.Update(Dets({Box(100, 200, 40, 80)}));
  for (int miss = 0; miss < 11; ++miss) t.Update(Dets({}));  // one more than the buffer
  EXPECT_TRUE(t.lost_tracks().empty());
  EXPECT_TRUE(t.active_tracks().empty());
  EXPECT_EQ(t.Update(Dets({Box(100, 200, 40, 80)})).size(), 0u);  // tentative again
  const Tracks out = t.Update(Dets({Box(100, 200, 40, 80)}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out.track_id[0], 2);
}

// Id recovery (TrackerConfig::recover_*): a car driving at 10 m/s (10 px a frame, 0.1 m/px, 10
// fps) seen for 1.5 s, missed for `gap` frames (longer than the 10-frame buffer), then seen
// again at `resume_dx` px from where it would be. Returns the ids it was given after the gap.
std::vector<int64_t> IdsAfterGap(TrackerConfig c, int gap, float resume_dx, bool calibrate = true, int32_t cls = 2) {
  c.frame_rate = 10;
  c.track_buffer = 30;
  ByteTracker t(c);
  if (calibrate) t.SetCalibration({0.1, 0, 0, 0, 0.1, 0, 0, 0, 1});
  int k = 0;
  for (; k < 15; ++k) t.Update(Dets({Box(100 + 10.f * k, 200, 40, 30, 0.9f, cls)}), 0.1 * k);
  for (int miss = 0; miss < gap; ++miss, ++k) t.Update(Dets({}), 0.1 * k);
  std::vector<int64_t> ids;
  for (int again = 0; again < 5; ++again, ++k) {
    const Tracks out = t.Update(Dets({Box(100 + 10.f * k + resume_dx, 200, 40, 30, 0.9f, cls)}), 0.1 * k);
    ids.insert(ids.end(), out.track_id.begin(), out.track_id.end());
  }
  return ids;
}

TEST(Tracker, AVehicleMissedLongerThanTheBufferKeepsItsIdWhereItShouldBe) {
  const TrackerConfig c;
  ASSERT_GT(c.recover_s, 0);
  // 14 missed frames (1.4 s) against a buffer of 10: back on its line, the same id.
  EXPECT_EQ(IdsAfterGap(c, 14, 0.f), std::vector<int64_t>(4, 1));
  EXPECT_EQ(IdsAfterGap(c, 14, 0.f, false), std::vector<int64_t>(4, 1));  // by its image box alone
  // Along the motion the gate grows with the distance travelled (16 m by the new track's
  // confirmation: 1.5 m + 4 m + two standard deviations of the prediction, about 9 m).
  EXPECT_EQ(IdsAfterGap(c, 14, 80.f), std::vector<int64_t>(4, 1));
  EXPECT_EQ(IdsAfterGap(c, 14, -80.f), std::vector<int64_t>(4, 1));
  // 12 m ahead of or behind it (a vehicle following at 1.2 s): another vehicle.
  EXPECT_EQ(IdsAfterGap(c, 14, 120.f), std::vector<int64_t>(4, 2));
  EXPECT_EQ(IdsAfterGap(c, 14, -120.f), std::vector<int64_t>(4, 2));
  // Past recover_s (2 s since its last match), off, or a person: a new id.
  EXPECT_EQ(IdsAfterGap(c, 25, 0.f), std::vector<int64_t>(4, 2));
  TrackerConfig off;
  off.recover_s = 0;
  EXPECT_EQ(IdsAfterGap(off, 14, 0.f), std::vector<int64_t>(4, 2));
  EXPECT_EQ(IdsAfterGap(c, 14, 0.f, true, 0), std::vector<int64_t>(4, 2));
}

TEST(Tracker, IdRecoveryAcrossTheMotionIsTight) {
  // The car comes back one lane over (3.5 m across its motion): another vehicle. (Across, the
  // gate is 1.5 m plus two standard deviations of both positions, no velocity share: 2.2 m here.)
  TrackerConfig c;
  c.frame_rate = 10;
  c.track_buffer = 30;
  ByteTracker t(c);
  t.SetCalibration({0.1, 0, 0, 0, 0.1, 0, 0, 0, 1});
  int k = 0;
  for (; k < 15; ++k) t.Update(Dets({Box(100 + 10.f * k, 200, 40, 30, 0.9f, 2)}), 0.1 * k);
  for (int miss = 0; miss < 14; ++miss, ++k) t.Update(Dets({}), 0.1 * k);
  Tracks out;
  for (int again = 0; again < 3; ++again, ++k)
    out = t.Update(Dets({Box(100 + 10.f * k, 235, 40, 30, 0.9f, 2)}), 0.1 * k);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out.track_id[0], 2);
  TrackerConfig bad;
  bad.recover_s = -1;
  EXPECT_THROW(ByteTracker{bad}, std::invalid_argument);
  bad = TrackerConfig();
  bad.recover_gate_m = 0;
  EXPECT_THROW(ByteTracker{bad}, std::invalid_argument);
}

TEST(Tracker, IdRecoveryGivesNoIdWhereAnotherVehicleIsAsClose) {
  // A queue standing still (0.1 m/px): car A at x = 100 px is hidden for 1.4 s, car B stands
  // 2.6 m ahead of it. A box between the two is as much B's neighbour as A's: a new id. Without
  // B in sight, the same box gets A's id back.
  for (const bool with_b : {true, false}) {
    TrackerConfig c;
    c.frame_rate = 10;
    ByteTracker t(c);
    t.SetCalibration({0.1, 0, 0, 0, 0.1, 0, 0, 0, 1});
    auto frame = [&](bool a, float extra_x, double ts) {
      std::vector<Obj> objs;
      if (a) objs.push_back(Box(100, 200, 16, 30, 0.9f, 2));
      if (with_b) objs.push_back(Box(126, 200, 16, 30, 0.9f, 2));
      if (extra_x > 0) objs.push_back(Box(extra_x, 200, 16, 30, 0.9f, 2));
      return t.Update(Dets(objs), ts);
    };
    int k = 0;
    for (; k < 15; ++k) frame(true, 0, 0.1 * k);
    for (int miss = 0; miss < 14; ++miss, ++k) frame(false, 0, 0.1 * k);
    Tracks out;
    for (int again = 0; again < 3; ++again, ++k) out = frame(false, 110.f, 0.1 * k);
    int64_t id = -1;
    for (size_t i = 0; i < out.size(); ++i)
      if (std::fabs(CentreX(out, static_cast<int>(i)) - 110.f) < 3.f) id = out.track_id[i];
    EXPECT_EQ(id, with_b ? 3 : 1) << (with_b ? "with" : "without") << " B";
  }
}

TEST(Tracker, BufferScalesWithFrameRate) {
  TrackerConfig c;
  c.track_buffer = 30;
  c.frame_rate = 30;
  EXPECT_EQ(ByteTracker(c).max_frames_lost(), 30);
  c.frame_rate = 5;
  EXPECT_EQ(ByteTracker(c).max_frames_lost(), 5);
}

TEST(Tracker, LowScoreDetectionsKeepATrackAlive) {
  for (const float low_score : {0.3f, 0.05f}) {
    ByteTracker t;
    for (int k = 0; k < 5; ++k) t.Update(Dets({Box(100 + 3.f * k, 200, 40, 80, 0.9f)}));
    int outputs = 0;
    for (int k = 5; k < 15; ++k) {
      const Tracks out = t.Update(Dets({Box(100 + 3.f * k, 200, 40, 80, low_score)}));
      if (out.size() == 1 && out.track_id[0] == 1) ++outputs;
    }
    if (low_score > 0.1f) {
      EXPECT_EQ(outputs, 10) << "second stage matched the low-score boxes";
      EXPECT_TRUE(t.lost_tracks().empty());
    } else {
      EXPECT_EQ(outputs, 0) << "below low_thresh nothing matches";
      EXPECT_EQ(t.lost_tracks().size(), 1u);
    }
  }
}

TEST(Tracker, LowScoreDetectionsStartNoTrack) {
  ByteTracker t;
  for (int k = 0; k < 5; ++k) EXPECT_EQ(t.Update(Dets({Box(100, 200, 40, 80, 0.45f)})).size(), 0u);
  // Between track_thresh and new_track_thresh (0.5 .. 0.6): matched if a track exists, never born.
  for (int k = 0; k < 5; ++k) EXPECT_EQ(t.Update(Dets({Box(100, 200, 40, 80, 0.55f)})).size(), 0u);
}

TEST(Tracker, ASecondBoxOnATrackedObjectStartsNoTrack) {
  // A box around a car's box (IoU 0.50) starts no track; people on people do; 1 turns it off.
  for (const auto& [cls, dup, expect] :
       {std::tuple<int32_t, float, size_t>{2, 0.4f, 1u}, {2, 1.f, 2u}, {0, 0.4f, 2u}}) {
    TrackerConfig c;
    c.duplicate_iou = dup;
    ByteTracker t(c);
    t.Update(Dets({Box(300, 200, 60, 40, 0.9f, cls)}));
    Tracks out;
    for (int k = 0; k < 3; ++k)
      out = t.Update(Dets({Box(300, 200, 60, 40, 0.9f, cls), Box(300, 205, 85, 56, 0.9f, cls)}));
    EXPECT_EQ(out.size(), expect) << "class " << cls << " duplicate_iou " << dup;
  }
  TrackerConfig bad;
  bad.duplicate_iou = 1.5f;
  EXPECT_THROW(bad.Validate(), std::invalid_argument);
}

TEST(Tracker, ClassIsTheMajorityVote) {
  ByteTracker t;
  Tracks out;
  for (int k = 0; k < 10; ++k) out = t.Update(Dets({Box(100, 200, 40, 80, 0.9f, 2)}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out.class_id[0], 2);
  for (int k = 0; k < 10; ++k) {
    out = t.Update(Dets({Box(100, 200, 40, 80, 0.9f, 5)}));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out.class_id[0], 2) << "5 has " << k + 1 << " votes against 10";
  }
  out = t.Update(Dets({Box(100, 200, 40, 80, 0.9f, 5)}));
  EXPECT_EQ(out.class_id[0], 5);
  EXPECT_EQ(out.track_id[0], 1);
}

TEST(Tracker, TrajectoryKeepsTheLastPointsWithTimestamps) {
  TrackerConfig c;
  c.trajectory_length = 5;
  ByteTracker t(c);
  for (int k = 0; k < 20; ++k) t.Update(Dets({Box(100 + 10.f * k, 200, 40, 80)}), 1000.0 + 0.1 * k);
  const std::vector<TrajectoryPoint> tr = t.Trajectory(1);
  ASSERT_EQ(tr.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    const int k = 15 + i;  // the filter has caught up with the motion by then
    EXPECT_DOUBLE_EQ(tr[i].t, 1000.0 + 0.1 * k);
    EXPECT_NEAR(tr[i].cx, 100 + 10.f * k, 1.f);
    EXPECT_NEAR(tr[i].cy, 200, 0.5f);
  }
  EXPECT_TRUE(t.Trajectory(2).empty());
  // Without timestamps: frame index / frame rate.
  ByteTracker u;
  for (int k = 0; k < 3; ++k) u.Update(Dets({Box(100, 200, 40, 80)}));
  ASSERT_EQ(u.Trajectory(1).size(), 3u);
  EXPECT_DOUBLE_EQ(u.Trajectory(1)[2].t, 2 / 10.0);
}

// Ground speed (TrackerConfig::speed_filter). 1 px = 0.5 m (a far camera), 10 fps, a box
// jittering by up to +-1.5 px per edge from a fixed generator.
std::vector<float> DriveSpeeds(TrackerConfig::SpeedFilter filter, const std::vector<double>& ys) {
  TrackerConfig c;
  c.frame_rate = 10;
  c.speed_filter = filter;
  ByteTracker t(c);
  t.SetCalibration({0.5, 0, 0, 0, 0.5, 0, 0, 0, 1});
  std::mt19937 gen(9);
  auto jitter = [&] { return static_cast<float>(static_cast<double>(gen()) / gen.max() * 3.0 - 1.5); };
  std::vector<float> out;
  for (size_t k = 0; k < ys.size(); ++k) {
    Detections d = Dets({Box(300, static_cast<float>(ys[k]), 40, 80)});
    for (float& v : d.xyxy) v += jitter();
    const Tracks tr = t.Update(d, 0.1 * static_cast<double>(k));
    out.push_back(tr.size() == 1 ? tr.speed_kmh[0] : NAN);
  }
  return out;
}

TEST(Tracker, KalmanSpeedReadsStandingAsStillAndFollowsDriving) {
  const std::vector<double> standing(60, 200.0);
  const std::vector<float> kal = DriveSpeeds(TrackerConfig::SpeedFilter::kKalman, standing);
  const std::vector<float> line = DriveSpeeds(TrackerConfig::SpeedFilter::kLine, standing);
  EXPECT_TRUE(std::isnan(kal[3]));  // half of speed_window_s first
  double sum_k = 0, sum_l = 0;
  for (size_t k = 20; k < kal.size(); ++k) sum_k += kal[k], sum_l += line[k];
  EXPECT_LT(sum_k, 0.3 * sum_l) << sum_k << " " << sum_l;  // the jitter is not read as speed
  std::vector<double> driving;
  for (int k = 0; k < 80; ++k) driving.push_back(100 + 2.0 * k);  // 2 px a frame: 36 km/h
  const std::vector<float> d = DriveSpeeds(TrackerConfig::SpeedFilter::kKalman, driving);
  double err = 0;
  for (size_t k = 30; k < d.size(); ++k) err += std::fabs(d[k] - 36.0);
  EXPECT_LT(err / static_cast<double>(d.size() - 30), 1.5);
}

TEST(Tracker, KalmanSettingsAreChecked) {
  for (auto set : std::vector<std::function<void(TrackerConfig&)>>{
           [](TrackerConfig& c) { c.speed_accel = 0; }, [](TrackerConfig& c) { c.speed_noise_px = -1; },
           [](TrackerConfig& c) { c.speed_noise_frac = 1.5; }}) {
    TrackerConfig c;
    set(c);
    EXPECT_THROW(ByteTracker{c}, std::invalid_argument);
  }
  EXPECT_EQ(ParseSpeedFilter("line"), TrackerConfig::SpeedFilter::kLine);
  EXPECT_STREQ(SpeedFilterName(ParseSpeedFilter("kalman")), "kalman");
  try {
    ParseSpeedFilter("median");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("speed_filter"), std::string::npos) << e.what();
  }
}

// The model's box-bottom bias (TrackerConfig::bottom_bias_*): taken off the box bottom before the
// ground point, by box height in input pixels (linear between knots, flat beyond), for its classes.
float GroundY(const TrackerConfig& c, int32_t cls, float h) {
  ByteTracker t(c);
  t.SetCalibration({1, 0, 0, 0, 1, 0, 0, 0, 1});
  const Tracks tr = t.Update(Dets({Box(300, 200, 20, h, 0.9f, cls)}), 0.0);
  return tr.size() == 1 ? tr.ground_xy[1] : NAN;
}

TEST(Tracker, BottomBiasMovesTheGroundPoint) {
  TrackerConfig c;
  c.bottom_bias_h = {10, 30};
  c.bottom_bias_px = {1, 3};
  c.bottom_bias_classes = 1u << 2;                     // cars
  EXPECT_NEAR(GroundY(c, 2, 20), 200 + 10 - 2, 1e-3);  // halfway: 2 px
  EXPECT_NEAR(GroundY(c, 2, 6), 200 + 3 - 1, 1e-3);    // below the first knot: flat
  EXPECT_NEAR(GroundY(c, 2, 60), 200 + 30 - 3, 1e-3);  // beyond the last: flat
  EXPECT_NEAR(GroundY(c, 0, 20), 200 + 10, 1e-3);      // people: not a class of the table
  c.bottom_bias_scale = 2;                             // 2 frame pixels per input pixel
  EXPECT_NEAR(GroundY(c, 2, 40), 200 + 20 - 4, 1e-3);  // 20 input px high: 2 input px = 4
  TrackerConfig none;
  EXPECT_NEAR(GroundY(none, 2, 20), 200 + 10, 1e-3);
  for (auto set :
       std::vector<std::function<void(TrackerConfig&)>>{[](TrackerConfig& b) { b.bottom_bias_px.pop_back(); },
                                                        [](TrackerConfig& b) {
                                                          b.bottom_bias_h = {10, 10};
                                                        },
                                                        [](TrackerConfig& b) {
                                                          b.bottom_bias_px = {1, 20};
                                                        },
                                                        [](TrackerConfig& b) {
                                                          b.bottom_bias_h = {0, 30};
                                                        },
                                                        [](TrackerConfig& b) { b.bottom_bias_scale = 0; }}) {
    TrackerConfig b = c;
    set(b);
    try {
      ByteTracker{b};
      FAIL() << "no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("bottom_bias"), std::string::npos) << e.what();
    }
  }
}

// A crowded scene, deterministic on every platform (own generator, no <random> distributions):
// 80 objects at constant velocity over 1280 x 720 (wrapping), jitter, 5 % misses, 15 % low
// scores, a few false boxes, three classes; 200 frames.
struct SceneSummary {
  size_t rows = 0;                            // output rows over the whole run
  uint64_t id_hash = 1469598103934665603ull;  // FNV-1a over (frame, id, class, state) per row
  int64_t max_id = 0;
  double box_sum = 0;  // sum of every output coordinate
  double score_sum = 0;
  size_t lost_at_end = 0, active_at_end = 0;
};

SceneSummary RunScene(const TrackerConfig& config) {
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&]() {  // splitmix64 -> [0, 1)
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return static_cast<double>((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
  };
  auto uniform = [&](double lo, double hi) { return lo + (hi - lo) * next(); };
  const int n = 80;
  std::vector<double> px(n), py(n), vx(n), vy(n), w(n), h(n);
  std::vector<int32_t> cls(n);
  for (int i = 0; i < n; ++i) {
    px[i] = uniform(0, 1280);
    py[i] = uniform(0, 720);
    vx[i] = uniform(-12, 12);
    vy[i] = uniform(-12, 12);
    w[i] = uniform(20, 120);
    h[i] = uniform(40, 160);
    cls[i] = static_cast<int32_t>(next() * 3);
  }
  ByteTracker t(config);
  SceneSummary s;
  auto mix = [&](uint64_t v) {
    s.id_hash ^= v;
    s.id_hash *= 1099511628211ull;
  };
  for (int f = 0; f < 200; ++f) {
    Detections d;
    for (int i = 0; i < n; ++i) {
      px[i] = std::fmod(px[i] + vx[i] + 1280, 1280);
      py[i] = std::fmod(py[i] + vy[i] + 720, 720);
      if (next() < 0.05) continue;
      const double cx = px[i] + uniform(-2, 2), cy = py[i] + uniform(-2, 2);
      d.xyxy.insert(d.xyxy.end(), {static_cast<float>(cx - w[i] / 2), static_cast<float>(cy - h[i] / 2),
                                   static_cast<float>(cx + w[i] / 2), static_cast<float>(cy + h[i] / 2)});
      d.score.push_back(static_cast<float>((next() < 0.15 ? 0.3 : 0.9) + uniform(-0.05, 0.05)));
      d.class_id.push_back(next() < 0.1 ? (cls[i] + 1) % 3 : cls[i]);
    }
    for (int k = 0; k < 3; ++k) {
      const double x = uniform(0, 1230), y = uniform(0, 670);
      d.xyxy.insert(d.xyxy.end(), {static_cast<float>(x), static_cast<float>(y), static_cast<float>(x + 40),
                                   static_cast<float>(y + 40)});
      d.score.push_back(static_cast<float>(uniform(0.2, 0.7)));
      d.class_id.push_back(0);
    }
    const Tracks out = t.Update(d);
    s.rows += out.size();
    for (size_t r = 0; r < out.size(); ++r) {
      mix(static_cast<uint64_t>(f));
      mix(static_cast<uint64_t>(out.track_id[r]));
      mix(static_cast<uint64_t>(out.class_id[r]));
      mix(static_cast<uint64_t>(out.state[r]));
      s.max_id = std::max(s.max_id, out.track_id[r]);
      for (int k = 0; k < 4; ++k) s.box_sum += out.xyxy[4 * r + k];
      s.score_sum += out.score[r];
    }
  }
  s.lost_at_end = t.lost_tracks().size();
  s.active_at_end = t.active_tracks().size();
  return s;
}

TEST(Tracker, CrowdedSceneGivesTheRecordedTracks) {
  // Recorded from the tracker before its speed work (dense Kalman filter, every IoU pair, deque
  // trajectories); any change in an id, class, state, box or score over 200 frames of a crowded
  // scene changes these. Boxes and scores are compared to rounding, ids exactly. The duplicate
  // check (duplicate_iou) came later and is off here: this is ByteTrack's own behaviour.
  TrackerConfig bytetrack;
  bytetrack.duplicate_iou = 1.f;
  bytetrack.recover_s = 0;  // id recovery came later too
  const SceneSummary a = RunScene(bytetrack);
  EXPECT_EQ(a.rows, 14876u);
  EXPECT_EQ(a.id_hash, 0xbe18119eec7323ebull);
  EXPECT_EQ(a.max_id, 293);
  EXPECT_NEAR(a.box_sum, 29036458.761369, 0.01);
  EXPECT_NEAR(a.score_sum, 12110.160993, 1e-3);
  EXPECT_EQ(a.lost_at_end, 13u);
  EXPECT_EQ(a.active_at_end, 77u);
  // The accuracy comparison's settings: one IoU limit in every stage, no score fusion.
  TrackerConfig plain;
  plain.duplicate_iou = 1.f;
  plain.recover_s = 0;
  plain.fuse_score = false;
  plain.match_thresh = plain.second_match_thresh = plain.unconfirmed_match_thresh = 0.2f;
  plain.track_buffer = 60;
  const SceneSummary b = RunScene(plain);
  EXPECT_EQ(b.rows, 5200u);
  EXPECT_EQ(b.id_hash, 0x5a605745e8d983f3ull);
  EXPECT_EQ(b.max_id, 599);
  EXPECT_NEAR(b.box_sum, 9682916.632747, 0.01);
  EXPECT_NEAR(b.score_sum, 4217.683429, 1e-3);
  EXPECT_EQ(b.lost_at_end, 46u);
  EXPECT_EQ(b.active_at_end, 66u);
}

TEST(Tracker, RefusesBadConfigAndInput) {
  TrackerConfig c;
  c.frame_rate = 0;
  try {
    ByteTracker t(c);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("frame_rate"), std::string::npos) << e.what();
  }
  c = TrackerConfig();
  c.match_thresh = 1.5f;
  EXPECT_THROW(ByteTracker{c}, std::invalid_argument);

  ByteTracker t;
  Detections d = Dets({Box(100, 200, 40, 80)});
  d.class_id.clear();
  EXPECT_THROW(t.Update(d), std::invalid_argument);
  d = Dets({Box(100, 200, 40, 80)});
  d.xyxy[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(t.Update(d), std::invalid_argument);
  EXPECT_EQ(t.frame_count(), 0);  // refused input changes nothing
  // A box without area is ignored, not an error.
  EXPECT_EQ(t.Update(Dets({{10, 10, 10, 50, 0.9f, 0}})).size(), 0u);
}

}  // namespace
}  // namespace smartcity
