#include "smartcity/stream.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/error.h>
}

#include "av_error.hpp"
#include "smartcity/frame.hpp"

namespace smartcity {

namespace {

bool StartsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool ValidCameraId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

double SecondsSince(int64_t t_ns) { return (SteadyNowNs() - t_ns) / 1e9; }

int InterruptCallback(void* opaque) { return static_cast<Stream*>(opaque)->Interrupt(); }

}  // namespace

bool IsNetworkUrl(const std::string& url) {
  return StartsWith(url, "rtsp://") || StartsWith(url, "rtsps://") || StartsWith(url, "http://") ||
         StartsWith(url, "https://") || StartsWith(url, "rtmp://") || StartsWith(url, "udp://") ||
         StartsWith(url, "tcp://") || StartsWith(url, "srt://");
}

std::string RedactUrl(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const size_t host_start = scheme + 3;
  const size_t path = url.find('/', host_start);
  const size_t at = url.rfind('@', path == std::string::npos ? url.size() : path);
  if (at == std::string::npos || at < host_start) return url;
  return url.substr(0, host_start) + "***@" + url.substr(at + 1);
}

void StreamConfig::Validate() const {
  auto bad = [](const std::string& msg) { throw std::invalid_argument(msg); };
  if (!ValidCameraId(camera_id)) {
    bad("camera_id must be 1..64 characters of letters, digits, '_', '-' or '.', got '" + camera_id + "'");
  }
  if (url.empty()) bad("url must not be empty (camera " + camera_id + ")");
  if (url.size() > 4096) bad("url is longer than 4096 characters (camera " + camera_id + ")");
  if (url.find('\n') != std::string::npos || url.find('\r') != std::string::npos ||
      url.find('\0') != std::string::npos) {
    bad("url must not contain control characters (camera " + camera_id + ")");
  }
  if (rtsp_transport != "tcp" && rtsp_transport != "udp")
    bad("rtsp_transport must be 'tcp' or 'udp', got '" + rtsp_transport + "'");
  auto positive = [&](double v, const char* name, double max) {
    if (!std::isfinite(v) || v <= 0 || v > max) {
      bad(std::string(name) + " must be > 0 and <= " + std::to_string(static_cast<int>(max)) + ", got " +
          std::to_string(v));
    }
  };
  if (!std::isfinite(analyze_fps) || analyze_fps < 0 || analyze_fps > 1000) {
    bad("analyze_fps must be in 0..1000 (0 = every frame), got " + std::to_string(analyze_fps));
  }
  positive(open_timeout_s, "open_timeout_s", 3600);
  positive(stall_timeout_s, "stall_timeout_s", 3600);
  positive(backoff_initial_s, "backoff_initial_s", 3600);
  positive(backoff_max_s, "backoff_max_s", 3600);
  if (backoff_initial_s > backoff_max_s) bad("backoff_initial_s must not exceed backoff_max_s");
  if (!std::isfinite(pre_event_s) || pre_event_s < 0 || pre_event_s > 600)
    bad("pre_event_s must be in 0..600, got " + std::to_string(pre_event_s));
  if (decoder_threads < 0 || decoder_threads > 64)
    bad("decoder_threads must be in 0..64, got " + std::to_string(decoder_threads));
  ParseHwAccel(hwaccel);
  if (hw_device < 0 || hw_device > 63) bad("hw_device must be in 0..63, got " + std::to_string(hw_device));
}

// Everything one connection owns; freed when the session ends.
struct Stream::Session {
  AVFormatContext* fmt = nullptr;
  AVCodecContext* dec = nullptr;
  AVPacket* pkt = nullptr;
  AVFrame* frame = nullptr;
  AVBufferRef* hw_device = nullptr;  // the CUDA device when decoding on the GPU
  bool hw_refused = false;           // set by the get_format callback when the GPU refused the stream
  int video_index = -1;
  double time_base = 0;
  bool is_file = true;
  bool got_frame = false;
  // File looping and pacing.
  double loop_offset = 0;
  double first_t = NAN;  // first timestamp of the file
  double max_t = NAN;    // largest timestamp seen in this pass
  double frame_duration = 0.1;
  int64_t pace_origin_ns = 0;
  double pace_origin_t = 0;

  ~Session() {
    av_frame_free(&frame);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    av_buffer_unref(&hw_device);
    avformat_close_input(&fmt);
  }
};

Stream::Stream(StreamConfig config, std::shared_ptr<Batcher> batcher)
    : config_(std::move(config)),
      display_url_(RedactUrl(config_.url)),
      batcher_(std::move(batcher)),
      ring_(config_.pre_event_s),
      started_ns_(SteadyNowNs()) {
  config_.Validate();
  hwaccel_ = ParseHwAccel(config_.hwaccel);
  if (batcher_) converter_ = std::make_unique<FrameConverter>(batcher_->layout());
}

Stream::~Stream() {
  RequestStop();
  Join();
  av_frame_free(&latest_);
  av_frame_free(&host_frame_);
}

void Stream::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Stream::RequestStop() {
  stop_.store(true);
  {
    std::lock_guard<std::mutex> lock(sleep_mu_);
    sleep_cv_.notify_all();
  }
  if (batcher_) batcher_->WakeProducers();
}

void Stream::Join() {
  if (thread_.joinable()) thread_.join();
}

int Stream::Interrupt() {
  if (stop_.load(std::memory_order_relaxed)) return 1;
  if (io_deadline_ns_ > 0 && SteadyNowNs() > io_deadline_ns_) {
    timed_out_ = true;
    return 1;
  }
  return 0;
}

bool Stream::SleepFor(double seconds) {
  std::unique_lock<std::mutex> lock(sleep_mu_);
  return !sleep_cv_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return stop_.load(); });
}

Stream::End Stream::Fail(End kind, const std::string& message) {
  last_error_.Set(message);
  return kind;
}

void Stream::Run() {
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  double backoff = config_.backoff_initial_s;
  while (!stop_.load()) {
    SetState(StreamState::kConnecting);
    End end;
    bool got_frame = false;
    {
      Session session;
      end = RunSession(session);
      got_frame = session.got_frame;
    }
    if (stop_.load() || end == End::kStopped) break;
    if (end == End::kFatal) {
      SetState(StreamState::kFailed);
      return;  // the thread ends; the error stays in the stats
    }
    if (end == End::kEof) {
      SetState(StreamState::kStopped);
      return;
    }
    // A session that delivered frames was healthy: start the backoff from the beginning.
    if (got_frame) backoff = config_.backoff_initial_s;
    SetState(StreamState::kBackoff);
    if (!SleepFor(backoff * jitter(rng))) break;
    backoff = std::min(backoff * 2, config_.backoff_max_s);
    counters_.Add(counters_.reconnects);
  }
  SetState(StreamState::kStopped);
}

Stream::End Stream::RunSession(Session& s) {
  const std::string& url = config_.url;
  s.is_file = !IsNetworkUrl(url);
  timed_out_ = false;

  // Resolve the host first: a name that does not resolve is a configuration error, not an outage.
  if (!s.is_file) {
    char proto[16], auth[256], host[256], path[8];
    int port = -1;
    av_url_split(proto, sizeof(proto), auth, sizeof(auth), host, sizeof(host), &port, path, sizeof(path), url.c_str());
    if (host[0] == '\0') return Fail(End::kFatal, "URL has no host: " + display_url_);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = getaddrinfo(host, nullptr, &hints, &res);
    if (res) freeaddrinfo(res);
    if (rc == EAI_NONAME || rc == EAI_FAIL
#ifdef EAI_NODATA
        || rc == EAI_NODATA
#endif
    ) {
      return Fail(End::kFatal, std::string("host '") + host + "' does not resolve: " + gai_strerror(rc));
    }
    if (rc != 0) return Fail(End::kRetry, std::string("cannot resolve host '") + host + "': " + gai_strerror(rc));
  }

  s.fmt = avformat_alloc_context();
  if (!s.fmt) return Fail(End::kRetry, "out of memory");
  s.fmt->interrupt_callback.callback = &InterruptCallback;
  s.fmt->interrupt_callback.opaque = this;
  AVDictionary* opts = nullptr;
  if (StartsWith(url, "rtsp://") || StartsWith(url, "rtsps://")) {
    av_dict_set(&opts, "rtsp_transport", config_.rtsp_transport.c_str(), 0);
  }
  if (!s.is_file) {
    // Socket time-outs a second beyond the stall time-out: the interrupt callback reports the stall.
    const std::string us = std::to_string(static_cast<int64_t>((config_.stall_timeout_s + 1) * 1e6));
    av_dict_set(&opts, "timeout", us.c_str(), 0);
    av_dict_set(&opts, "rw_timeout", us.c_str(), 0);
  }
  io_deadline_ns_ = SteadyNowNs() + static_cast<int64_t>(config_.open_timeout_s * 1e9);
  int ret = avformat_open_input(&s.fmt, url.c_str(), nullptr, &opts);
  av_dict_free(&opts);
  if (ret < 0) {
    if (stop_.load()) return End::kStopped;
    if (timed_out_) return Fail(End::kRetry, "open timed out after " + std::to_string(config_.open_timeout_s) + " s");
    const std::string what = "cannot open " + display_url_ + ": " + AvError(ret);
    // A file that is missing or is not media will not get better by retrying.
    if (s.is_file || ret == AVERROR_PROTOCOL_NOT_FOUND || ret == AVERROR_DEMUXER_NOT_FOUND)
      return Fail(End::kFatal, what);
    return Fail(End::kRetry, what);
  }
  ret = avformat_find_stream_info(s.fmt, nullptr);
  if (ret < 0) {
    if (stop_.load()) return End::kStopped;
    const std::string what = "cannot read stream info of " + display_url_ + ": " + AvError(ret);
    return Fail(s.is_file ? End::kFatal : End::kRetry, what);
  }
  const AVCodec* codec = nullptr;
  s.video_index = av_find_best_stream(s.fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (s.video_index == AVERROR_STREAM_NOT_FOUND) return Fail(End::kFatal, "no video track in " + display_url_);
  if (s.video_index < 0 || !codec) {
    return Fail(End::kFatal, "no decoder for the video track of " + display_url_ + ": " + AvError(s.video_index));
  }
  AVStream* st = s.fmt->streams[s.video_index];
  for (unsigned i = 0; i < s.fmt->nb_streams; ++i) {
    if (static_cast<int>(i) != s.video_index) s.fmt->streams[i]->discard = AVDISCARD_ALL;
  }
  s.time_base = av_q2d(st->time_base);
  AVRational rate = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
  const double source_fps = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0;
  if (source_fps > 0 && source_fps < 1000) s.frame_duration = 1.0 / source_fps;

  // The decoder context, set up for this stream (false: out of memory).
  const auto new_decoder = [&]() {
    s.dec = avcodec_alloc_context3(codec);
    if (!s.dec) return false;
    avcodec_parameters_to_context(s.dec, st->codecpar);
    s.dec->thread_count = config_.decoder_threads;
    s.dec->pkt_timebase = st->time_base;
    // Far below the source rate, frames nobody references are not worth decoding.
    if (!config_.decode_only && config_.analyze_fps > 0 && source_fps > 0 && config_.analyze_fps * 4 <= source_fps) {
      s.dec->skip_frame = AVDISCARD_NONREF;
    }
    return true;
  };
  if (!new_decoder()) return Fail(End::kRetry, "out of memory");
  std::string hw_note;
  if (hwaccel_ != HwAccel::kNone) {
    hw_note = AttachCudaDecoder(codec, s.dec, config_.hw_device, &s.hw_device, &s.hw_refused);
  }
  ret = avcodec_open2(s.dec, codec, nullptr);
  if (ret < 0 && s.hw_device) {
    // The GPU decoder did not open: the same decoder on the CPU.
    hw_note = std::string("the GPU decoder did not open: ") + AvError(ret);
    avcodec_free_context(&s.dec);
    av_buffer_unref(&s.hw_device);
    if (!new_decoder()) return Fail(End::kRetry, "out of memory");
    ret = avcodec_open2(s.dec, codec, nullptr);
  }
  if (ret < 0) return Fail(End::kFatal, std::string("cannot open the ") + codec->name + " decoder: " + AvError(ret));
  if (hwaccel_ != HwAccel::kNone) {
    SetDecoder("cpu", hw_note);  // until the first GPU frame says otherwise
    if (hwaccel_ == HwAccel::kCuda && !hw_note.empty()) last_error_.Set("decoding on the CPU: " + hw_note);
  }
  {
    std::lock_guard<std::mutex> lock(info_mu_);
    codec_ = codec->name;
    width_ = st->codecpar->width;
    height_ = st->codecpar->height;
    source_fps_ = source_fps;
  }
  s.pkt = av_packet_alloc();
  s.frame = av_frame_alloc();
  if (!s.pkt || !s.frame) return Fail(End::kRetry, "out of memory");
  ring_.Reset(st->codecpar, st->time_base.num, st->time_base.den);
  next_sample_t_ = -1;

  SetState(StreamState::kRunning);
  int64_t last_packet_ns = SteadyNowNs();
  for (;;) {
    io_deadline_ns_ = last_packet_ns + static_cast<int64_t>(config_.stall_timeout_s * 1e9);
    timed_out_ = false;
    ret = av_read_frame(s.fmt, s.pkt);
    // An interrupted read can still hand back a packet (FFmpeg flushes its parser on the error):
    // the stall is what counts, not that packet.
    if ((ret >= 0 && timed_out_) || (ret < 0 && (timed_out_ || ret == AVERROR(ETIMEDOUT)) && !stop_.load())) {
      if (ret >= 0) av_packet_unref(s.pkt);
      return Fail(End::kRetry,
                  "stalled: no packet for " + std::to_string(static_cast<int>(config_.stall_timeout_s)) + " s");
    }
    if (ret == AVERROR_EOF || (ret < 0 && s.is_file && s.fmt->pb && avio_feof(s.fmt->pb))) {
      // Drain the decoder, then loop or end.
      if (avcodec_send_packet(s.dec, nullptr) >= 0) {
        while (avcodec_receive_frame(s.dec, s.frame) >= 0) HandleFrame(s, s.frame);
      }
      if (!s.is_file) return Fail(End::kRetry, "stream ended (the server closed the connection)");
      if (!config_.loop || !s.got_frame) return End::kEof;
      if (av_seek_frame(s.fmt, s.video_index, st->start_time != AV_NOPTS_VALUE ? st->start_time : 0,
                        AVSEEK_FLAG_BACKWARD) < 0 &&
          avformat_seek_file(s.fmt, -1, INT64_MIN, 0, INT64_MAX, 0) < 0) {
        return Fail(End::kFatal, "cannot seek to the start of " + display_url_ + " to loop it");
      }
      avcodec_flush_buffers(s.dec);
      if (!std::isnan(s.max_t)) s.loop_offset += (s.max_t - s.first_t) + s.frame_duration;
      s.max_t = NAN;
      counters_.Add(counters_.loops);
      last_packet_ns = SteadyNowNs();
      continue;
    }
    if (ret < 0) {
      if (stop_.load()) return End::kStopped;
      return Fail(End::kRetry, "read error: " + AvError(ret));
    }
    if (s.pkt->stream_index != s.video_index) {
      av_packet_unref(s.pkt);
      continue;
    }
    last_packet_ns = SteadyNowNs();
    counters_.Add(counters_.packets);
    counters_.Add(counters_.bytes, static_cast<uint64_t>(s.pkt->size));
    if (s.pkt->flags & AV_PKT_FLAG_CORRUPT) {
      counters_.Add(counters_.corrupt_packets);
      av_packet_unref(s.pkt);
      continue;
    }
    int64_t ts = s.pkt->pts != AV_NOPTS_VALUE ? s.pkt->pts : s.pkt->dts;
    const double t = ts != AV_NOPTS_VALUE ? ts * s.time_base : NAN;
    if (std::isnan(s.first_t) && !std::isnan(t)) s.first_t = t;
    if (!std::isnan(t)) s.max_t = std::isnan(s.max_t) ? t : std::max(s.max_t, t);
    if (config_.pre_event_s > 0 && !std::isnan(t)) ring_.Push(s.pkt, t + s.loop_offset);

    if (s.is_file && config_.realtime && !std::isnan(t)) {
      const double tt = t + s.loop_offset;
      if (s.pace_origin_ns == 0) {
        s.pace_origin_ns = SteadyNowNs();
        s.pace_origin_t = tt;
      }
      const double wait = (tt - s.pace_origin_t) - SecondsSince(s.pace_origin_ns);
      if (wait > 1.0) {  // a jump in the timestamps: start pacing again from here
        s.pace_origin_ns = SteadyNowNs();
        s.pace_origin_t = tt;
      } else if (wait > 0 && !SleepFor(wait)) {
        av_packet_unref(s.pkt);
        return End::kStopped;
      }
      last_packet_ns = SteadyNowNs();
    }

    const int64_t t0 = SteadyNowNs();
    ret = avcodec_send_packet(s.dec, s.pkt);
    av_packet_unref(s.pkt);
    bool corrupt = false;
    if (ret < 0 && ret != AVERROR(EAGAIN)) corrupt = true;
    for (;;) {
      const int r = avcodec_receive_frame(s.dec, s.frame);
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) break;
      if (r < 0) {
        corrupt = true;
        break;
      }
      counters_.decode_time.Record((SteadyNowNs() - t0) / 1e9);
      if (s.frame->decode_error_flags || (s.frame->flags & AV_FRAME_FLAG_CORRUPT)) corrupt = true;
      HandleFrame(s, s.frame);
      av_frame_unref(s.frame);
    }
    if (corrupt) counters_.Add(counters_.corrupt_packets);
    if (stop_.load()) return End::kStopped;
  }
}

bool Stream::ShouldSample(double t) {
  if (config_.analyze_fps <= 0) return true;
  const double period = 1.0 / config_.analyze_fps;
  // First frame, or time went backwards (a new session): start over.
  if (next_sample_t_ < 0 || t < next_sample_t_ - 2 * period - 1.0) {
    next_sample_t_ = t + period;
    return true;
  }
  // Half a millisecond of slack absorbs rounding in timestamps such as 1/30 s.
  if (t + 5e-4 < next_sample_t_) return false;
  next_sample_t_ += period;
  if (next_sample_t_ <= t) next_sample_t_ = t + period;  // fell far behind: do not burst
  return true;
}

void Stream::SetDecoder(const char* decoder, const std::string& note) {
  std::lock_guard<std::mutex> lock(info_mu_);
  decoder_ = decoder;
  hwaccel_note_ = note;
}

void Stream::HandleFrame(Session& s, AVFrame* frame) {
  if (!s.got_frame && s.hw_device) {
    // The first frame tells whether the GPU took the stream.
    if (IsCudaFrame(frame)) {
      SetDecoder("nvdec", "");
    } else {
      const std::string note = s.hw_refused
                                   ? "the GPU decoder refused this stream (profile, size or no decoder session left; "
                                     "FFmpeg's log says which)"
                                   : "the decoder gave software frames";
      SetDecoder("cpu", note);
      if (hwaccel_ == HwAccel::kCuda) last_error_.Set("decoding on the CPU: " + note);
    }
  }
  s.got_frame = true;
  counters_.Add(counters_.frames_decoded);
  counters_.last_frame_ns.store(SteadyNowNs(), std::memory_order_relaxed);
  const int64_t number = frame_number_++;
  const int64_t ts = frame->best_effort_timestamp != AV_NOPTS_VALUE ? frame->best_effort_timestamp : frame->pts;
  const double t = (ts != AV_NOPTS_VALUE ? ts * s.time_base : number * s.frame_duration) + s.loop_offset;
  if (config_.decode_only || !ShouldSample(t)) {
    counters_.Add(counters_.frames_skipped);
    return;
  }
  counters_.Add(counters_.frames_sampled);
  const int64_t capture_ns = WallNowNs();
  {
    std::lock_guard<std::mutex> lock(latest_mu_);
    if (!latest_) latest_ = av_frame_alloc();
    if (latest_) {
      av_frame_unref(latest_);
      if (av_frame_ref(latest_, frame) == 0) {
        latest_number_ = number;
        latest_pts_s_ = t;
        latest_capture_ns_ = capture_ns;
      }
    }
  }
  if (!batcher_) return;
  SlotTicket ticket;
  if (!batcher_->Acquire(&ticket, config_.block_when_busy, &stop_)) {
    counters_.Add(counters_.frames_dropped);
    return;
  }
  const int64_t t0 = SteadyNowNs();
  SlotMeta& m = *ticket.meta;
  m.camera_id = config_.camera_id;
  m.frame_number = number;
  m.pts_s = t;
  m.capture_wall_ns = capture_ns;
  try {
    ToSlot(frame, ticket, &m);
    m.valid = true;
  } catch (const std::exception& e) {
    converter_->FillPad(ticket.data);
    *ticket.place = SlotPlace::kHost;
    m.geometry = SlotGeometry{};
    m.valid = false;
    last_error_.Set(std::string("conversion failed: ") + e.what());
  }
  counters_.convert_time.Record((SteadyNowNs() - t0) / 1e9);
  batcher_->Commit(ticket);
}

void Stream::ToSlot(AVFrame* frame, const SlotTicket& ticket, SlotMeta* m) {
  if (IsCudaFrame(frame)) {
    if (CudaFrameSwFormat(frame) == AV_PIX_FMT_NV12) {
      if (!cuda_converter_)
        cuda_converter_ = std::make_unique<CudaSlotConverter>(batcher_->layout(), config_.hw_device);
      if (ticket.device_data) {  // a device batch: the slot stays on the GPU
        m->geometry = cuda_converter_->ToDeviceSlot(frame, ticket.device_data);
        *ticket.place = SlotPlace::kDevice;
      } else {
        m->geometry = cuda_converter_->ToSlot(frame, ticket.data);
        *ticket.place = SlotPlace::kHost;
      }
      return;
    }
    // 10-bit and other layouts the kernel does not take: through host memory.
    if (!host_frame_) host_frame_ = av_frame_alloc();
    if (!host_frame_) throw std::runtime_error("out of memory");
    DownloadFrame(frame, host_frame_);
    frame = host_frame_;
  }
  // The slot still holds the frame written there before, and so its padding, when that one was
  // valid and its host copy is current (not a slot written on the GPU only).
  const bool host_current = *ticket.place != SlotPlace::kDevice;
  m->geometry = converter_->ToSlot(frame, ticket.data, m->valid && host_current ? &m->geometry : nullptr);
  *ticket.place = SlotPlace::kHost;
}

bool Stream::LatestFrameBgr(std::vector<uint8_t>* bgr, int* width, int* height, int64_t* frame_number, double* pts_s,
                            int64_t* capture_ns) const {
  // Take a reference under the lock and convert outside it: the stream thread never waits for a
  // snapshot being converted.
  std::unique_ptr<AVFrame, void (*)(AVFrame*)> ref(av_frame_alloc(), [](AVFrame* f) { av_frame_free(&f); });
  if (!ref) return false;
  {
    std::lock_guard<std::mutex> lock(latest_mu_);
    if (!latest_ || !latest_->buf[0] || av_frame_ref(ref.get(), latest_) < 0) return false;
    *frame_number = latest_number_;
    if (pts_s) *pts_s = latest_pts_s_;
    if (capture_ns) *capture_ns = latest_capture_ns_;
  }
  if (IsCudaFrame(ref.get())) {
    std::unique_ptr<AVFrame, void (*)(AVFrame*)> host(av_frame_alloc(), [](AVFrame* f) { av_frame_free(&f); });
    if (!host) return false;
    try {
      DownloadFrame(ref.get(), host.get());
    } catch (const std::exception&) {
      return false;
    }
    ref = std::move(host);
  }
  std::lock_guard<std::mutex> lock(bgr_mu_);
  if (!bgr_converter_) bgr_converter_ = std::make_unique<FrameConverter>(TensorLayout{});
  bgr_converter_->ToBgr(ref.get(), bgr);
  *width = ref->width;
  *height = ref->height;
  return true;
}

StreamStatsSnapshot Stream::Stats() const {
  StreamStatsSnapshot s;
  s.camera_id = config_.camera_id;
  s.url = display_url_;
  s.state = static_cast<StreamState>(counters_.state.load(std::memory_order_relaxed));
  s.last_error = last_error_.Get();
  const auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  s.packets = ld(counters_.packets);
  s.bytes = ld(counters_.bytes);
  s.frames_decoded = ld(counters_.frames_decoded);
  s.frames_sampled = ld(counters_.frames_sampled);
  s.frames_skipped = ld(counters_.frames_skipped);
  s.frames_dropped = ld(counters_.frames_dropped);
  s.corrupt_packets = ld(counters_.corrupt_packets);
  s.reconnects = ld(counters_.reconnects);
  s.loops = ld(counters_.loops);
  const int64_t last = counters_.last_frame_ns.load(std::memory_order_relaxed);
  s.last_frame_age_s = last > 0 ? SecondsSince(last) : -1;
  s.decode_p50_ms = counters_.decode_time.Quantile(0.5) * 1e3;
  s.decode_p99_ms = counters_.decode_time.Quantile(0.99) * 1e3;
  s.convert_p50_ms = counters_.convert_time.Quantile(0.5) * 1e3;
  s.uptime_s = SecondsSince(started_ns_);
  std::lock_guard<std::mutex> lock(info_mu_);
  s.codec = codec_;
  s.decoder = decoder_;
  s.hwaccel_note = hwaccel_note_;
  s.width = width_;
  s.height = height_;
  s.source_fps = source_fps_;
  return s;
}

}  // namespace smartcity
