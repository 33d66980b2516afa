#include <pybind11/pybind11.h>

#include "exports.hpp"
#include "smartcity/stream.hpp"

namespace py = pybind11;

namespace smartcity::bindings {

void ExportStreamConfig(py::module_& m) {
  py::enum_<StreamState>(m, "StreamState")
      .value("connecting", StreamState::kConnecting)
      .value("running", StreamState::kRunning)
      .value("backoff", StreamState::kBackoff)
      .value("stopped", StreamState::kStopped)
      .value("failed", StreamState::kFailed);

  py::class_<StreamConfig>(m, "StreamConfig", "One camera's ingest settings.")
      .def(py::init([](std::string camera_id, std::string url, std::string rtsp_transport, bool loop, bool realtime,
                       double analyze_fps, bool decode_only, bool block_when_busy, double open_timeout_s,
                       double stall_timeout_s, double backoff_initial_s, double backoff_max_s, double pre_event_s,
                       int decoder_threads, std::string hwaccel, int hw_device) {
             StreamConfig c;
             c.camera_id = std::move(camera_id);
             c.url = std::move(url);
             c.rtsp_transport = std::move(rtsp_transport);
             c.loop = loop;
             c.realtime = realtime;
             c.analyze_fps = analyze_fps;
             c.decode_only = decode_only;
             c.block_when_busy = block_when_busy;
             c.open_timeout_s = open_timeout_s;
             c.stall_timeout_s = stall_timeout_s;
             c.backoff_initial_s = backoff_initial_s;
             c.backoff_max_s = backoff_max_s;
             c.pre_event_s = pre_event_s;
             c.decoder_threads = decoder_threads;
             c.hwaccel = std::move(hwaccel);
             c.hw_device = hw_device;
             c.Validate();
             return c;
           }),
           py::kw_only(), py::arg("camera_id"), py::arg("url"), py::arg("rtsp_transport") = "tcp",
           py::arg("loop") = false, py::arg("realtime") = false, py::arg("analyze_fps") = 0.0,
           py::arg("decode_only") = false, py::arg("block_when_busy") = false, py::arg("open_timeout_s") = 10.0,
           py::arg("stall_timeout_s") = 10.0, py::arg("backoff_initial_s") = 1.0, py::arg("backoff_max_s") = 30.0,
           py::arg("pre_event_s") = 10.0, py::arg("decoder_threads") = 1, py::arg("hwaccel") = "none",
           py::arg("hw_device") = 0)
      .def_readonly("camera_id", &StreamConfig::camera_id)
      .def_property_readonly("url", [](const StreamConfig& c) { return RedactUrl(c.url); })
      .def_readonly("rtsp_transport", &StreamConfig::rtsp_transport)
      .def_readonly("loop", &StreamConfig::loop)
      .def_readonly("realtime", &StreamConfig::realtime)
      .def_readonly("analyze_fps", &StreamConfig::analyze_fps)
      .def_readonly("decode_only", &StreamConfig::decode_only)
      .def_readonly("block_when_busy", &StreamConfig::block_when_busy)
      .def_readonly("open_timeout_s", &StreamConfig::open_timeout_s)
      .def_readonly("stall_timeout_s", &StreamConfig::stall_timeout_s)
      .def_readonly("backoff_initial_s", &StreamConfig::backoff_initial_s)
      .def_readonly("backoff_max_s", &StreamConfig::backoff_max_s)
      .def_readonly("pre_event_s", &StreamConfig::pre_event_s)
      .def_readonly("decoder_threads", &StreamConfig::decoder_threads)
      .def_readonly("hwaccel", &StreamConfig::hwaccel)
      .def_readonly("hw_device", &StreamConfig::hw_device)
      .def("__repr__", [](const StreamConfig& c) {
        return "StreamConfig(camera_id='" + c.camera_id + "', url='" + RedactUrl(c.url) + "')";
      });
  m.def("redact_url", &RedactUrl, py::arg("url"), "The URL with any user:password@ replaced by ***@.");
}

}  // namespace smartcity::bindings
