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
//   6. a lost track not matched for more than max_frames_lost() frames is removed (a vehicle's is
//      remembered for id recovery, below); a confirmed and a lost track overlapping with
//      IoU > 0.85 are merged into the older one.
// Output: the confirmed tracks matched in this frame, boxes from the Kalman state.
//
// Ids are counted per tracker instance from 1 and handed out when a track is confirmed (a
// tentative track that dies consumes none). The class of a track is the majority over every
// detection it was matched with (a new class takes over only with strictly more votes).
// Association ignores classes, as ByteTrack does.
//
// Id recovery (not in ByteTrack): a track of recover_classes removed from the lost list, matched
// for at least recover_min_s of frames, is remembered until recover_s after its last match. A
// tentative track of the same class confirmed where such a track, lost or remembered, would be by
// then takes its id, class votes and ground filter instead of a new id (constant velocity on the
// ground: within recover_gate_m across its motion
// and recover_gate_m plus a quarter of the distance travelled along it, each widened by two
// standard deviations of both positions, 3 m at most; uncalibrated: the predicted box's centre
// within half a box height, heights within 1.5x), unless another vehicle matched in this frame
// lies inside that gate too. A vehicle that the detector misses for longer than the buffer,
// or whose box the image filter's prediction no longer overlaps when it comes back (it grew as the
// vehicle came nearer), keeps one id, so that a line it crossed unseen is crossed by one track.
// Association itself never sees remembered tracks.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "smartcity/assignment.hpp"
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
  float duplicate_iou = 0.4f;             // no new track on a box overlapping a track updated this frame
                                          // by this IoU or more (a second box on one object); 1: off
  int32_t crowd_class = 0;                // ... except a box of this class on a track of it (people stand
                                          // behind each other in a crowd; 0: the appliance's person, -1: none)
  bool fuse_score = true;                 // cost = 1 - IoU * score in stages 2 and 4
  int trajectory_length = 30;             // centre points kept per track
  double speed_window_s = 1.0;            // ground speed: displacement over this long ...
  double speed_long_window_s = 3.0;       // ... or this long while the motion is steady (0: off)
  double speed_curvature_z = 5.0;         // steady: no axis's fitted acceleration beyond z std errors
  // How speed_kmh is estimated (docs/tracking.md, "Ground position and speed"):
  //   kKalman: a constant-velocity Kalman filter on the ground plane per track, each point weighted
  //            by how many metres a pixel of its box is there (the homography's Jacobian), the
  //            speed's noise taken out of its length;
  //   kLine:   the least-squares line through speed_window_s (or speed_long_window_s) of points.
  enum class SpeedFilter : int8_t { kKalman = 0, kLine = 1 };
  SpeedFilter speed_filter = SpeedFilter::kKalman;
  double speed_accel = 3.0;        // kKalman: white acceleration noise, m^2/s^3 (lag vs noise)
  double speed_noise_px = 1.5;     // kKalman: box bottom jitter, pixels, ...
  double speed_noise_frac = 0.08;  // ... plus this fraction of the box's height (width across)
  // The model's box-bottom bias (its card's box_bias, docs/detection.md): how far the detector's
  // box bottom lies below where the object meets the ground, in the model's input pixels
  // (negative: above), by box height in those pixels; linear between the knots (heights strictly
  // increasing), flat beyond them. Taken off the box bottom before its ground position is
  // computed, for the classes whose bit is set in bottom_bias_classes (bit c: class id c). Empty:
  // no correction. bottom_bias_scale: frame pixels per input pixel (the Pipeline sets it from the
  // camera's letterbox when it makes the camera's tracker).
  std::vector<float> bottom_bias_h;
  std::vector<float> bottom_bias_px;
  uint32_t bottom_bias_classes = 0;
  double bottom_bias_scale = 1.0;
  // Id recovery (see the top of this file); recover_s 0: off.
  double recover_s = 2.0;            // seconds after a track's last match its id can be taken again
  double recover_gate_m = 1.5;       // ground gate, metres (across the motion; along: plus 1/4 travelled)
  double recover_min_s = 0.5;        // the old track's matches, in seconds of frames, at least
  uint32_t recover_classes = 0x3Eu;  // bit c: class id c (default the vehicles 1..5)

  void Validate() const;  // throws std::invalid_argument naming the bad field
};

// "kalman" or "line"; anything else throws std::invalid_argument naming speed_filter.
TrackerConfig::SpeedFilter ParseSpeedFilter(const std::string& name);
const char* SpeedFilterName(TrackerConfig::SpeedFilter f);

struct TrajectoryPoint {
  double t;  // seconds: the timestamp given to Update, or frame index / frame_rate
  float cx;  // box centre in frame pixels
  float cy;
  float gx;  // ground position in metres of the box's bottom centre (NaN: no calibration)
  float gy;
};

// The newest points of a track, oldest first: a ring of fixed capacity (no allocation once full).
class TrajectoryRing {
 public:
  explicit TrajectoryRing(size_t capacity = 1) : capacity_(capacity < 1 ? 1 : capacity) {}
  void push_back(const TrajectoryPoint& p) {
    if (points_.size() < capacity_) {
      points_.push_back(p);
      return;
    }
    points_[head_] = p;
    head_ = head_ + 1 == capacity_ ? 0 : head_ + 1;
  }
  size_t size() const { return points_.size(); }
  bool empty() const { return points_.empty(); }
  size_t capacity() const { return capacity_; }
  void reserve(size_t n) { points_.reserve(n < capacity_ ? n : capacity_); }
  // 0: the oldest point.
  const TrajectoryPoint& operator[](size_t i) const {
    const size_t k = head_ + i;
    return points_[k < points_.size() ? k : k - points_.size()];
  }
  const TrajectoryPoint& back() const { return (*this)[points_.size() - 1]; }
  // The newest `last` points (all by default), oldest first.
  std::vector<TrajectoryPoint> ToVector(size_t last = static_cast<size_t>(-1)) const {
    std::vector<TrajectoryPoint> out(points_.begin() + head_, points_.end());
    out.insert(out.end(), points_.begin(), points_.begin() + head_);
    if (out.size() > last) out.erase(out.begin(), out.end() - static_cast<std::ptrdiff_t>(last));
    return out;
  }

 private:
  std::vector<TrajectoryPoint> points_;
  size_t head_ = 0;  // the oldest point once full
  size_t capacity_;
};

// A track's ground-plane constant-velocity Kalman filter (TrackerConfig::SpeedFilter::kKalman).
// State (x, y, vx, vy) in metres and m/s; P its covariance. Started from the first two ground
// points (velocity = their difference, no prior), so that it holds no bias toward standing.
struct GroundFilter {
  int points = 0;     // ground points taken: 0, 1 (z0 only), 2 or more (x, P valid)
  double t0 = 0;      // time of the first point
  double t_last = 0;  // time of the last point taken
  double x[4] = {0, 0, 0, 0};
  double P[4][4] = {};
  double r0[3] = {0, 0, 0};  // the first point's measurement covariance (xx, xy, yy)
};

struct Track {
  int64_t id = -1;  // -1 while tentative
  TrackState state = TrackState::kTentative;
  KalmanState kalman;
  std::array<float, 4> box{};  // Xyxy() of the current Kalman state, kept by the tracker
  float score = 0.f;           // of the last matched detection
  int32_t class_id = -1;
  std::vector<std::pair<int32_t, int32_t>> class_votes;  // (class id, detections)
  int64_t start_frame = 0;
  int64_t last_frame = 0;  // last frame matched
  int64_t hits = 0;        // detections matched over the track's life
  TrajectoryRing trajectory;
  GroundFilter ground;

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
  std::vector<float> speed_kmh;  // ground speed (TrackerConfig::speed_filter); NaN when unknown
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
  // A detection taking part in this frame's association.
  struct Candidate {
    std::array<float, 4> box;
    float score;
    int32_t class_id;
  };
  // Columns of an association sorted by x1 (struct of arrays), with the running maximum of x2:
  // the columns that can overlap a given box lie in a range that starts at a binary search and
  // ends at the first x1 past the box, and a branch-free pass over that range keeps those whose
  // box intersects it (most boxes do not).
  struct OverlapIndex {
    std::vector<uint64_t> keys;                 // x1 and column, for the sort
    std::vector<float> x1, y1, x2, y2, max_x2;  // in sorted order; max_x2[k] = max x2 over 0..k
    std::vector<int> col;
    std::vector<int> hits;
    void Build(const std::vector<std::array<float, 4>>& boxes);
    // Fills `hits` with the columns (ascending) whose box may intersect `a`: every column with
    // IoU > 0 is among them. Returns their number.
    size_t Candidates(const std::array<float, 4>& a);
  };

  const TrackerConfig config_;
  const int max_frames_lost_;
  const float new_track_thresh_;
  const size_t ring_capacity_;  // trajectory points kept: trajectory_length, or enough for the speed
  const KalmanBoxFilter kf_;
  std::vector<Track> tracked_;  // tentative and confirmed
  std::vector<Track> lost_;
  std::vector<Track> gone_;  // removed from lost_, remembered for id recovery (recover_s)
  int64_t frame_ = 0;
  int64_t next_id_ = 1;
  bool calibrated_ = false;
  std::array<double, 9> h_{};  // image -> ground

  // Scratch of Update, kept so that a frame allocates (almost) nothing once they have grown.
  std::vector<Candidate> high_, low_;
  std::vector<Track*> pool_, tentative_, remaining_, confirmed_now_;
  std::vector<const Candidate*> high_ptr_, high_left_, low_ptr_;
  std::vector<std::array<float, 4>> col_boxes_;
  OverlapIndex index_;
  std::vector<AssignmentEdge> edges_;
  AssignmentWorkspace workspace_;
  Assignment a1_, a2_, a3_;
  std::vector<Track> next_lost_;
  std::vector<char> drop_tracked_, drop_lost_;

  // Optimal assignment of `tracks` (rows) to `dets` (columns) on 1 - IoU (times the detection
  // score when fuse), pairs at or above `limit` never matched.
  void Match(const std::vector<Track*>& tracks, const std::vector<const Candidate*>& dets, bool fuse, double limit,
             Assignment& out);
  // The image row where the box's object meets the ground: its bottom less the model's bias.
  double GroundRow(const std::array<float, 4>& box, int32_t class_id) const;
  // The box's point at `t`; its ground position is taken at (centre x, ground_row).
  TrajectoryPoint Point(double t, const std::array<float, 4>& box, double ground_row) const;
  void ResetGroundFilters();
  // Appends the point of `box` at `t` to the track's trajectory and feeds its ground filter.
  void AddPoint(Track& tr, double t, const std::array<float, 4>& box, const std::array<float, 4>* det = nullptr) const;
  void FilterGround(GroundFilter& f, const TrajectoryPoint& p, const std::array<float, 4>& box,
                    double ground_row) const;
  float SpeedKmh(const Track& tr) const;
  // Whether a track leaving the lost list is remembered for id recovery.
  bool Recoverable(const Track& tr) const;
  // A lost track left unmatched this frame, or a remembered one, that `fresh` (being confirmed
  // at `t`) continues: its id, votes and age go to `fresh` and it is removed. Returns the id,
  // or -1 when none fits.
  int64_t Recover(Track& fresh, double t);
  // How far `cand` (its newest point, at `t`) lies from where `old` would be by then, as a
  // fraction of the gate (<= 1: inside); infinity where the boxes cannot be the same vehicle.
  double RecoverScore(const Track& old, const Track& cand, double t) const;
  float LineSpeedKmh(const Track& tr) const;
  float FilterSpeedKmh(const Track& tr) const;
};

}  // namespace smartcity
