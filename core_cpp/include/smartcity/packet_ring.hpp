// The last few seconds of a stream's compressed packets, always starting at a keyframe, kept
// for evidence clips (remuxed later without re-encoding).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

struct AVPacket;
struct AVCodecParameters;

namespace smartcity {

struct RingInfo {
  int packets = 0;
  int keyframes = 0;
  int64_t bytes = 0;
  double first_s = 0;  // stream time of the oldest packet kept
  double last_s = 0;   // stream time of the newest packet
  bool starts_with_keyframe = false;
};

// Packets copied out of a ring for a clip: new references, freed with the object.
struct RingPackets {
  RingPackets() = default;
  ~RingPackets();
  RingPackets(const RingPackets&) = delete;
  RingPackets& operator=(const RingPackets&) = delete;

  std::vector<AVPacket*> packets;         // decode order, the first one a keyframe
  std::vector<double> t;                  // their stream times, seconds (as given to Push)
  AVCodecParameters* codecpar = nullptr;  // the stream's parameters (null: none were set)
  int time_base_num = 0;                  // time base of the packets' pts / dts
  int time_base_den = 1;
};

class PacketRing {
 public:
  // Keeps at least `seconds` of packets (a little more: trimming works in whole GOPs), and at
  // most `max_bytes` (whole GOPs dropped from the front beyond that).
  explicit PacketRing(double seconds, int64_t max_bytes = 256LL << 20);
  ~PacketRing();
  PacketRing(const PacketRing&) = delete;
  PacketRing& operator=(const PacketRing&) = delete;

  // Forgets every packet and describes the packets that follow (a new session): their codec
  // parameters (copied) and the time base of their pts / dts.
  void Reset(const AVCodecParameters* codecpar, int time_base_num, int time_base_den);
  // Takes a new reference to pkt; t_s is the packet's time in seconds. Packets before the
  // first keyframe are not kept.
  void Push(const AVPacket* pkt, double t_s);
  void Clear();
  RingInfo Info() const;
  // Copies into out the packets from the last keyframe at or before t0 (the ring's first packet
  // when t0 is older) through the last packet with t <= t1, with the codec parameters. Returns
  // what the ring held at that moment; out->packets is empty when no packet is in range.
  RingInfo Copy(double t0, double t1, RingPackets* out) const;

 private:
  struct Entry {
    AVPacket* pkt;
    double t;
    bool key;
  };
  void PopFront();
  void Trim();
  RingInfo InfoLocked() const;

  const double seconds_;
  const int64_t max_bytes_;
  mutable std::mutex mu_;
  std::deque<Entry> entries_;
  AVCodecParameters* codecpar_ = nullptr;
  int time_base_num_ = 0;
  int time_base_den_ = 1;
  int keyframes_ = 0;
  int64_t bytes_ = 0;
};

}  // namespace smartcity
