#include "smartcity/publisher.hpp"

#include <chrono>
#include <limits>
#include <msgpack.hpp>
#include <stdexcept>
#include <utility>
#include <zmq.hpp>

namespace smartcity {

namespace {

// Longest camera id accepted in a topic; the subscriber refuses topics over 256 bytes.
constexpr size_t kMaxCameraBytes = 200;

void CheckCamera(const std::string& camera) {
  if (camera.empty() || camera.size() > kMaxCameraBytes) {
    throw std::invalid_argument("camera id must be 1 to " + std::to_string(kMaxCameraBytes) + " bytes");
  }
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

template <typename T>
void Field(msgpack::packer<msgpack::sbuffer>& pk, const char* key, const T& value) {
  pk.pack(key);
  pk.pack(value);
}

}  // namespace

TracksView ViewOf(const Tracks& tracks) {
  TracksView v;
  v.n = tracks.size();
  v.track_id = tracks.track_id.data();
  v.xyxy = tracks.xyxy.data();
  v.score = tracks.score.data();
  v.class_id = tracks.class_id.data();
  if (tracks.ground_xy.size() == tracks.size() * 2) v.ground_xy = tracks.ground_xy.data();
  if (tracks.speed_kmh.size() == tracks.size()) v.speed_kmh = tracks.speed_kmh.data();
  return v;
}

std::string EncodeTracks(const std::string& camera, uint64_t seq, const FrameInfo& info, const TracksView& tracks) {
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  msgpack::sbuffer buf(64 + tracks.n * 56);
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(9);
  Field(pk, "v", kBusSchemaVersion);
  Field(pk, "cam", camera);
  Field(pk, "seq", seq);
  Field(pk, "frame", info.frame);
  pk.pack("pts");
  pk.pack_double(info.pts);
  Field(pk, "t_ns", info.t_ns);
  Field(pk, "w", info.width);
  Field(pk, "h", info.height);
  pk.pack("tracks");
  pk.pack_array(static_cast<uint32_t>(tracks.n));
  for (size_t i = 0; i < tracks.n; ++i) {
    pk.pack_array(kTrackColumns);
    pk.pack(tracks.track_id[i]);
    pk.pack(tracks.class_id[i]);
    pk.pack_float(tracks.score[i]);
    for (int k = 0; k < 4; ++k) pk.pack_float(tracks.xyxy[i * 4 + k]);
    pk.pack_float(tracks.ground_xy ? tracks.ground_xy[i * 2] : kNaN);
    pk.pack_float(tracks.ground_xy ? tracks.ground_xy[i * 2 + 1] : kNaN);
    pk.pack_float(tracks.speed_kmh ? tracks.speed_kmh[i] : kNaN);
  }
  return std::string(buf.data(), buf.size());
}

std::string EncodeHealth(const std::string& camera, uint64_t seq, const StreamStatsSnapshot& s,
                         const HealthExtras& extras, uint64_t bus_sent, uint64_t bus_dropped) {
  msgpack::sbuffer buf(512);
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(30);
  Field(pk, "v", kBusSchemaVersion);
  Field(pk, "cam", camera);
  Field(pk, "seq", seq);
  Field(pk, "t_ns", extras.t_ns != 0 ? extras.t_ns : NowNs());
  Field(pk, "state", std::string(StateName(s.state)));
  Field(pk, "last_error", s.last_error);
  Field(pk, "packets", s.packets);
  Field(pk, "bytes", s.bytes);
  Field(pk, "frames_decoded", s.frames_decoded);
  Field(pk, "frames_sampled", s.frames_sampled);
  Field(pk, "frames_skipped", s.frames_skipped);
  Field(pk, "frames_dropped", s.frames_dropped);
  Field(pk, "corrupt_packets", s.corrupt_packets);
  Field(pk, "reconnects", s.reconnects);
  Field(pk, "loops", s.loops);
  pk.pack("last_frame_age_s");
  if (s.last_frame_age_s < 0) {
    pk.pack_nil();
  } else {
    pk.pack_double(s.last_frame_age_s);
  }
  Field(pk, "decode_p50_ms", s.decode_p50_ms);
  Field(pk, "decode_p99_ms", s.decode_p99_ms);
  Field(pk, "convert_p50_ms", s.convert_p50_ms);
  Field(pk, "source_fps", s.source_fps);
  Field(pk, "width", s.width);
  Field(pk, "height", s.height);
  Field(pk, "codec", s.codec);
  Field(pk, "decoder", s.decoder);
  Field(pk, "hwaccel_note", s.hwaccel_note);
  Field(pk, "uptime_s", s.uptime_s);
  Field(pk, "infer_ms", extras.infer_ms);
  Field(pk, "track_ms", extras.track_ms);
  Field(pk, "bus_sent", bus_sent);
  Field(pk, "bus_dropped", bus_dropped);
  return std::string(buf.data(), buf.size());
}

struct Publisher::Impl {
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::xpub};
  bool closed = false;
};

Publisher::Publisher(const std::string& endpoint, const PublisherOptions& options)
    : endpoint_(endpoint), options_(options), impl_(std::make_unique<Impl>()) {
  if (options.sndhwm < 0) throw std::invalid_argument("sndhwm must be >= 0");
  auto& s = impl_->socket;
  try {
    s.set(zmq::sockopt::sndhwm, options.sndhwm);
    s.set(zmq::sockopt::linger, options.linger_ms);
    // A full queue makes a non-blocking send fail with EAGAIN instead of dropping silently.
    s.set(zmq::sockopt::xpub_nodrop, 1);
    // Subscriptions from the broker are read only to keep their queue short.
    s.set(zmq::sockopt::rcvhwm, 1000);
    s.set(zmq::sockopt::maxmsgsize, int64_t{4096});
    s.connect(endpoint);
  } catch (const zmq::error_t& e) {
    if (e.num() == EINVAL || e.num() == EPROTONOSUPPORT || e.num() == ENOENT) {
      throw std::invalid_argument("bad bus endpoint '" + endpoint + "': " + e.what());
    }
    throw std::runtime_error("bus publisher: " + std::string(e.what()));
  }
}

Publisher::~Publisher() { Close(); }

void Publisher::Close() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (impl_->closed) return;
  impl_->closed = true;
  impl_->socket.close();
  impl_->context.close();
}

bool Publisher::closed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return impl_->closed;
}

uint64_t Publisher::TakeSeqLocked(const std::string& topic) { return next_seq_[topic]++; }

bool Publisher::SendLocked(const std::string& topic, const std::string& payload) {
  if (impl_->closed) throw std::logic_error("publisher is closed");
  auto& s = impl_->socket;
  // Drain subscription messages (never blocks).
  zmq::message_t sub;
  while (s.recv(sub, zmq::recv_flags::dontwait)) {
  }
  // With XPUB_NODROP the queue check happens on the first part; the second part of an
  // accepted message is always accepted.
  auto first = s.send(zmq::buffer(topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
  if (!first) {
    ++dropped_;
    return false;
  }
  (void)s.send(zmq::buffer(payload), zmq::send_flags::dontwait);
  ++sent_;
  return true;
}

bool Publisher::PublishTracks(const std::string& camera, const FrameInfo& info, const TracksView& tracks) {
  CheckCamera(camera);
  std::string topic = "tracks." + camera;
  std::lock_guard<std::mutex> lock(mutex_);
  if (impl_->closed) throw std::logic_error("publisher is closed");
  const uint64_t seq = TakeSeqLocked(topic);
  return SendLocked(topic, EncodeTracks(camera, seq, info, tracks));
}

bool Publisher::PublishHealth(const std::string& camera, const StreamStatsSnapshot& stats, const HealthExtras& extras) {
  CheckCamera(camera);
  std::string topic = "health." + camera;
  std::lock_guard<std::mutex> lock(mutex_);
  if (impl_->closed) throw std::logic_error("publisher is closed");
  const uint64_t seq = TakeSeqLocked(topic);
  return SendLocked(topic, EncodeHealth(camera, seq, stats, extras, sent_, dropped_));
}

bool Publisher::PublishRaw(const std::string& topic, const std::string& payload) {
  std::lock_guard<std::mutex> lock(mutex_);
  return SendLocked(topic, payload);
}

uint64_t Publisher::NextSeq(const std::string& topic) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = next_seq_.find(topic);
  return it == next_seq_.end() ? 0 : it->second;
}

uint64_t Publisher::sent() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return sent_;
}

uint64_t Publisher::dropped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return dropped_;
}

}  // namespace smartcity
