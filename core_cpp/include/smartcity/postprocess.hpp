// Post-processing: a detector's raw output tensors -> Detections per batch slot, in frame pixels.
//
// Four output layouts (docs/detection.md, DESIGN.md §3), float32, C-contiguous, batch first:
//   kYolo         one tensor [B, 4+C, N]: cx, cy, w, h in model pixels, then C class scores
//                 (YOLOv8 / YOLO11). Score = best class score.
//   kYoloV5       one tensor [B, N, 5+C]: cx, cy, w, h, objectness, C class scores.
//                 Score = objectness * best class score.
//   kBoxesScores  two tensors, boxes [B, N, 4] x1, y1, x2, y2 normalized to [0, 1] of the model
//                 input, then scores [B, N, C] (SSD style). Score = best class score.
//   kEnd2End      one tensor [B, K, 6]: x1, y1, x2, y2 (model pixels), score, class id, after
//                 in-model NMS (YOLOv10/26, TensorRT EfficientNMS style). No further NMS.
//
// For every slot b of the batch:
//   1. each candidate takes its best model class (argmax over all C classes); candidates whose
//      score is below every threshold (score_threshold and class_score_thresholds), not finite,
//      or whose box is not finite are dropped;
//   2. the model class goes through class_map (model class id -> appliance class id, -1 drops
//      the candidate, so does a class id outside the table); a candidate whose score is below
//      its appliance class's threshold (class_score_thresholds, else score_threshold) is dropped;
//   3. the box goes back to frame pixels with the slot geometry, x = (x' - pad_x) / scale_x,
//      y = (y' - pad_y) / scale_y (normalized boxes are first multiplied by input_w, input_h),
//      is clipped to [0, src_w] x [0, src_h] and dropped when nothing of it is left;
//   4. class-aware greedy NMS (not for kEnd2End): by score, highest first (ties: lower index
//      first), a box is dropped when its IoU with a kept box of the same appliance class is
//      above iou_threshold; at most max_candidates enter NMS and max_detections come out.
// Detections of a slot are ordered by score, highest first.
//
// No Python, no FFmpeg: bindings/postprocess.cpp hands numpy arrays in and out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "smartcity/detections.hpp"
#include "smartcity/geometry.hpp"

namespace smartcity {

enum class OutputFormat { kYolo = 0, kYoloV5 = 1, kBoxesScores = 2, kEnd2End = 3 };

// "yolo", "yolov5", "boxes_scores", "end2end".
const char* OutputFormatName(OutputFormat f);
// Throws std::invalid_argument listing the known names.
OutputFormat ParseOutputFormat(const std::string& name);
// How many output tensors a format takes (boxes_scores: 2, the others: 1).
int OutputTensorCount(OutputFormat f);

// A read-only view of one float32 C-contiguous output tensor.
struct TensorView {
  const float* data = nullptr;
  std::vector<int64_t> shape;
};

struct PostprocessConfig {
  OutputFormat format = OutputFormat::kYolo;
  int input_w = 640;  // model input size, for normalized boxes
  int input_h = 640;
  float score_threshold = 0.25f;
  float iou_threshold = 0.45f;
  int max_detections = 300;    // per slot, after NMS
  int max_candidates = 30000;  // per slot, best scores first, before NMS
  // Model class id -> appliance class id (-1: dropped). For yolo, yolov5 and boxes_scores it
  // must have exactly C entries; for end2end, class ids outside it are dropped.
  std::vector<int32_t> class_map;
  // Per appliance class id, the score a detection of that class needs (empty: score_threshold
  // for every class). Each entry in [0, 1]; a class id beyond the table takes score_threshold.
  std::vector<float> class_score_thresholds;

  void Validate() const;  // throws std::invalid_argument naming the bad field
  // The lowest threshold of any class: what a candidate must reach before its class is known.
  float MinScoreThreshold() const;
  float ThresholdFor(int32_t appliance_class) const {
    const auto i = static_cast<size_t>(appliance_class);
    return appliance_class >= 0 && i < class_score_thresholds.size() ? class_score_thresholds[i] : score_threshold;
  }
};

// Decodes `outputs` (OutputTensorCount(format) tensors) for slots.size() slots; the batch
// dimension of every tensor must equal slots.size(). Throws std::invalid_argument saying which
// tensor has which wrong shape, or which config field is bad.
std::vector<Detections> Postprocess(const std::vector<TensorView>& outputs, const std::vector<SlotGeometry>& slots,
                                    const PostprocessConfig& config);

// Intersection over union of two x1, y1, x2, y2 boxes (0 when the union is empty).
float BoxIou(const float* a, const float* b);

}  // namespace smartcity
