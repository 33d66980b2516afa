#include "smartcity/batch.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>

#include "batch_access.hpp"
#include "exports.hpp"

namespace py = pybind11;

namespace smartcity::bindings {

namespace {

// The Python-side batch: a lease that release() can give up before garbage collection.
struct PyBatch {
  std::shared_ptr<BatchLease> lease;
  BatchLease& Get() const {
    if (!lease) throw std::runtime_error("this batch was released");
    return *lease;
  }
};

template <typename T, typename F>
py::array_t<T> MetaArray(const PyBatch& b, int cols, F value) {
  const BatchLease& l = b.Get();
  std::vector<py::ssize_t> shape = {l.size()};
  if (cols > 1) shape.push_back(cols);
  py::array_t<T> out(shape);
  T* p = out.mutable_data();
  for (int i = 0; i < l.size(); ++i) {
    for (int c = 0; c < cols; ++c) p[i * cols + c] = value(l.meta()[i], c);
  }
  return out;
}

}  // namespace

void ExportBatch(py::module_& m) {
  py::class_<PyBatch>(m, "Batch",
                      "Frames of several streams in one tensor. The tensor is a view of the core's buffer: the buffer "
                      "goes back to the pool once release() is called or the Batch and every view of it are gone.")
      .def_property_readonly("size", [](const PyBatch& b) { return b.Get().size(); })
      .def("__len__", [](const PyBatch& b) { return b.Get().size(); })
      .def_property_readonly(
          "tensor",
          [](const PyBatch& b) {
            BatchLease& l = b.Get();
            uint8_t* data;
            {
              py::gil_scoped_release nogil;
              data = l.HostData();  // slots written on the GPU come down first (device batches)
            }
            const TensorLayout& t = l.layout();
            const auto keep = new std::shared_ptr<BatchLease>(b.lease);
            py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<BatchLease>*>(p); });
            const py::ssize_t es = static_cast<py::ssize_t>(t.ElementSize());
            const std::vector<py::ssize_t> shape = {l.size(), 3, t.height, t.width};
            const std::vector<py::ssize_t> strides = {3 * t.height * t.width * es, t.height * t.width * es,
                                                      t.width * es, es};
            py::array view = t.dtype == DType::kFloat32
                                 ? py::array(py::dtype::of<float>(), shape, strides, data, owner)
                                 : py::array(py::dtype::of<uint8_t>(), shape, strides, data, owner);
            // Read-only: the core reuses what a slot holds (its padding) for the next frame.
            view.attr("setflags")(py::arg("write") = false);
            return view;
          },
          "The (N, 3, H, W) input tensor (read-only view), RGB planes, float32 in [0,1] or uint8. In a device "
          "batch, slots written on the GPU are copied to the host first.")
      .def_property_readonly(
          "shape",
          [](const PyBatch& b) {
            const TensorLayout& t = b.Get().layout();
            return py::make_tuple(b.Get().size(), 3, t.height, t.width);
          },
          "(N, 3, H, W) of the tensor, without touching it.")
      .def_property_readonly(
          "dtype", [](const PyBatch& b) { return std::string(DTypeName(b.Get().layout().dtype)); },
          "'float32' or 'uint8'.")
      .def_property_readonly(
          "on_device", [](const PyBatch& b) { return b.Get().DeviceDataAvailable(); },
          "True in a device batch (the pipeline was made with batch_device >= 0).")
      .def(
          "device_ptr",
          [](const PyBatch& b) {
            BatchLease& l = b.Get();
            if (!l.DeviceDataAvailable()) {
              throw std::runtime_error("not a device batch: make the Pipeline with batch_device set to a CUDA device");
            }
            uint8_t* d;
            {
              py::gil_scoped_release nogil;
              d = l.DeviceData();
            }
            return reinterpret_cast<uintptr_t>(d);
          },
          "Address of the (N, 3, H, W) tensor in device memory (device batches only), slots written on the CPU "
          "copied up first. Valid while the batch is held.")
      .def_property_readonly(
          "slots_on_device", [](const PyBatch& b) { return b.Get().SlotsOn(SlotPlace::kDevice); },
          "Slots whose content is in device memory now (device batches).")
      .def_property_readonly("camera_ids",
                             [](const PyBatch& b) {
                               std::vector<std::string> ids;
                               for (int i = 0; i < b.Get().size(); ++i) ids.push_back(b.Get().meta()[i].camera_id);
                               return ids;
                             })
      .def_property_readonly("frame_numbers",
                             [](const PyBatch& b) {
                               return MetaArray<int64_t>(b, 1, [](const SlotMeta& s, int) { return s.frame_number; });
                             })
      .def_property_readonly(
          "pts",
          [](const PyBatch& b) { return MetaArray<double>(b, 1, [](const SlotMeta& s, int) { return s.pts_s; }); },
          "Presentation time in seconds per slot.")
      .def_property_readonly("capture_ns",
                             [](const PyBatch& b) {
                               return MetaArray<int64_t>(b, 1,
                                                         [](const SlotMeta& s, int) { return s.capture_wall_ns; });
                             })
      .def_property_readonly(
          "scale",
          [](const PyBatch& b) {
            return MetaArray<float>(
                b, 2, [](const SlotMeta& s, int c) { return c == 0 ? s.geometry.scale_x : s.geometry.scale_y; });
          },
          "(N, 2) scale_x, scale_y: x_model = x_frame * scale_x + pad_x.")
      .def_property_readonly("pad",
                             [](const PyBatch& b) {
                               return MetaArray<float>(b, 2, [](const SlotMeta& s, int c) {
                                 return c == 0 ? s.geometry.pad_x : s.geometry.pad_y;
                               });
                             })
      .def_property_readonly("frame_size",
                             [](const PyBatch& b) {
                               return MetaArray<int32_t>(b, 2, [](const SlotMeta& s, int c) {
                                 return c == 0 ? s.geometry.src_w : s.geometry.src_h;
                               });
                             })
      .def_property_readonly(
          "valid",
          [](const PyBatch& b) { return MetaArray<bool>(b, 1, [](const SlotMeta& s, int) { return s.valid; }); },
          "False where a frame could not be converted (the slot holds padding).")
      .def(
          "release", [](PyBatch& b) { b.lease.reset(); }, "Give the buffer back now (views keep it alive).")
      .def("__enter__", [](PyBatch& b) -> PyBatch& { return b; })
      .def("__exit__", [](PyBatch& b, py::args) { b.lease.reset(); });
}

py::object WrapBatch(std::shared_ptr<BatchLease> lease) {
  if (!lease) return py::none();
  return py::cast(PyBatch{std::move(lease)});
}

std::shared_ptr<BatchLease> LeaseOf(const py::handle& batch) {
  if (!py::isinstance<PyBatch>(batch)) throw py::type_error("expected a smartcity Batch");
  const PyBatch& b = batch.cast<const PyBatch&>();
  b.Get();  // throws when released
  return b.lease;
}

}  // namespace smartcity::bindings
