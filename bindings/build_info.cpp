#include "smartcity/build_info.hpp"

#include <pybind11/pybind11.h>

#include "exports.hpp"

namespace py = pybind11;

namespace smartcity::bindings {

void ExportBuildInfo(py::module_& m) {
  m.def(
      "build_info",
      [] {
        py::dict d;
        for (const auto& [k, v] : BuildInfo()) d[py::str(k)] = v;
        return d;
      },
      "What this build holds: versions of smartcity and FFmpeg, CUDA yes/no and architectures, compiler, build type.");
  m.def("set_ffmpeg_log_level", &SetFfmpegLogLevel, py::arg("level"),
        "FFmpeg's log level (-8 quiet ... 48 debug); the module starts at 8 (fatal only).");
}

}  // namespace smartcity::bindings
