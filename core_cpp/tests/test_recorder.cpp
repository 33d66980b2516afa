#include <gtest/gtest.h>
#include <unistd.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
}

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "smartcity/recorder.hpp"

namespace smartcity {
namespace {

const std::string kClip = std::string(SMARTCITY_TEST_MEDIA) + "/vtest-h264.mp4";

// The test clip (H.264, 10 fps, GOP 30, no B-frames) demuxed into a ring, `passes` times in a
// row with the stream times of a looped file (each pass 79.5 s after the previous one).
void FillFromClip(PacketRing& ring, int max_packets, int passes = 1) {
  AVFormatContext* fmt = nullptr;
  ASSERT_EQ(avformat_open_input(&fmt, kClip.c_str(), nullptr, nullptr), 0);
  ASSERT_GE(avformat_find_stream_info(fmt, nullptr), 0);
  const int vi = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  ASSERT_GE(vi, 0);
  AVStream* st = fmt->streams[vi];
  ring.Reset(st->codecpar, st->time_base.num, st->time_base.den);
  AVPacket* pkt = av_packet_alloc();
  for (int pass = 0; pass < passes; ++pass) {
    ASSERT_GE(av_seek_frame(fmt, vi, 0, AVSEEK_FLAG_BACKWARD), 0);
    int n = 0;
    while (n < max_packets && av_read_frame(fmt, pkt) >= 0) {
      if (pkt->stream_index == vi) {
        ring.Push(pkt, pkt->pts * av_q2d(st->time_base) + pass * 79.5);
        ++n;
      }
      av_packet_unref(pkt);
    }
  }
  av_packet_free(&pkt);
  avformat_close_input(&fmt);
}

struct Probe {
  int packets = 0;
  bool first_key = false;
  double first_pts_s = -1;
  double last_pts_s = -1;
  std::string codec;
  bool monotonic = true;
};

Probe ProbeFile(const std::string& path) {
  Probe p;
  AVFormatContext* fmt = nullptr;
  if (avformat_open_input(&fmt, path.c_str(), nullptr, nullptr) != 0) return p;
  avformat_find_stream_info(fmt, nullptr);
  AVStream* st = fmt->streams[0];
  p.codec = avcodec_get_name(st->codecpar->codec_id);
  AVPacket* pkt = av_packet_alloc();
  int64_t last_dts = INT64_MIN;
  while (av_read_frame(fmt, pkt) >= 0) {
    if (p.packets == 0) {
      p.first_key = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
      p.first_pts_s = pkt->pts * av_q2d(st->time_base);
    }
    if (pkt->dts <= last_dts) p.monotonic = false;
    last_dts = pkt->dts;
    p.last_pts_s = pkt->pts * av_q2d(st->time_base);
    ++p.packets;
    av_packet_unref(pkt);
  }
  av_packet_free(&pkt);
  avformat_close_input(&fmt);
  return p;
}

class RecorderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sc-recorder-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(RecorderTest, WritesThePacketsFromTheKeyframeBeforeT0) {
  PacketRing ring(60);
  FillFromClip(ring, 400);  // 0 .. 39.9 s, keyframes every 3 s
  const std::string path = dir_ + "/clip.mp4";
  const ClipInfo info = WriteClip(ring, 10.0, 14.0, path);
  EXPECT_TRUE(info.keyframe_start);
  EXPECT_NEAR(info.first_s, 9.0, 1e-6);  // keyframe at or before 10 s
  EXPECT_NEAR(info.last_s, 14.0, 1e-6);
  EXPECT_EQ(info.packets, 51);
  EXPECT_NEAR(info.duration_s, 5.1, 1e-6);
  EXPECT_EQ(info.codec, "h264");
  EXPECT_EQ(info.bytes, static_cast<int64_t>(std::filesystem::file_size(path)));

  const Probe p = ProbeFile(path);
  EXPECT_EQ(p.codec, "h264");
  EXPECT_EQ(p.packets, 51);
  EXPECT_TRUE(p.first_key);
  EXPECT_NEAR(p.first_pts_s, 0.0, 1e-6);  // rebased
  EXPECT_NEAR(p.last_pts_s, 5.0, 1e-3);
  EXPECT_TRUE(p.monotonic);
}

TEST_F(RecorderTest, AcrossALoopOfTheFileTimestampsKeepIncreasing) {
  PacketRing ring(600);
  FillFromClip(ring, 795, 2);  // 0 .. 158.9 s: the file twice
  const std::string path = dir_ + "/loop.mp4";
  const ClipInfo info = WriteClip(ring, 78.0, 82.0, path);  // the loop is at 79.5 s
  EXPECT_NEAR(info.first_s, 78.0, 1e-6);
  const Probe p = ProbeFile(path);
  EXPECT_TRUE(p.monotonic);
  EXPECT_TRUE(p.first_key);
  EXPECT_EQ(p.packets, info.packets);
  EXPECT_NEAR(p.last_pts_s, info.last_s - info.first_s, 1e-3);
}

TEST_F(RecorderTest, RangeErrorsSayWhatTheRingHolds) {
  PacketRing ring(60);
  const std::string path = dir_ + "/x.mp4";
  EXPECT_THROW(WriteClip(ring, 0, 1, path), ClipRangeError);  // empty
  FillFromClip(ring, 100);                                    // 0 .. 9.9 s
  try {
    WriteClip(ring, 5, 12, path);
    FAIL() << "no error for a range in the future";
  } catch (const ClipRangeError& e) {
    EXPECT_NE(std::string(e.what()).find("not in the ring yet"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("0.000 to 9.900"), std::string::npos) << e.what();
  }
  EXPECT_THROW(WriteClip(ring, 3, 2, path), std::invalid_argument);
  EXPECT_THROW(WriteClip(ring, 0, NAN, path), std::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists(path));
  // A t0 older than the ring starts at its first keyframe.
  const ClipInfo info = WriteClip(ring, -5, 2, path);
  EXPECT_NEAR(info.first_s, 0.0, 1e-9);
  EXPECT_EQ(info.packets, 21);
}

TEST_F(RecorderTest, UnwritablePathIsAWriteError) {
  PacketRing ring(60);
  FillFromClip(ring, 50);
  EXPECT_THROW(WriteClip(ring, 0, 2, dir_ + "/no/such/dir/clip.mp4"), ClipWriteError);
}

}  // namespace
}  // namespace smartcity
