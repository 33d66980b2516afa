#include <pybind11/pybind11.h>

#include "exports.hpp"
#include "smartcity/build_info.hpp"
#include "smartcity/pipeline.hpp"
#include "smartcity/recorder.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "smartcity C++ core: multi-stream ingest, decode, sampling and batching";
  // Decoder chatter is counted in the stream stats, not printed.
  smartcity::SetFfmpegLogLevel(8 /* AV_LOG_FATAL */);
  py::register_exception<smartcity::UnknownCamera>(m, "UnknownCameraError", PyExc_KeyError);
  py::register_exception<smartcity::ClipRangeError>(m, "ClipRangeError", PyExc_LookupError);
  py::register_exception<smartcity::ClipWriteError>(m, "ClipWriteError", PyExc_OSError);
  smartcity::bindings::ExportBuildInfo(m);
  smartcity::bindings::ExportGeometry(m);
  smartcity::bindings::ExportStreamConfig(m);
  smartcity::bindings::ExportBatch(m);
  smartcity::bindings::ExportPipeline(m);
  smartcity::bindings::ExportNv12(m);
  smartcity::bindings::ExportPostprocess(m);
  smartcity::bindings::ExportTracker(m);
  smartcity::bindings::ExportPublisher(m);
  smartcity::bindings::ExportTrackRows(m);
}
