// The last few seconds of a stream's compressed packets, always starting at a keyframe, kept
// for evidence clips (remuxed later without re-encoding).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>

struct AVPacket;

namespace smartcity {

struct RingInfo {
  int packets = 0;
  int keyframes = 0;
  int64_t bytes = 0;
  double first_s = 0;  // stream time of the oldest packet kept
  double last_s = 0;   // stream time of the newest packet
  bool starts_with_keyframe = false;
};

class PacketRing {
 public:
  // Keeps at least `seconds` of packets (a little more: trimming works in whole GOPs), and at
  // most `max_bytes` (whole GOPs dropped from the front beyond that).
  explicit PacketRing(double seconds, int64_t max_bytes = 256LL << 20);
  ~PacketRing();
  PacketRing(const PacketRing&) = delete;
  PacketRing& operator=(const PacketRing&) = delete;

  // Takes a new reference to pkt; t_s is the packet's time in seconds. Packets before the
  // first keyframe are not kept.
  void Push(const AVPacket* pkt, double t_s);
  void Clear();
  RingInfo Info() const;

 private:
  struct Entry {
    AVPacket* pkt;
    double t;
    bool key;
  };
  void PopFront();
  void Trim();

  const double seconds_;
  const int64_t max_bytes_;
  mutable std::mutex mu_;
  std::deque<Entry> entries_;
  int keyframes_ = 0;
  int64_t bytes_ = 0;
};

}  // namespace smartcity
