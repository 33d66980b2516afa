// The core's bus publisher: tracks.<camera> and health.<camera> messages (docs/events.md).
//
// Sends never block the video path: the socket is an XPUB with ZMQ_XPUB_NODROP connected to the
// broker's XSUB endpoint, so a full queue towards the broker makes a ZMQ_DONTWAIT send fail with
// EAGAIN, and the message is counted in dropped() instead of being lost silently. Every message
// takes the next sequence number of its topic, dropped or not, so subscribers see the drop as a
// gap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "smartcity/stats.hpp"
#include "smartcity/tracker.hpp"

namespace smartcity {

// Schema version written into every payload's "v" field.
inline constexpr int kBusSchemaVersion = 1;

// Mirrors smartcity/bus/defaults.py (the one place for bus defaults); a unit test checks that
// the two agree.
struct PublisherOptions {
  int sndhwm = 10000;   // messages queued towards the broker before sends fail (and count a drop)
  int linger_ms = 200;  // how long close() may wait to flush queued messages
};

// Struct-of-arrays view of the tracks of one frame; the arrays hold n entries (xyxy: n * 4,
// ground_xy: n * 2). ground_xy and speed_kmh may be null: their columns are then NaN.
struct TracksView {
  size_t n = 0;
  const int64_t* track_id = nullptr;
  const float* xyxy = nullptr;
  const float* score = nullptr;
  const int32_t* class_id = nullptr;
  const float* ground_xy = nullptr;  // metres, NaN without a calibration
  const float* speed_kmh = nullptr;  // NaN when unknown
};

// Values in one row of a tracks message: id, cls, score, x1, y1, x2, y2, gx, gy, kmh.
inline constexpr int kTrackColumns = 10;

TracksView ViewOf(const Tracks& tracks);

// Per-frame metadata of a tracks message.
struct FrameInfo {
  uint64_t frame = 0;  // frame number in the stream
  double pts = 0;      // presentation time, seconds
  int64_t t_ns = 0;    // capture wall-clock time, ns since the Unix epoch
  int width = 0;       // frame size in pixels (boxes are in these pixels)
  int height = 0;
};

// Health fields beyond the stream stats.
struct HealthExtras {
  double infer_ms = 0;  // inference time per batch, p50
  double track_ms = 0;  // tracking time per frame, p50
  int64_t t_ns = 0;     // wall-clock time of the sample, ns since the Unix epoch (0: now)
};

// Encoders, exposed for tests and tools. Layouts are documented in docs/events.md.
std::string EncodeTracks(const std::string& camera, uint64_t seq, const FrameInfo& info, const TracksView& tracks);
std::string EncodeHealth(const std::string& camera, uint64_t seq, const StreamStatsSnapshot& stats,
                         const HealthExtras& extras, uint64_t bus_sent, uint64_t bus_dropped);

class Publisher {
 public:
  // Connects to the broker's XSUB endpoint (e.g. ipc:///run/smartcity/bus-in). Throws
  // std::invalid_argument for a malformed endpoint, std::runtime_error for other zmq errors.
  explicit Publisher(const std::string& endpoint, const PublisherOptions& options = PublisherOptions());
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // Each returns true when the message was queued, false when it was dropped (queue full).
  // Never blocks. Throws std::logic_error after Close().
  bool PublishTracks(const std::string& camera, const FrameInfo& info, const TracksView& tracks);
  bool PublishHealth(const std::string& camera, const StreamStatsSnapshot& stats, const HealthExtras& extras);
  // Any topic and an already encoded payload (tests, tools).
  bool PublishRaw(const std::string& topic, const std::string& payload);

  // Next sequence number of a topic (0 for a topic never published).
  uint64_t NextSeq(const std::string& topic) const;
  uint64_t sent() const;
  uint64_t dropped() const;
  const std::string& endpoint() const { return endpoint_; }
  const PublisherOptions& options() const { return options_; }
  bool closed() const;
  void Close();

 private:
  struct Impl;
  bool SendLocked(const std::string& topic, const std::string& payload);
  uint64_t TakeSeqLocked(const std::string& topic);

  const std::string endpoint_;
  const PublisherOptions options_;
  mutable std::mutex mutex_;
  std::unique_ptr<Impl> impl_;
  std::map<std::string, uint64_t> next_seq_;
  uint64_t sent_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace smartcity
