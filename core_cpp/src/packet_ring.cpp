#include "smartcity/packet_ring.hpp"

extern "C" {
#include <libavcodec/packet.h>
}

namespace smartcity {

PacketRing::PacketRing(double seconds, int64_t max_bytes) : seconds_(seconds), max_bytes_(max_bytes) {}

PacketRing::~PacketRing() { Clear(); }

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
