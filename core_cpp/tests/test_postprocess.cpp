// Post-processing on hand-made output tensors. Every expected box below was worked out by hand
// from the geometry in the test (x = (x' - pad_x) / scale_x), not by calling the code under test.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "smartcity/postprocess.hpp"

namespace smartcity {
namespace {

// A slot geometry written out by hand (no ComputeGeometry).
SlotGeometry Slot(int src_w, int src_h, float scale_x, float scale_y, float pad_x, float pad_y) {
  SlotGeometry g;
  g.src_w = src_w;
  g.src_h = src_h;
  g.scale_x = scale_x;
  g.scale_y = scale_y;
  g.pad_x = pad_x;
  g.pad_y = pad_y;
  return g;
}

PostprocessConfig Config(OutputFormat f, std::vector<int32_t> class_map, float score = 0.25f, float iou = 0.5f) {
  PostprocessConfig c;
  c.format = f;
  c.class_map = std::move(class_map);
  c.score_threshold = score;
  c.iou_threshold = iou;
  return c;
}

void ExpectBox(const Detections& d, size_t i, float x1, float y1, float x2, float y2) {
  ASSERT_LT(i, d.size());
  EXPECT_NEAR(d.xyxy[i * 4 + 0], x1, 1e-3f) << "box " << i;
  EXPECT_NEAR(d.xyxy[i * 4 + 1], y1, 1e-3f) << "box " << i;
  EXPECT_NEAR(d.xyxy[i * 4 + 2], x2, 1e-3f) << "box " << i;
  EXPECT_NEAR(d.xyxy[i * 4 + 3], y2, 1e-3f) << "box " << i;
}

// yolov5 rows [cx, cy, w, h, obj, one-hot class scores...] with obj = 1: score = the class score.
std::vector<float> V5Rows(const std::vector<std::vector<float>>& xyxy_score_cls, int classes) {
  std::vector<float> t;
  for (const auto& r : xyxy_score_cls) {
    t.insert(t.end(), {(r[0] + r[2]) / 2, (r[1] + r[3]) / 2, r[2] - r[0], r[3] - r[1], 1.f});
    for (int k = 0; k < classes; ++k) t.push_back(k == static_cast<int>(r[5]) ? r[4] : 0.f);
  }
  return t;
}

TEST(Postprocess, FormatNames) {
  EXPECT_EQ(ParseOutputFormat("yolo"), OutputFormat::kYolo);
  EXPECT_EQ(ParseOutputFormat("yolov5"), OutputFormat::kYoloV5);
  EXPECT_EQ(ParseOutputFormat("boxes_scores"), OutputFormat::kBoxesScores);
  EXPECT_EQ(ParseOutputFormat("end2end"), OutputFormat::kEnd2End);
  EXPECT_THROW(ParseOutputFormat("yolox"), std::invalid_argument);
  EXPECT_EQ(OutputTensorCount(OutputFormat::kBoxesScores), 2);
  EXPECT_EQ(OutputTensorCount(OutputFormat::kYolo), 1);
}

TEST(Postprocess, IouByHand) {
  const float a[4] = {0, 0, 100, 100};
  const float b[4] = {10, 0, 110, 100};  // overlap 90 x 100 = 9000, union 11000
  const float c[4] = {200, 200, 210, 210};
  EXPECT_NEAR(BoxIou(a, b), 9000.f / 11000.f, 1e-6f);
  EXPECT_EQ(BoxIou(a, c), 0.f);
  EXPECT_NEAR(BoxIou(a, a), 1.f, 1e-6f);
}

// 1280x720 letterboxed into 640x640: scale 0.5, picture from y = 140.
TEST(Postprocess, YoloLetterboxBackToFramePixels) {
  const int n = 3;
  // [1, 4+2, 3]: rows cx, cy, w, h, class 0, class 1; columns are anchors.
  const std::vector<float> t = {
      320, 10,  100,  // cx
      320, 10,  200,  // cy
      100, 4,   40,   // w
      50,  4,   40,   // h
      0.9, 0.1, 0.1,  // class 0
      0.1, 0.2, 0.6,  // class 1
  };
  auto c = Config(OutputFormat::kYolo, {2, 0});  // model class 0 -> car (2), 1 -> person (0)
  c.input_w = c.input_h = 640;
  const auto dets = Postprocess({{t.data(), {1, 6, n}}}, {Slot(1280, 720, 0.5f, 0.5f, 0.f, 140.f)}, c);
  ASSERT_EQ(dets.size(), 1u);
  const Detections& d = dets[0];
  ASSERT_EQ(d.size(), 2u);
  // anchor 0: model (270, 295)-(370, 345) -> frame (540, 310)-(740, 410)
  ExpectBox(d, 0, 540, 310, 740, 410);
  EXPECT_FLOAT_EQ(d.score[0], 0.9f);
  EXPECT_EQ(d.class_id[0], 2);
  // anchor 2: model (80, 180)-(120, 220) -> frame (160, 80)-(240, 160)
  ExpectBox(d, 1, 160, 80, 240, 160);
  EXPECT_FLOAT_EQ(d.score[1], 0.6f);
  EXPECT_EQ(d.class_id[1], 0);
}

TEST(Postprocess, YoloTwoSlotsEachWithItsGeometry) {
  // [2, 5, 1]: one class, one anchor per slot.
  const std::vector<float> t = {100, 100, 20, 20, 0.8f, /* slot 1 */ 100, 100, 20, 20, 0.7f};
  auto c = Config(OutputFormat::kYolo, {0});
  const auto dets = Postprocess({{t.data(), {2, 5, 1}}},
                                {Slot(640, 640, 1.f, 1.f, 0.f, 0.f), Slot(1920, 1080, 1.f / 3, 1.f / 3, 0.f, 50.f)}, c);
  ASSERT_EQ(dets.size(), 2u);
  ExpectBox(dets[0], 0, 90, 90, 110, 110);
  // slot 1: x = 90 * 3 = 270, 110 * 3 = 330; y = (90 - 50) * 3 = 120, (110 - 50) * 3 = 180
  ExpectBox(dets[1], 0, 270, 120, 330, 180);
  EXPECT_FLOAT_EQ(dets[1].score[0], 0.7f);
}

TEST(Postprocess, YoloV5ScoreIsObjectnessTimesClass) {
  // [1, 2, 5+1]
  const std::vector<float> t = {50, 50, 20, 20, 0.8f, 0.5f,   // 0.4: kept at 0.3
                                50, 80, 20, 20, 0.9f, 0.2f};  // 0.18: dropped
  const auto dets =
      Postprocess({{t.data(), {1, 2, 6}}}, {Slot(100, 100, 1, 1, 0, 0)}, Config(OutputFormat::kYoloV5, {0}, 0.3f));
  ASSERT_EQ(dets[0].size(), 1u);
  ExpectBox(dets[0], 0, 40, 40, 60, 60);
  EXPECT_NEAR(dets[0].score[0], 0.4f, 1e-6f);
}

// 768x576 stretched to 300x300: scale 300/768, 300/576. Normalized boxes times the frame size.
TEST(Postprocess, BoxesScoresNormalizedStretch) {
  const std::vector<float> boxes = {0.5f, 0.25f, 0.75f, 0.5f,  //
                                    0.1f, 0.1f,  0.2f,  0.2f};
  const std::vector<float> scores = {0.1f, 0.9f,     // class 1 (person)
                                     0.95f, 0.05f};  // class 0 (background): dropped
  auto c = Config(OutputFormat::kBoxesScores, {-1, 0}, 0.5f);
  c.input_w = c.input_h = 300;
  const auto dets = Postprocess({{boxes.data(), {1, 2, 4}}, {scores.data(), {1, 2, 2}}},
                                {Slot(768, 576, 300.f / 768, 300.f / 576, 0, 0)}, c);
  ASSERT_EQ(dets[0].size(), 1u);
  ExpectBox(dets[0], 0, 0.5f * 768, 0.25f * 576, 0.75f * 768, 0.5f * 576);
  EXPECT_FLOAT_EQ(dets[0].score[0], 0.9f);
  EXPECT_EQ(dets[0].class_id[0], 0);
}

TEST(Postprocess, End2EndKeepsOverlapsAndDropsUnknownClasses) {
  const std::vector<float> t = {10, 20, 30, 40, 0.9f,  2,   //
                                10, 20, 30, 40, 0.85f, 2,   // same box: no NMS for end2end
                                10, 20, 30, 40, 0.2f,  0,   // below threshold
                                10, 20, 30, 40, 0.8f,  7,   // class outside the map
                                10, 20, 30, 40, 0.7f,  1};  // mapped to -1
  const auto dets = Postprocess({{t.data(), {1, 5, 6}}}, {Slot(100, 100, 0.5f, 0.5f, 0, 0)},
                                Config(OutputFormat::kEnd2End, {0, -1, 5}, 0.5f));
  ASSERT_EQ(dets[0].size(), 2u);
  ExpectBox(dets[0], 0, 20, 40, 60, 80);
  EXPECT_EQ(dets[0].class_id[0], 5);
  EXPECT_FLOAT_EQ(dets[0].score[1], 0.85f);
}

TEST(Postprocess, ClassAwareNms) {
  // A (0,0)-(100,100) 0.9; B overlaps A by IoU 9000/11000 = 0.82, same class; C = B in another
  // class; D overlaps A by 5000/15000 = 0.33.
  const auto t = V5Rows(
      {{0, 0, 100, 100, 0.9f, 0}, {10, 0, 110, 100, 0.8f, 0}, {10, 0, 110, 100, 0.7f, 1}, {50, 0, 150, 100, 0.6f, 0}},
      2);
  const std::vector<SlotGeometry> slot = {Slot(1000, 1000, 1, 1, 0, 0)};
  const auto at_05 = Postprocess({{t.data(), {1, 4, 7}}}, slot, Config(OutputFormat::kYoloV5, {0, 1}, 0.25f, 0.5f));
  ASSERT_EQ(at_05[0].size(), 3u);  // A, C, D
  EXPECT_FLOAT_EQ(at_05[0].score[0], 0.9f);
  EXPECT_FLOAT_EQ(at_05[0].score[1], 0.7f);
  EXPECT_EQ(at_05[0].class_id[1], 1);
  EXPECT_FLOAT_EQ(at_05[0].score[2], 0.6f);
  const auto at_03 = Postprocess({{t.data(), {1, 4, 7}}}, slot, Config(OutputFormat::kYoloV5, {0, 1}, 0.25f, 0.3f));
  ASSERT_EQ(at_03[0].size(), 2u);  // A, C: D goes too
  // Both model classes mapped onto one appliance class: C is now suppressed by A.
  const auto merged = Postprocess({{t.data(), {1, 4, 7}}}, slot, Config(OutputFormat::kYoloV5, {3, 3}, 0.25f, 0.5f));
  ASSERT_EQ(merged[0].size(), 2u);  // A, D
  EXPECT_FLOAT_EQ(merged[0].score[1], 0.6f);
}

TEST(Postprocess, ScoreThresholdPerApplianceClass) {
  // Three boxes far apart: model class 0 (-> person, id 0) at 0.35 and 0.6, model class 1
  // (-> car, id 2) at 0.35. Persons need 0.5, cars take the default 0.3.
  const auto t = V5Rows({{0, 0, 10, 10, 0.35f, 0}, {100, 0, 110, 10, 0.6f, 0}, {200, 0, 210, 10, 0.35f, 1}}, 2);
  const std::vector<SlotGeometry> slot = {Slot(1000, 1000, 1, 1, 0, 0)};
  PostprocessConfig c = Config(OutputFormat::kYoloV5, {0, 2}, 0.3f);
  EXPECT_EQ(Postprocess({{t.data(), {1, 3, 7}}}, slot, c)[0].size(), 3u);
  c.class_score_thresholds = {0.5f, 0.3f, 0.3f};
  const auto d = Postprocess({{t.data(), {1, 3, 7}}}, slot, c);
  ASSERT_EQ(d[0].size(), 2u);
  EXPECT_FLOAT_EQ(d[0].score[0], 0.6f);
  EXPECT_EQ(d[0].class_id[0], 0);
  EXPECT_EQ(d[0].class_id[1], 2);
  // A class threshold below the default lets that class through where the default would not.
  c.score_threshold = 0.5f;
  c.class_score_thresholds = {0.5f, 0.5f, 0.2f};
  const auto low_car = Postprocess({{t.data(), {1, 3, 7}}}, slot, c);
  ASSERT_EQ(low_car[0].size(), 2u);  // the 0.6 person and the 0.35 car
  EXPECT_EQ(low_car[0].class_id[1], 2);
  c.class_score_thresholds = {0.5f, 1.5f};
  EXPECT_THROW(Postprocess({{t.data(), {1, 3, 7}}}, slot, c), std::invalid_argument);
}

TEST(Postprocess, MaxDetectionsKeepsTheBest) {
  std::vector<std::vector<float>> rows;
  const float s[5] = {0.3f, 0.9f, 0.5f, 0.7f, 0.6f};
  for (int i = 0; i < 5; ++i) rows.push_back({i * 20.f, 0, i * 20.f + 10, 10, s[i], 0});
  const auto t = V5Rows(rows, 1);
  auto c = Config(OutputFormat::kYoloV5, {0});
  c.max_detections = 3;
  const auto dets = Postprocess({{t.data(), {1, 5, 6}}}, {Slot(200, 200, 1, 1, 0, 0)}, c);
  ASSERT_EQ(dets[0].size(), 3u);
  EXPECT_FLOAT_EQ(dets[0].score[0], 0.9f);
  EXPECT_FLOAT_EQ(dets[0].score[1], 0.7f);
  EXPECT_FLOAT_EQ(dets[0].score[2], 0.6f);
  ExpectBox(dets[0], 1, 60, 0, 70, 10);
}

TEST(Postprocess, NonFiniteScoresAndBoxesDropped) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // [1, 4+1, 4]: anchors: NaN score, inf score, NaN box, good
  const std::vector<float> t = {10,  10,  nan,  50,  //
                                10,  10,  10,   50,  //
                                4,   4,   4,    4,   //
                                4,   4,   4,    4,   //
                                nan, inf, 0.9f, 0.8f};
  const auto dets =
      Postprocess({{t.data(), {1, 5, 4}}}, {Slot(100, 100, 1, 1, 0, 0)}, Config(OutputFormat::kYolo, {0}));
  ASSERT_EQ(dets[0].size(), 1u);
  EXPECT_FLOAT_EQ(dets[0].score[0], 0.8f);
}

TEST(Postprocess, BoxesClippedToTheFrameAndEmptyOnesDropped) {
  const std::vector<float> t = {-20, -10, 30,  20,  0.9f, 0,   // partly outside: clipped
                                90,  95,  130, 120, 0.8f, 0,   // past the bottom right: clipped
                                0,   150, 50,  160, 0.7f, 0,   // in the letterbox padding: dropped
                                20,  20,  10,  30,  0.6f, 0};  // x2 < x1: dropped
  const auto dets =
      Postprocess({{t.data(), {1, 4, 6}}}, {Slot(100, 100, 1, 1, 0, 0)}, Config(OutputFormat::kEnd2End, {0}));
  ASSERT_EQ(dets[0].size(), 2u);
  ExpectBox(dets[0], 0, 0, 0, 30, 20);
  ExpectBox(dets[0], 1, 90, 95, 100, 100);
}

TEST(Postprocess, EmptyOutputsGiveEmptyDetections) {
  const auto dets = Postprocess({{nullptr, {2, 84, 0}}}, {Slot(10, 10, 1, 1, 0, 0), Slot(10, 10, 1, 1, 0, 0)},
                                Config(OutputFormat::kYolo, std::vector<int32_t>(80, 0)));
  ASSERT_EQ(dets.size(), 2u);
  EXPECT_EQ(dets[0].size(), 0u);
  EXPECT_EQ(dets[1].size(), 0u);
}

TEST(Postprocess, WrongShapesAreRefusedWithTheReason) {
  const std::vector<float> buf(1000, 0.f);
  const std::vector<SlotGeometry> one = {Slot(10, 10, 1, 1, 0, 0)};
  auto expect_msg = [&](const std::vector<TensorView>& outs, const PostprocessConfig& c, const std::string& part) {
    try {
      Postprocess(outs, one, c);
      ADD_FAILURE() << "no exception, expected one mentioning '" << part << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_msg({{buf.data(), {1, 84}}}, Config(OutputFormat::kYolo, {0}), "[B, 4+C, N]");
  expect_msg({{buf.data(), {1, 84, 10}}}, Config(OutputFormat::kYolo, {0}), "class_map has 1 entries");
  expect_msg({{buf.data(), {2, 5, 10}}}, Config(OutputFormat::kYolo, {0}), "batch has 1 slot");
  expect_msg({{buf.data(), {1, 10, 4}}}, Config(OutputFormat::kBoxesScores, {0}), "takes 2 output tensor(s)");
  expect_msg({{buf.data(), {1, 10, 4}}, {buf.data(), {1, 9, 1}}}, Config(OutputFormat::kBoxesScores, {0}), "disagree");
  expect_msg({{buf.data(), {1, 10, 7}}}, Config(OutputFormat::kEnd2End, {0}), "[B, K, 6]");
  expect_msg({{buf.data(), {1, 10, 6}}}, Config(OutputFormat::kEnd2End, {}), "class_map is empty");
  expect_msg({{buf.data(), {1, 10, 6}}}, Config(OutputFormat::kEnd2End, {0}, 1.5f), "score_threshold");
}

}  // namespace
}  // namespace smartcity
