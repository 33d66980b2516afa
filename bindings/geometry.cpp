#include "smartcity/geometry.hpp"

#include <pybind11/pybind11.h>

#include "exports.hpp"
#include "smartcity/batch.hpp"

namespace py = pybind11;

namespace smartcity::bindings {

void ExportGeometry(py::module_& m) {
  py::enum_<ResizeMode>(m, "ResizeMode")
      .value("letterbox", ResizeMode::kLetterbox)
      .value("stretch", ResizeMode::kStretch);
  py::enum_<DType>(m, "DType").value("float32", DType::kFloat32).value("uint8", DType::kUint8);
  py::enum_<ResizeFilter>(m, "ResizeFilter",
                          "auto: bilinear, area for 2x downscales; fast_bilinear: 2-tap like cv2.INTER_LINEAR")
      .value("auto", ResizeFilter::kAuto)
      .value("bilinear", ResizeFilter::kBilinear)
      .value("fast_bilinear", ResizeFilter::kFastBilinear)
      .value("area", ResizeFilter::kArea);

  py::class_<SlotGeometry>(m, "SlotGeometry", "Where a frame lands in a tensor slot: x' = x * scale_x + pad_x.")
      .def_readonly("src_w", &SlotGeometry::src_w)
      .def_readonly("src_h", &SlotGeometry::src_h)
      .def_readonly("dst_x", &SlotGeometry::dst_x)
      .def_readonly("dst_y", &SlotGeometry::dst_y)
      .def_readonly("dst_w", &SlotGeometry::dst_w)
      .def_readonly("dst_h", &SlotGeometry::dst_h)
      .def_readonly("scale_x", &SlotGeometry::scale_x)
      .def_readonly("scale_y", &SlotGeometry::scale_y)
      .def_readonly("pad_x", &SlotGeometry::pad_x)
      .def_readonly("pad_y", &SlotGeometry::pad_y)
      .def("__repr__", [](const SlotGeometry& g) {
        return "SlotGeometry(src=" + std::to_string(g.src_w) + "x" + std::to_string(g.src_h) + ", dst=(" +
               std::to_string(g.dst_x) + "," + std::to_string(g.dst_y) + "," + std::to_string(g.dst_w) + "x" +
               std::to_string(g.dst_h) + "))";
      });
  m.def("compute_geometry", &ComputeGeometry, py::arg("src_w"), py::arg("src_h"), py::arg("dst_w"), py::arg("dst_h"),
        py::arg("resize") = ResizeMode::kLetterbox, "Placement of a src_w x src_h frame in a dst_w x dst_h slot.");
}

}  // namespace smartcity::bindings
