// Colour conversion of decoded frames with libswscale: straight into a batch slot
// (planar RGB, float32 in [0,1] or uint8, letterboxed or stretched), or to BGR uint8.
#pragma once

#include <cstdint>
#include <vector>

#include "smartcity/batch.hpp"
#include "smartcity/geometry.hpp"

struct AVFrame;
struct SwsContext;

namespace smartcity {

class FrameConverter {
 public:
  explicit FrameConverter(TensorLayout layout);
  ~FrameConverter();
  FrameConverter(const FrameConverter&) = delete;
  FrameConverter& operator=(const FrameConverter&) = delete;

  // Writes the picture and the padding around it. `padded`, when given, is the placement whose
  // padding the slot already holds (from the frame written there before): padding that is in
  // place is not written again. Throws std::runtime_error on failure.
  SlotGeometry ToSlot(const AVFrame* frame, uint8_t* slot, const SlotGeometry* padded = nullptr);
  // Fills a slot with the pad value only.
  void FillPad(uint8_t* slot) const;
  // BGR uint8, frame->height rows of frame->width * 3 bytes.
  void ToBgr(const AVFrame* frame, std::vector<uint8_t>* out);

 private:
  void PadBorders(uint8_t* slot, const SlotGeometry& g) const;

  // One swscale context, rebuilt only when the source or target description changes.
  struct CachedSws {
    SwsContext* ctx = nullptr;
    int key[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    ~CachedSws();
    SwsContext* Get(const AVFrame* f, int dst_w, int dst_h, int dst_fmt, ResizeFilter filter);
  };

  // 8-bit YUV to float32: swscale resizes into YUV 4:4:4 scratch planes, then a vectorized loop
  // turns them into the R, G, B float planes (faster than swscale's own float output).
  bool YuvToFloatSlot(const AVFrame* frame, const SlotGeometry& g, uint8_t* slot);

  const TensorLayout layout_;
  CachedSws slot_sws_;
  CachedSws yuv_sws_;
  CachedSws bgr_sws_;
  std::vector<uint8_t> yuv_;  // scratch: three dst_w x dst_h planes
};

}  // namespace smartcity
