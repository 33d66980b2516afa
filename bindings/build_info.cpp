#include "smartcity/build_info.hpp"

#include <pybind11/pybind11.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

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
  m.def(
      "trim_heap",
      [] {
#if defined(__GLIBC__)
        // Hands the free pages of every malloc arena back to the kernel. The decoder threads'
        // packet copies (the evidence ring) come and go in sizes that leave free holes inside
        // the arenas; without this the resident size creeps up by a few MB an hour.
        py::gil_scoped_release nogil;
        return malloc_trim(0) != 0;
#else
        return false;
#endif
      },
      "Returns free heap pages to the OS (glibc's malloc_trim); True when some were released, "
      "False where nothing was or the C library has no such call.");
}

}  // namespace smartcity::bindings
