#include "smartcity/publisher.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "exports.hpp"

namespace py = pybind11;

namespace smartcity::bindings {

namespace {

using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;
using I32Array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

template <typename T>
T Get(const py::dict& d, const char* key, T fallback) {
  if (!d.contains(key)) return fallback;
  py::object v = d[key];
  if (v.is_none()) return fallback;
  try {
    return v.cast<T>();
  } catch (const py::cast_error&) {
    throw py::type_error(std::string("stats['") + key + "'] has the wrong type");
  }
}

StreamState StateFromName(const std::string& name) {
  for (int i = 0; i <= static_cast<int>(StreamState::kFailed); ++i) {
    if (name == StateName(static_cast<StreamState>(i))) return static_cast<StreamState>(i);
  }
  throw py::value_error("stats['state']: unknown stream state '" + name + "'");
}

StreamStatsSnapshot SnapshotFromDict(const py::dict& d) {
  StreamStatsSnapshot s;
  s.state = StateFromName(Get<std::string>(d, "state", StateName(StreamState::kConnecting)));
  s.last_error = Get<std::string>(d, "last_error", "");
  s.packets = Get<uint64_t>(d, "packets", 0);
  s.bytes = Get<uint64_t>(d, "bytes", 0);
  s.frames_decoded = Get<uint64_t>(d, "frames_decoded", 0);
  s.frames_sampled = Get<uint64_t>(d, "frames_sampled", 0);
  s.frames_skipped = Get<uint64_t>(d, "frames_skipped", 0);
  s.frames_dropped = Get<uint64_t>(d, "frames_dropped", 0);
  s.corrupt_packets = Get<uint64_t>(d, "corrupt_packets", 0);
  s.reconnects = Get<uint64_t>(d, "reconnects", 0);
  s.loops = Get<uint64_t>(d, "loops", 0);
  s.last_frame_age_s = Get<double>(d, "last_frame_age_s", -1.0);
  s.decode_p50_ms = Get<double>(d, "decode_p50_ms", 0.0);
  s.decode_p99_ms = Get<double>(d, "decode_p99_ms", 0.0);
  s.convert_p50_ms = Get<double>(d, "convert_p50_ms", 0.0);
  s.source_fps = Get<double>(d, "source_fps", 0.0);
  s.width = Get<int>(d, "width", 0);
  s.height = Get<int>(d, "height", 0);
  s.codec = Get<std::string>(d, "codec", "");
  s.decoder = Get<std::string>(d, "decoder", "");
  s.hwaccel_note = Get<std::string>(d, "hwaccel_note", "");
  s.uptime_s = Get<double>(d, "uptime_s", 0.0);
  return s;
}

}  // namespace

void ExportPublisher(py::module_& m) {
  py::class_<Publisher>(m, "Publisher",
                        "The core's bus publisher (docs/events.md): tracks.<camera> and health.<camera> messages to "
                        "the broker's XSUB endpoint. Sends never block; a message that cannot be queued is counted "
                        "in `dropped` and still takes its sequence number.")
      .def(py::init([](const std::string& endpoint, int sndhwm, int linger_ms) {
             PublisherOptions o;
             o.sndhwm = sndhwm;
             o.linger_ms = linger_ms;
             py::gil_scoped_release release;
             return std::make_unique<Publisher>(endpoint, o);
           }),
           py::arg("endpoint"), py::arg("sndhwm") = PublisherOptions().sndhwm,
           py::arg("linger_ms") = PublisherOptions().linger_ms)
      .def(
          "publish_tracks",
          [](Publisher& p, const std::string& camera, uint64_t frame, double pts, int64_t t_ns, int width, int height,
             const I64Array& track_id, const F32Array& xyxy, const F32Array& score, const I32Array& class_id,
             const std::optional<F32Array>& ground_xy, const std::optional<F32Array>& speed_kmh) {
            const py::ssize_t n = track_id.ndim() == 1 ? track_id.shape(0) : -1;
            if (n < 0) throw py::value_error("track_id must be 1-D");
            if (xyxy.ndim() != 2 || xyxy.shape(0) != n || xyxy.shape(1) != 4) {
              throw py::value_error("xyxy must have shape (N, 4) with N = len(track_id)");
            }
            if (score.ndim() != 1 || score.shape(0) != n) throw py::value_error("score must have shape (N,)");
            if (class_id.ndim() != 1 || class_id.shape(0) != n) throw py::value_error("class_id must have shape (N,)");
            if (ground_xy && (ground_xy->ndim() != 2 || ground_xy->shape(0) != n || ground_xy->shape(1) != 2)) {
              throw py::value_error("ground_xy must have shape (N, 2)");
            }
            if (speed_kmh && (speed_kmh->ndim() != 1 || speed_kmh->shape(0) != n)) {
              throw py::value_error("speed_kmh must have shape (N,)");
            }
            TracksView v{static_cast<size_t>(n),
                         track_id.data(),
                         xyxy.data(),
                         score.data(),
                         class_id.data(),
                         ground_xy ? ground_xy->data() : nullptr,
                         speed_kmh ? speed_kmh->data() : nullptr};
            FrameInfo info{frame, pts, t_ns, width, height};
            py::gil_scoped_release release;
            return p.PublishTracks(camera, info, v);
          },
          py::arg("camera"), py::arg("frame"), py::arg("pts"), py::arg("t_ns"), py::arg("width"), py::arg("height"),
          py::arg("track_id"), py::arg("xyxy"), py::arg("score"), py::arg("class_id"),
          py::arg("ground_xy") = py::none(), py::arg("speed_kmh") = py::none(),
          "Publish tracks.<camera> (ground_xy, speed_kmh: None sends NaN). Returns True when queued, False when "
          "dropped.")
      .def(
          "publish_health",
          [](Publisher& p, const std::string& camera, const py::dict& stats, double infer_ms, double track_ms,
             int64_t t_ns) {
            StreamStatsSnapshot s = SnapshotFromDict(stats);
            HealthExtras extras{infer_ms, track_ms, t_ns};
            py::gil_scoped_release release;
            return p.PublishHealth(camera, s, extras);
          },
          py::arg("camera"), py::arg("stats"), py::arg("infer_ms") = 0.0, py::arg("track_ms") = 0.0,
          py::arg("t_ns") = 0,
          "Publish health.<camera> from a stream stats dict (Pipeline.stream_stats); t_ns 0 means now.")
      .def(
          "publish_raw",
          [](Publisher& p, const std::string& topic, const py::bytes& payload) {
            std::string data = payload;
            py::gil_scoped_release release;
            return p.PublishRaw(topic, data);
          },
          py::arg("topic"), py::arg("payload"), "Publish an already encoded payload (tests, tools).")
      .def("next_seq", &Publisher::NextSeq, py::arg("topic"))
      .def_property_readonly("sent", &Publisher::sent)
      .def_property_readonly("dropped", &Publisher::dropped)
      .def_property_readonly("endpoint", &Publisher::endpoint)
      .def_property_readonly("sndhwm", [](const Publisher& p) { return p.options().sndhwm; })
      .def_property_readonly("linger_ms", [](const Publisher& p) { return p.options().linger_ms; })
      .def_property_readonly("closed", &Publisher::closed)
      .def("close", &Publisher::Close, py::call_guard<py::gil_scoped_release>())
      .def("__enter__", [](Publisher& p) -> Publisher& { return p; })
      .def("__exit__", [](Publisher& p, const py::args&) {
        py::gil_scoped_release release;
        p.Close();
      });
}

}  // namespace smartcity::bindings
