#include "smartcity/recorder.hpp"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/mathematics.h>
}

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <system_error>

#include "av_error.hpp"

namespace smartcity {

namespace {

std::string Seconds(double s) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.3f", s);
  return buf;
}

// Closes the output and removes the file unless Commit() was called.
struct Output {
  AVFormatContext* ctx = nullptr;
  std::string path;
  bool opened = false;
  bool committed = false;

  ~Output() {
    if (ctx) {
      if (opened) avio_closep(&ctx->pb);
      avformat_free_context(ctx);
    }
    if (opened && !committed) {
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
  }
};

void Check(int ret, const std::string& what) {
  if (ret < 0) throw ClipWriteError(what + ": " + AvError(ret));
}

}  // namespace

ClipInfo WriteClip(const RingPackets& in, const std::string& path) {
  if (in.packets.empty()) throw ClipRangeError("no packets to write");
  if (!in.codecpar) throw ClipWriteError("the ring holds no codec parameters");
  if (in.time_base_num <= 0 || in.time_base_den <= 0) throw ClipWriteError("the ring holds no time base");
  const AVRational in_tb{in.time_base_num, in.time_base_den};
  const double tb = av_q2d(in_tb);
  const char* codec_name = avcodec_get_name(in.codecpar->codec_id);

  Output out;
  out.path = path;
  Check(avformat_alloc_output_context2(&out.ctx, nullptr, "mp4", path.c_str()), "cannot make an MP4 muxer");
  if (avformat_query_codec(out.ctx->oformat, in.codecpar->codec_id, FF_COMPLIANCE_NORMAL) != 1) {
    throw ClipWriteError(std::string("codec ") + codec_name + " cannot be stored in MP4 without re-encoding");
  }
  AVStream* os = avformat_new_stream(out.ctx, nullptr);
  if (!os) throw std::bad_alloc();
  Check(avcodec_parameters_copy(os->codecpar, in.codecpar), "cannot copy the codec parameters");
  os->codecpar->codec_tag = 0;  // the muxer picks the MP4 tag (avc1, hvc1, ...)
  os->time_base = in_tb;

  int ret = avio_open(&out.ctx->pb, path.c_str(), AVIO_FLAG_WRITE);
  if (ret < 0) throw ClipWriteError("cannot write '" + path + "': " + AvError(ret));
  out.opened = true;
  AVDictionary* opts = nullptr;
  av_dict_set(&opts, "movflags", "+faststart", 0);
  ret = avformat_write_header(out.ctx, &opts);
  av_dict_free(&opts);
  Check(ret, "cannot write the MP4 header of '" + path + "'");

  // Each packet's offset (in time-base ticks) between its stream time and its own timestamp:
  // the loop offset of a looped file. The whole clip is then shifted to start at 0.
  auto offset_of = [&](size_t i) -> int64_t {
    const AVPacket* p = in.packets[i];
    const int64_t ts = p->pts != AV_NOPTS_VALUE ? p->pts : p->dts;
    if (ts == AV_NOPTS_VALUE) return 0;
    return std::llround(in.t[i] / tb) - ts;
  };
  int64_t base = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < in.packets.size(); ++i) {
    const AVPacket* p = in.packets[i];
    const int64_t dts = p->dts != AV_NOPTS_VALUE ? p->dts : p->pts;
    if (dts != AV_NOPTS_VALUE) base = std::min(base, dts + offset_of(i));
  }
  if (base == std::numeric_limits<int64_t>::max()) throw ClipWriteError("the packets carry no timestamps");

  std::unique_ptr<AVPacket, void (*)(AVPacket*)> pkt(av_packet_alloc(), [](AVPacket* p) { av_packet_free(&p); });
  if (!pkt) throw std::bad_alloc();
  int64_t last_dts = std::numeric_limits<int64_t>::min();
  double last_t = in.t.front();
  int64_t last_duration = 0;
  for (size_t i = 0; i < in.packets.size(); ++i) {
    Check(av_packet_ref(pkt.get(), in.packets[i]), "cannot reference a packet");
    const int64_t off = offset_of(i) - base;
    int64_t dts = pkt->dts != AV_NOPTS_VALUE ? pkt->dts : pkt->pts;
    int64_t pts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : dts;
    dts = dts == AV_NOPTS_VALUE ? last_dts + 1 : dts + off;
    pts = pts == AV_NOPTS_VALUE ? dts : pts + off;
    if (dts <= last_dts) dts = last_dts + 1;  // MP4 needs strictly increasing dts
    if (pts < dts) pts = dts;
    last_dts = dts;
    pkt->dts = dts;
    pkt->pts = pts;
    pkt->stream_index = 0;
    pkt->pos = -1;
    last_t = std::max(last_t, in.t[i]);
    if (pkt->duration > 0) last_duration = pkt->duration;
    av_packet_rescale_ts(pkt.get(), in_tb, os->time_base);
    ret = av_interleaved_write_frame(out.ctx, pkt.get());  // takes the reference
    Check(ret, "cannot write a packet to '" + path + "'");
  }
  Check(av_write_trailer(out.ctx), "cannot finish '" + path + "'");
  Check(avio_closep(&out.ctx->pb), "cannot close '" + path + "'");
  out.opened = false;
  out.committed = true;

  ClipInfo info;
  info.packets = static_cast<int>(in.packets.size());
  info.keyframe_start = (in.packets.front()->flags & AV_PKT_FLAG_KEY) != 0;
  info.first_s = in.t.front();
  info.last_s = last_t;
  double frame_s = last_duration > 0 ? last_duration * tb : 0;
  if (frame_s <= 0 && in.packets.size() > 1) frame_s = (last_t - info.first_s) / (in.packets.size() - 1);
  info.duration_s = last_t - info.first_s + frame_s;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  info.bytes = ec ? 0 : static_cast<int64_t>(size);
  info.codec = codec_name;
  return info;
}

ClipInfo WriteClip(const PacketRing& ring, double t0, double t1, const std::string& path) {
  if (!std::isfinite(t0) || !std::isfinite(t1)) throw std::invalid_argument("t0 and t1 must be finite");
  if (t1 < t0) throw std::invalid_argument("t1 (" + Seconds(t1) + ") is before t0 (" + Seconds(t0) + ")");
  RingPackets packets;
  const RingInfo held = ring.Copy(t0, t1, &packets);
  const std::string holds = held.packets == 0 ? std::string("the packet ring is empty")
                                              : "the packet ring holds " + Seconds(held.first_s) + " to " +
                                                    Seconds(held.last_s) + " s (stream time)";
  if (held.packets == 0)
    throw ClipRangeError("[" + Seconds(t0) + ", " + Seconds(t1) + "] s is not in the ring: " + holds);
  if (t1 > held.last_s) {
    throw ClipRangeError("t1 " + Seconds(t1) + " s is not in the ring yet: " + holds);
  }
  if (t1 < held.first_s || packets.packets.empty()) {
    throw ClipRangeError("[" + Seconds(t0) + ", " + Seconds(t1) + "] s is no longer in the ring: " + holds);
  }
  return WriteClip(packets, path);
}

}  // namespace smartcity
