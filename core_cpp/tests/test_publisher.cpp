#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <msgpack.hpp>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "smartcity/publisher.hpp"

namespace smartcity {
namespace {

// The msgpack object's map as key -> object (keys must be strings).
std::map<std::string, msgpack::object> AsMap(const msgpack::object& o) {
  EXPECT_EQ(o.type, msgpack::type::MAP);
  std::map<std::string, msgpack::object> m;
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    m[o.via.map.ptr[i].key.as<std::string>()] = o.via.map.ptr[i].val;
  }
  return m;
}

TEST(PublisherEncode, TracksRoundTrip) {
  const std::vector<int64_t> ids = {7, 42, (int64_t{1} << 40) + 3};
  const std::vector<int32_t> cls = {0, 2, 5};
  const std::vector<float> score = {0.91f, 0.5f, 0.123456f};
  const std::vector<float> xyxy = {1.5f, 2.25f, 30.f, 40.f, -3.f, 0.f, 767.f, 575.f, 100.1f, 200.2f, 300.3f, 400.4f};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> ground = {12.5f, -3.25f, nan, nan, 0.f, 100.f};
  const std::vector<float> kmh = {42.f, nan, 0.f};
  TracksView view{ids.size(), ids.data(), xyxy.data(), score.data(), cls.data(), ground.data(), kmh.data()};
  FrameInfo info{123456, 12.345, 1700000000123456789, 768, 576};
  const std::string bytes = EncodeTracks("cam-01", 99, info, view);

  msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size());
  auto m = AsMap(oh.get());
  ASSERT_EQ(m.size(), 9u);
  EXPECT_EQ(m["v"].as<int>(), kBusSchemaVersion);
  EXPECT_EQ(m["cam"].as<std::string>(), "cam-01");
  EXPECT_EQ(m["seq"].as<uint64_t>(), 99u);
  EXPECT_EQ(m["frame"].as<uint64_t>(), 123456u);
  EXPECT_EQ(m["pts"].type, msgpack::type::FLOAT64);
  EXPECT_DOUBLE_EQ(m["pts"].as<double>(), 12.345);
  EXPECT_EQ(m["t_ns"].as<int64_t>(), 1700000000123456789);
  EXPECT_EQ(m["w"].as<int>(), 768);
  EXPECT_EQ(m["h"].as<int>(), 576);
  const msgpack::object& tracks = m["tracks"];
  ASSERT_EQ(tracks.type, msgpack::type::ARRAY);
  ASSERT_EQ(tracks.via.array.size, ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const msgpack::object& row = tracks.via.array.ptr[i];
    ASSERT_EQ(row.type, msgpack::type::ARRAY);
    ASSERT_EQ(row.via.array.size, static_cast<uint32_t>(kTrackColumns));
    EXPECT_EQ(row.via.array.ptr[0].as<int64_t>(), ids[i]);
    EXPECT_EQ(row.via.array.ptr[1].as<int32_t>(), cls[i]);
    EXPECT_EQ(row.via.array.ptr[2].type, msgpack::type::FLOAT32);
    EXPECT_EQ(row.via.array.ptr[2].as<float>(), score[i]);
    for (int k = 0; k < 4; ++k) EXPECT_EQ(row.via.array.ptr[3 + k].as<float>(), xyxy[i * 4 + k]);
    // gx, gy, kmh: NaN stays a float NaN (msgpack-cxx packs integral floats as integers).
    const float expected[3] = {ground[i * 2], ground[i * 2 + 1], kmh[i]};
    for (int k = 0; k < 3; ++k) {
      const float got = row.via.array.ptr[7 + k].as<float>();
      if (std::isnan(expected[k])) {
        EXPECT_EQ(row.via.array.ptr[7 + k].type, msgpack::type::FLOAT32);
        EXPECT_TRUE(std::isnan(got)) << "row " << i << " column " << 7 + k;
      } else {
        EXPECT_EQ(got, expected[k]);
      }
    }
  }
}

TEST(PublisherEncode, TracksWithoutGroundAreNaN) {
  const std::vector<int64_t> ids = {1};
  const std::vector<int32_t> cls = {2};
  const std::vector<float> score = {0.9f};
  const std::vector<float> xyxy = {1.f, 2.f, 3.f, 4.f};
  TracksView view{ids.size(), ids.data(), xyxy.data(), score.data(), cls.data()};
  const std::string bytes = EncodeTracks("cam", 0, FrameInfo{}, view);
  msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size());
  auto m = AsMap(oh.get());
  const msgpack::object& row = m["tracks"].via.array.ptr[0];
  ASSERT_EQ(row.via.array.size, static_cast<uint32_t>(kTrackColumns));
  for (int k = 7; k < kTrackColumns; ++k) EXPECT_TRUE(std::isnan(row.via.array.ptr[k].as<float>()));
}

TEST(PublisherEncode, HealthFields) {
  StreamStatsSnapshot s;
  s.state = StreamState::kRunning;
  s.packets = 10;
  s.frames_decoded = 9;
  s.last_frame_age_s = -1;
  s.codec = "h264";
  s.width = 768;
  HealthExtras extras{4.5, 0.25, 1234};
  const std::string bytes = EncodeHealth("c", 3, s, extras, 100, 2);
  msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size());
  auto m = AsMap(oh.get());
  EXPECT_EQ(m["seq"].as<uint64_t>(), 3u);
  EXPECT_EQ(m["state"].as<std::string>(), "running");
  EXPECT_EQ(m["packets"].as<uint64_t>(), 10u);
  EXPECT_EQ(m["frames_decoded"].as<uint64_t>(), 9u);
  EXPECT_EQ(m["last_frame_age_s"].type, msgpack::type::NIL);
  EXPECT_EQ(m["codec"].as<std::string>(), "h264");
  EXPECT_EQ(m["width"].as<int>(), 768);
  EXPECT_DOUBLE_EQ(m["infer_ms"].as<double>(), 4.5);
  EXPECT_EQ(m["t_ns"].as<int64_t>(), 1234);
  EXPECT_EQ(m["bus_sent"].as<uint64_t>(), 100u);
  EXPECT_EQ(m["bus_dropped"].as<uint64_t>(), 2u);
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sc-pub-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::remove((path_ + "/in").c_str());
    rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A broker stand-in that subscribes to everything and never reads: the queue fills, and every
// message the publisher could not queue is counted as dropped, none silently.
TEST(Publisher, CountsDropsWhenTheQueueIsFull) {
  TempDir dir;
  const std::string endpoint = "ipc://" + dir.path() + "/in";
  zmq::context_t ctx;
  zmq::socket_t xsub(ctx, zmq::socket_type::xsub);
  xsub.set(zmq::sockopt::rcvhwm, 10);
  xsub.set(zmq::sockopt::linger, 0);
  xsub.bind(endpoint);
  const char subscribe_all = 1;
  (void)xsub.send(zmq::buffer(&subscribe_all, 1));

  PublisherOptions options;
  options.sndhwm = 10;
  options.linger_ms = 0;
  Publisher pub(endpoint, options);
  const std::vector<int64_t> ids = {1};
  const std::vector<int32_t> cls = {2};
  const std::vector<float> score = {0.5f};
  const std::vector<float> xyxy = {0, 0, 10, 10};
  TracksView view{1, ids.data(), xyxy.data(), score.data(), cls.data()};
  // Prime: publish until the stand-in receives one, so the subscription has arrived.
  zmq::message_t msg;
  bool primed = false;
  for (int i = 0; i < 5000 && !primed; ++i) {
    pub.PublishTracks("prime", FrameInfo{}, view);
    primed = xsub.recv(msg, zmq::recv_flags::dontwait).has_value();
    if (!primed) zmq_poll(nullptr, 0, 1);
  }
  ASSERT_TRUE(primed);
  const uint64_t sent0 = pub.sent();
  const uint64_t dropped0 = pub.dropped();
  const int attempts = 200000;
  int accepted = 0;
  for (int i = 0; i < attempts; ++i) {
    if (pub.PublishTracks("cam", FrameInfo{static_cast<uint64_t>(i), 0, 0, 64, 64}, view)) ++accepted;
  }
  EXPECT_GT(pub.dropped() - dropped0, 0u);
  EXPECT_EQ(pub.sent() - sent0, static_cast<uint64_t>(accepted));
  EXPECT_EQ(pub.sent() - sent0 + pub.dropped() - dropped0, static_cast<uint64_t>(attempts));
  // Sequence numbers advance for dropped messages too: subscribers see drops as gaps.
  EXPECT_EQ(pub.NextSeq("tracks.cam"), static_cast<uint64_t>(attempts));
  pub.Close();
  EXPECT_THROW(pub.PublishTracks("cam", FrameInfo{}, view), std::logic_error);
}

TEST(Publisher, RefusesBadEndpointAndCamera) {
  EXPECT_THROW(Publisher("nonsense://x"), std::invalid_argument);
  TempDir dir;
  Publisher pub("ipc://" + dir.path() + "/in");
  EXPECT_THROW(pub.PublishTracks("", FrameInfo{}, TracksView{}), std::invalid_argument);
  EXPECT_THROW(pub.PublishTracks(std::string(300, 'x'), FrameInfo{}, TracksView{}), std::invalid_argument);
}

}  // namespace
}  // namespace smartcity
