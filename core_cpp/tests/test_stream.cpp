#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "smartcity/pipeline.hpp"

namespace smartcity {
namespace {

const std::string kClip = std::string(SMARTCITY_TEST_MEDIA) + "/vtest-h264.mp4";
constexpr int kClipFrames = 795;

StreamConfig Config(const std::string& id) {
  StreamConfig c;
  c.camera_id = id;
  c.url = kClip;
  return c;
}

bool WaitState(Pipeline& p, const std::string& id, StreamState want, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (p.StreamStats(id).state == want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return p.StreamStats(id).state == want;
}

TEST(Stream, DecodesEveryFrameOfTheClipThenStops) {
  PipelineConfig pc;
  Pipeline p(pc);
  StreamConfig c = Config("cam");
  c.decode_only = true;
  p.AddStream(c);
  ASSERT_TRUE(WaitState(p, "cam", StreamState::kStopped, 60));
  const auto s = p.StreamStats("cam");
  EXPECT_EQ(s.frames_decoded, static_cast<uint64_t>(kClipFrames));
  EXPECT_EQ(s.frames_sampled, 0u);
  EXPECT_EQ(s.packets, static_cast<uint64_t>(kClipFrames));
  EXPECT_EQ(s.width, 768);
  EXPECT_EQ(s.height, 576);
  EXPECT_EQ(s.codec, "h264");
  EXPECT_NEAR(s.source_fps, 10.0, 1e-6);
  EXPECT_EQ(s.corrupt_packets, 0u);
  EXPECT_TRUE(s.last_error.empty()) << s.last_error;
}

TEST(Stream, SamplesAtAnalyzeFpsAndBatchesEverySample) {
  PipelineConfig pc;
  pc.layout.width = 320;
  pc.layout.height = 320;
  Pipeline p(pc);
  StreamConfig c = Config("cam");
  c.analyze_fps = 2.5;  // a quarter of the source rate
  c.block_when_busy = true;
  p.AddStream(c);
  int slots = 0;
  double last_pts = -1;
  for (;;) {
    auto lease = p.NextBatch(8, 200);
    if (!lease) {
      if (p.StreamStats("cam").state == StreamState::kStopped) {
        lease = p.NextBatch(8, 0);
        if (!lease) break;
      } else {
        continue;
      }
    }
    for (int i = 0; i < lease->size(); ++i) {
      const SlotMeta& m = lease->meta()[i];
      EXPECT_TRUE(m.valid);
      EXPECT_GT(m.pts_s, last_pts);
      if (last_pts >= 0) EXPECT_NEAR(m.pts_s - last_pts, 0.4, 0.11);
      last_pts = m.pts_s;
      ++slots;
    }
  }
  const auto s = p.StreamStats("cam");
  EXPECT_EQ(static_cast<uint64_t>(slots), s.frames_sampled);
  EXPECT_NEAR(static_cast<double>(s.frames_sampled), kClipFrames / 4.0, 2.0);
  EXPECT_EQ(s.frames_dropped, 0u);
  EXPECT_EQ(s.frames_skipped + s.frames_sampled, s.frames_decoded);
}

TEST(Stream, LoopsAFileWithMonotonicTimestamps) {
  Pipeline p(PipelineConfig{});
  StreamConfig c = Config("cam");
  c.loop = true;
  c.decode_only = true;
  p.AddStream(c);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (p.StreamStats("cam").loops < 1 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto s = p.StreamStats("cam");
  EXPECT_GE(s.loops, 1u);
  EXPECT_EQ(s.state, StreamState::kRunning);
  const RingInfo ring = p.PacketRing("cam");
  EXPECT_TRUE(ring.starts_with_keyframe);
  EXPECT_GE(ring.last_s - ring.first_s, 10.0 - 0.2);
  EXPECT_TRUE(p.RemoveStream("cam"));
  EXPECT_FALSE(p.RemoveStream("cam"));
}

TEST(Stream, MissingFileFailsWithAClearMessage) {
  Pipeline p(PipelineConfig{});
  StreamConfig c = Config("cam");
  c.url = "/nonexistent/clip.mp4";
  p.AddStream(c);
  ASSERT_TRUE(WaitState(p, "cam", StreamState::kFailed, 10));
  const auto s = p.StreamStats("cam");
  EXPECT_NE(s.last_error.find("/nonexistent/clip.mp4"), std::string::npos) << s.last_error;
  EXPECT_EQ(s.reconnects, 0u);
}

TEST(Pipeline, RejectsDuplicateAndInvalidStreams) {
  Pipeline p(PipelineConfig{});
  StreamConfig c = Config("cam");
  c.decode_only = true;
  p.AddStream(c);
  EXPECT_THROW(p.AddStream(c), std::invalid_argument);
  StreamConfig bad = Config("has space");
  EXPECT_THROW(p.AddStream(bad), std::invalid_argument);
  EXPECT_THROW(p.StreamStats("nope"), UnknownCamera);
}

TEST(RedactUrl, HidesCredentials) {
  EXPECT_EQ(RedactUrl("rtsp://admin:secret@10.0.0.5:554/stream1"), "rtsp://***@10.0.0.5:554/stream1");
  EXPECT_EQ(RedactUrl("rtsp://10.0.0.5/a@b"), "rtsp://10.0.0.5/a@b");
  EXPECT_EQ(RedactUrl("/path/file.mp4"), "/path/file.mp4");
}

}  // namespace
}  // namespace smartcity
