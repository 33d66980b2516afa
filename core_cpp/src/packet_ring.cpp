#include "smartcity/packet_ring.hpp"

extern "C" {
#include <libavcodec/codec_par.h>
#include <libavcodec/packet.h>
}

#include <new>

namespace smartcity {

PacketRing::PacketRing(double seconds, int64_t max_bytes) : seconds_(seconds), max_bytes_(max_bytes) {}

PacketRing::~PacketRing() {
  Clear();
  avcodec_parameters_free(&codecpar_);
}

RingPackets::~RingPackets() {
  for (AVPacket*& p : packets) av_packet_free(&p);
  avcodec_parameters_free(&codecpar);
}

void PacketRing::Reset(const AVCodecParameters* codecpar, int time_base_num, int time_base_den) {
  std::lock_guard<std::mutex> lock(mu_);
  while (!entries_.empty()) PopFront();
  avcodec_parameters_free(&codecpar_);
  if (codecpar) {
    codecpar_ = avcodec_parameters_alloc();
    if (codecpar_ && avcodec_parameters_copy(codecpar_, codecpar) < 0) avcodec_parameters_free(&codecpar_);
  }
  time_base_num_ = time_base_num;
  time_base_den_ = time_base_den > 0 ? time_base_den : 1;
}

void PacketRing::PopFront() {
  Entry& e = entries_.front();
  bytes_ -= e.pkt->size;
  keyframes_ -= e.key ? 1 : 0;
  av_packet_free(&e.pkt);
  entries_.pop_front();
}

void PacketRing::Push(const AVPacket* pkt, double t_s) {
  const bool key = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
  std::lock_guard<std::mutex> lock(mu_);
  if (entries_.empty() && !key) return;
  AVPacket* copy = av_packet_clone(pkt);
  if (!copy) return;  // out of memory: evidence is best effort, the video path goes on
  entries_.push_back({copy, t_s, key});
  bytes_ += copy->size;
  keyframes_ += key ? 1 : 0;
  Trim();
}

// Drop the oldest GOP while the GOP after it still covers `seconds_`, or while over the byte cap.
void PacketRing::Trim() {
  const double newest = entries_.back().t;
  while (keyframes_ > 1) {
    size_t next_key = 1;
    while (next_key < entries_.size() && !entries_[next_key].key) ++next_key;
    if (next_key >= entries_.size()) break;
    const bool covered = newest - entries_[next_key].t >= seconds_;
    if (!covered && bytes_ <= max_bytes_) break;
    for (size_t i = 0; i < next_key; ++i) PopFront();
  }
}

void PacketRing::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  while (!entries_.empty()) PopFront();
}

RingInfo PacketRing::Info() const {
  std::lock_guard<std::mutex> lock(mu_);
  return InfoLocked();
}

RingInfo PacketRing::Copy(double t0, double t1, RingPackets* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  const RingInfo info = InfoLocked();
  for (AVPacket*& p : out->packets) av_packet_free(&p);
  out->packets.clear();
  out->t.clear();
  avcodec_parameters_free(&out->codecpar);
  if (codecpar_) {
    out->codecpar = avcodec_parameters_alloc();
    if (out->codecpar && avcodec_parameters_copy(out->codecpar, codecpar_) < 0) {
      avcodec_parameters_free(&out->codecpar);
    }
  }
  out->time_base_num = time_base_num_;
  out->time_base_den = time_base_den_;
  size_t start = 0;              // the ring starts with a keyframe
  size_t end = entries_.size();  // one past the last packet with t <= t1
  bool any = false;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].key && entries_[i].t <= t0) start = i;
    if (entries_[i].t <= t1) {
      end = i + 1;
      any = true;
    }
  }
  if (!any || end <= start) return info;
  out->packets.reserve(end - start);
  out->t.reserve(end - start);
  for (size_t i = start; i < end; ++i) {
    AVPacket* ref = av_packet_clone(entries_[i].pkt);
    if (!ref) throw std::bad_alloc();
    out->packets.push_back(ref);
    out->t.push_back(entries_[i].t);
  }
  return info;
}

RingInfo PacketRing::InfoLocked() const {
  RingInfo info;
  info.packets = static_cast<int>(entries_.size());
  info.keyframes = keyframes_;
  info.bytes = bytes_;
  if (!entries_.empty()) {
    info.first_s = entries_.front().t;
    info.last_s = entries_.back().t;
    info.starts_with_keyframe = entries_.front().key;
  }
  return info;
}

}  // namespace smartcity
