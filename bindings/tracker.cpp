#include "smartcity/tracker.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "exports.hpp"
#include "homography.hpp"

namespace py = pybind11;

namespace smartcity::bindings {

namespace {

using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;
using I32Array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

// The tracker and a lock: update runs without the GIL, so two Python threads must not enter it
// at once.
struct PyTracker {
  explicit PyTracker(const TrackerConfig& c) : tracker(c) {}
  ByteTracker tracker;
  std::mutex mutex;
};

template <typename T>
py::array View(py::object self, const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  py::array a(py::dtype::of<T>(), std::move(shape), v.empty() ? nullptr : v.data(), self);
  a.attr("setflags")(py::arg("write") = false);
  return a;
}

std::string Shape(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

}  // namespace

void SetBottomBias(TrackerConfig& c, const BottomBias& bias, const std::vector<int>& classes, double scale) {
  c.bottom_bias_scale = scale;
  c.bottom_bias_h.clear();
  c.bottom_bias_px.clear();
  c.bottom_bias_classes = 0;
  if (!bias) return;
  for (const auto& [h, px] : *bias) {
    c.bottom_bias_h.push_back(h);
    c.bottom_bias_px.push_back(px);
  }
  c.bottom_bias_classes = ClassMask(classes, "bottom_bias_classes");
}

void SetRecovery(TrackerConfig& c, double recover_s, double gate_m, double min_s, const std::vector<int>& classes) {
  c.recover_s = recover_s;
  c.recover_gate_m = gate_m;
  c.recover_min_s = min_s;
  c.recover_classes = ClassMask(classes, "recover_classes");
}

uint32_t ClassMask(const std::vector<int>& classes, const char* field) {
  uint32_t mask = 0;
  for (int k : classes) {
    if (k < 0 || k > 31)
      throw std::invalid_argument(std::string(field) + ": class ids must be in 0..31, got " + std::to_string(k));
    mask |= 1u << k;
  }
  return mask;
}

void ExportTracker(py::module_& m) {
  py::enum_<TrackState>(m, "TrackState", "Life of a track: tentative -> confirmed <-> lost -> removed.")
      .value("tentative", TrackState::kTentative)
      .value("confirmed", TrackState::kConfirmed)
      .value("lost", TrackState::kLost)
      .value("removed", TrackState::kRemoved);

  py::class_<Tracks>(m, "Tracks",
                     "The tracks output by one ByteTracker.update, struct of arrays (read-only numpy views): "
                     "track_id (N,) int64, xyxy (N, 4) float32, score (N,) float32, class_id (N,) int32, "
                     "state (N,) int8 (TrackState values).")
      .def("__len__", &Tracks::size)
      .def_property_readonly("track_id",
                             [](py::object self) {
                               const auto& t = self.cast<const Tracks&>();
                               return View(self, t.track_id, {static_cast<py::ssize_t>(t.size())});
                             })
      .def_property_readonly("xyxy",
                             [](py::object self) {
                               const auto& t = self.cast<const Tracks&>();
                               return View(self, t.xyxy, {static_cast<py::ssize_t>(t.size()), 4});
                             })
      .def_property_readonly("score",
                             [](py::object self) {
                               const auto& t = self.cast<const Tracks&>();
                               return View(self, t.score, {static_cast<py::ssize_t>(t.size())});
                             })
      .def_property_readonly("class_id",
                             [](py::object self) {
                               const auto& t = self.cast<const Tracks&>();
                               return View(self, t.class_id, {static_cast<py::ssize_t>(t.size())});
                             })
      .def_property_readonly("state",
                             [](py::object self) {
                               const auto& t = self.cast<const Tracks&>();
                               return View(self, t.state, {static_cast<py::ssize_t>(t.size())});
                             })
      .def_property_readonly("ground_xy",
                             [](py::object self) {
                               const auto& t = self.cast<const Tracks&>();
                               return View(self, t.ground_xy, {static_cast<py::ssize_t>(t.size()), 2});
                             })
      .def_property_readonly("speed_kmh",
                             [](py::object self) {
                               const auto& t = self.cast<const Tracks&>();
                               return View(self, t.speed_kmh, {static_cast<py::ssize_t>(t.size())});
                             })
      .def("__repr__", [](const Tracks& t) { return "Tracks(" + std::to_string(t.size()) + ")"; });

  py::class_<PyTracker>(m, "ByteTracker", "ByteTrack multi-object tracker for one stream (docs/tracking.md).")
      .def(py::init([](float track_thresh, float match_thresh, int track_buffer, double frame_rate, float low_thresh,
                       float second_match_thresh, float unconfirmed_match_thresh, std::optional<float> new_track_thresh,
                       bool fuse_score, int trajectory_length, double speed_window_s, float duplicate_iou,
                       int crowd_class, double speed_long_window_s, double speed_curvature_z,
                       const std::string& speed_filter, double speed_accel, double speed_noise_px,
                       double speed_noise_frac, const BottomBias& bottom_bias,
                       const std::vector<int>& bottom_bias_classes, double bottom_bias_scale, double recover_s,
                       double recover_gate_m, double recover_min_s, const std::vector<int>& recover_classes) {
             TrackerConfig c;
             c.track_thresh = track_thresh;
             c.match_thresh = match_thresh;
             c.track_buffer = track_buffer;
             c.frame_rate = frame_rate;
             c.low_thresh = low_thresh;
             c.second_match_thresh = second_match_thresh;
             c.unconfirmed_match_thresh = unconfirmed_match_thresh;
             c.new_track_thresh = new_track_thresh.value_or(-1.f);
             c.fuse_score = fuse_score;
             c.trajectory_length = trajectory_length;
             c.speed_window_s = speed_window_s;
             c.duplicate_iou = duplicate_iou;
             c.crowd_class = crowd_class;
             c.speed_long_window_s = speed_long_window_s;
             c.speed_curvature_z = speed_curvature_z;
             c.speed_filter = ParseSpeedFilter(speed_filter);
             c.speed_accel = speed_accel;
             c.speed_noise_px = speed_noise_px;
             c.speed_noise_frac = speed_noise_frac;
             SetBottomBias(c, bottom_bias, bottom_bias_classes, bottom_bias_scale);
             SetRecovery(c, recover_s, recover_gate_m, recover_min_s, recover_classes);
             return std::make_unique<PyTracker>(c);
           }),
           py::arg("track_thresh") = 0.5f, py::arg("match_thresh") = 0.8f, py::arg("track_buffer") = 30,
           py::arg("frame_rate") = 10.0, py::kw_only(), py::arg("low_thresh") = 0.1f,
           py::arg("second_match_thresh") = 0.5f, py::arg("unconfirmed_match_thresh") = 0.7f,
           py::arg("new_track_thresh") = py::none(), py::arg("fuse_score") = true, py::arg("trajectory_length") = 30,
           py::arg("speed_window_s") = 1.0, py::arg("duplicate_iou") = 0.4f, py::arg("crowd_class") = 0,
           py::arg("speed_long_window_s") = 3.0, py::arg("speed_curvature_z") = 5.0, py::arg("speed_filter") = "kalman",
           py::arg("speed_accel") = 3.0, py::arg("speed_noise_px") = 1.5, py::arg("speed_noise_frac") = 0.08,
           py::arg("bottom_bias") = py::none(), py::arg("bottom_bias_classes") = kBottomBiasDefaultClasses,
           py::arg("bottom_bias_scale") = 1.0, py::arg("recover_s") = 2.0, py::arg("recover_gate_m") = 1.5,
           py::arg("recover_min_s") = 0.5, py::arg("recover_classes") = kRecoverDefaultClasses)
      .def(
          "update",
          [](PyTracker& self, const py::object& xyxy_obj, const py::object& scores_obj, const py::object& class_ids_obj,
             std::optional<double> timestamp) {
            const F32Array xyxy = F32Array::ensure(xyxy_obj);
            const F32Array scores = F32Array::ensure(scores_obj);
            const I32Array class_ids = I32Array::ensure(class_ids_obj);
            if (!xyxy) throw std::invalid_argument("xyxy must be an array of numbers of shape (N, 4)");
            if (!scores) throw std::invalid_argument("scores must be an array of numbers of shape (N,)");
            if (!class_ids) throw std::invalid_argument("class_ids must be an array of integers of shape (N,)");
            if (xyxy.ndim() != 2 || xyxy.shape(1) != 4)
              throw std::invalid_argument("xyxy must have shape (N, 4), got " + Shape(xyxy));
            const py::ssize_t n = xyxy.shape(0);
            if (scores.ndim() != 1 || scores.shape(0) != n)
              throw std::invalid_argument("scores must have shape (" + std::to_string(n) + ",), got " + Shape(scores));
            if (class_ids.ndim() != 1 || class_ids.shape(0) != n)
              throw std::invalid_argument("class_ids must have shape (" + std::to_string(n) + ",), got " +
                                          Shape(class_ids));
            if (timestamp && !(*timestamp >= 0)) throw std::invalid_argument("timestamp must be >= 0");
            Detections d;
            d.xyxy.assign(xyxy.data(), xyxy.data() + 4 * n);
            d.score.assign(scores.data(), scores.data() + n);
            d.class_id.assign(class_ids.data(), class_ids.data() + n);
            Tracks out;
            {
              py::gil_scoped_release release;
              std::lock_guard<std::mutex> lock(self.mutex);
              out = self.tracker.Update(d, timestamp.value_or(-1.0));
            }
            return out;
          },
          py::arg("xyxy"), py::arg("scores"), py::arg("class_ids"), py::arg("timestamp") = py::none(),
          "One analysed frame's detections -> the confirmed tracks matched in it. timestamp in seconds "
          "(default: frame index / frame_rate). ValueError naming the argument for a wrong shape or a "
          "non-finite number.")
      .def(
          "reset",
          [](PyTracker& self) {
            py::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(self.mutex);
            self.tracker.Reset();
          },
          "Forget every track; ids start at 1 again.")
      .def(
          "set_calibration",
          [](PyTracker& self, const py::object& h) {
            const std::array<double, 9> m = HomographyFrom(h, "image_to_ground");
            std::lock_guard<std::mutex> lock(self.mutex);
            self.tracker.SetCalibration(m);
          },
          py::arg("image_to_ground"),
          "Image (pixels) -> ground (metres) homography: tracks get ground_xy (bottom centre of the box) "
          "and speed_kmh over speed_window_s.")
      .def(
          "clear_calibration",
          [](PyTracker& self) {
            std::lock_guard<std::mutex> lock(self.mutex);
            self.tracker.ClearCalibration();
          },
          "Back to image coordinates only (ground_xy and speed_kmh NaN).")
      .def_property_readonly("calibrated",
                             [](PyTracker& self) {
                               std::lock_guard<std::mutex> lock(self.mutex);
                               return self.tracker.calibrated();
                             })
      .def(
          "trajectory",
          [](PyTracker& self, int64_t track_id) {
            std::vector<TrajectoryPoint> points;
            {
              py::gil_scoped_release release;
              std::lock_guard<std::mutex> lock(self.mutex);
              points = self.tracker.Trajectory(track_id);
            }
            py::array_t<double> a({static_cast<py::ssize_t>(points.size()), static_cast<py::ssize_t>(3)});
            auto r = a.mutable_unchecked<2>();
            for (size_t i = 0; i < points.size(); ++i) {
              r(i, 0) = points[i].t;
              r(i, 1) = points[i].cx;
              r(i, 2) = points[i].cy;
            }
            return a;
          },
          py::arg("track_id"),
          "The last trajectory_length points (t seconds, cx, cy pixels) of a live track, oldest first; "
          "(0, 3) when no confirmed or lost track has this id.")
      .def_property_readonly("frame_count",
                             [](PyTracker& self) {
                               std::lock_guard<std::mutex> lock(self.mutex);  // held briefly by update's peers
                               return self.tracker.frame_count();
                             })
      .def_property_readonly("max_frames_lost", [](PyTracker& self) { return self.tracker.max_frames_lost(); })
      .def_property_readonly("track_thresh", [](PyTracker& self) { return self.tracker.config().track_thresh; })
      .def_property_readonly("match_thresh", [](PyTracker& self) { return self.tracker.config().match_thresh; })
      .def_property_readonly("track_buffer", [](PyTracker& self) { return self.tracker.config().track_buffer; })
      .def_property_readonly("frame_rate", [](PyTracker& self) { return self.tracker.config().frame_rate; });
}

}  // namespace smartcity::bindings
