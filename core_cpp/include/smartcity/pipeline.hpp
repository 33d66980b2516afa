// Pipeline: owns the streams and the batcher. Streams can be added and removed while it runs.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "smartcity/batch.hpp"
#include "smartcity/stream.hpp"

namespace smartcity {

struct PipelineConfig {
  TensorLayout layout;
  int max_batch = 8;  // slots per batch buffer
  int buffers = 3;    // batch buffers in the pool
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
  bool LatestFrameBgr(const std::string& camera_id, std::vector<uint8_t>* bgr, int* width, int* height,
                      int64_t* frame_number) const;

  // Blocks up to max_wait_ms; nullptr on time-out or after Close().
  std::shared_ptr<BatchLease> NextBatch(int max_batch, int max_wait_ms);

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
};

}  // namespace smartcity
