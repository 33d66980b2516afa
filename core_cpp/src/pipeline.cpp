#include "smartcity/pipeline.hpp"

namespace smartcity {

Pipeline::Pipeline(PipelineConfig config)
    : config_(config),
      batcher_(std::make_shared<Batcher>(config.layout, config.max_batch, config.buffers, config.device)) {}

Pipeline::~Pipeline() { Close(); }

void Pipeline::AddStream(const StreamConfig& config) {
  config.Validate();
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) throw std::runtime_error("the pipeline is closed");
  if (streams_.count(config.camera_id)) {
    throw std::invalid_argument("camera_id '" + config.camera_id + "' is already in the pipeline");
  }
  auto stream = std::make_shared<Stream>(config, batcher_);
  stream->Start();
  streams_.emplace(config.camera_id, std::move(stream));
}

bool Pipeline::RemoveStream(const std::string& camera_id) {
  std::shared_ptr<Stream> stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = streams_.find(camera_id);
    if (it == streams_.end()) return false;
    stream = std::move(it->second);
    streams_.erase(it);
  }
  {
    std::lock_guard<std::mutex> lock(tracking_mu_);
    trackers_.erase(camera_id);
    calibrations_.erase(camera_id);
  }
  stream->RequestStop();
  stream->Join();
  return true;
}

std::vector<std::string> Pipeline::CameraIds() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> ids;
  for (const auto& kv : streams_) ids.push_back(kv.first);
  return ids;
}

std::shared_ptr<Stream> Pipeline::Find(const std::string& camera_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = streams_.find(camera_id);
  if (it == streams_.end()) throw UnknownCamera(camera_id);
  return it->second;
}

std::vector<StreamStatsSnapshot> Pipeline::Stats() const {
  std::vector<std::shared_ptr<Stream>> streams;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& kv : streams_) streams.push_back(kv.second);
  }
  std::vector<StreamStatsSnapshot> out;
  out.reserve(streams.size());
  for (const auto& s : streams) out.push_back(s->Stats());
  return out;
}

StreamStatsSnapshot Pipeline::StreamStats(const std::string& camera_id) const { return Find(camera_id)->Stats(); }

RingInfo Pipeline::PacketRing(const std::string& camera_id) const { return Find(camera_id)->Ring(); }

ClipInfo Pipeline::WriteClip(const std::string& camera_id, double t0, double t1, const std::string& path) const {
  const std::shared_ptr<Stream> stream = Find(camera_id);  // keeps the ring alive while writing
  return smartcity::WriteClip(stream->ring(), t0, t1, path);
}

bool Pipeline::LatestFrameBgr(const std::string& camera_id, std::vector<uint8_t>* bgr, int* width, int* height,
                              int64_t* frame_number, double* pts_s, int64_t* capture_ns) const {
  return Find(camera_id)->LatestFrameBgr(bgr, width, height, frame_number, pts_s, capture_ns);
}

std::shared_ptr<BatchLease> Pipeline::NextBatch(int max_batch, int max_wait_ms) {
  return batcher_->Next(max_batch, max_wait_ms);
}

void Pipeline::SetTrackerConfig(const TrackerConfig& config) {
  config.Validate();
  std::lock_guard<std::mutex> lock(tracking_mu_);
  tracker_config_ = config;
}

void Pipeline::SetCalibration(const std::string& camera_id, const std::array<double, 9>& image_to_ground) {
  Find(camera_id);    // throws UnknownCamera
  ByteTracker check;  // validates the matrix before anything is stored
  check.SetCalibration(image_to_ground);
  std::lock_guard<std::mutex> lock(tracking_mu_);
  calibrations_[camera_id] = image_to_ground;
  auto it = trackers_.find(camera_id);
  if (it != trackers_.end()) it->second->SetCalibration(image_to_ground);
}

std::vector<Tracks> Pipeline::Track(const BatchLease& lease, const std::vector<const Detections*>& dets) {
  if (static_cast<int>(dets.size()) != lease.size()) {
    throw std::invalid_argument("detections: " + std::to_string(dets.size()) + " entries for a batch of " +
                                std::to_string(lease.size()) + " slots");
  }
  std::vector<Tracks> out(dets.size());
  std::lock_guard<std::mutex> lock(tracking_mu_);
  for (size_t i = 0; i < dets.size(); ++i) {
    const SlotMeta& slot = lease.meta()[i];
    auto it = trackers_.find(slot.camera_id);
    if (it == trackers_.end()) {
      std::shared_ptr<Stream> stream;
      {
        std::lock_guard<std::mutex> streams_lock(mu_);
        auto s = streams_.find(slot.camera_id);
        if (s != streams_.end()) stream = s->second;
      }
      if (!stream) continue;  // removed since the batch was taken
      TrackerConfig c = tracker_config_;
      const double analyze = stream->config().analyze_fps;
      const double source = stream->Stats().source_fps;
      c.frame_rate = analyze > 0 ? analyze : (source > 0 ? source : c.frame_rate);
      // The model's box-bottom bias is in its input pixels: this camera's frame pixels per one.
      if (slot.geometry.scale_y > 0) c.bottom_bias_scale = 1.0 / slot.geometry.scale_y;
      auto tracker = std::make_unique<ByteTracker>(c);
      auto cal = calibrations_.find(slot.camera_id);
      if (cal != calibrations_.end()) tracker->SetCalibration(cal->second);
      it = trackers_.emplace(slot.camera_id, std::move(tracker)).first;
    }
    if (!dets[i]) continue;
    out[i] = it->second->Update(*dets[i], slot.pts_s);
  }
  return out;
}

void Pipeline::Close() {
  std::map<std::string, std::shared_ptr<Stream>> streams;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    streams.swap(streams_);
  }
  for (auto& kv : streams) kv.second->RequestStop();
  batcher_->Close();
  for (auto& kv : streams) kv.second->Join();
}

bool Pipeline::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

}  // namespace smartcity
