#include "smartcity/postprocess.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace smartcity {

namespace {

struct Candidate {
  float box[4];  // frame pixels
  float score;
  int32_t cls;    // appliance class id
  int32_t index;  // position in the model output (tie-break)
};

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The box in model pixels -> frame pixels, clipped; false when nothing of it is left.
bool ToFrame(const SlotGeometry& g, float x1, float y1, float x2, float y2, float* out) {
  if (!std::isfinite(x1) || !std::isfinite(y1) || !std::isfinite(x2) || !std::isfinite(y2)) return false;
  const float w = static_cast<float>(g.src_w);
  const float h = static_cast<float>(g.src_h);
  out[0] = std::clamp((x1 - g.pad_x) / g.scale_x, 0.f, w);
  out[1] = std::clamp((y1 - g.pad_y) / g.scale_y, 0.f, h);
  out[2] = std::clamp((x2 - g.pad_x) / g.scale_x, 0.f, w);
  out[3] = std::clamp((y2 - g.pad_y) / g.scale_y, 0.f, h);
  return out[2] > out[0] && out[3] > out[1];
}

class SlotDecoder {
 public:
  // floor: c.MinScoreThreshold(), worked out once by the caller for every slot.
  SlotDecoder(const PostprocessConfig& c, const SlotGeometry& g, float floor) : c_(c), g_(g), floor_(floor) {}

  // A candidate with its best model class and score; boxes in model pixels.
  void Add(int32_t index, int model_class, float score, float x1, float y1, float x2, float y2) {
    if (!(score >= floor_) || !std::isfinite(score)) return;  // NaN fails the comparison
    if (model_class < 0 || model_class >= static_cast<int>(c_.class_map.size())) return;
    const int32_t cls = c_.class_map[static_cast<size_t>(model_class)];
    if (cls < 0 || !(score >= c_.ThresholdFor(cls))) return;
    Candidate cand;
    if (!ToFrame(g_, x1, y1, x2, y2, cand.box)) return;
    cand.score = score;
    cand.cls = cls;
    cand.index = index;
    cands_.push_back(cand);
  }

  Detections Finish(bool nms) {
    auto better = [](const Candidate& a, const Candidate& b) {
      return a.score > b.score || (a.score == b.score && a.index < b.index);
    };
    const size_t cap = static_cast<size_t>(c_.max_candidates);
    if (cands_.size() > cap) {
      std::partial_sort(cands_.begin(), cands_.begin() + static_cast<std::ptrdiff_t>(cap), cands_.end(), better);
      cands_.resize(cap);
    } else {
      std::sort(cands_.begin(), cands_.end(), better);
    }
    std::vector<const Candidate*> kept;
    const size_t max_det = static_cast<size_t>(c_.max_detections);
    for (const Candidate& cand : cands_) {
      if (kept.size() >= max_det) break;
      bool keep = true;
      if (nms) {
        for (const Candidate* k : kept) {
          if (k->cls == cand.cls && BoxIou(k->box, cand.box) > c_.iou_threshold) {
            keep = false;
            break;
          }
        }
      }
      if (keep) kept.push_back(&cand);
    }
    Detections d;
    d.xyxy.reserve(kept.size() * 4);
    d.score.reserve(kept.size());
    d.class_id.reserve(kept.size());
    for (const Candidate* k : kept) {
      d.xyxy.insert(d.xyxy.end(), k->box, k->box + 4);
      d.score.push_back(k->score);
      d.class_id.push_back(k->cls);
    }
    return d;
  }

 private:
  const PostprocessConfig& c_;
  const SlotGeometry& g_;
  const float floor_;
  std::vector<Candidate> cands_;
};

void CheckRank3(const TensorView& t, const char* what, const std::string& expected) {
  if (t.shape.size() != 3) {
    throw std::invalid_argument(std::string(what) + " must be " + expected + ", got " + ShapeString(t.shape));
  }
  for (int64_t d : t.shape) {
    if (d < 0) throw std::invalid_argument(std::string(what) + " has a negative dimension: " + ShapeString(t.shape));
  }
  if (t.data == nullptr && t.shape[0] * t.shape[1] * t.shape[2] > 0) {
    throw std::invalid_argument(std::string(what) + " has no data");
  }
}

void CheckClasses(const PostprocessConfig& c, int64_t classes) {
  if (classes < 1) throw std::invalid_argument("the output has no class scores (C = 0)");
  if (static_cast<int64_t>(c.class_map.size()) != classes) {
    throw std::invalid_argument("class_map has " + std::to_string(c.class_map.size()) + " entries but the " +
                                OutputFormatName(c.format) + " output has " + std::to_string(classes) + " classes");
  }
}

// Best class (argmax, NaN never wins) of `classes` scores `stride` apart.
inline void BestClass(const float* s, int64_t classes, int64_t stride, int* best_c, float* best) {
  *best = -std::numeric_limits<float>::infinity();
  *best_c = -1;
  for (int64_t c = 0; c < classes; ++c) {
    const float v = s[c * stride];
    if (v > *best) {
      *best = v;
      *best_c = static_cast<int>(c);
    }
  }
}

}  // namespace

const char* OutputFormatName(OutputFormat f) {
  switch (f) {
    case OutputFormat::kYolo: return "yolo";
    case OutputFormat::kYoloV5: return "yolov5";
    case OutputFormat::kBoxesScores: return "boxes_scores";
    case OutputFormat::kEnd2End: return "end2end";
  }
  return "?";
}

OutputFormat ParseOutputFormat(const std::string& name) {
  for (OutputFormat f :
       {OutputFormat::kYolo, OutputFormat::kYoloV5, OutputFormat::kBoxesScores, OutputFormat::kEnd2End}) {
    if (name == OutputFormatName(f)) return f;
  }
  throw std::invalid_argument("unknown output format '" + name + "' (known: yolo, yolov5, boxes_scores, end2end)");
}

int OutputTensorCount(OutputFormat f) { return f == OutputFormat::kBoxesScores ? 2 : 1; }

void PostprocessConfig::Validate() const {
  if (input_w <= 0 || input_h <= 0) {
    throw std::invalid_argument("input_w and input_h must be positive, got " + std::to_string(input_w) + "x" +
                                std::to_string(input_h));
  }
  if (!(score_threshold >= 0.f && score_threshold <= 1.f)) {
    throw std::invalid_argument("score_threshold must be in [0, 1], got " + std::to_string(score_threshold));
  }
  if (!(iou_threshold >= 0.f && iou_threshold <= 1.f)) {
    throw std::invalid_argument("iou_threshold must be in [0, 1], got " + std::to_string(iou_threshold));
  }
  if (max_detections < 1) throw std::invalid_argument("max_detections must be >= 1");
  if (max_candidates < 1) throw std::invalid_argument("max_candidates must be >= 1");
  if (class_map.empty()) throw std::invalid_argument("class_map is empty");
  for (size_t i = 0; i < class_score_thresholds.size(); ++i) {
    const float t = class_score_thresholds[i];
    if (!(t >= 0.f && t <= 1.f)) {
      throw std::invalid_argument("class_score_thresholds[" + std::to_string(i) + "] must be in [0, 1], got " +
                                  std::to_string(t));
    }
  }
}

float PostprocessConfig::MinScoreThreshold() const {
  float m = score_threshold;
  for (const float t : class_score_thresholds) m = std::min(m, t);
  return m;
}

float BoxIou(const float* a, const float* b) {
  const float iw = std::min(a[2], b[2]) - std::max(a[0], b[0]);
  const float ih = std::min(a[3], b[3]) - std::max(a[1], b[1]);
  if (iw <= 0.f || ih <= 0.f) return 0.f;
  const float inter = iw * ih;
  const float uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return uni > 0.f ? inter / uni : 0.f;
}

std::vector<Detections> Postprocess(const std::vector<TensorView>& outputs, const std::vector<SlotGeometry>& slots,
                                    const PostprocessConfig& c) {
  c.Validate();
  const float floor = c.MinScoreThreshold();
  const int want = OutputTensorCount(c.format);
  if (static_cast<int>(outputs.size()) != want) {
    throw std::invalid_argument(std::string(OutputFormatName(c.format)) + " takes " + std::to_string(want) +
                                " output tensor(s), got " + std::to_string(outputs.size()));
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    const SlotGeometry& g = slots[i];
    if (g.src_w <= 0 || g.src_h <= 0 || !(g.scale_x > 0.f) || !(g.scale_y > 0.f)) {
      throw std::invalid_argument("slot " + std::to_string(i) + " has no valid geometry (frame size " +
                                  std::to_string(g.src_w) + "x" + std::to_string(g.src_h) + ", scale " +
                                  std::to_string(g.scale_x) + ", " + std::to_string(g.scale_y) + ")");
    }
  }
  const int64_t batch = static_cast<int64_t>(slots.size());
  const float in_w = static_cast<float>(c.input_w);
  const float in_h = static_cast<float>(c.input_h);

  std::vector<Detections> result;
  result.reserve(slots.size());
  switch (c.format) {
    case OutputFormat::kYolo: {
      const TensorView& t = outputs[0];
      CheckRank3(t, "yolo output", "[B, 4+C, N]");
      if (t.shape[1] < 5)
        throw std::invalid_argument("yolo output must be [B, 4+C, N] with C >= 1, got " + ShapeString(t.shape));
      if (t.shape[0] != batch) break;
      const int64_t classes = t.shape[1] - 4, n = t.shape[2];
      CheckClasses(c, classes);
      std::vector<float> best(static_cast<size_t>(n));
      std::vector<int> best_c(static_cast<size_t>(n));
      for (int64_t b = 0; b < batch; ++b) {
        const float* p = t.data + b * t.shape[1] * n;
        // Class planes one after the other: each plane is read in order.
        std::fill(best.begin(), best.end(), -std::numeric_limits<float>::infinity());
        std::fill(best_c.begin(), best_c.end(), -1);
        for (int64_t k = 0; k < classes; ++k) {
          const float* plane = p + (4 + k) * n;
          for (int64_t i = 0; i < n; ++i) {
            if (plane[i] > best[static_cast<size_t>(i)]) {
              best[static_cast<size_t>(i)] = plane[i];
              best_c[static_cast<size_t>(i)] = static_cast<int>(k);
            }
          }
        }
        SlotDecoder dec(c, slots[static_cast<size_t>(b)], floor);
        for (int64_t i = 0; i < n; ++i) {
          if (!(best[static_cast<size_t>(i)] >= floor)) continue;
          const float cx = p[i], cy = p[n + i], w = p[2 * n + i], h = p[3 * n + i];
          dec.Add(static_cast<int32_t>(i), best_c[static_cast<size_t>(i)], best[static_cast<size_t>(i)], cx - w / 2,
                  cy - h / 2, cx + w / 2, cy + h / 2);
        }
        result.push_back(dec.Finish(true));
      }
      break;
    }
    case OutputFormat::kYoloV5: {
      const TensorView& t = outputs[0];
      CheckRank3(t, "yolov5 output", "[B, N, 5+C]");
      if (t.shape[2] < 6)
        throw std::invalid_argument("yolov5 output must be [B, N, 5+C] with C >= 1, got " + ShapeString(t.shape));
      if (t.shape[0] != batch) break;
      const int64_t classes = t.shape[2] - 5, n = t.shape[1], row = t.shape[2];
      CheckClasses(c, classes);
      for (int64_t b = 0; b < batch; ++b) {
        SlotDecoder dec(c, slots[static_cast<size_t>(b)], floor);
        for (int64_t i = 0; i < n; ++i) {
          const float* r = t.data + (b * n + i) * row;
          if (!(r[4] >= floor)) continue;  // obj * cls <= obj when cls <= 1
          int k;
          float best;
          BestClass(r + 5, classes, 1, &k, &best);
          const float cx = r[0], cy = r[1], w = r[2], h = r[3];
          dec.Add(static_cast<int32_t>(i), k, r[4] * best, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2);
        }
        result.push_back(dec.Finish(true));
      }
      break;
    }
    case OutputFormat::kBoxesScores: {
      const TensorView& boxes = outputs[0];
      const TensorView& scores = outputs[1];
      CheckRank3(boxes, "boxes_scores boxes (output 0)", "[B, N, 4]");
      CheckRank3(scores, "boxes_scores scores (output 1)", "[B, N, C]");
      if (boxes.shape[2] != 4) {
        throw std::invalid_argument("boxes_scores boxes (output 0) must be [B, N, 4], got " + ShapeString(boxes.shape));
      }
      if (scores.shape[0] != boxes.shape[0] || scores.shape[1] != boxes.shape[1]) {
        throw std::invalid_argument("boxes_scores: boxes " + ShapeString(boxes.shape) + " and scores " +
                                    ShapeString(scores.shape) + " disagree on B or N");
      }
      if (boxes.shape[0] != batch) break;
      const int64_t classes = scores.shape[2], n = boxes.shape[1];
      CheckClasses(c, classes);
      for (int64_t b = 0; b < batch; ++b) {
        SlotDecoder dec(c, slots[static_cast<size_t>(b)], floor);
        for (int64_t i = 0; i < n; ++i) {
          int k;
          float best;
          BestClass(scores.data + (b * n + i) * classes, classes, 1, &k, &best);
          if (!(best >= floor)) continue;
          const float* r = boxes.data + (b * n + i) * 4;
          dec.Add(static_cast<int32_t>(i), k, best, r[0] * in_w, r[1] * in_h, r[2] * in_w, r[3] * in_h);
        }
        result.push_back(dec.Finish(true));
      }
      break;
    }
    case OutputFormat::kEnd2End: {
      const TensorView& t = outputs[0];
      CheckRank3(t, "end2end output", "[B, K, 6]");
      if (t.shape[2] != 6) throw std::invalid_argument("end2end output must be [B, K, 6], got " + ShapeString(t.shape));
      if (t.shape[0] != batch) break;
      const int64_t k = t.shape[1];
      for (int64_t b = 0; b < batch; ++b) {
        SlotDecoder dec(c, slots[static_cast<size_t>(b)], floor);
        for (int64_t i = 0; i < k; ++i) {
          const float* r = t.data + (b * k + i) * 6;
          if (!std::isfinite(r[5])) continue;
          const float cls = std::round(r[5]);
          if (cls < 0.f || cls >= static_cast<float>(c.class_map.size())) continue;
          dec.Add(static_cast<int32_t>(i), static_cast<int>(cls), r[4], r[0], r[1], r[2], r[3]);
        }
        result.push_back(dec.Finish(false));
      }
      break;
    }
  }
  if (result.size() != slots.size()) {
    // Only the batch dimension is left to disagree (every other check throws above).
    const int64_t got = outputs[0].shape.empty() ? -1 : outputs[0].shape[0];
    throw std::invalid_argument("the output batch dimension is " + std::to_string(got) + " but the batch has " +
                                std::to_string(batch) + " slot(s)");
  }
  return result;
}

}  // namespace smartcity
