#include "smartcity/frame.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "smartcity/nv12.hpp"  // ComputeYuvToRgbCoeffs: one definition of the colour maths

#if defined(__x86_64__)
#include <immintrin.h>
#endif

extern "C" {
#include <libavutil/frame.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

namespace smartcity {

namespace {

// Deprecated "yuvj" formats are full range by definition.
bool IsFullRange(const AVFrame* f) {
  if (f->color_range == AVCOL_RANGE_JPEG) return true;
  switch (f->format) {
    case AV_PIX_FMT_YUVJ420P:
    case AV_PIX_FMT_YUVJ422P:
    case AV_PIX_FMT_YUVJ444P:
    case AV_PIX_FMT_YUVJ440P:
    case AV_PIX_FMT_YUVJ411P: return true;
    default: return false;
  }
}

int SwsColorspace(const AVFrame* f) {
  switch (f->colorspace) {
    case AVCOL_SPC_BT709: return SWS_CS_ITU709;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL: return SWS_CS_BT2020;
    case AVCOL_SPC_SMPTE240M: return SWS_CS_SMPTE240M;
    case AVCOL_SPC_FCC: return SWS_CS_FCC;
    default: return SWS_CS_ITU601;
  }
}

bool IsRgbInput(const AVFrame* f) {
  const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(static_cast<AVPixelFormat>(f->format));
  return d && (d->flags & AV_PIX_FMT_FLAG_RGB);
}

const char* PixFmtName(int fmt) {
  const char* n = av_get_pix_fmt_name(static_cast<AVPixelFormat>(fmt));
  return n ? n : "unknown pixel format";
}

}  // namespace

FrameConverter::CachedSws::~CachedSws() { sws_freeContext(ctx); }

SwsContext* FrameConverter::CachedSws::Get(const AVFrame* f, int dst_w, int dst_h, int dst_fmt, ResizeFilter filter) {
  const int k[8] = {f->width,
                    f->height,
                    f->format,
                    dst_w,
                    dst_h,
                    dst_fmt,
                    SwsColorspace(f) * 2 + (IsFullRange(f) ? 1 : 0),
                    static_cast<int>(filter)};
  if (ctx && std::equal(k, k + 8, key)) return ctx;
  sws_freeContext(ctx);
  int flags = SWS_BILINEAR;
  switch (filter) {
    case ResizeFilter::kAuto:
      // Area averaging for downscales of 2x and more: as good, and cheaper than the wide
      // bilinear filter swscale builds for them.
      flags = (f->width >= 2 * dst_w && f->height >= 2 * dst_h) ? SWS_AREA : SWS_BILINEAR;
      break;
    case ResizeFilter::kBilinear: flags = SWS_BILINEAR; break;
    case ResizeFilter::kFastBilinear: flags = SWS_FAST_BILINEAR; break;
    case ResizeFilter::kArea: flags = SWS_AREA; break;
  }
  ctx = sws_getContext(f->width, f->height, static_cast<AVPixelFormat>(f->format), dst_w, dst_h,
                       static_cast<AVPixelFormat>(dst_fmt), flags, nullptr, nullptr, nullptr);
  if (!ctx) {
    std::fill(key, key + 8, -1);
    throw std::runtime_error(std::string("no swscale conversion from ") + PixFmtName(f->format) + " to " +
                             PixFmtName(dst_fmt));
  }
  if (!IsRgbInput(f)) {
    const int* coefs = sws_getCoefficients(SwsColorspace(f));
    const int range = IsFullRange(f) ? 1 : 0;
    const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(static_cast<AVPixelFormat>(dst_fmt));
    if (d && !(d->flags & AV_PIX_FMT_FLAG_RGB)) {
      // YUV out: resize only, keep the matrix and the range.
      sws_setColorspaceDetails(ctx, coefs, range, coefs, range, 0, 1 << 16, 1 << 16);
    } else {
      sws_setColorspaceDetails(ctx, coefs, range, sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
    }
  }
  std::copy(k, k + 8, key);
  return ctx;
}

FrameConverter::FrameConverter(TensorLayout layout) : layout_(layout) { layout_.Validate(); }

FrameConverter::~FrameConverter() = default;

void FrameConverter::FillPad(uint8_t* slot) const {
  const size_t n = 3 * layout_.PlaneElements();
  if (layout_.dtype == DType::kFloat32) {
    std::fill_n(reinterpret_cast<float*>(slot), n, layout_.pad_value / 255.0f);
  } else {
    std::memset(slot, layout_.pad_value, n);
  }
}

void FrameConverter::PadBorders(uint8_t* slot, const SlotGeometry& g) const {
  const int W = layout_.width, H = layout_.height;
  const size_t es = layout_.ElementSize();
  const float pf = layout_.pad_value / 255.0f;
  const auto fill = [&](uint8_t* p, size_t count) {
    if (count == 0) return;
    if (es == 4) {
      std::fill_n(reinterpret_cast<float*>(p), count, pf);
    } else {
      std::memset(p, layout_.pad_value, count);
    }
  };
  for (int c = 0; c < 3; ++c) {
    uint8_t* plane = slot + static_cast<size_t>(c) * layout_.PlaneElements() * es;
    fill(plane, static_cast<size_t>(g.dst_y) * W);  // top rows
    const int bottom = g.dst_y + g.dst_h;
    fill(plane + static_cast<size_t>(bottom) * W * es, static_cast<size_t>(H - bottom) * W);
    const int right = g.dst_x + g.dst_w;
    if (g.dst_x > 0 || right < W) {
      for (int y = g.dst_y; y < bottom; ++y) {
        uint8_t* row = plane + static_cast<size_t>(y) * W * es;
        fill(row, static_cast<size_t>(g.dst_x));
        fill(row + static_cast<size_t>(right) * es, static_cast<size_t>(W - right));
      }
    }
  }
}

// One row of 4:4:4 YUV to three float rows, clamped to [0, 1]. This is the portable version;
// on AVX2 machines the one below runs instead.
static void YuvRowToRgbFloatPortable(const uint8_t* __restrict y, const uint8_t* __restrict u,
                                     const uint8_t* __restrict v, int n, const YuvToRgbCoeffs& c, float* __restrict r,
                                     float* __restrict g, float* __restrict b) {
  const float yo = c.y_offset, ys = c.y_scale, rv = c.r_v, gu = c.g_u, gv = c.g_v, bu = c.b_u;
  for (int x = 0; x < n; ++x) {
    const float yy = (static_cast<float>(y[x]) - yo) * ys;
    const float uu = static_cast<float>(u[x]) - 128.f;
    const float vv = static_cast<float>(v[x]) - 128.f;
    r[x] = std::min(1.f, std::max(0.f, yy + rv * vv));
    g[x] = std::min(1.f, std::max(0.f, yy + gu * uu + gv * vv));
    b[x] = std::min(1.f, std::max(0.f, yy + bu * uu));
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SMARTCITY_HAVE_AVX2_ROW 1
__attribute__((target("avx2"))) static inline __m256 Load8AsFloat(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
__attribute__((target("avx2"))) static inline __m256 Clamp01(__m256 a) {
  return _mm256_min_ps(_mm256_set1_ps(1.f), _mm256_max_ps(_mm256_setzero_ps(), a));
}
// Same maths, 8 pixels at a time. The tensor is written once and read by someone else later:
// streaming stores skip the read-for-ownership of lines that would only be overwritten.
__attribute__((target("avx2,fma"))) static void YuvRowToRgbFloatAvx2(const uint8_t* __restrict y,
                                                                     const uint8_t* __restrict u,
                                                                     const uint8_t* __restrict v, int n,
                                                                     const YuvToRgbCoeffs& c, float* __restrict r,
                                                                     float* __restrict g, float* __restrict b) {
  int x = 0;
  // Scalar until the outputs are 32-byte aligned (the planes share one alignment).
  while (x < n && (reinterpret_cast<uintptr_t>(r + x) & 31) != 0) ++x;
  if (x > 0) YuvRowToRgbFloatPortable(y, u, v, x, c, r, g, b);
  const __m256 yo = _mm256_set1_ps(c.y_offset), ys = _mm256_set1_ps(c.y_scale);
  const __m256 rv = _mm256_set1_ps(c.r_v), gu = _mm256_set1_ps(c.g_u), gv = _mm256_set1_ps(c.g_v);
  const __m256 bu = _mm256_set1_ps(c.b_u), half = _mm256_set1_ps(128.f);
  const bool aligned = (reinterpret_cast<uintptr_t>(g + x) & 31) == 0 && (reinterpret_cast<uintptr_t>(b + x) & 31) == 0;
  for (; x + 8 <= n; x += 8) {
    const __m256 yy = _mm256_mul_ps(_mm256_sub_ps(Load8AsFloat(y + x), yo), ys);
    const __m256 uu = _mm256_sub_ps(Load8AsFloat(u + x), half);
    const __m256 vv = _mm256_sub_ps(Load8AsFloat(v + x), half);
    const __m256 rr = Clamp01(_mm256_fmadd_ps(rv, vv, yy));
    const __m256 gg = Clamp01(_mm256_fmadd_ps(gv, vv, _mm256_fmadd_ps(gu, uu, yy)));
    const __m256 bb = Clamp01(_mm256_fmadd_ps(bu, uu, yy));
    if (aligned) {
      _mm256_stream_ps(r + x, rr);
      _mm256_stream_ps(g + x, gg);
      _mm256_stream_ps(b + x, bb);
    } else {
      _mm256_storeu_ps(r + x, rr);
      _mm256_storeu_ps(g + x, gg);
      _mm256_storeu_ps(b + x, bb);
    }
  }
  if (x < n) YuvRowToRgbFloatPortable(y + x, u + x, v + x, n - x, c, r + x, g + x, b + x);
}
#endif

static void YuvRowToRgbFloat(const uint8_t* y, const uint8_t* u, const uint8_t* v, int n, const YuvToRgbCoeffs& c,
                             float* r, float* g, float* b) {
#ifdef SMARTCITY_HAVE_AVX2_ROW
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2) return YuvRowToRgbFloatAvx2(y, u, v, n, c, r, g, b);
#endif
  YuvRowToRgbFloatPortable(y, u, v, n, c, r, g, b);
}

bool FrameConverter::YuvToFloatSlot(const AVFrame* frame, const SlotGeometry& g, uint8_t* slot) {
  const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(static_cast<AVPixelFormat>(frame->format));
  if (!d || (d->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_HWACCEL | AV_PIX_FMT_FLAG_PAL)) ||
      d->nb_components < 3 || d->comp[0].depth != 8) {
    return false;
  }
  const int cs = SwsColorspace(frame);
  if (cs != SWS_CS_ITU601 && cs != SWS_CS_ITU709) return false;
  SwsContext* ctx = yuv_sws_.Get(frame, g.dst_w, g.dst_h, AV_PIX_FMT_YUV444P, layout_.filter);
  const size_t plane = static_cast<size_t>(g.dst_w) * g.dst_h;
  yuv_.resize(3 * plane);
  uint8_t* planes[4] = {yuv_.data(), yuv_.data() + plane, yuv_.data() + 2 * plane, nullptr};
  int strides[4] = {g.dst_w, g.dst_w, g.dst_w, 0};
  if (sws_scale(ctx, frame->data, frame->linesize, 0, frame->height, planes, strides) <= 0) {
    throw std::runtime_error("swscale failed to resize the frame");
  }
  const YuvToRgbCoeffs c =
      ComputeYuvToRgbCoeffs(cs == SWS_CS_ITU709 ? ColorMatrix::kBt709 : ColorMatrix::kBt601, IsFullRange(frame));
  float* out = reinterpret_cast<float*>(slot);
  const size_t tensor_plane = layout_.PlaneElements();
  for (int row = 0; row < g.dst_h; ++row) {
    const size_t src = static_cast<size_t>(row) * g.dst_w;
    const size_t dst = static_cast<size_t>(g.dst_y + row) * layout_.width + g.dst_x;
    YuvRowToRgbFloat(planes[0] + src, planes[1] + src, planes[2] + src, g.dst_w, c, out + dst, out + tensor_plane + dst,
                     out + 2 * tensor_plane + dst);
  }
#ifdef SMARTCITY_HAVE_AVX2_ROW
  _mm_sfence();  // streaming stores are visible to the consumer before the slot is committed
#endif
  return true;
}

SlotGeometry FrameConverter::ToSlot(const AVFrame* frame, uint8_t* slot, const SlotGeometry* padded) {
  const SlotGeometry g = ComputeGeometry(frame->width, frame->height, layout_.width, layout_.height, layout_.resize);
  const bool pad = !(padded && padded->SamePlacement(g));
  if (layout_.dtype == DType::kFloat32 && YuvToFloatSlot(frame, g, slot)) {
    if (pad) PadBorders(slot, g);
    return g;
  }
  const AVPixelFormat dst_fmt = layout_.dtype == DType::kFloat32 ? AV_PIX_FMT_GBRPF32 : AV_PIX_FMT_GBRP;
  SwsContext* ctx = slot_sws_.Get(frame, g.dst_w, g.dst_h, dst_fmt, layout_.filter);

  if (pad) PadBorders(slot, g);
  const size_t es = layout_.ElementSize();
  const size_t plane_bytes = layout_.PlaneElements() * es;
  const size_t offset = (static_cast<size_t>(g.dst_y) * layout_.width + g.dst_x) * es;
  // Planar GBR order: G, B, R. The tensor's planes are R, G, B.
  uint8_t* dst[4] = {slot + plane_bytes + offset, slot + 2 * plane_bytes + offset, slot + offset, nullptr};
  const int stride = static_cast<int>(layout_.width * es);
  int dst_stride[4] = {stride, stride, stride, 0};
  const int rows = sws_scale(ctx, frame->data, frame->linesize, 0, frame->height, dst, dst_stride);
  if (rows <= 0) throw std::runtime_error("swscale failed to convert the frame");
  return g;
}

void FrameConverter::ToBgr(const AVFrame* frame, std::vector<uint8_t>* out) {
  SwsContext* ctx = bgr_sws_.Get(frame, frame->width, frame->height, AV_PIX_FMT_BGR24, ResizeFilter::kBilinear);
  out->resize(static_cast<size_t>(frame->width) * frame->height * 3);
  uint8_t* dst[4] = {out->data(), nullptr, nullptr, nullptr};
  int dst_stride[4] = {frame->width * 3, 0, 0, 0};
  if (sws_scale(ctx, frame->data, frame->linesize, 0, frame->height, dst, dst_stride) <= 0) {
    throw std::runtime_error("swscale failed to convert the frame to BGR");
  }
}

}  // namespace smartcity
