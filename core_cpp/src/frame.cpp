#include "smartcity/frame.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

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

SwsContext* FrameConverter::CachedSws::Get(const AVFrame* f, int dst_w, int dst_h, int dst_fmt) {
  const int k[7] = {
      f->width, f->height, f->format, dst_w, dst_h, dst_fmt, SwsColorspace(f) * 2 + (IsFullRange(f) ? 1 : 0)};
  if (ctx && std::equal(k, k + 7, key)) return ctx;
  sws_freeContext(ctx);
  ctx = sws_getContext(f->width, f->height, static_cast<AVPixelFormat>(f->format), dst_w, dst_h,
                       static_cast<AVPixelFormat>(dst_fmt), SWS_BILINEAR, nullptr, nullptr, nullptr);
  if (!ctx) {
    std::fill(key, key + 7, -1);
    throw std::runtime_error(std::string("no swscale conversion from ") + PixFmtName(f->format) + " to " +
                             PixFmtName(dst_fmt));
  }
  if (!IsRgbInput(f)) {
    sws_setColorspaceDetails(ctx, sws_getCoefficients(SwsColorspace(f)), IsFullRange(f) ? 1 : 0,
                             sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
  }
  std::copy(k, k + 7, key);
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

SlotGeometry FrameConverter::ToSlot(const AVFrame* frame, uint8_t* slot) {
  const SlotGeometry g = ComputeGeometry(frame->width, frame->height, layout_.width, layout_.height, layout_.resize);
  const AVPixelFormat dst_fmt = layout_.dtype == DType::kFloat32 ? AV_PIX_FMT_GBRPF32 : AV_PIX_FMT_GBRP;
  SwsContext* ctx = slot_sws_.Get(frame, g.dst_w, g.dst_h, dst_fmt);

  PadBorders(slot, g);
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
  SwsContext* ctx = bgr_sws_.Get(frame, frame->width, frame->height, AV_PIX_FMT_BGR24);
  out->resize(static_cast<size_t>(frame->width) * frame->height * 3);
  uint8_t* dst[4] = {out->data(), nullptr, nullptr, nullptr};
  int dst_stride[4] = {frame->width * 3, 0, 0, 0};
  if (sws_scale(ctx, frame->data, frame->linesize, 0, frame->height, dst, dst_stride) <= 0) {
    throw std::runtime_error("swscale failed to convert the frame to BGR");
  }
}

}  // namespace smartcity
