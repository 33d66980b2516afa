// Checks GPU decoding (NVDEC through FFmpeg's CUDA hwaccel, smartcity/hwdecode.hpp) on a machine
// with an NVIDIA GPU, and measures it against decoding on the CPU:
//   1. bit-exactness: every frame of the clip decoded on the GPU equals the CPU decoder's frame
//      (H.264 decoding is exact by the standard), plane by plane;
//   2. the stream path: a Pipeline stream with hwaccel=cuda decodes on the GPU (stats say nvdec)
//      and its batch slots equal the CPU reference conversion (Nv12ToTensorCpu) of the CPU-decoded
//      frame within 1/255; snapshots of GPU frames work;
//   3. fallback: a stream the GPU refuses (a frame wider than NVDEC takes) decodes on the CPU,
//      with the reason in hwaccel_note and last_error;
//   4. throughput: frames/s and CPU milliseconds per frame of decode + conversion into batch slots,
//      GPU against CPU, for 1 and N looping streams of each clip given.
// Usage: nvdec_check CLIP [--big CLIP_WIDER_THAN_4096] [--bench CLIP]... [--streams N] [--seconds S]
// Exit status: 0 pass, 1 fail, 77 (ctest SKIP_RETURN_CODE) when no GPU or no NVDEC is usable.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/frame.h>
#include <libavutil/pixfmt.h>
}

#include "smartcity/hwdecode.hpp"
#include "smartcity/nv12.hpp"
#include "smartcity/pipeline.hpp"

namespace {

using namespace smartcity;

constexpr int kSkip = 77;
int g_failures = 0;

void Check(bool ok, const std::string& what) {
  std::printf("  [%s] %s\n", ok ? "ok" : "FAIL", what.c_str());
  if (!ok) ++g_failures;
}

// One decoded frame as tightly packed 8-bit 4:2:0 planes Y, U, V (from yuv420p or NV12).
struct Planes {
  int w = 0, h = 0;
  std::vector<uint8_t> y, u, v;
};

Planes ToPlanes(const AVFrame* f) {
  Planes p;
  p.w = f->width;
  p.h = f->height;
  const int cw = (p.w + 1) / 2, ch = (p.h + 1) / 2;
  p.y.resize(static_cast<size_t>(p.w) * p.h);
  p.u.resize(static_cast<size_t>(cw) * ch);
  p.v.resize(p.u.size());
  for (int r = 0; r < p.h; ++r) std::memcpy(&p.y[static_cast<size_t>(r) * p.w], f->data[0] + r * f->linesize[0], p.w);
  for (int r = 0; r < ch; ++r) {
    for (int c = 0; c < cw; ++c) {
      const size_t i = static_cast<size_t>(r) * cw + c;
      if (f->format == AV_PIX_FMT_NV12) {
        p.u[i] = f->data[1][r * f->linesize[1] + 2 * c];
        p.v[i] = f->data[1][r * f->linesize[1] + 2 * c + 1];
      } else {
        p.u[i] = f->data[1][r * f->linesize[1] + c];
        p.v[i] = f->data[2][r * f->linesize[2] + c];
      }
    }
  }
  return p;
}

int MaxDiff(const Planes& a, const Planes& b) {
  if (a.w != b.w || a.h != b.h) return 256;
  int m = 0;
  for (size_t i = 0; i < a.y.size(); ++i) m = std::max(m, std::abs(a.y[i] - b.y[i]));
  for (size_t i = 0; i < a.u.size(); ++i) {
    m = std::max(m, std::abs(a.u[i] - b.u[i]));
    m = std::max(m, std::abs(a.v[i] - b.v[i]));
  }
  return m;
}

// Decodes a whole file with FFmpeg, on the GPU or the CPU; calls on_frame with host planes.
// Returns "" or the reason the GPU was not used (gpu=true only).
template <typename F>
std::string DecodeFile(const std::string& path, bool gpu, F on_frame, int* frames) {
  *frames = 0;
  AVFormatContext* fmt = nullptr;
  if (avformat_open_input(&fmt, path.c_str(), nullptr, nullptr) < 0) return "cannot open " + path;
  avformat_find_stream_info(fmt, nullptr);
  const AVCodec* codec = nullptr;
  const int vi = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (vi < 0 || !codec) {
    avformat_close_input(&fmt);
    return "no video in " + path;
  }
  AVCodecContext* dec = avcodec_alloc_context3(codec);
  avcodec_parameters_to_context(dec, fmt->streams[vi]->codecpar);
  dec->thread_count = 1;
  AVBufferRef* device = nullptr;
  bool refused = false;
  std::string why;
  if (gpu) why = AttachCudaDecoder(codec, dec, 0, &device, &refused);
  if (why.empty() && avcodec_open2(dec, codec, nullptr) < 0) why = "the decoder did not open";
  AVPacket* pkt = av_packet_alloc();
  AVFrame* frame = av_frame_alloc();
  AVFrame* host = av_frame_alloc();
  const auto drain = [&]() {
    while (avcodec_receive_frame(dec, frame) >= 0) {
      if (gpu && !IsCudaFrame(frame)) {
        if (why.empty()) why = refused ? "the GPU refused the stream" : "software frames from the GPU decoder";
      }
      if (IsCudaFrame(frame)) {
        DownloadFrame(frame, host);
        on_frame(*frames, ToPlanes(host), frame);
      } else {
        on_frame(*frames, ToPlanes(frame), frame);
      }
      ++*frames;
      av_frame_unref(frame);
    }
  };
  while (why.empty() && av_read_frame(fmt, pkt) >= 0) {
    if (pkt->stream_index == vi) avcodec_send_packet(dec, pkt);
    av_packet_unref(pkt);
    drain();
  }
  if (why.empty()) {
    avcodec_send_packet(dec, nullptr);
    drain();
  }
  av_frame_free(&host);
  av_frame_free(&frame);
  av_packet_free(&pkt);
  avcodec_free_context(&dec);
  av_buffer_unref(&device);
  avformat_close_input(&fmt);
  return why;
}

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

StreamConfig Camera(const std::string& id, const std::string& url, const std::string& hwaccel, bool loop) {
  StreamConfig c;
  c.camera_id = id;
  c.url = url;
  c.hwaccel = hwaccel;
  c.loop = loop;
  c.block_when_busy = true;
  c.analyze_fps = 0;
  c.pre_event_s = 0;
  return c;
}

TensorLayout Layout640() {
  TensorLayout l;
  l.width = 640;
  l.height = 640;
  return l;
}

// 2. The stream path against the CPU reference of the CPU-decoded frames. With device_batch the
// batches also live in device memory: the GPU stream's slots must be written there only, the CPU
// stream's copied up by DeviceData(), and what is read back from the device must be the same.
void CheckStreamPath(const std::string& clip, const std::vector<Planes>& reference, bool device_batch) {
  std::printf("stream path (hwaccel=cuda, 640x640 float32 letterbox slots%s) on %s\n",
              device_batch ? ", device batches" : "", clip.c_str());
  PipelineConfig pc;
  pc.layout = Layout640();
  pc.max_batch = 4;
  pc.device = device_batch ? 0 : -1;
  Pipeline pipeline(pc);
  std::unique_ptr<cuda::DeviceCopier> copier;
  if (device_batch) copier = std::make_unique<cuda::DeviceCopier>(0);
  std::vector<float> from_device(3 * pc.layout.PlaneElements());
  size_t misplaced = 0, host_mismatch = 0, device_slots = 0;
  pipeline.AddStream(Camera("gpu", clip, "cuda", false));
  pipeline.AddStream(Camera("cpu", clip, "none", false));
  const size_t plane = pc.layout.PlaneElements();
  std::map<int64_t, std::vector<float>> gpu_slots, cpu_slots;
  const size_t want = reference.size();
  for (int idle = 0; idle < 100 && (gpu_slots.size() < want || cpu_slots.size() < want);) {
    auto lease = pipeline.NextBatch(4, 100);
    if (!lease) {
      ++idle;
      continue;
    }
    const size_t slot_bytes = pc.layout.SlotBytes();
    uint8_t* d = nullptr;
    if (device_batch) {
      for (int i = 0; i < lease->size(); ++i) {
        const SlotMeta& m = lease->meta()[i];
        const SlotPlace want_place = m.camera_id == "gpu" && m.valid ? SlotPlace::kDevice : SlotPlace::kHost;
        misplaced += lease->place(i) != want_place;
      }
      d = lease->DeviceData();
    }
    for (int i = 0; i < lease->size(); ++i) {
      const SlotMeta& m = lease->meta()[i];
      if (m.frame_number >= static_cast<int64_t>(want) || !m.valid) continue;
      const float* p = reinterpret_cast<const float*>(lease->data() + i * slot_bytes);
      if (device_batch) {
        copier->ToHost(from_device.data(), d + i * slot_bytes, slot_bytes);
        copier->Wait();
        p = from_device.data();
        ++device_slots;
      }
      (m.camera_id == "gpu" ? gpu_slots : cpu_slots)[m.frame_number].assign(p, p + 3 * plane);
    }
    if (device_batch) {  // and the host copy, brought down, equals the device one
      const uint8_t* h = lease->HostData();
      for (int i = 0; i < lease->size(); ++i) {
        copier->ToHost(from_device.data(), d + i * slot_bytes, slot_bytes);
        copier->Wait();
        host_mismatch += std::memcmp(h + i * slot_bytes, from_device.data(), slot_bytes) != 0;
      }
    }
  }
  const StreamStatsSnapshot gs = pipeline.StreamStats("gpu");
  const StreamStatsSnapshot cs = pipeline.StreamStats("cpu");
  Check(gs.decoder == "nvdec", "the hwaccel=cuda stream decodes on the GPU (decoder '" + gs.decoder + "', note '" +
                                   gs.hwaccel_note + "', last_error '" + gs.last_error + "')");
  Check(cs.decoder == "cpu", "the hwaccel=none stream decodes on the CPU");
  if (device_batch) {
    Check(misplaced == 0,
          "device batches: GPU-decoded slots written in device memory only, CPU-decoded ones on the host (" +
              std::to_string(misplaced) + " misplaced)");
    Check(host_mismatch == 0, "device batches: HostData() brings the GPU-written slots down unchanged (" +
                                  std::to_string(host_mismatch) + " differ)");
    Check(device_slots > 0,
          "device batches: slots read back from device memory (" + std::to_string(device_slots) + ")");
  }
  Check(gpu_slots.size() == want && cpu_slots.size() == want,
        "slots of the first " + std::to_string(want) + " frames arrived (gpu " + std::to_string(gpu_slots.size()) +
            ", cpu " + std::to_string(cpu_slots.size()) + ")");

  double worst_ref = 0, sum_sw = 0;
  size_t n_sw = 0;
  std::vector<float> ref(3 * plane);
  std::vector<uint8_t> uv;
  for (const auto& [n, slot] : gpu_slots) {
    const Planes& f = reference[static_cast<size_t>(n)];
    uv.resize(f.u.size() * 2);
    for (size_t i = 0; i < f.u.size(); ++i) {
      uv[2 * i] = f.u[i];
      uv[2 * i + 1] = f.v[i];
    }
    Nv12Params p;
    p.src_w = f.w & ~1;
    p.src_h = f.h & ~1;
    p.y_pitch = f.w;
    p.uv_pitch = ((f.w + 1) / 2) * 2;
    p.dst_w = 640;
    p.dst_h = 640;
    Nv12ToTensorCpu(f.y.data(), uv.data(), p, ref.data());
    for (size_t i = 0; i < ref.size(); ++i)
      worst_ref = std::max(worst_ref, static_cast<double>(std::fabs(ref[i] - slot[i])));
    auto it = cpu_slots.find(n);
    if (it != cpu_slots.end()) {
      for (size_t i = 0; i < ref.size(); ++i) sum_sw += std::fabs(it->second[i] - slot[i]);
      n_sw += ref.size();
    }
  }
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "GPU slots equal the CPU reference of the CPU-decoded frames (max |diff| %.2g <= 1/255)", worst_ref);
  Check(!gpu_slots.empty() && worst_ref <= 1.0 / 255 + 1e-6, buf);
  const double mean_sw = n_sw ? sum_sw / n_sw : 1.0;
  std::snprintf(buf, sizeof(buf),
                "GPU slots are close to the CPU path's swscale slots (mean |diff| %.4f; filters differ) < 0.02",
                mean_sw);
  Check(mean_sw < 0.02, buf);
  std::vector<uint8_t> bgr;
  int w = 0, h = 0;
  int64_t number = -1;
  const bool snap = pipeline.LatestFrameBgr("gpu", &bgr, &w, &h, &number);
  Check(snap && w == reference[0].w && h == reference[0].h && bgr.size() == static_cast<size_t>(w) * h * 3,
        "a snapshot of a GPU-decoded frame (" + std::to_string(w) + "x" + std::to_string(h) + ")");
  pipeline.Close();
}

void CheckFallback(const std::string& big) {
  std::printf("fallback on %s\n", big.c_str());
  PipelineConfig pc;
  pc.layout = Layout640();
  Pipeline pipeline(pc);
  pipeline.AddStream(Camera("big", big, "cuda", false));
  int got = 0;
  for (int i = 0; i < 100 && got == 0; ++i) {
    auto lease = pipeline.NextBatch(4, 100);
    if (lease) got += lease->size();
  }
  const StreamStatsSnapshot s = pipeline.StreamStats("big");
  Check(got > 0 && s.decoder == "cpu" && !s.hwaccel_note.empty(),
        "a " + std::to_string(s.width) + "x" + std::to_string(s.height) + " stream decodes on the CPU (frames " +
            std::to_string(got) + ", note '" + s.hwaccel_note + "', last_error '" + s.last_error + "')");
  pipeline.Close();
}

struct Rate {
  double fps = 0;
  double cpu_ms_per_frame = 0;
  std::string decoder;
};

// Decoding alone (decode_only streams: no slot written), frames/s from the streams' counters.
Rate MeasureDecodeOnly(const std::string& clip, const std::string& hwaccel, int streams, double seconds) {
  PipelineConfig pc;
  pc.layout = Layout640();
  Pipeline pipeline(pc);
  for (int i = 0; i < streams; ++i) {
    StreamConfig c = Camera("s" + std::to_string(i), clip, hwaccel, true);
    c.decode_only = true;
    pipeline.AddStream(c);
  }
  const auto decoded = [&] {
    uint64_t n = 0;
    for (const auto& s : pipeline.Stats()) n += s.frames_decoded;
    return n;
  };
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const uint64_t f0 = decoded();
  const double c0 = CpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const uint64_t frames = decoded() - f0;
  Rate r;
  r.fps = frames / wall;
  r.cpu_ms_per_frame = frames > 0 ? 1e3 * (CpuSeconds() - c0) / frames : 0;
  r.decoder = pipeline.StreamStats("s0").decoder;
  pipeline.Close();
  return r;
}

Rate Measure(const std::string& clip, const std::string& hwaccel, int streams, double seconds) {
  PipelineConfig pc;
  pc.layout = Layout640();
  pc.max_batch = 8;
  pc.buffers = 4;
  Pipeline pipeline(pc);
  for (int i = 0; i < streams; ++i) pipeline.AddStream(Camera("s" + std::to_string(i), clip, hwaccel, true));
  const auto drain_for = [&](double s) {
    int64_t frames = 0;
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(s);
    while (std::chrono::steady_clock::now() < end) {
      auto lease = pipeline.NextBatch(8, 20);
      if (lease) frames += lease->size();
    }
    return frames;
  };
  drain_for(1.0);  // warm-up: contexts, decoders, first GOPs
  const double c0 = CpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t frames = drain_for(seconds);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = CpuSeconds() - c0;
  Rate r;
  r.fps = frames / wall;
  r.cpu_ms_per_frame = frames > 0 ? 1e3 * cpu / frames : 0;
  r.decoder = pipeline.StreamStats("s0").decoder;
  pipeline.Close();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: nvdec_check CLIP [--big CLIP] [--bench CLIP]... [--streams N] [--seconds S]\n");
    return 2;
  }
  const std::string clip = argv[1];
  std::string big;
  std::vector<std::string> bench;
  int streams = 16;
  double seconds = 4;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--big") big = argv[i + 1];
    if (a == "--bench") bench.push_back(argv[i + 1]);
    if (a == "--streams") streams = std::atoi(argv[i + 1]);
    if (a == "--seconds") seconds = std::atof(argv[i + 1]);
  }
  av_log_set_level(AV_LOG_ERROR);
  std::string why;
  if (!CudaDecodeAvailable(&why)) {
    std::printf("SKIP: %s\n", why.c_str());
    return kSkip;
  }

  // 1. Bit-exactness over the whole clip.
  std::printf("bit-exactness on %s\n", clip.c_str());
  std::vector<Planes> cpu_frames;
  int n_cpu = 0, n_gpu = 0, worst = 0;
  DecodeFile(
      clip, false, [&](int, Planes p, const AVFrame*) { cpu_frames.push_back(std::move(p)); }, &n_cpu);
  bool saw_cuda = false;
  why = DecodeFile(
      clip, true,
      [&](int n, Planes p, const AVFrame* f) {
        saw_cuda = saw_cuda || IsCudaFrame(f);
        worst = std::max(worst, n < n_cpu ? MaxDiff(p, cpu_frames[static_cast<size_t>(n)]) : 256);
      },
      &n_gpu);
  if (!saw_cuda) {
    std::printf("SKIP: NVDEC is not usable here: %s\n", why.empty() ? "no GPU frames" : why.c_str());
    return kSkip;
  }
  Check(why.empty(), "every frame came from the GPU" + (why.empty() ? std::string() : ": " + why));
  Check(n_gpu == n_cpu && n_cpu > 0, "frame count: GPU " + std::to_string(n_gpu) + ", CPU " + std::to_string(n_cpu));
  Check(worst == 0, "GPU frames equal the CPU decoder's, plane by plane (max |diff| " + std::to_string(worst) + ")");

  // 2. The stream path on the first 60 frames.
  cpu_frames.resize(std::min<size_t>(cpu_frames.size(), 60));
  CheckStreamPath(clip, cpu_frames, false);
  CheckStreamPath(clip, cpu_frames, true);
  cpu_frames.clear();

  // 3. Fallback.
  if (!big.empty()) CheckFallback(big);

  // 4. Throughput.
  for (const std::string& b : bench) {
    const Rate cpu = MeasureDecodeOnly(b, "none", streams, seconds);
    const Rate gpu = MeasureDecodeOnly(b, "cuda", streams, seconds);
    std::printf(
        "bench %s decode only, streams=%d: CPU %.0f frames/s, %.2f CPU ms/frame | NVDEC (%s) %.0f frames/s, %.2f CPU "
        "ms/frame\n",
        b.c_str(), streams, cpu.fps, cpu.cpu_ms_per_frame, gpu.decoder.c_str(), gpu.fps, gpu.cpu_ms_per_frame);
    for (int n : {1, streams}) {
      const Rate cpu = Measure(b, "none", n, seconds);
      const Rate gpu = Measure(b, "cuda", n, seconds);
      std::printf(
          "bench %s streams=%d: CPU decode %.0f frames/s, %.2f CPU ms/frame | NVDEC (%s) %.0f frames/s, %.2f CPU "
          "ms/frame | GPU/CPU frames/s %.2fx, CPU time per frame %.2fx less\n",
          b.c_str(), n, cpu.fps, cpu.cpu_ms_per_frame, gpu.decoder.c_str(), gpu.fps, gpu.cpu_ms_per_frame,
          cpu.fps > 0 ? gpu.fps / cpu.fps : 0,
          gpu.cpu_ms_per_frame > 0 ? cpu.cpu_ms_per_frame / gpu.cpu_ms_per_frame : 0);
    }
  }
  std::printf("%s: %d failure(s)\n", g_failures ? "FAIL" : "PASS", g_failures);
  return g_failures ? 1 : 0;
}
