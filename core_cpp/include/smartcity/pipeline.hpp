// Pipeline: owns the streams and the batcher. Streams can be added and removed while it runs.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "smartcity/batch.hpp"
#include "smartcity/detections.hpp"
#include "smartcity/recorder.hpp"
#include "smartcity/stream.hpp"
#include "smartcity/tracker.hpp"

namespace smartcity {

struct PipelineConfig {
  TensorLayout layout;
  int max_batch = 8;  // slots per batch buffer
  int buffers = 3;    // batch buffers in the pool
  int device = -1;    // >= 0: device batches on this CUDA device (batch.hpp)
};

class UnknownCamera : public std::out_of_range {
 public:
  explicit UnknownCamera(const std::string& id) : std::out_of_range("no stream with camera_id '" + id + "'") {}
};

class Pipeline {
 public:
  explicit Pipeline(PipelineConfig config);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  const PipelineConfig& config() const { return config_; }

  // Throws std::invalid_argument for a bad config or a camera_id already present.
  void AddStream(const StreamConfig& config);
  // Stops the stream's thread and forgets it; false when there was no such stream.
  bool RemoveStream(const std::string& camera_id);
  std::vector<std::string> CameraIds() const;

  std::vector<StreamStatsSnapshot> Stats() const;
  StreamStatsSnapshot StreamStats(const std::string& camera_id) const;
  RingInfo PacketRing(const std::string& camera_id) const;
  // An evidence clip of a camera's packet ring (recorder.hpp: stream time, errors). Throws
  // UnknownCamera as well.
  ClipInfo WriteClip(const std::string& camera_id, double t0, double t1, const std::string& path) const;
  bool LatestFrameBgr(const std::string& camera_id, std::vector<uint8_t>* bgr, int* width, int* height,
                      int64_t* frame_number, double* pts_s = nullptr, int64_t* capture_ns = nullptr) const;

  // Blocks up to max_wait_ms; nullptr on time-out or after Close().
  std::shared_ptr<BatchLease> NextBatch(int max_batch, int max_wait_ms);

  // Tracking: one ByteTracker per camera, made on the camera's first Track call with this
  // config (frame_rate replaced by the stream's analysis rate: analyze_fps, or the source rate
  // when every frame is analysed). Changing it affects trackers made afterwards.
  void SetTrackerConfig(const TrackerConfig& config);
  // Image -> ground homography of a camera (row-major), for ground positions and speeds.
  // Throws UnknownCamera, or std::invalid_argument for a singular matrix.
  void SetCalibration(const std::string& camera_id, const std::array<double, 9>& image_to_ground);
  // Tracks of every slot of a batch: dets[i] are the detections of slot i (frame pixels). The
  // trackers are updated in slot order with the slots' timestamps. Slots of cameras removed
  // meanwhile get empty Tracks. Throws std::invalid_argument if dets.size() != lease.size().
  std::vector<Tracks> Track(const BatchLease& lease, const std::vector<const Detections*>& dets);

  // Stops every stream; NextBatch returns nullptr from then on.
  void Close();
  bool closed() const;

 private:
  std::shared_ptr<Stream> Find(const std::string& camera_id) const;

  const PipelineConfig config_;
  std::shared_ptr<Batcher> batcher_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Stream>> streams_;
  bool closed_ = false;

  std::mutex tracking_mu_;  // the trackers, their config and the calibrations
  TrackerConfig tracker_config_;
  std::map<std::string, std::unique_ptr<ByteTracker>> trackers_;
  std::map<std::string, std::array<double, 9>> calibrations_;
};

}  // namespace smartcity
