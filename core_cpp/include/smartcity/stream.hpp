// One camera: a thread that opens the URL, reads packets, decodes, samples and writes sampled
// frames into the batcher. It keeps going across faults (reconnect with backoff) and reports
// what it does through lock-free counters.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "smartcity/batch.hpp"
#include "smartcity/frame.hpp"
#include "smartcity/hwdecode.hpp"
#include "smartcity/packet_ring.hpp"
#include "smartcity/stats.hpp"

struct AVFrame;

namespace smartcity {

struct StreamConfig {
  std::string camera_id;
  std::string url;                     // file path, file://, rtsp://, rtsps://, http(s)://
  std::string rtsp_transport = "tcp";  // tcp | udp
  bool loop = false;                   // files: start again at EOF (demos)
  bool realtime = false;               // files: pace reading at the clip's own frame rate
  double analyze_fps = 0;              // frames per second sampled for analysis; 0 = every frame
  bool decode_only = false;            // decode but sample nothing (benchmarks)
  bool block_when_busy = false;        // wait for a batch slot instead of dropping (offline files)
  double open_timeout_s = 10;
  double stall_timeout_s = 10;  // no packet for this long: reconnect
  double backoff_initial_s = 1;
  double backoff_max_s = 30;
  double pre_event_s = 10;       // seconds of packets kept for evidence; 0 = none
  int decoder_threads = 1;       // 0 = FFmpeg's choice
  std::string hwaccel = "none";  // none | auto | cuda: decode on the GPU (smartcity/hwdecode.hpp)
  int hw_device = 0;             // CUDA device index for hwaccel

  void Validate() const;  // throws std::invalid_argument naming the bad field
};

// Removes user:password@ from a URL for display.
std::string RedactUrl(const std::string& url);
bool IsNetworkUrl(const std::string& url);

class Stream {
 public:
  Stream(StreamConfig config, std::shared_ptr<Batcher> batcher);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  void Start();
  void RequestStop();  // returns at once
  void Join();         // waits for the thread

  const StreamConfig& config() const { return config_; }
  StreamStatsSnapshot Stats() const;
  RingInfo Ring() const { return ring_.Info(); }
  const PacketRing& ring() const { return ring_; }
  // Latest sampled frame as BGR uint8 (height x width x 3). False when there is none yet.
  // pts_s (stream time, as Batch.pts) and capture_ns (wall clock when it left the decoder, as
  // Batch.capture_ns) are filled when given.
  bool LatestFrameBgr(std::vector<uint8_t>* bgr, int* width, int* height, int64_t* frame_number,
                      double* pts_s = nullptr, int64_t* capture_ns = nullptr) const;

  // Used by FFmpeg's interrupt callback.
  int Interrupt();

 private:
  enum class End { kStopped, kEof, kRetry, kFatal };
  struct Session;

  void Run();
  End RunSession(Session& s);
  End Fail(End kind, const std::string& message);
  void HandleFrame(Session& s, AVFrame* frame);
  void ToSlot(AVFrame* frame, const SlotTicket& ticket, SlotMeta* meta);
  void SetDecoder(const char* decoder, const std::string& note);
  bool ShouldSample(double t);
  bool SleepFor(double seconds);  // false when stopped meanwhile
  void SetState(StreamState st) { counters_.state.store(static_cast<int>(st), std::memory_order_relaxed); }

  const StreamConfig config_;
  HwAccel hwaccel_ = HwAccel::kNone;  // config_.hwaccel, parsed once
  const std::string display_url_;
  std::shared_ptr<Batcher> batcher_;
  std::unique_ptr<FrameConverter> converter_;
  std::unique_ptr<CudaSlotConverter> cuda_converter_;  // made at the first GPU frame
  AVFrame* host_frame_ = nullptr;                      // scratch: GPU frames the kernel does not take
  PacketRing ring_;
  StreamCounters counters_;
  ErrorSlot last_error_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;

  // Interrupt callback state (written and read on the stream thread only).
  int64_t io_deadline_ns_ = 0;
  bool timed_out_ = false;

  // Sampling and numbering, stream thread only.
  double next_sample_t_ = -1;
  int64_t frame_number_ = 0;
  const int64_t started_ns_;

  // Description of the current session, read by Stats().
  mutable std::mutex info_mu_;
  std::string codec_;
  int width_ = 0;
  int height_ = 0;
  double source_fps_ = 0;
  std::string decoder_ = "cpu";  // cpu | nvdec: where the last frame was decoded
  std::string hwaccel_note_;     // why the GPU is not decoding, when hwaccel asked for it

  // Latest sampled frame (a reference, converted to BGR on request).
  mutable std::mutex latest_mu_;
  AVFrame* latest_ = nullptr;
  int64_t latest_number_ = -1;
  double latest_pts_s_ = 0;
  int64_t latest_capture_ns_ = 0;
  mutable std::mutex bgr_mu_;  // guards bgr_converter_ (snapshots may come from several threads)
  mutable std::unique_ptr<FrameConverter> bgr_converter_;
};

}  // namespace smartcity
