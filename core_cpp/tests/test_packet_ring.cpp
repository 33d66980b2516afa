#include <gtest/gtest.h>

extern "C" {
#include <libavcodec/packet.h>
}

#include "smartcity/packet_ring.hpp"

namespace smartcity {
namespace {

struct Packet {
  AVPacket* p = av_packet_alloc();
  Packet(int size, bool key) {
    av_new_packet(p, size);
    if (key) p->flags |= AV_PKT_FLAG_KEY;
  }
  ~Packet() { av_packet_free(&p); }
};

// 10 fps, keyframe every 30 packets (3 s GOP).
void Feed(PacketRing& ring, int from, int to, int size = 100) {
  for (int i = from; i < to; ++i) {
    Packet pk(size, i % 30 == 0);
    ring.Push(pk.p, i * 0.1);
  }
}

TEST(PacketRing, SkipsPacketsBeforeTheFirstKeyframe) {
  PacketRing ring(10);
  Feed(ring, 1, 30);
  EXPECT_EQ(ring.Info().packets, 0);
  Feed(ring, 30, 31);
  EXPECT_EQ(ring.Info().packets, 1);
  EXPECT_TRUE(ring.Info().starts_with_keyframe);
}

TEST(PacketRing, KeepsAtLeastTheWindowStartingAtAKeyframe) {
  PacketRing ring(10);
  Feed(ring, 0, 1000);
  const RingInfo info = ring.Info();
  EXPECT_TRUE(info.starts_with_keyframe);
  const double span = info.last_s - info.first_s;
  EXPECT_GE(span, 10.0 - 1e-9);
  EXPECT_LT(span, 10.0 + 3.0);  // at most one GOP more than asked
  EXPECT_NEAR(info.last_s, 99.9, 1e-9);
  EXPECT_EQ(info.bytes, static_cast<int64_t>(info.packets) * 100);
}

TEST(PacketRing, ByteCapDropsWholeGops) {
  PacketRing ring(10, 30 * 1000 * 2);  // room for two GOPs of 1000-byte packets
  Feed(ring, 0, 300, 1000);
  const RingInfo info = ring.Info();
  EXPECT_TRUE(info.starts_with_keyframe);
  EXPECT_LE(info.bytes, 30 * 1000 * 2);
  EXPECT_GE(info.packets, 30);
}

TEST(PacketRing, ClearEmpties) {
  PacketRing ring(10);
  Feed(ring, 0, 100);
  ring.Clear();
  EXPECT_EQ(ring.Info().packets, 0);
  EXPECT_EQ(ring.Info().bytes, 0);
}

}  // namespace
}  // namespace smartcity
