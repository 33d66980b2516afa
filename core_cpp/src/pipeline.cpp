#include "smartcity/pipeline.hpp"

namespace smartcity {

Pipeline::Pipeline(PipelineConfig config)
    : config_(config), batcher_(std::make_shared<Batcher>(config.layout, config.max_batch, config.buffers)) {}

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

bool Pipeline::LatestFrameBgr(const std::string& camera_id, std::vector<uint8_t>* bgr, int* width, int* height,
                              int64_t* frame_number) const {
  return Find(camera_id)->LatestFrameBgr(bgr, width, height, frame_number);
}

std::shared_ptr<BatchLease> Pipeline::NextBatch(int max_batch, int max_wait_ms) {
  return batcher_->Next(max_batch, max_wait_ms);
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
