#include "smartcity/nv12.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>

#include "exports.hpp"
#include "smartcity/hwdecode.hpp"

namespace py = pybind11;

namespace smartcity::bindings {

namespace {

using U8Array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

Nv12Params Params(const U8Array& y, const U8Array& uv, int width, int height, ResizeMode resize, int pad_value,
                  bool bt709, bool full_range, bool bgr) {
  if (y.ndim() != 2 || uv.ndim() != 2) throw std::invalid_argument("y and uv must be 2-D uint8 arrays");
  Nv12Params p;
  p.src_w = static_cast<int>(y.shape(1));
  p.src_h = static_cast<int>(y.shape(0));
  if (uv.shape(0) != p.src_h / 2 || uv.shape(1) != p.src_w) {
    throw std::invalid_argument("uv must have shape (height/2, width) of the interleaved UV plane");
  }
  p.dst_w = width;
  p.dst_h = height;
  p.mode = resize;
  p.pad_value = pad_value / 255.0f;
  p.matrix = bt709 ? ColorMatrix::kBt709 : ColorMatrix::kBt601;
  p.full_range = full_range;
  p.bgr = bgr;
  ValidateNv12Params(p);
  return p;
}

}  // namespace

void ExportNv12(py::module_& m) {
  m.def(
      "nv12_to_tensor",
      [](const U8Array& y, const U8Array& uv, int width, int height, ResizeMode resize, int pad_value, bool bt709,
         bool full_range, bool bgr, const std::string& device) {
        const Nv12Params p = Params(y, uv, width, height, resize, pad_value, bt709, full_range, bgr);
        py::array_t<float> out({3, height, width});
        float* dst = out.mutable_data();
        if (device == "cpu") {
          py::gil_scoped_release release;
          Nv12ToTensorCpu(y.data(), uv.data(), p, dst);
        } else if (device == "cuda") {
#ifdef SMARTCITY_WITH_CUDA
          py::gil_scoped_release release;
          cuda::Nv12ToTensorFromHost(y.data(), uv.data(), p, dst);
#else
          throw std::runtime_error("this build of smartcity has no CUDA (see build_info())");
#endif
        } else {
          throw std::invalid_argument("device must be 'cpu' or 'cuda', got '" + device + "'");
        }
        return out;
      },
      py::arg("y"), py::arg("uv"), py::kw_only(), py::arg("width") = 640, py::arg("height") = 640,
      py::arg("resize") = ResizeMode::kLetterbox, py::arg("pad_value") = 114, py::arg("bt709") = false,
      py::arg("full_range") = false, py::arg("bgr") = false, py::arg("device") = "cpu",
      "NV12 planes (y: H x W, uv: H/2 x W interleaved) to a (3, height, width) float32 RGB slot. "
      "device='cpu' runs the reference, device='cuda' the kernel (CUDA builds with a GPU only).");
  m.def(
      "cuda_device_count",
      [] {
#ifdef SMARTCITY_WITH_CUDA
        return cuda::DeviceCount();
#else
        return 0;
#endif
      },
      "Visible CUDA devices (0 in builds without CUDA).");
  m.def(
      "gpu_decode",
      [] {
        std::string why;
        const bool ok = CudaDecodeAvailable(&why);
        py::dict d;
        d["available"] = ok;
        d["reason"] = ok ? std::string("NVDEC through FFmpeg's CUDA hwaccel") : why;
        return d;
      },
      "Whether streams with hwaccel auto or cuda can decode on the GPU here, and why not.");
}

}  // namespace smartcity::bindings
