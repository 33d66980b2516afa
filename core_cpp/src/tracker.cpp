#include "smartcity/tracker.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "smartcity/assignment.hpp"
#include "smartcity/postprocess.hpp"

namespace smartcity {

namespace {

struct Det {
  std::array<float, 4> box;
  float score;
  int32_t class_id;
};

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

// Pairs with cost 1 - IoU (times the detection score when fuse) below `limit`, tracks as rows.
std::vector<AssignmentEdge> IouPairs(const std::vector<Track*>& tracks, const std::vector<const Det*>& dets, bool fuse,
                                     double limit) {
  std::vector<AssignmentEdge> pairs;
  for (size_t i = 0; i < tracks.size(); ++i) {
    const std::array<float, 4> tb = tracks[i]->Xyxy();
    for (size_t j = 0; j < dets.size(); ++j) {
      double sim = Iou(tb, dets[j]->box);
      if (sim <= 0.0) continue;
      if (fuse) sim *= dets[j]->score;
      const double cost = 1.0 - sim;
      if (cost < limit) pairs.push_back({static_cast<int>(i), static_cast<int>(j), cost});
    }
  }
  return pairs;
}

Assignment Match(const std::vector<Track*>& tracks, const std::vector<const Det*>& dets, bool fuse, double limit) {
  return SolveAssignmentSparse(IouPairs(tracks, dets, fuse, limit), static_cast<int>(tracks.size()),
                               static_cast<int>(dets.size()), limit);
}

TrackerConfig Validated(const TrackerConfig& c) {
  c.Validate();
  return c;
}

}  // namespace

const char* TrackStateName(TrackState s) {
  switch (s) {
    case TrackState::kTentative: return "tentative";
    case TrackState::kConfirmed: return "confirmed";
    case TrackState::kLost: return "lost";
    case TrackState::kRemoved: return "removed";
  }
  return "unknown";
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
  Check(track_buffer >= 0, "track_buffer", "must be >= 0");
  Check(std::isfinite(frame_rate) && frame_rate > 0, "frame_rate", "must be > 0");
  Check(trajectory_length >= 1, "trajectory_length", "must be >= 1");
  Check(std::isfinite(speed_window_s) && speed_window_s > 0, "speed_window_s", "must be > 0");
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
}

void ByteTracker::ClearCalibration() { calibrated_ = false; }

TrajectoryPoint ByteTracker::Point(double t, const std::array<float, 4>& box) const {
  TrajectoryPoint p{t, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, NAN, NAN};
  if (calibrated_) {
    const double u = p.cx, v = box[3];  // bottom centre: where the object meets the ground
    const double w = h_[6] * u + h_[7] * v + h_[8];
    if (std::fabs(w) > 1e-12) {
      p.gx = static_cast<float>((h_[0] * u + h_[1] * v + h_[2]) / w);
      p.gy = static_cast<float>((h_[3] * u + h_[4] * v + h_[5]) / w);
    }
  }
  return p;
}

// Displacement between the newest point and the oldest one inside the window, over their time.
float ByteTracker::SpeedKmh(const Track& tr) const {
  if (tr.trajectory.size() < 2) return NAN;
  const TrajectoryPoint& now = tr.trajectory.back();
  if (!std::isfinite(now.gx)) return NAN;
  for (const TrajectoryPoint& p : tr.trajectory) {
    if (p.t < now.t - config_.speed_window_s - 1e-9 || !std::isfinite(p.gx)) continue;
    const double dt = now.t - p.t;
    if (dt < config_.speed_window_s / 2) return NAN;  // too short a history for a speed
    return static_cast<float>(std::hypot(now.gx - p.gx, now.gy - p.gy) / dt * 3.6);
  }
  return NAN;
}

ByteTracker::ByteTracker(const TrackerConfig& config)
    : config_(Validated(config)),
      max_frames_lost_(static_cast<int>(config_.frame_rate / 30.0 * config_.track_buffer)),
      new_track_thresh_(config_.new_track_thresh < 0.f ? config_.track_thresh + 0.1f : config_.new_track_thresh) {}

void ByteTracker::Reset() {
  tracked_.clear();
  lost_.clear();
  frame_ = 0;
  next_id_ = 1;
}

std::vector<TrajectoryPoint> ByteTracker::Trajectory(int64_t track_id) const {
  for (const std::vector<Track>* list : {&tracked_, &lost_})
    for (const Track& t : *list)
      if (t.id == track_id && track_id > 0) return {t.trajectory.begin(), t.trajectory.end()};
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

  std::vector<Det> high, low;
  for (size_t i = 0; i < n; ++i) {
    const float* b = &detections.xyxy[4 * i];
    if (!(b[2] > b[0] && b[3] > b[1])) continue;  // no area
    const Det d{{b[0], b[1], b[2], b[3]}, detections.score[i], detections.class_id[i]};
    if (d.score > config_.track_thresh) {
      high.push_back(d);
    } else if (d.score > config_.low_thresh) {
      low.push_back(d);
    }
  }

  // 1. Predict every live track.
  for (Track& tr : tracked_) kf_.Predict(tr.kalman);
  for (Track& tr : lost_) {
    tr.kalman.mean[7] = 0.0;
    kf_.Predict(tr.kalman);
  }

  auto apply = [&](Track& tr, const Det& d) {
    kf_.Update(tr.kalman, XyxyToXyah(d.box.data()));
    if (tr.id < 0) tr.id = next_id_++;  // ids are handed out at confirmation
    tr.state = TrackState::kConfirmed;
    tr.score = d.score;
    tr.last_frame = frame_;
    ++tr.hits;
    auto vote = std::find_if(tr.class_votes.begin(), tr.class_votes.end(),
                             [&](const std::pair<int32_t, int32_t>& v) { return v.first == d.class_id; });
    if (vote == tr.class_votes.end()) {
      tr.class_votes.emplace_back(d.class_id, 1);
      vote = tr.class_votes.end() - 1;
    } else {
      ++vote->second;
    }
    int32_t current_votes = 0;
    for (const auto& v : tr.class_votes)
      if (v.first == tr.class_id) current_votes = v.second;
    if (vote->second > current_votes) tr.class_id = d.class_id;
    const std::array<float, 4> box = tr.Xyxy();
    tr.trajectory.push_back(Point(t, box));
    while (tr.trajectory.size() > static_cast<size_t>(config_.trajectory_length)) tr.trajectory.pop_front();
  };

  // 2. High detections against confirmed + lost tracks.
  std::vector<Track*> pool;
  for (Track& tr : tracked_)
    if (tr.state == TrackState::kConfirmed) pool.push_back(&tr);
  for (Track& tr : lost_) pool.push_back(&tr);
  std::vector<const Det*> high_ptr;
  for (const Det& d : high) high_ptr.push_back(&d);
  Assignment a1 = Match(pool, high_ptr, config_.fuse_score, config_.match_thresh);
  std::vector<Track*> remaining;  // tracks unmatched so far, for the low detections
  for (size_t i = 0; i < pool.size(); ++i) {
    if (a1.row_to_col[i] >= 0) {
      apply(*pool[i], *high_ptr[a1.row_to_col[i]]);
    } else {
      remaining.push_back(pool[i]);
    }
  }
  std::vector<const Det*> high_left;
  for (size_t j = 0; j < high_ptr.size(); ++j)
    if (a1.col_to_row[j] < 0) high_left.push_back(high_ptr[j]);

  // 3. Tentative tracks against the high detections left.
  std::vector<Track*> tentative;
  for (Track& tr : tracked_)
    if (tr.state == TrackState::kTentative) tentative.push_back(&tr);
  Assignment a3 = Match(tentative, high_left, config_.fuse_score, config_.unconfirmed_match_thresh);
  for (size_t i = 0; i < tentative.size(); ++i) {
    if (a3.row_to_col[i] >= 0) {
      apply(*tentative[i], *high_left[a3.row_to_col[i]]);
    } else {
      remaining.push_back(tentative[i]);
    }
  }

  // 4. Low detections against every track still unmatched (confirmed, lost, tentative): what
  // keeps a track alive when the detector's score drops. Then confirmed tracks still unmatched
  // become lost and tentative ones are removed.
  std::vector<const Det*> low_ptr;
  for (const Det& d : low) low_ptr.push_back(&d);
  Assignment a2 = Match(remaining, low_ptr, false, config_.second_match_thresh);
  for (size_t i = 0; i < remaining.size(); ++i) {
    if (a2.row_to_col[i] >= 0) {
      apply(*remaining[i], *low_ptr[a2.row_to_col[i]]);
    } else if (remaining[i]->state == TrackState::kConfirmed) {
      remaining[i]->state = TrackState::kLost;
    } else if (remaining[i]->state == TrackState::kTentative) {
      remaining[i]->state = TrackState::kRemoved;
    }
  }

  // 5. New tracks from the high detections nobody took.
  std::vector<Track> born;
  born.reserve(high_left.size());
  for (size_t j = 0; j < high_left.size(); ++j) {
    if (a3.col_to_row[j] >= 0 || high_left[j]->score < new_track_thresh_) continue;
    const Det& d = *high_left[j];
    Track tr;
    tr.kalman = kf_.Initiate(XyxyToXyah(d.box.data()));
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
    tr.trajectory.push_back(Point(t, d.box));
    born.push_back(std::move(tr));
  }

  // 6. Move tracks between the lists; drop lost tracks past the buffer and removed ones.
  // Reserved up front: Track holds a deque, whose move may throw, so a growing vector<Track>
  // would copy every track on each reallocation.
  std::vector<Track> tracked, lost;
  tracked.reserve(tracked_.size() + lost_.size() + born.size());
  lost.reserve(tracked_.size() + lost_.size());
  for (std::vector<Track>* list : {&tracked_, &lost_}) {
    for (Track& tr : *list) {
      if (tr.state == TrackState::kLost && frame_ - tr.last_frame > max_frames_lost_) tr.state = TrackState::kRemoved;
      if (tr.state == TrackState::kRemoved) continue;
      (tr.state == TrackState::kLost ? lost : tracked).push_back(std::move(tr));
    }
  }
  for (Track& tr : born) tracked.push_back(std::move(tr));

  // A confirmed and a lost track on the same object: keep the older one.
  std::vector<char> drop_tracked(tracked.size(), 0), drop_lost(lost.size(), 0);
  std::vector<std::array<float, 4>> lost_boxes(lost.size());
  for (size_t j = 0; j < lost.size(); ++j) lost_boxes[j] = lost[j].Xyxy();
  for (size_t i = 0; i < tracked.size(); ++i) {
    const std::array<float, 4> a = tracked[i].Xyxy();
    for (size_t j = 0; j < lost.size(); ++j) {
      if (1.0f - Iou(a, lost_boxes[j]) >= 0.15f) continue;
      const int64_t age_tracked = tracked[i].last_frame - tracked[i].start_frame;
      const int64_t age_lost = lost[j].last_frame - lost[j].start_frame;
      (age_tracked > age_lost ? drop_lost[j] : drop_tracked[i]) = 1;
    }
  }
  tracked_.clear();
  lost_.clear();
  tracked_.reserve(tracked.size());
  lost_.reserve(lost.size());
  for (size_t i = 0; i < tracked.size(); ++i)
    if (!drop_tracked[i]) tracked_.push_back(std::move(tracked[i]));
  for (size_t j = 0; j < lost.size(); ++j)
    if (!drop_lost[j]) lost_.push_back(std::move(lost[j]));

  Tracks out;
  out.track_id.reserve(tracked_.size());
  out.xyxy.reserve(tracked_.size() * 4);
  out.score.reserve(tracked_.size());
  out.class_id.reserve(tracked_.size());
  out.state.reserve(tracked_.size());
  out.ground_xy.reserve(tracked_.size() * 2);
  out.speed_kmh.reserve(tracked_.size());
  for (const Track& tr : tracked_) {
    if (tr.state != TrackState::kConfirmed || tr.last_frame != frame_) continue;
    const std::array<float, 4> box = tr.Xyxy();
    out.track_id.push_back(tr.id);
    out.xyxy.insert(out.xyxy.end(), box.begin(), box.end());
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
