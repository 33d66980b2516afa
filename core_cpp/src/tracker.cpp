#include "smartcity/tracker.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "smartcity/assignment.hpp"
#include "smartcity/postprocess.hpp"

namespace smartcity {

namespace {

// Id recovery: the most two standard deviations of the positions may widen the ground gate, m.
constexpr double kRecoverSpreadCapM = 3.0;

// Whether class id `class_id` has its bit set in `mask` (bit c: class id c; ids outside 0..31: no).
inline bool InClasses(uint32_t mask, int32_t class_id) {
  return class_id >= 0 && class_id <= 31 && (mask >> class_id & 1u);
}

// `n` more detections of class `class_id` for a track; the class is the majority, and another
// class takes over only with strictly more votes than the current one.
void AddVotes(Track& tr, int32_t class_id, int32_t n) {
  auto vote = std::find_if(tr.class_votes.begin(), tr.class_votes.end(),
                           [&](const std::pair<int32_t, int32_t>& v) { return v.first == class_id; });
  if (vote == tr.class_votes.end()) {
    tr.class_votes.emplace_back(class_id, n);
    vote = tr.class_votes.end() - 1;
  } else {
    vote->second += n;
  }
  int32_t current_votes = 0;
  for (const auto& v : tr.class_votes)
    if (v.first == tr.class_id) current_votes = v.second;
  if (vote->second > current_votes) tr.class_id = class_id;
}

void Check(bool ok, const char* field, const std::string& rule) {
  if (!ok) throw std::invalid_argument(std::string("tracker: ") + field + " " + rule);
}

// Intersection over union of two xyxy boxes; inlined here (the tracker's innermost loop).
inline float Iou(const std::array<float, 4>& a, const std::array<float, 4>& b) {
  const float iw = std::min(a[2], b[2]) - std::max(a[0], b[0]);
  const float ih = std::min(a[3], b[3]) - std::max(a[1], b[1]);
  if (iw <= 0.f || ih <= 0.f) return 0.f;
  const float inter = iw * ih;
  const float uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return uni > 0.f ? inter / uni : 0.f;
}

TrackerConfig Validated(const TrackerConfig& c) {
  c.Validate();
  return c;
}

// Moving tracks between the lists must not copy them (nor allocate).
static_assert(std::is_nothrow_move_constructible<Track>::value && std::is_nothrow_move_assignable<Track>::value,
              "Track must move without copying");

}  // namespace

void ByteTracker::OverlapIndex::Build(const std::vector<std::array<float, 4>>& boxes) {
  // Sorted on one integer key: x1's bits made order-preserving (high half), then the column. A
  // box with a NaN side overlaps nothing (its IoU is 0) and is left out.
  keys.clear();
  for (size_t j = 0; j < boxes.size(); ++j) {
    if (std::isnan(boxes[j][0]) || std::isnan(boxes[j][2])) continue;
    uint32_t bits;
    std::memcpy(&bits, &boxes[j][0], sizeof bits);
    bits = (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
    keys.push_back(static_cast<uint64_t>(bits) << 32 | static_cast<uint32_t>(j));
  }
  std::sort(keys.begin(), keys.end());
  const size_t n = keys.size();
  x1.resize(n);
  y1.resize(n);
  x2.resize(n);
  y2.resize(n);
  max_x2.resize(n);
  col.resize(n);
  hits.resize(n);
  float m = -std::numeric_limits<float>::infinity();
  for (size_t k = 0; k < n; ++k) {
    const int j = static_cast<int>(keys[k] & 0xffffffffu);
    const std::array<float, 4>& b = boxes[j];
    x1[k] = b[0];
    y1[k] = b[1];
    x2[k] = b[2];
    y2[k] = b[3];
    col[k] = j;
    if (b[2] > m) m = b[2];
    max_x2[k] = m;
  }
}

namespace {

// First k in [0, n) with a[k] > x (n if none), without branches to mispredict.
size_t UpperBound(const float* a, size_t n, float x) {
  if (n == 0) return 0;
  const float* base = a;
  while (n > 1) {
    const size_t half = n / 2;
    base = !(x < base[half]) ? base + half : base;
    n -= half;
  }
  return static_cast<size_t>(base - a) + (!(x < *base) ? 1 : 0);
}

}  // namespace

// IoU > 0 needs iw = min(x2) - max(x1) > 0 and ih > 0, so b.x2 > a.x1 (false before the first k
// with max_x2[k] > a.x1), b.x1 < a.x2 (false from the first such k on: x1 is sorted), and within
// that range min(x2) > max(x1) and min(y2) > max(y1).
size_t ByteTracker::OverlapIndex::Candidates(const std::array<float, 4>& a) {
  const size_t n = x1.size();
  const float *px1 = x1.data(), *py1 = y1.data(), *px2 = x2.data(), *py2 = y2.data();
  const int* pcol = col.data();
  int* out = hits.data();
  size_t count = 0;
  for (size_t k = UpperBound(max_x2.data(), n, a[0]); k < n && px1[k] < a[2]; ++k) {
    const bool overlap =
        (std::min(a[2], px2[k]) > std::max(a[0], px1[k])) & (std::min(a[3], py2[k]) > std::max(a[1], py1[k]));
    out[count] = pcol[k];
    count += overlap ? 1 : 0;
  }
  // Column order (a handful at most): insertion sort.
  for (size_t i = 1; i < count; ++i) {
    const int c = hits[i];
    size_t j = i;
    for (; j > 0 && hits[j - 1] > c; --j) hits[j] = hits[j - 1];
    hits[j] = c;
  }
  return count;
}

void ByteTracker::Match(const std::vector<Track*>& tracks, const std::vector<const Candidate*>& dets, bool fuse,
                        double limit, Assignment& out) {
  col_boxes_.resize(dets.size());
  for (size_t j = 0; j < dets.size(); ++j) col_boxes_[j] = dets[j]->box;
  index_.Build(col_boxes_);
  // Pairs with cost 1 - IoU (times the detection score when fuse) below the limit, row-major
  // and in column order inside a row (the order the solver breaks ties in).
  edges_.clear();
  for (size_t i = 0; i < tracks.size(); ++i) {
    const std::array<float, 4>& tb = tracks[i]->box;
    const size_t count = index_.Candidates(tb);
    for (size_t k = 0; k < count; ++k) {
      const int j = index_.hits[k];
      double sim = Iou(tb, col_boxes_[j]);
      if (sim <= 0.0) continue;
      if (fuse) sim *= dets[j]->score;
      const double cost = 1.0 - sim;
      if (cost < limit) edges_.push_back({static_cast<int>(i), j, cost});
    }
  }
  SolveAssignmentSparse(edges_.data(), edges_.size(), static_cast<int>(tracks.size()), static_cast<int>(dets.size()),
                        limit, workspace_, out);
}

const char* TrackStateName(TrackState s) {
  switch (s) {
    case TrackState::kTentative: return "tentative";
    case TrackState::kConfirmed: return "confirmed";
    case TrackState::kLost: return "lost";
    case TrackState::kRemoved: return "removed";
  }
  return "unknown";
}

TrackerConfig::SpeedFilter ParseSpeedFilter(const std::string& name) {
  if (name == "kalman") return TrackerConfig::SpeedFilter::kKalman;
  if (name == "line") return TrackerConfig::SpeedFilter::kLine;
  throw std::invalid_argument("speed_filter: must be kalman or line, got '" + name + "'");
}

const char* SpeedFilterName(TrackerConfig::SpeedFilter f) {
  return f == TrackerConfig::SpeedFilter::kLine ? "line" : "kalman";
}

void TrackerConfig::Validate() const {
  auto unit = [](float v) { return std::isfinite(v) && v >= 0.f && v <= 1.f; };
  Check(unit(track_thresh), "track_thresh", "must be in [0, 1]");
  Check(unit(match_thresh), "match_thresh", "must be in [0, 1]");
  Check(unit(low_thresh), "low_thresh", "must be in [0, 1]");
  Check(low_thresh <= track_thresh, "low_thresh", "must not exceed track_thresh");
  Check(unit(second_match_thresh), "second_match_thresh", "must be in [0, 1]");
  Check(unit(unconfirmed_match_thresh), "unconfirmed_match_thresh", "must be in [0, 1]");
  Check(new_track_thresh < 0.f || unit(new_track_thresh), "new_track_thresh", "must be in [0, 1] (or < 0: auto)");
  Check(unit(duplicate_iou), "duplicate_iou", "must be in [0, 1]");
  Check(track_buffer >= 0, "track_buffer", "must be >= 0");
  Check(std::isfinite(frame_rate) && frame_rate > 0, "frame_rate", "must be > 0");
  Check(trajectory_length >= 1, "trajectory_length", "must be >= 1");
  Check(std::isfinite(speed_window_s) && speed_window_s > 0, "speed_window_s", "must be > 0");
  Check(std::isfinite(speed_long_window_s) && (speed_long_window_s == 0 || speed_long_window_s >= speed_window_s),
        "speed_long_window_s", "must be 0 (off) or at least speed_window_s");
  Check(std::isfinite(speed_curvature_z) && speed_curvature_z >= 0, "speed_curvature_z", "must be >= 0");
  Check(speed_filter == SpeedFilter::kKalman || speed_filter == SpeedFilter::kLine, "speed_filter",
        "must be kalman or line");
  Check(std::isfinite(speed_accel) && speed_accel > 0, "speed_accel", "must be > 0");
  Check(std::isfinite(speed_noise_px) && speed_noise_px > 0, "speed_noise_px", "must be > 0");
  Check(std::isfinite(speed_noise_frac) && speed_noise_frac >= 0 && speed_noise_frac <= 1, "speed_noise_frac",
        "must be in [0, 1]");
  Check(bottom_bias_h.size() == bottom_bias_px.size(), "bottom_bias", "needs one offset per height");
  Check(std::isfinite(bottom_bias_scale) && bottom_bias_scale > 0, "bottom_bias_scale", "must be > 0");
  Check(bottom_bias_h.size() <= 64, "bottom_bias", "must have at most 64 points");
  Check(std::isfinite(recover_s) && recover_s >= 0 && recover_s <= 60, "recover_s", "must be in [0, 60]");
  Check(std::isfinite(recover_gate_m) && recover_gate_m > 0, "recover_gate_m", "must be > 0");
  Check(std::isfinite(recover_min_s) && recover_min_s >= 0, "recover_min_s", "must be >= 0");
  for (size_t i = 0; i < bottom_bias_h.size(); ++i) {
    Check(std::isfinite(bottom_bias_h[i]) && bottom_bias_h[i] > 0, "bottom_bias", "heights must be > 0");
    Check(i == 0 || bottom_bias_h[i] > bottom_bias_h[i - 1], "bottom_bias", "heights must increase strictly");
    Check(std::isfinite(bottom_bias_px[i]) && std::fabs(bottom_bias_px[i]) <= 0.5f * bottom_bias_h[i], "bottom_bias",
          "offsets must be finite and at most half their height");
  }
}

void ByteTracker::SetCalibration(const std::array<double, 9>& m) {
  for (double v : m) {
    if (!std::isfinite(v)) throw std::invalid_argument("calibration: the homography must hold finite numbers");
  }
  const double det =
      m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
  if (!(std::fabs(det) > 1e-12)) throw std::invalid_argument("calibration: the homography is singular");
  h_ = m;
  calibrated_ = true;
  ResetGroundFilters();
}

void ByteTracker::ClearCalibration() {
  calibrated_ = false;
  ResetGroundFilters();
}

// Ground points of another calibration are in other units: every filter starts again.
void ByteTracker::ResetGroundFilters() {
  for (std::vector<Track>* list : {&tracked_, &lost_, &gone_})
    for (Track& t : *list) t.ground = GroundFilter();
}

bool ByteTracker::Recoverable(const Track& tr) const {
  return config_.recover_s > 0 && tr.id > 0 && InClasses(config_.recover_classes, tr.class_id) &&
         static_cast<double>(tr.hits) >= config_.recover_min_s * config_.frame_rate && !tr.trajectory.empty();
}

double ByteTracker::RecoverScore(const Track& old, const Track& cand, double t) const {
  const TrajectoryPoint& now = cand.trajectory.back();
  const double gate = config_.recover_gate_m;
  const GroundFilter& f = old.ground;
  if (calibrated_ && f.points >= 2 && std::isfinite(now.gx) && std::isfinite(now.gy)) {
    // Where the old track would be now at its last velocity, against where the candidate is.
    // Both positions' uncertainty widens the gate by two standard deviations (at most
    // kRecoverSpreadCapM: far away a pixel is metres, and the next vehicle of a queue would be
    // in reach): the old filter's prediction and the candidate's point.
    const double dt = std::max(t - f.t_last, 0.0);
    const double ex = now.gx - (f.x[0] + f.x[2] * dt), ey = now.gy - (f.x[1] + f.x[3] * dt);
    // Old: its position and velocity covariance carried over dt (F P F', no process noise:
    // the gate's own terms stand for changes of speed) along the motion; across it only the
    // positions' (the filter's white acceleration is the same in every direction, a vehicle's
    // is not: with the velocity's share the gate would reach into the next lane).
    const double(&P)[4][4] = f.P;
    double p00 = P[0][0], p01 = P[0][1], p11 = P[1][1];
    if (cand.ground.points >= 2) p00 += cand.ground.P[0][0], p01 += cand.ground.P[0][1], p11 += cand.ground.P[1][1];
    const double c00 = p00 + 2 * dt * P[0][2] + dt * dt * P[2][2];
    const double c01 = p01 + dt * (P[0][3] + P[2][1]) + dt * dt * P[2][3];
    const double c11 = p11 + 2 * dt * P[1][3] + dt * dt * P[3][3];
    auto spread = [](double var) { return std::min(kRecoverSpreadCapM, 2 * std::sqrt(std::max(var, 0.0))); };
    const double speed = std::hypot(f.x[2], f.x[3]);
    if (speed >= 1.0) {  // moving: the gate is longer along the motion (speed changes in the gap)
      const double ux = f.x[2] / speed, uy = f.x[3] / speed;
      const double along = ex * ux + ey * uy, across = ey * ux - ex * uy;
      const double var_along = ux * ux * c00 + 2 * ux * uy * c01 + uy * uy * c11;
      const double var_across = uy * uy * p00 - 2 * ux * uy * p01 + ux * ux * p11;
      return std::hypot(along / (gate + 0.25 * speed * dt + spread(var_along)), across / (gate + spread(var_across)));
    }
    return std::hypot(ex, ey) / (gate + spread((c00 + c11) / 2));
  }
  // No ground: the old track's predicted box (its image Kalman filter ran on) against the
  // candidate's box, centres within half the larger height, heights within 1.5x.
  const float old_h = old.box[3] - old.box[1], cand_h = cand.box[3] - cand.box[1];
  const float hmax = std::max(old_h, cand_h), hmin = std::min(old_h, cand_h);
  if (!(hmin > 0.f) || hmax > 1.5f * hmin) return std::numeric_limits<double>::infinity();
  const double dx = (old.box[0] + old.box[2] - cand.box[0] - cand.box[2]) / 2.0;
  const double dy = (old.box[1] + old.box[3] - cand.box[1] - cand.box[3]) / 2.0;
  return std::hypot(dx, dy) / (0.5 * hmax);
}

int64_t ByteTracker::Recover(Track& fresh, double t) {
  if ((lost_.empty() && gone_.empty()) || fresh.trajectory.empty() ||
      !InClasses(config_.recover_classes, fresh.class_id))
    return -1;
  const TrajectoryPoint& now = fresh.trajectory.back();
  // Candidates: the lost tracks no detection was matched to this frame, then the remembered.
  const size_t lost_n = lost_.size(), all = lost_n + gone_.size();
  size_t best = all;
  double best_score = 1.0;  // normalised distance: 1 is the gate's edge
  for (size_t k = 0; k < all; ++k) {
    const Track& old = k < lost_n ? lost_[k] : gone_[k - lost_n];
    if (old.last_frame >= fresh.start_frame) continue;  // both seen at once: two objects
    if (old.class_id != fresh.class_id) continue;       // (by their majority votes so far)
    if (k < lost_n && (old.state != TrackState::kLost || !Recoverable(old))) continue;
    const double score = RecoverScore(old, fresh, t);
    if (score <= best_score) best_score = score, best = k;
  }
  if (best == all) return -1;
  Track& old = best < lost_n ? lost_[best] : gone_[best - lost_n];
  // Ambiguous: another vehicle seen in this frame is inside the old track's gate too (a queue,
  // a platoon). Better a new id than one that jumps to a neighbour. (Lost tracks found again in
  // this frame are still in lost_.)
  for (const std::vector<Track>* list : {&tracked_, &lost_})
    for (const Track& other : *list) {
      if (&other == &fresh || other.state != TrackState::kConfirmed || other.last_frame != frame_ ||
          other.trajectory.empty() || !InClasses(config_.recover_classes, other.class_id))
        continue;
      if (RecoverScore(old, other, t) <= 1.0) return -1;
    }
  const int64_t id = old.id;
  for (const auto& [class_id, n] : old.class_votes) AddVotes(fresh, class_id, n);
  fresh.hits += old.hits;
  fresh.start_frame = old.start_frame;
  // Its speed goes on from the old filter (carried over the gap) rather than from the new
  // track's first two points.
  if (config_.speed_filter == TrackerConfig::SpeedFilter::kKalman && old.ground.points >= 2 && std::isfinite(now.gx) &&
      std::isfinite(now.gy)) {
    GroundFilter g = old.ground;
    const double row = GroundRow(fresh.box, fresh.class_id);
    FilterGround(g, Point(t, fresh.box, row), fresh.box, row);
    g.t0 = t;  // no speed until it has half a speed window of points again (as a new track)
    fresh.ground = g;
  }
  if (best < lost_n) {  // dropped with the removed ones in step 5
    old.state = TrackState::kRemoved;
    old.id = -1;
  } else {
    gone_.erase(gone_.begin() + static_cast<std::ptrdiff_t>(best - lost_n));
  }
  return id;
}

double ByteTracker::GroundRow(const std::array<float, 4>& box, int32_t class_id) const {
  const std::vector<float>& hs = config_.bottom_bias_h;
  if (hs.empty() || !InClasses(config_.bottom_bias_classes, class_id)) return box[3];
  const std::vector<float>& px = config_.bottom_bias_px;
  const double scale = config_.bottom_bias_scale;
  const float h = static_cast<float>((box[3] - box[1]) / scale);
  float off;
  if (!(h > hs.front())) {
    off = px.front();
  } else if (h >= hs.back()) {
    off = px.back();
  } else {
    const size_t k = static_cast<size_t>(std::upper_bound(hs.begin(), hs.end(), h) - hs.begin());
    const float w = (h - hs[k - 1]) / (hs[k] - hs[k - 1]);
    off = px[k - 1] + w * (px[k] - px[k - 1]);
  }
  return static_cast<double>(box[3]) - off * scale;
}

TrajectoryPoint ByteTracker::Point(double t, const std::array<float, 4>& box, double ground_row) const {
  TrajectoryPoint p{t, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, NAN, NAN};
  if (calibrated_) {
    // Bottom centre: where the object meets the ground (GroundRow: less the model's bias).
    const double u = p.cx, v = ground_row;
    const double w = h_[6] * u + h_[7] * v + h_[8];
    if (std::fabs(w) > 1e-12) {
      p.gx = static_cast<float>((h_[0] * u + h_[1] * v + h_[2]) / w);
      p.gy = static_cast<float>((h_[3] * u + h_[4] * v + h_[5]) / w);
    }
  }
  return p;
}

namespace {

// Power sums of a track's ground points in one window: t relative to the newest point's time,
// x and y relative to its ground position (small numbers, so that the sums lose little).
struct Moments {
  double n = 0, t1 = 0, t2 = 0, t3 = 0, t4 = 0;           // sums of t^k
  double x0 = 0, x1 = 0, x2 = 0, y0 = 0, y1 = 0, y2 = 0;  // sums of t^k x, t^k y
  double xx = 0, yy = 0;                                  // sums of x^2, y^2
  double first = 0;                                       // time of the oldest point, relative
  void Add(double t, double x, double y) {
    const double tt = t * t;
    n += 1, t1 += t, t2 += tt, t3 += tt * t, t4 += tt * tt;
    x0 += x, x1 += t * x, x2 += tt * x, y0 += y, y1 += t * y, y2 += tt * y;
    xx += x * x, yy += y * y;
    first = std::min(first, t);
  }
};

// Least-squares ground velocity (m/s per axis) of the line x = a + v t through a window.
bool LineVelocity(const Moments& m, double& vx, double& vy) {
  if (m.n < 2) return false;
  const double den = m.n * m.t2 - m.t1 * m.t1;  // n^2 times the variance of t
  if (!(den > 1e-12 * m.n * m.n)) return false;
  vx = (m.n * m.x1 - m.t1 * m.x0) / den;
  vy = (m.n * m.y1 - m.t1 * m.y0) / den;
  return true;
}

// Whether the track moved steadily over the window of `m`: a parabola fitted to each ground
// axis against t (least squares) has an acceleration term within speed_curvature_z standard
// errors of 0. The normal equations and the residual sum of squares (x'x - c'X'x) come from the
// window's power sums, so no further pass over the points is needed; the t^2 coefficient and its
// variance do not depend on where t's origin lies.
bool Steady(const Moments& m, double z) {
  if (m.n < 5) return false;
  const double s[5] = {m.n, m.t1, m.t2, m.t3, m.t4};
  // M = [[s0 s1 s2] [s1 s2 s3] [s2 s3 s4]]: its inverse by cofactors (symmetric).
  const double c00 = s[2] * s[4] - s[3] * s[3], c01 = -(s[1] * s[4] - s[3] * s[2]), c02 = s[1] * s[3] - s[2] * s[2];
  const double c11 = s[0] * s[4] - s[2] * s[2], c12 = -(s[0] * s[3] - s[1] * s[2]), c22 = s[0] * s[2] - s[1] * s[1];
  const double det = s[0] * c00 + s[1] * c01 + s[2] * c02;
  if (!(std::fabs(det) > 1e-12)) return false;
  const double inv[3][3] = {
      {c00 / det, c01 / det, c02 / det}, {c01 / det, c11 / det, c12 / det}, {c02 / det, c12 / det, c22 / det}};
  const double bx[3] = {m.x0, m.x1, m.x2}, by[3] = {m.y0, m.y1, m.y2};
  double cx[3], cy[3];
  for (int i = 0; i < 3; ++i) {
    cx[i] = inv[i][0] * bx[0] + inv[i][1] * bx[1] + inv[i][2] * bx[2];
    cy[i] = inv[i][0] * by[0] + inv[i][1] * by[1] + inv[i][2] * by[2];
  }
  const double rx = m.xx - (cx[0] * bx[0] + cx[1] * bx[1] + cx[2] * bx[2]);
  const double ry = m.yy - (cy[0] * by[0] + cy[1] * by[1] + cy[2] * by[2]);
  const double se_x = std::sqrt(std::max(rx / (m.n - 3) * inv[2][2], 0.0));
  const double se_y = std::sqrt(std::max(ry / (m.n - 3) * inv[2][2], 0.0));
  return std::fabs(cx[2]) <= z * se_x + 1e-9 && std::fabs(cy[2]) <= z * se_y + 1e-9;
}

}  // namespace

// Ground speed: the least-squares line through the track's ground points inside
// speed_window_s. A box's bottom jitters by a pixel or two from frame to frame, which is metres
// far away: the endpoints alone (newest minus oldest) put all of that noise of two frames into
// the speed, the line through every frame of the window averages it out (about half the error
// for 10 points or more, docs/tracking.md). While the track moves steadily (no significant
// acceleration over speed_long_window_s, `Steady`) the line goes through that longer window:
// three times the points, a third of the jitter, and no lag where there is no change to lag.
// One pass over the ring gathers the power sums of both windows; both lines and the steadiness
// test are solved from them.
float ByteTracker::LineSpeedKmh(const Track& tr) const {
  const TrajectoryRing& ring = tr.trajectory;
  if (ring.size() < 2) return NAN;
  const TrajectoryPoint& now = ring.back();
  if (!std::isfinite(now.gx) || !std::isfinite(now.gy)) return NAN;
  const double sw = config_.speed_window_s, lw = config_.speed_long_window_s;
  const bool use_long = lw > sw;
  const double from_short = -sw - 1e-9, from_long = use_long ? -lw - 1e-9 : from_short;
  Moments shortw, longw;
  for (size_t k = 0; k < ring.size(); ++k) {
    const TrajectoryPoint& p = ring[k];
    const double t = p.t - now.t;
    if (t < from_long || !std::isfinite(p.gx) || !std::isfinite(p.gy)) continue;
    const double x = static_cast<double>(p.gx) - now.gx, y = static_cast<double>(p.gy) - now.gy;
    if (use_long) longw.Add(t, x, y);
    if (t >= from_short) shortw.Add(t, x, y);
  }
  double vx = 0, vy = 0;
  if (!LineVelocity(shortw, vx, vy) || -shortw.first < sw / 2) return NAN;  // too short a history
  double lvx = 0, lvy = 0;
  if (use_long && LineVelocity(longw, lvx, lvy) && -longw.first >= 1.5 * sw && Steady(longw, config_.speed_curvature_z))
    vx = lvx, vy = lvy;
  return static_cast<float>(std::hypot(vx, vy) * 3.6);
}

float ByteTracker::SpeedKmh(const Track& tr) const {
  return config_.speed_filter == TrackerConfig::SpeedFilter::kLine ? LineSpeedKmh(tr) : FilterSpeedKmh(tr);
}

void ByteTracker::AddPoint(Track& tr, double t, const std::array<float, 4>& box,
                           const std::array<float, 4>* det) const {
  const double row = GroundRow(box, tr.class_id);
  const TrajectoryPoint p = Point(t, box, row);
  tr.trajectory.push_back(p);
  if (config_.speed_filter == TrackerConfig::SpeedFilter::kKalman) {
    if (det) {
      const double det_row = GroundRow(*det, tr.class_id);
      FilterGround(tr.ground, Point(t, *det, det_row), *det, det_row);
    } else {
      FilterGround(tr.ground, p, box, row);
    }
  }
}

// One ground point into a track's constant-velocity Kalman filter. The measurement noise is the
// box bottom's pixel jitter (speed_noise_px + speed_noise_frac x height down, 0.5 px +
// speed_noise_frac x width across) carried to the ground through the homography's Jacobian at
// the point: a pixel far away is metres, near the camera centimetres, and each point counts by
// that. The process noise is white acceleration (speed_accel, m^2/s^3): how fast the filter
// follows braking against how much jitter it lets through.
void ByteTracker::FilterGround(GroundFilter& f, const TrajectoryPoint& p, const std::array<float, 4>& box,
                               double ground_row) const {
  if (!std::isfinite(p.gx) || !std::isfinite(p.gy)) return;
  const double* h = h_.data();
  const double u = p.cx, v = ground_row;
  const double w = h[6] * u + h[7] * v + h[8];
  // d(ground)/d(u, v) of X = (h0 u + h1 v + h2) / w, Y = (h3 u + h4 v + h5) / w.
  const double j00 = (h[0] - p.gx * h[6]) / w, j01 = (h[1] - p.gx * h[7]) / w;
  const double j10 = (h[3] - p.gy * h[6]) / w, j11 = (h[4] - p.gy * h[7]) / w;
  const double frac = config_.speed_noise_frac;
  const double su = 0.5 + frac * (box[2] - box[0]), sv = config_.speed_noise_px + frac * (box[3] - box[1]);
  const double su2 = su * su, sv2 = sv * sv;
  const double rxx = j00 * j00 * su2 + j01 * j01 * sv2, rxy = j00 * j10 * su2 + j01 * j11 * sv2,
               ryy = j10 * j10 * su2 + j11 * j11 * sv2;
  if (!std::isfinite(rxx) || !std::isfinite(rxy) || !std::isfinite(ryy)) return;
  if (f.points == 0) {
    f.points = 1;
    f.t0 = f.t_last = p.t;
    f.x[0] = p.gx, f.x[1] = p.gy;
    f.r0[0] = rxx, f.r0[1] = rxy, f.r0[2] = ryy;
    return;
  }
  const double dt = p.t - f.t_last;
  if (f.points == 1) {
    if (!(dt > 1e-6)) {  // the same instant again: the newer point replaces the first
      f.x[0] = p.gx, f.x[1] = p.gy;
      f.r0[0] = rxx, f.r0[1] = rxy, f.r0[2] = ryy;
      return;
    }
    // Velocity from the two points; its covariance from both points' (no prior toward 0).
    const double vx = (p.gx - f.x[0]) / dt, vy = (p.gy - f.x[1]) / dt;
    f.x[0] = p.gx, f.x[1] = p.gy, f.x[2] = vx, f.x[3] = vy;
    const double r[2][2] = {{rxx, rxy}, {rxy, ryy}};
    const double r0[2][2] = {{f.r0[0], f.r0[1]}, {f.r0[1], f.r0[2]}};
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) {
        f.P[i][j] = r[i][j];
        f.P[i][j + 2] = f.P[i + 2][j] = r[i][j] / dt;
        f.P[i + 2][j + 2] = (r[i][j] + r0[i][j]) / (dt * dt);
      }
    f.points = 2;
    f.t_last = p.t;
    return;
  }
  double(&P)[4][4] = f.P;
  if (dt > 0) {
    // Predict: x += v dt; P = F P F' + Q, F = [[I, dt I], [0, I]].
    f.x[0] += f.x[2] * dt, f.x[1] += f.x[3] * dt;
    double fp[4][4];
    for (int j = 0; j < 4; ++j) {
      fp[0][j] = P[0][j] + dt * P[2][j];
      fp[1][j] = P[1][j] + dt * P[3][j];
      fp[2][j] = P[2][j];
      fp[3][j] = P[3][j];
    }
    for (int i = 0; i < 4; ++i) {
      P[i][0] = fp[i][0] + dt * fp[i][2];
      P[i][1] = fp[i][1] + dt * fp[i][3];
      P[i][2] = fp[i][2];
      P[i][3] = fp[i][3];
    }
    const double q = config_.speed_accel, q11 = q * dt * dt * dt / 3, q12 = q * dt * dt / 2, q22 = q * dt;
    P[0][0] += q11, P[1][1] += q11, P[0][2] += q12, P[2][0] += q12, P[1][3] += q12, P[3][1] += q12;
    P[2][2] += q22, P[3][3] += q22;
    f.t_last = p.t;
  }
  // Update with z = (gx, gy): S = P[:2,:2] + R, K = P[:, :2] S^-1.
  const double s00 = P[0][0] + rxx, s01 = P[0][1] + rxy, s10 = P[1][0] + rxy, s11 = P[1][1] + ryy;
  const double det = s00 * s11 - s01 * s10;
  if (!(std::fabs(det) > 1e-18)) return;
  const double i00 = s11 / det, i01 = -s01 / det, i10 = -s10 / det, i11 = s00 / det;
  double k[4][2];
  for (int i = 0; i < 4; ++i) {
    k[i][0] = P[i][0] * i00 + P[i][1] * i10;
    k[i][1] = P[i][0] * i01 + P[i][1] * i11;
  }
  const double y0 = p.gx - f.x[0], y1 = p.gy - f.x[1];
  for (int i = 0; i < 4; ++i) f.x[i] += k[i][0] * y0 + k[i][1] * y1;
  double np[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) np[i][j] = P[i][j] - (k[i][0] * P[0][j] + k[i][1] * P[1][j]);
  for (int i = 0; i < 4; ++i)
    for (int j = i; j < 4; ++j) P[i][j] = P[j][i] = (np[i][j] + np[j][i]) / 2;  // kept symmetric
}

// The filter's speed, its noise taken out of the length: the squared length of an estimated
// velocity is on average the true one's plus the variance of both axes, so a standing vehicle's
// jitter would read as a few km/h; trace(P_v) is subtracted (floored at 0). NaN before the
// track has half of speed_window_s of ground points, or when its newest point has none.
float ByteTracker::FilterSpeedKmh(const Track& tr) const {
  const GroundFilter& f = tr.ground;
  if (f.points < 2 || tr.trajectory.empty()) return NAN;
  const TrajectoryPoint& now = tr.trajectory.back();
  if (!std::isfinite(now.gx) || !std::isfinite(now.gy)) return NAN;
  if (f.t_last - f.t0 < config_.speed_window_s / 2 - 1e-9) return NAN;
  const double v2 = f.x[2] * f.x[2] + f.x[3] * f.x[3] - (f.P[2][2] + f.P[3][3]);
  return static_cast<float>(std::sqrt(std::max(v2, 0.0)) * 3.6);
}

ByteTracker::ByteTracker(const TrackerConfig& config)
    : config_(Validated(config)),
      max_frames_lost_(static_cast<int>(config_.frame_rate / 30.0 * config_.track_buffer)),
      new_track_thresh_(config_.new_track_thresh < 0.f ? config_.track_thresh + 0.1f : config_.new_track_thresh),
      // The line's windows need their points in the ring; the Kalman filter keeps its own state.
      ring_capacity_(
          config_.speed_filter == TrackerConfig::SpeedFilter::kLine
              ? std::max(static_cast<size_t>(config_.trajectory_length),
                         static_cast<size_t>(std::ceil(std::max(config_.speed_window_s, config_.speed_long_window_s) *
                                                       config_.frame_rate * 1.25)) +
                             2)
              : static_cast<size_t>(config_.trajectory_length)) {}

void ByteTracker::Reset() {
  tracked_.clear();
  lost_.clear();
  gone_.clear();
  frame_ = 0;
  next_id_ = 1;
}

std::vector<TrajectoryPoint> ByteTracker::Trajectory(int64_t track_id) const {
  for (const std::vector<Track>* list : {&tracked_, &lost_})
    for (const Track& t : *list)
      if (t.id == track_id && track_id > 0)
        return t.trajectory.ToVector(static_cast<size_t>(config_.trajectory_length));
  return {};
}

Tracks ByteTracker::Update(const Detections& detections, double timestamp_s) {
  const size_t n = detections.size();
  Check(detections.xyxy.size() == 4 * n, "xyxy", "must have 4 numbers per detection");
  Check(detections.class_id.size() == n, "class_ids", "must have one entry per detection");
  for (size_t i = 0; i < n; ++i) {
    Check(std::isfinite(detections.score[i]), "scores", "must be finite");
    for (int k = 0; k < 4; ++k) Check(std::isfinite(detections.xyxy[4 * i + k]), "xyxy", "must be finite");
  }

  ++frame_;
  const double t = timestamp_s >= 0 ? timestamp_s : static_cast<double>(frame_ - 1) / config_.frame_rate;

  high_.clear();
  low_.clear();
  for (size_t i = 0; i < n; ++i) {
    const float* b = &detections.xyxy[4 * i];
    if (!(b[2] > b[0] && b[3] > b[1])) continue;  // no area
    const Candidate d{{b[0], b[1], b[2], b[3]}, detections.score[i], detections.class_id[i]};
    if (d.score > config_.track_thresh) {
      high_.push_back(d);
    } else if (d.score > config_.low_thresh) {
      low_.push_back(d);
    }
  }

  // 1. Predict every live track.
  for (Track& tr : tracked_) {
    kf_.Predict(tr.kalman);
    tr.box = tr.Xyxy();
  }
  for (Track& tr : lost_) {
    tr.kalman.mean[7] = 0.0;
    kf_.Predict(tr.kalman);
    tr.box = tr.Xyxy();
  }
  if (!gone_.empty()) {  // remembered tracks: forgotten recover_s after their last match
    gone_.erase(std::remove_if(gone_.begin(), gone_.end(),
                               [&](const Track& tr) { return t - tr.trajectory.back().t > config_.recover_s; }),
                gone_.end());
    for (Track& tr : gone_) {
      tr.kalman.mean[7] = 0.0;
      kf_.Predict(tr.kalman);
      tr.box = tr.Xyxy();
    }
  }

  auto apply = [&](Track& tr, const Candidate& d) {
    kf_.Update(tr.kalman, XyxyToXyah(d.box.data()));
    tr.box = tr.Xyxy();
    const bool confirming = tr.id < 0;
    tr.state = TrackState::kConfirmed;
    tr.score = d.score;
    tr.last_frame = frame_;
    ++tr.hits;
    AddVotes(tr, d.class_id, 1);
    AddPoint(tr, t, tr.box, &d.box);
    if (confirming) confirmed_now_.push_back(&tr);  // its id once every match is made
  };

  // 2. High detections against confirmed + lost tracks.
  confirmed_now_.clear();
  pool_.clear();
  for (Track& tr : tracked_)
    if (tr.state == TrackState::kConfirmed) pool_.push_back(&tr);
  for (Track& tr : lost_) pool_.push_back(&tr);
  high_ptr_.clear();
  for (const Candidate& d : high_) high_ptr_.push_back(&d);
  Match(pool_, high_ptr_, config_.fuse_score, config_.match_thresh, a1_);
  remaining_.clear();  // tracks unmatched so far, for the low detections
  for (size_t i = 0; i < pool_.size(); ++i) {
    if (a1_.row_to_col[i] >= 0) {
      apply(*pool_[i], *high_ptr_[a1_.row_to_col[i]]);
    } else {
      remaining_.push_back(pool_[i]);
    }
  }
  high_left_.clear();
  for (size_t j = 0; j < high_ptr_.size(); ++j)
    if (a1_.col_to_row[j] < 0) high_left_.push_back(high_ptr_[j]);

  // 3. Tentative tracks against the high detections left.
  tentative_.clear();
  for (Track& tr : tracked_)
    if (tr.state == TrackState::kTentative) tentative_.push_back(&tr);
  Match(tentative_, high_left_, config_.fuse_score, config_.unconfirmed_match_thresh, a3_);
  for (size_t i = 0; i < tentative_.size(); ++i) {
    if (a3_.row_to_col[i] >= 0) {
      apply(*tentative_[i], *high_left_[a3_.row_to_col[i]]);
    } else {
      remaining_.push_back(tentative_[i]);
    }
  }

  // 4. Low detections against every track still unmatched (confirmed, lost, tentative): what
  // keeps a track alive when the detector's score drops. Then confirmed tracks still unmatched
  // become lost and tentative ones are removed.
  low_ptr_.clear();
  for (const Candidate& d : low_) low_ptr_.push_back(&d);
  Match(remaining_, low_ptr_, false, config_.second_match_thresh, a2_);
  for (size_t i = 0; i < remaining_.size(); ++i) {
    if (a2_.row_to_col[i] >= 0) {
      apply(*remaining_[i], *low_ptr_[a2_.row_to_col[i]]);
    } else if (remaining_[i]->state == TrackState::kConfirmed) {
      remaining_[i]->state = TrackState::kLost;
    } else if (remaining_[i]->state == TrackState::kTentative) {
      remaining_[i]->state = TrackState::kRemoved;
    }
  }

  // Ids are handed out at confirmation: a lost or remembered track's that the new one continues
  // (Recover: a lost one taken is removed), or a new one.
  for (Track* tr : confirmed_now_) {
    tr->id = Recover(*tr, t);
    if (tr->id < 0) tr->id = next_id_++;
  }

  // 5. Move tracks between the lists, in place and in order: tracked = the tracked ones still
  // tentative or confirmed, then the lost ones confirmed again, then the new ones (step 6);
  // lost = the tracked ones lost now, then the lost ones still lost. Lost tracks past the buffer
  // and removed ones are dropped. (The pointers of steps 2-4 are not used from here on.)
  for (std::vector<Track>* list : {&tracked_, &lost_})
    for (Track& tr : *list)
      if (tr.state == TrackState::kLost && frame_ - tr.last_frame > max_frames_lost_) {
        if (Recoverable(tr)) gone_.push_back(std::move(tr));
        tr.state = TrackState::kRemoved;
      }
  next_lost_.clear();
  size_t kept = 0;
  for (size_t r = 0; r < tracked_.size(); ++r) {
    Track& tr = tracked_[r];
    if (tr.state == TrackState::kLost) {
      next_lost_.push_back(std::move(tr));
    } else if (tr.state != TrackState::kRemoved) {
      if (kept != r) tracked_[kept] = std::move(tr);
      ++kept;
    }
  }
  tracked_.erase(tracked_.begin() + static_cast<std::ptrdiff_t>(kept), tracked_.end());
  for (Track& tr : lost_) {
    if (tr.state == TrackState::kLost) {
      next_lost_.push_back(std::move(tr));
    } else if (tr.state != TrackState::kRemoved) {
      tracked_.push_back(std::move(tr));
    }
  }
  lost_.swap(next_lost_);
  next_lost_.clear();

  // 6. New tracks from the high detections nobody took, unless the box lies on a track
  // updated this frame (IoU >= duplicate_iou): a second box on one object, which the detector's
  // NMS kept (a box inside a larger one, or two offset boxes on a far vehicle), would otherwise
  // start a second track on it that takes turns with the first. Boxes of crowd_class (people)
  // on a track of it are exempt: in a crowd one person stands half behind another.
  const size_t updated = tracked_.size();
  for (size_t j = 0; j < high_left_.size(); ++j) {
    if (a3_.col_to_row[j] >= 0 || high_left_[j]->score < new_track_thresh_) continue;
    const Candidate& d = *high_left_[j];
    if (config_.duplicate_iou < 1.f) {
      bool duplicate = false;
      for (size_t i = 0; i < updated && !duplicate; ++i)
        duplicate = tracked_[i].last_frame == frame_ &&
                    !(d.class_id == config_.crowd_class && tracked_[i].class_id == config_.crowd_class) &&
                    Iou(tracked_[i].box, d.box) >= config_.duplicate_iou;
      if (duplicate) continue;
    }
    tracked_.emplace_back();
    Track& tr = tracked_.back();
    tr.kalman = kf_.Initiate(XyxyToXyah(d.box.data()));
    tr.box = tr.Xyxy();
    tr.state = TrackState::kTentative;
    if (frame_ == 1) {  // confirmed at once on the first frame, as in ByteTrack
      tr.state = TrackState::kConfirmed;
      tr.id = next_id_++;
    }
    tr.score = d.score;
    tr.class_id = d.class_id;
    tr.class_votes.emplace_back(d.class_id, 1);
    tr.start_frame = tr.last_frame = frame_;
    tr.hits = 1;
    tr.trajectory = TrajectoryRing(ring_capacity_);
    tr.trajectory.reserve(64);
    AddPoint(tr, t, d.box);
  }

  // A confirmed and a lost track on the same object (IoU > 0.85): keep the older one.
  if (!lost_.empty() && !tracked_.empty()) {
    drop_tracked_.assign(tracked_.size(), 0);
    drop_lost_.assign(lost_.size(), 0);
    col_boxes_.resize(lost_.size());
    for (size_t j = 0; j < lost_.size(); ++j) col_boxes_[j] = lost_[j].box;
    index_.Build(col_boxes_);
    bool any = false;
    for (size_t i = 0; i < tracked_.size(); ++i) {
      const std::array<float, 4>& a = tracked_[i].box;
      const size_t count = index_.Candidates(a);
      for (size_t k = 0; k < count; ++k) {
        const int j = index_.hits[k];
        if (1.0f - Iou(a, col_boxes_[j]) >= 0.15f) continue;
        const int64_t age_tracked = tracked_[i].last_frame - tracked_[i].start_frame;
        const int64_t age_lost = lost_[j].last_frame - lost_[j].start_frame;
        (age_tracked > age_lost ? drop_lost_[j] : drop_tracked_[i]) = 1;
        any = true;
      }
    }
    if (any) {
      size_t w = 0;
      for (size_t i = 0; i < tracked_.size(); ++i)
        if (!drop_tracked_[i]) {
          if (w != i) tracked_[w] = std::move(tracked_[i]);
          ++w;
        }
      tracked_.erase(tracked_.begin() + static_cast<std::ptrdiff_t>(w), tracked_.end());
      w = 0;
      for (size_t j = 0; j < lost_.size(); ++j)
        if (!drop_lost_[j]) {
          if (w != j) lost_[w] = std::move(lost_[j]);
          ++w;
        }
      lost_.erase(lost_.begin() + static_cast<std::ptrdiff_t>(w), lost_.end());
    }
  }

  Tracks out;
  size_t shown = 0;
  for (const Track& tr : tracked_)
    if (tr.state == TrackState::kConfirmed && tr.last_frame == frame_) ++shown;
  out.track_id.reserve(shown);
  out.xyxy.reserve(shown * 4);
  out.score.reserve(shown);
  out.class_id.reserve(shown);
  out.state.reserve(shown);
  out.ground_xy.reserve(shown * 2);
  out.speed_kmh.reserve(shown);
  for (const Track& tr : tracked_) {
    if (tr.state != TrackState::kConfirmed || tr.last_frame != frame_) continue;
    out.track_id.push_back(tr.id);
    out.xyxy.insert(out.xyxy.end(), tr.box.begin(), tr.box.end());
    out.score.push_back(tr.score);
    out.class_id.push_back(tr.class_id);
    out.state.push_back(static_cast<int8_t>(tr.state));
    const TrajectoryPoint& last = tr.trajectory.back();
    out.ground_xy.push_back(last.gx);
    out.ground_xy.push_back(last.gy);
    out.speed_kmh.push_back(SpeedKmh(tr));
  }
  return out;
}

}  // namespace smartcity
