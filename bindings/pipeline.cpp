#include "smartcity/pipeline.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>

#include "batch_access.hpp"
#include "exports.hpp"
#include "homography.hpp"
#include "postprocess_args.hpp"

namespace py = pybind11;

namespace smartcity::bindings {

namespace {

py::dict StatsDict(const StreamStatsSnapshot& s) {
  py::dict d;
  d["camera_id"] = s.camera_id;
  d["url"] = s.url;
  d["state"] = StateName(s.state);
  d["last_error"] = s.last_error;
  d["packets"] = s.packets;
  d["bytes"] = s.bytes;
  d["frames_decoded"] = s.frames_decoded;
  d["frames_sampled"] = s.frames_sampled;
  d["frames_skipped"] = s.frames_skipped;
  d["frames_dropped"] = s.frames_dropped;
  d["corrupt_packets"] = s.corrupt_packets;
  d["reconnects"] = s.reconnects;
  d["loops"] = s.loops;
  d["last_frame_age_s"] = s.last_frame_age_s < 0 ? py::object(py::none()) : py::object(py::float_(s.last_frame_age_s));
  d["decode_p50_ms"] = s.decode_p50_ms;
  d["decode_p99_ms"] = s.decode_p99_ms;
  d["convert_p50_ms"] = s.convert_p50_ms;
  d["source_fps"] = s.source_fps;
  d["width"] = s.width;
  d["height"] = s.height;
  d["codec"] = s.codec;
  d["decoder"] = s.decoder;
  d["hwaccel_note"] = s.hwaccel_note;
  d["uptime_s"] = s.uptime_s;
  return d;
}

}  // namespace

void ExportPipeline(py::module_& m) {
  py::class_<Pipeline>(m, "Pipeline", "Streams decoded in C++ threads, sampled frames batched into one tensor.")
      .def(py::init([](int width, int height, ResizeMode resize, DType dtype, int pad_value, int max_batch, int buffers,
                       ResizeFilter resize_filter, int batch_device) {
             PipelineConfig c;
             c.layout.width = width;
             c.layout.height = height;
             c.layout.resize = resize;
             c.layout.dtype = dtype;
             c.layout.pad_value = pad_value;
             c.layout.filter = resize_filter;
             c.max_batch = max_batch;
             c.buffers = buffers;
             c.device = batch_device;
             return std::make_unique<Pipeline>(c);
           }),
           py::kw_only(), py::arg("width") = 640, py::arg("height") = 640, py::arg("resize") = ResizeMode::kLetterbox,
           py::arg("dtype") = DType::kFloat32, py::arg("pad_value") = 114, py::arg("max_batch") = 8,
           py::arg("buffers") = 3, py::arg("resize_filter") = ResizeFilter::kAuto, py::arg("batch_device") = -1)
      .def_property_readonly("width", [](const Pipeline& p) { return p.config().layout.width; })
      .def_property_readonly("height", [](const Pipeline& p) { return p.config().layout.height; })
      .def_property_readonly("resize", [](const Pipeline& p) { return p.config().layout.resize; })
      .def_property_readonly("dtype", [](const Pipeline& p) { return p.config().layout.dtype; })
      .def_property_readonly("resize_filter", [](const Pipeline& p) { return p.config().layout.filter; })
      .def_property_readonly("max_batch", [](const Pipeline& p) { return p.config().max_batch; })
      .def_property_readonly(
          "batch_device", [](const Pipeline& p) { return p.config().device; },
          "CUDA device holding a copy of every batch (-1: batches live in host memory only).")
      .def("add_stream", &Pipeline::AddStream, py::arg("config"), py::call_guard<py::gil_scoped_release>(),
           "Start a stream. ValueError for a bad config or a camera_id already present.")
      .def("remove_stream", &Pipeline::RemoveStream, py::arg("camera_id"), py::call_guard<py::gil_scoped_release>(),
           "Stop a stream and wait for its thread; False when there is no such stream.")
      .def("camera_ids", &Pipeline::CameraIds)
      .def("stats",
           [](const Pipeline& p) {
             std::vector<StreamStatsSnapshot> snaps;
             {
               py::gil_scoped_release release;
               snaps = p.Stats();
             }
             py::list out;
             for (const auto& s : snaps) out.append(StatsDict(s));
             return out;
           })
      .def(
          "stream_stats",
          [](const Pipeline& p, const std::string& id) {
            StreamStatsSnapshot s;
            {
              py::gil_scoped_release release;
              s = p.StreamStats(id);
            }
            return StatsDict(s);
          },
          py::arg("camera_id"))
      .def(
          "packet_ring",
          [](const Pipeline& p, const std::string& id) {
            const RingInfo r = p.PacketRing(id);
            py::dict d;
            d["packets"] = r.packets;
            d["keyframes"] = r.keyframes;
            d["bytes"] = r.bytes;
            d["first_s"] = r.first_s;
            d["last_s"] = r.last_s;
            d["seconds"] = r.last_s - r.first_s;
            d["starts_with_keyframe"] = r.starts_with_keyframe;
            return d;
          },
          py::arg("camera_id"), "What the evidence packet ring of a stream holds now.")
      .def(
          "write_clip",
          [](const Pipeline& p, const std::string& id, double t0_s, double t1_s, const std::string& path) {
            ClipInfo c;
            {
              py::gil_scoped_release release;
              c = p.WriteClip(id, t0_s, t1_s, path);
            }
            py::dict d;
            d["path"] = path;
            d["packets"] = c.packets;
            d["keyframe_start"] = c.keyframe_start;
            d["first_s"] = c.first_s;
            d["last_s"] = c.last_s;
            d["duration_s"] = c.duration_s;
            d["bytes"] = c.bytes;
            d["codec"] = c.codec;
            return d;
          },
          py::arg("camera_id"), py::arg("t0_s"), py::arg("t1_s"), py::arg("path"),
          "Remux the packet ring's packets from the keyframe at or before t0_s through t1_s (stream time, as "
          "Batch.pts) into an MP4 at path. UnknownCameraError, ClipRangeError (not, or not yet, in the ring), "
          "ClipWriteError (path, disk, codec), ValueError (bad range).")
      .def(
          "latest_frame",
          [](const Pipeline& p, const std::string& id) -> py::object {
            std::vector<uint8_t> bgr;
            int w = 0, h = 0;
            int64_t number = -1;
            bool ok;
            {
              py::gil_scoped_release release;
              ok = p.LatestFrameBgr(id, &bgr, &w, &h, &number);
            }
            if (!ok) return py::none();
            py::array_t<uint8_t> img({h, w, 3});
            std::memcpy(img.mutable_data(), bgr.data(), bgr.size());
            return py::make_tuple(img, number);
          },
          py::arg("camera_id"), "(BGR uint8 image H x W x 3, frame number) of the latest sampled frame, or None.")
      .def(
          "snapshot",
          [](const Pipeline& p, const std::string& id) -> py::object {
            std::vector<uint8_t> bgr;
            int w = 0, h = 0;
            int64_t number = -1, capture_ns = 0;
            double pts = 0;
            bool ok;
            {
              py::gil_scoped_release release;
              ok = p.LatestFrameBgr(id, &bgr, &w, &h, &number, &pts, &capture_ns);
            }
            if (!ok) return py::none();
            py::array_t<uint8_t> img({h, w, 3});
            std::memcpy(img.mutable_data(), bgr.data(), bgr.size());
            py::dict d;
            d["image"] = img;
            d["frame"] = number;
            d["pts"] = pts;
            d["t_ns"] = capture_ns;
            return d;
          },
          py::arg("camera_id"),
          "The latest sampled frame with its time: {image (BGR uint8 H x W x 3), frame, pts (stream time, s), "
          "t_ns (capture wall clock, ns)}, or None before the first frame.")
      .def(
          "next_batch",
          [](Pipeline& p, int max_batch, int max_wait_ms) {
            std::shared_ptr<BatchLease> lease;
            {
              py::gil_scoped_release release;
              lease = p.NextBatch(max_batch, max_wait_ms);
            }
            return WrapBatch(std::move(lease));
          },
          py::arg("max_batch") = 8, py::arg("max_wait_ms") = 50,
          "The next batch of up to max_batch sampled frames, or None when none came within max_wait_ms.")
      .def(
          "configure_tracking",
          [](Pipeline& p, float track_thresh, float match_thresh, int track_buffer, double speed_window_s,
             float duplicate_iou, int crowd_class, double speed_long_window_s, double speed_curvature_z,
             const std::string& speed_filter, double speed_accel, double speed_noise_px, double speed_noise_frac,
             const BottomBias& bottom_bias, const std::vector<int>& bottom_bias_classes, double recover_s,
             double recover_gate_m, double recover_min_s, const std::vector<int>& recover_classes) {
            TrackerConfig c;
            c.track_thresh = track_thresh;
            c.match_thresh = match_thresh;
            c.track_buffer = track_buffer;
            c.speed_window_s = speed_window_s;
            c.duplicate_iou = duplicate_iou;
            c.crowd_class = crowd_class;
            c.speed_long_window_s = speed_long_window_s;
            c.speed_curvature_z = speed_curvature_z;
            c.speed_filter = ParseSpeedFilter(speed_filter);
            c.speed_accel = speed_accel;
            c.speed_noise_px = speed_noise_px;
            c.speed_noise_frac = speed_noise_frac;
            SetBottomBias(c, bottom_bias, bottom_bias_classes);
            SetRecovery(c, recover_s, recover_gate_m, recover_min_s, recover_classes);
            p.SetTrackerConfig(c);
          },
          py::kw_only(), py::arg("track_thresh") = 0.5f, py::arg("match_thresh") = 0.8f, py::arg("track_buffer") = 30,
          py::arg("speed_window_s") = 1.0, py::arg("duplicate_iou") = 0.4f, py::arg("crowd_class") = 0,
          py::arg("speed_long_window_s") = 3.0, py::arg("speed_curvature_z") = 5.0, py::arg("speed_filter") = "kalman",
          py::arg("speed_accel") = 3.0, py::arg("speed_noise_px") = 1.5, py::arg("speed_noise_frac") = 0.08,
          py::arg("bottom_bias") = py::none(), py::arg("bottom_bias_classes") = kBottomBiasDefaultClasses,
          py::arg("recover_s") = 2.0, py::arg("recover_gate_m") = 1.5, py::arg("recover_min_s") = 0.5,
          py::arg("recover_classes") = kRecoverDefaultClasses,
          "Settings of the per-camera ByteTrackers made from now on (frame_rate: the stream's analysis rate).")
      .def(
          "set_calibration",
          [](Pipeline& p, const std::string& camera_id, const py::object& h) {
            p.SetCalibration(camera_id, HomographyFrom(h, "image_to_ground"));
          },
          py::arg("camera_id"), py::arg("image_to_ground"),
          "A camera's image (pixels) -> ground (metres) homography: its tracks get ground_xy and speed_kmh.")
      .def(
          "track",
          [](Pipeline& p, const py::handle& batch, const py::sequence& detections) {
            const std::shared_ptr<BatchLease> lease = LeaseOf(batch);
            std::vector<const Detections*> dets;
            for (const py::handle& d : detections) {
              if (d.is_none()) {
                dets.push_back(nullptr);
              } else if (py::isinstance<Detections>(d)) {
                dets.push_back(&d.cast<const Detections&>());
              } else {
                throw py::type_error("detections must hold smartcity Detections (or None)");
              }
            }
            std::vector<Tracks> out;
            {
              py::gil_scoped_release release;
              out = p.Track(*lease, dets);
            }
            py::list result;
            for (auto& t : out) result.append(py::cast(std::move(t)));
            return result;
          },
          py::arg("batch"), py::arg("detections"),
          "Updates each camera's tracker with its slot's detections (one Detections or None per slot, in "
          "slot order) and returns one Tracks per slot.")
      .def(
          "submit",
          [](Pipeline&, const py::handle& batch, const py::sequence& outputs, const std::string& format, int input_w,
             int input_h, const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& class_map,
             float score_threshold, float iou_threshold, int max_detections, const py::object& class_score_thresholds) {
            const std::shared_ptr<BatchLease> lease = LeaseOf(batch);
            const PostprocessConfig c = MakePostprocessConfig(format, input_w, input_h, class_map, score_threshold,
                                                              iou_threshold, max_detections, class_score_thresholds);
            std::vector<SlotGeometry> slots;
            std::vector<bool> valid;
            for (int i = 0; i < lease->size(); ++i) {
              slots.push_back(lease->meta()[i].geometry);
              valid.push_back(lease->meta()[i].valid);
            }
            return RunPostprocess(outputs, std::move(slots), valid, c);
          },
          py::arg("batch"), py::arg("outputs"), py::kw_only(), py::arg("format"), py::arg("input_w"),
          py::arg("input_h"), py::arg("class_map"), py::arg("score_threshold") = 0.25f,
          py::arg("iou_threshold") = 0.45f, py::arg("max_detections") = 300,
          py::arg("class_score_thresholds") = py::none(),
          "The model's raw outputs for a batch -> one Detections per slot in frame pixels, each slot's geometry "
          "read in C++ from the batch (slots that failed conversion get none); the other arguments as "
          "smartcity.postprocess, which ModelCard.postprocess_options() gives.")
      .def("close", &Pipeline::Close, py::call_guard<py::gil_scoped_release>(), "Stop every stream.")
      .def_property_readonly("closed", &Pipeline::closed)
      .def(
          "__enter__", [](Pipeline& p) -> Pipeline& { return p; }, py::return_value_policy::reference)
      .def("__exit__", [](Pipeline& p, py::args) {
        py::gil_scoped_release release;
        p.Close();
      });
}

}  // namespace smartcity::bindings
