// ByteTrack multi-object tracker (Zhang et al., ECCV 2022), one instance per stream.
//
// Per Update (one analysed frame):
//   1. every tentative, confirmed and lost track is moved one frame ahead by its Kalman filter
//      (a lost track's height velocity is zeroed first, as in ByteTrack);
//   2. detections with score > track_thresh ("high") are matched to confirmed + lost tracks by
//      IoU cost (fused with the detection score when fuse_score), optimal assignment with cost
//      limit match_thresh; a matched lost track is confirmed again with its old id;
//   3. tentative tracks are matched to the high detections left over (cost limit
//      unconfirmed_match_thresh);
//   4. detections with low_thresh < score <= track_thresh ("low") are matched to every track
//      still unmatched: confirmed, lost and tentative (cost limit second_match_thresh, plain
//      IoU); confirmed tracks left unmatched become lost, tentative ones are removed;
//   5. high detections left over with score >= new_track_thresh start tentative tracks (on the
//      first frame after construction or Reset they are confirmed at once, as in ByteTrack);
//   6. a lost track not matched for more than max_frames_lost() frames is removed; a confirmed
//      and a lost track overlapping with IoU > 0.85 are merged into the older one.
// Output: the confirmed tracks matched in this frame, boxes from the Kalman state.
//
// Ids are counted per tracker instance from 1 and handed out when a track is confirmed (a
// tentative track that dies consumes none). The class of a track is the majority over every
// detection it was matched with (a new class takes over only with strictly more votes).
// Association ignores classes, as ByteTrack does.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "smartcity/detections.hpp"
#include "smartcity/kalman.hpp"

namespace smartcity {

enum class TrackState : int8_t { kTentative = 0, kConfirmed = 1, kLost = 2, kRemoved = 3 };
const char* TrackStateName(TrackState s);

struct TrackerConfig {
  float track_thresh = 0.5f;              // high / low split of detection scores
  float match_thresh = 0.8f;              // first association: cost limit (1 - IoU [* score])
  int track_buffer = 30;                  // frames a lost track is kept at 30 fps ...
  double frame_rate = 10.0;               // ... scaled to the analysed rate: see max_frames_lost
  float low_thresh = 0.1f;                // low detections: score > low_thresh
  float second_match_thresh = 0.5f;       // second association (low detections): cost limit
  float unconfirmed_match_thresh = 0.7f;  // tentative tracks against leftover high detections
  float new_track_thresh = -1.f;          // < 0: track_thresh + 0.1, as in ByteTrack
  bool fuse_score = true;                 // cost = 1 - IoU * score in stages 2 and 4
  int trajectory_length = 30;             // centre points kept per track
  double speed_window_s = 1.0;            // ground speed: displacement over this long

  void Validate() const;  // throws std::invalid_argument naming the bad field
};

struct TrajectoryPoint {
  double t;  // seconds: the timestamp given to Update, or frame index / frame_rate
  float cx;  // box centre in frame pixels
  float cy;
  float gx;  // ground position in metres of the box's bottom centre (NaN: no calibration)
  float gy;
};

struct Track {
  int64_t id = -1;  // -1 while tentative
  TrackState state = TrackState::kTentative;
  KalmanState kalman;
  float score = 0.f;  // of the last matched detection
  int32_t class_id = -1;
  std::vector<std::pair<int32_t, int32_t>> class_votes;  // (class id, detections)
  int64_t start_frame = 0;
  int64_t last_frame = 0;  // last frame matched
  int64_t hits = 0;        // detections matched over the track's life
  std::deque<TrajectoryPoint> trajectory;

  std::array<float, 4> Xyxy() const { return XyahToXyxy(kalman.Xyah()); }
};

// The output of one Update, struct of arrays.
struct Tracks {
  std::vector<int64_t> track_id;
  std::vector<float> xyxy;  // size() * 4
  std::vector<float> score;
  std::vector<int32_t> class_id;
  std::vector<int8_t> state;     // TrackState
  std::vector<float> ground_xy;  // size() * 2, metres; NaN without a calibration
  std::vector<float> speed_kmh;  // ground speed over speed_window_s; NaN when unknown
  size_t size() const { return track_id.size(); }
};

class ByteTracker {
 public:
  explicit ByteTracker(const TrackerConfig& config = TrackerConfig());

  // One analysed frame. timestamp_s < 0 (default): frame index / frame_rate. Throws
  // std::invalid_argument when the detections' arrays disagree in size or hold non-finite
  // numbers; boxes with no area are ignored.
  Tracks Update(const Detections& detections, double timestamp_s = -1.0);
  // Forgets every track; ids start at 1 again.
  void Reset();
  // Image (pixels) -> ground (metres) homography, row-major. From then on every track point
  // gets a ground position (the box's bottom centre, where it touches the road) and tracks a
  // speed. Throws std::invalid_argument for a non-finite or singular matrix.
  void SetCalibration(const std::array<double, 9>& image_to_ground);
  void ClearCalibration();
  bool calibrated() const { return calibrated_; }

  const TrackerConfig& config() const { return config_; }
  int max_frames_lost() const { return max_frames_lost_; }
  int64_t frame_count() const { return frame_; }
  // Tentative, confirmed and lost tracks (removed ones are dropped).
  const std::vector<Track>& active_tracks() const { return tracked_; }
  const std::vector<Track>& lost_tracks() const { return lost_; }
  // The trajectory of a live track (confirmed or lost), empty when there is none with this id.
  std::vector<TrajectoryPoint> Trajectory(int64_t track_id) const;

 private:
  const TrackerConfig config_;
  const int max_frames_lost_;
  const float new_track_thresh_;
  const KalmanBoxFilter kf_;
  std::vector<Track> tracked_;  // tentative and confirmed
  std::vector<Track> lost_;
  int64_t frame_ = 0;
  int64_t next_id_ = 1;
  bool calibrated_ = false;
  std::array<double, 9> h_{};  // image -> ground

  TrajectoryPoint Point(double t, const std::array<float, 4>& box) const;
  float SpeedKmh(const Track& tr) const;
};

}  // namespace smartcity
