#include "smartcity/postprocess.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "exports.hpp"
#include "postprocess_args.hpp"

namespace py = pybind11;

namespace smartcity::bindings {

namespace {

using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;
using I32Array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

// A read-only numpy view of a vector held by the Detections object `self`.
template <typename T>
py::array View(py::object self, const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  py::array a(py::dtype::of<T>(), std::move(shape), v.empty() ? nullptr : v.data(), self);
  a.attr("setflags")(py::arg("write") = false);
  return a;
}

void CheckRows(const py::array& a, const char* name, py::ssize_t rows, py::ssize_t cols) {
  const bool ok =
      cols == 0 ? (a.ndim() == 1 && a.shape(0) == rows) : (a.ndim() == 2 && a.shape(0) == rows && a.shape(1) == cols);
  if (!ok) {
    throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(rows) +
                                (cols ? ", " + std::to_string(cols) : std::string(",")) + ")");
  }
}

}  // namespace

PostprocessConfig MakePostprocessConfig(const std::string& format, int input_w, int input_h, const I32Array& class_map,
                                        float score_threshold, float iou_threshold, int max_detections,
                                        const py::object& class_score_thresholds) {
  PostprocessConfig c;
  c.format = ParseOutputFormat(format);
  c.input_w = input_w;
  c.input_h = input_h;
  c.score_threshold = score_threshold;
  c.iou_threshold = iou_threshold;
  c.max_detections = max_detections;
  if (class_map.ndim() != 1) throw std::invalid_argument("class_map must be 1-D");
  c.class_map.assign(class_map.data(), class_map.data() + class_map.shape(0));
  if (!class_score_thresholds.is_none()) {
    const auto t = F32Array::ensure(class_score_thresholds);
    if (!t || t.ndim() != 1) throw std::invalid_argument("class_score_thresholds must be a 1-D array of numbers");
    c.class_score_thresholds.assign(t.data(), t.data() + t.shape(0));
  }
  return c;
}

py::list RunPostprocess(const py::sequence& outputs, std::vector<SlotGeometry> slots, const std::vector<bool>& valid,
                        const PostprocessConfig& c) {
  std::vector<F32Array> keep;  // float32 C-contiguous copies where needed, alive during the work
  std::vector<TensorView> views;
  for (const py::handle h : outputs) {
    keep.push_back(F32Array::ensure(h));
    if (!keep.back()) throw std::invalid_argument("outputs must be numpy arrays of numbers");
    TensorView v;
    v.data = keep.back().data();
    for (py::ssize_t d = 0; d < keep.back().ndim(); ++d) v.shape.push_back(keep.back().shape(d));
    views.push_back(std::move(v));
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    if (valid[i]) continue;
    slots[i] = SlotGeometry{};  // padding only: a harmless geometry (scale 1, a 1x1 frame)
    slots[i].src_w = slots[i].src_h = 1;
  }
  std::vector<Detections> dets;
  {
    py::gil_scoped_release release;
    dets = Postprocess(views, slots, c);
  }
  py::list out;
  for (size_t i = 0; i < dets.size(); ++i) out.append(valid[i] ? py::cast(std::move(dets[i])) : py::cast(Detections{}));
  return out;
}

void ExportPostprocess(py::module_& m) {
  py::class_<Detections>(m, "Detections",
                         "Detections of one frame as a struct of arrays: xyxy (N, 4) float32 in frame pixels, score "
                         "(N,) float32, class_id (N,) int32 (appliance classes). Read-only numpy views.")
      .def(py::init([](const F32Array& xyxy, const F32Array& score, const I32Array& class_id) {
             const py::ssize_t n = score.ndim() == 1 ? score.shape(0) : -1;
             if (n < 0) throw std::invalid_argument("score must be 1-D");
             CheckRows(xyxy, "xyxy", n, 4);
             CheckRows(class_id, "class_id", n, 0);
             Detections d;
             d.xyxy.assign(xyxy.data(), xyxy.data() + 4 * n);
             d.score.assign(score.data(), score.data() + n);
             d.class_id.assign(class_id.data(), class_id.data() + n);
             return d;
           }),
           py::arg("xyxy") = F32Array(std::vector<py::ssize_t>{0, 4}),
           py::arg("score") = F32Array(std::vector<py::ssize_t>{0}),
           py::arg("class_id") = I32Array(std::vector<py::ssize_t>{0}))
      .def("__len__", &Detections::size)
      .def_property_readonly("xyxy",
                             [](py::object self) {
                               const auto& d = self.cast<const Detections&>();
                               return View(self, d.xyxy, {static_cast<py::ssize_t>(d.size()), 4});
                             })
      .def_property_readonly("score",
                             [](py::object self) {
                               const auto& d = self.cast<const Detections&>();
                               return View(self, d.score, {static_cast<py::ssize_t>(d.size())});
                             })
      .def_property_readonly("class_id",
                             [](py::object self) {
                               const auto& d = self.cast<const Detections&>();
                               return View(self, d.class_id, {static_cast<py::ssize_t>(d.size())});
                             })
      .def("__repr__", [](const Detections& d) { return "Detections(" + std::to_string(d.size()) + ")"; });

  m.def(
      "postprocess",
      [](const py::sequence& outputs, const std::string& format, const F32Array& scale, const F32Array& pad,
         const I32Array& frame_size, int input_w, int input_h, const I32Array& class_map, float score_threshold,
         float iou_threshold, int max_detections, const py::object& class_score_thresholds, const py::object& valid) {
        const PostprocessConfig c = MakePostprocessConfig(format, input_w, input_h, class_map, score_threshold,
                                                          iou_threshold, max_detections, class_score_thresholds);
        const py::ssize_t n = scale.ndim() == 2 ? scale.shape(0) : -1;
        if (n < 0) throw std::invalid_argument("scale must have shape (N, 2)");
        CheckRows(scale, "scale", n, 2);
        CheckRows(pad, "pad", n, 2);
        CheckRows(frame_size, "frame_size", n, 2);
        std::vector<bool> ok(static_cast<size_t>(n), true);
        if (!valid.is_none()) {
          const auto v = py::array_t<bool, py::array::c_style | py::array::forcecast>::ensure(valid);
          if (!v) throw std::invalid_argument("valid must be an array of booleans");
          CheckRows(v, "valid", n, 0);
          for (py::ssize_t i = 0; i < n; ++i) ok[static_cast<size_t>(i)] = v.at(i);
        }
        std::vector<SlotGeometry> slots(static_cast<size_t>(n));
        for (py::ssize_t i = 0; i < n; ++i) {
          SlotGeometry& g = slots[static_cast<size_t>(i)];
          g.scale_x = scale.at(i, 0);
          g.scale_y = scale.at(i, 1);
          g.pad_x = pad.at(i, 0);
          g.pad_y = pad.at(i, 1);
          g.src_w = frame_size.at(i, 0);
          g.src_h = frame_size.at(i, 1);
        }
        return RunPostprocess(outputs, std::move(slots), ok, c);
      },
      py::arg("outputs"), py::kw_only(), py::arg("format"), py::arg("scale"), py::arg("pad"), py::arg("frame_size"),
      py::arg("input_w"), py::arg("input_h"), py::arg("class_map"), py::arg("score_threshold") = 0.25f,
      py::arg("iou_threshold") = 0.45f, py::arg("max_detections") = 300, py::arg("class_score_thresholds") = py::none(),
      py::arg("valid") = py::none(),
      "Raw model outputs -> one Detections per slot in frame pixels (see docs/detection.md). scale, pad and "
      "frame_size are the (N, 2) arrays of a Batch; class_map maps model class ids to appliance class ids (-1 "
      "drops); class_score_thresholds, indexed by appliance class id, overrides score_threshold per class; "
      "valid (N,) bool, a Batch's: slots marked False (conversion failed) get an empty Detections. "
      "ValueError with the reason for a wrong shape or setting.");
}

}  // namespace smartcity::bindings
