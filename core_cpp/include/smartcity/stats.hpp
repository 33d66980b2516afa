// Per-stream counters, written by the stream's thread without locks and read by anyone.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace smartcity {

enum class StreamState : int { kConnecting = 0, kRunning = 1, kBackoff = 2, kStopped = 3, kFailed = 4 };

const char* StateName(StreamState s);

// Lock-free latency histogram with logarithmic buckets (8 per octave) from 1 us to ~70 s.
// Quantiles are accurate to about 9 %.
class LatencyHistogram {
 public:
  static constexpr int kBuckets = 8 * 26;
  void Record(double seconds);
  // q in [0,1]; returns seconds (0 when empty).
  double Quantile(double q) const;
  uint64_t Count() const;
  void Reset();

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
};

struct StreamStatsSnapshot {
  std::string camera_id;
  std::string url;  // credentials removed
  StreamState state = StreamState::kConnecting;
  std::string last_error;
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t frames_decoded = 0;
  uint64_t frames_sampled = 0;
  uint64_t frames_skipped = 0;  // decoded, not sampled (never colour-converted)
  uint64_t frames_dropped = 0;  // sampled, but no free batch slot (back-pressure)
  uint64_t corrupt_packets = 0;
  uint64_t reconnects = 0;
  uint64_t loops = 0;
  double last_frame_age_s = -1;  // -1: no frame yet
  double decode_p50_ms = 0;
  double decode_p99_ms = 0;
  double convert_p50_ms = 0;
  double source_fps = 0;
  int width = 0;
  int height = 0;
  std::string codec;
  std::string decoder;       // cpu | nvdec
  std::string hwaccel_note;  // why the GPU is not decoding, when hwaccel asked for it
  double uptime_s = 0;
};

// Hot-path counters. Only the stream thread writes the counters; readers use relaxed loads.
struct StreamCounters {
  std::atomic<int> state{static_cast<int>(StreamState::kConnecting)};
  std::atomic<uint64_t> packets{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> frames_decoded{0};
  std::atomic<uint64_t> frames_sampled{0};
  std::atomic<uint64_t> frames_skipped{0};
  std::atomic<uint64_t> frames_dropped{0};
  std::atomic<uint64_t> corrupt_packets{0};
  std::atomic<uint64_t> reconnects{0};
  std::atomic<uint64_t> loops{0};
  std::atomic<int64_t> last_frame_ns{0};  // steady clock, 0 = never
  LatencyHistogram decode_time;
  LatencyHistogram convert_time;

  void Add(std::atomic<uint64_t>& c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

// The last error is rare: a mutex is fine here.
class ErrorSlot {
 public:
  void Set(std::string msg) {
    std::lock_guard<std::mutex> lock(mu_);
    msg_ = std::move(msg);
  }
  std::string Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return msg_;
  }

 private:
  mutable std::mutex mu_;
  std::string msg_;
};

int64_t SteadyNowNs();
int64_t WallNowNs();

}  // namespace smartcity
