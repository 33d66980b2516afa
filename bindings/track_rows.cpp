// Tracks rows of a bus message -> numpy arrays in one pass, from a decoded `tracks` list
// (track_rows_to_arrays) or straight from the msgpack payload (decode_tracks_payload); both
// fill the arrays with one row parser (TrackArrays::Row).
//
// This is conversion, the bindings' job: smartcity.bus.codec falls back to its own row-by-row
// checks (which name the faulty field) whenever these return None. Accepted exactly as the
// Python checks accept: id an int in [0, 2^63), cls an int in the int32 range (bools are not
// ints here), score and x1..y2 finite numbers, gx, gy, kmh numbers or NaN (not infinite);
// columns beyond those are ignored.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <msgpack.hpp>
#include <string_view>

#include "exports.hpp"

namespace py = pybind11;

namespace smartcity::bindings {

namespace {

constexpr Py_ssize_t kMinColumns = 7;
constexpr Py_ssize_t kColumns = 10;

bool IntOf(PyObject* o, int64_t lo, int64_t hi, int64_t* out) {
  if (!PyLong_CheckExact(o)) return false;  // bool is a subclass: refused
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
  if (overflow != 0 || (v == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    return false;
  }
  if (v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool NumberOf(PyObject* o, double* out) {
  if (PyFloat_CheckExact(o)) {
    *out = PyFloat_AS_DOUBLE(o);
    return true;
  }
  if (!PyLong_CheckExact(o)) return false;
  const double v = PyLong_AsDouble(o);
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    return false;
  }
  *out = v;
  return true;
}

bool IntOf(const msgpack::object& o, int64_t lo, int64_t hi, int64_t* out) {
  if (o.type == msgpack::type::POSITIVE_INTEGER) {
    if (o.via.u64 > static_cast<uint64_t>(hi)) return false;
    *out = static_cast<int64_t>(o.via.u64);
  } else if (o.type == msgpack::type::NEGATIVE_INTEGER) {
    *out = o.via.i64;
  } else {
    return false;
  }
  return *out >= lo && *out <= hi;
}

bool NumberOf(const msgpack::object& o, double* out) {
  switch (o.type) {
    case msgpack::type::POSITIVE_INTEGER: *out = static_cast<double>(o.via.u64); return true;
    case msgpack::type::NEGATIVE_INTEGER: *out = static_cast<double>(o.via.i64); return true;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: *out = o.via.f64; return true;
    default: return false;
  }
}

// The five arrays of N rows, filled row by row from either source (Python lists, or msgpack
// arrays straight from the payload) with the same checks.
struct TrackArrays {
  explicit TrackArrays(Py_ssize_t n)
      : ids(n), cls(n), score(n), xyxy({n, static_cast<Py_ssize_t>(4)}), extra({n, static_cast<Py_ssize_t>(3)}) {}

  // Row i from its cells (`count` of them); false when a value is not what the schema allows.
  template <typename Cell>
  bool Row(Py_ssize_t i, const Cell* c, Py_ssize_t count) {
    if (count < kMinColumns) return false;
    int64_t v = 0;
    if (!IntOf(c[0], 0, std::numeric_limits<int64_t>::max(), &v)) return false;
    ids.mutable_data()[i] = v;
    if (!IntOf(c[1], std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(), &v)) return false;
    cls.mutable_data()[i] = static_cast<int32_t>(v);
    double f = 0;
    if (!NumberOf(c[2], &f) || !std::isfinite(f)) return false;
    score.mutable_data()[i] = static_cast<float>(f);
    float* box = xyxy.mutable_data() + 4 * i;
    for (int k = 0; k < 4; ++k) {
      if (!NumberOf(c[3 + k], &f) || !std::isfinite(f)) return false;
      box[k] = static_cast<float>(f);
    }
    float* ex = extra.mutable_data() + 3 * i;
    const Py_ssize_t cols = std::min(count, kColumns);
    for (Py_ssize_t k = 0; k < 3; ++k) {
      if (kMinColumns + k >= cols) {
        ex[k] = std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      if (!NumberOf(c[kMinColumns + k], &f) || std::isinf(f)) return false;
      ex[k] = static_cast<float>(f);
    }
    return true;
  }

  py::array_t<int64_t> ids;
  py::array_t<int32_t> cls;
  py::array_t<float> score;
  py::array_t<float> xyxy;
  py::array_t<float> extra;
};

py::object TrackRowsToArrays(py::handle rows) {
  if (!PyList_CheckExact(rows.ptr())) return py::none();
  const Py_ssize_t n = PyList_GET_SIZE(rows.ptr());
  TrackArrays a(n);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* row = PyList_GET_ITEM(rows.ptr(), i);
    if (!PyList_CheckExact(row) || !a.Row(i, PySequence_Fast_ITEMS(row), PyList_GET_SIZE(row))) return py::none();
  }
  return py::make_tuple(a.ids, a.cls, a.score, a.xyxy, a.extra);
}

// ---- whole tracks payloads, straight from the msgpack bytes (no Python objects per value)

// A scalar as msgpack.unpackb(raw=False) gives it; false for anything else (the caller falls
// back to the Python decoder, which names the problem).
bool MsgScalar(const msgpack::object& o, py::object* out) {
  switch (o.type) {
    case msgpack::type::NIL: *out = py::none(); return true;
    case msgpack::type::BOOLEAN: *out = py::bool_(o.via.boolean); return true;
    case msgpack::type::POSITIVE_INTEGER:
      *out = py::reinterpret_steal<py::object>(PyLong_FromUnsignedLongLong(o.via.u64));
      return true;
    case msgpack::type::NEGATIVE_INTEGER:
      *out = py::reinterpret_steal<py::object>(PyLong_FromLongLong(o.via.i64));
      return true;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: *out = py::float_(o.via.f64); return true;
    case msgpack::type::STR: {
      PyObject* s = PyUnicode_DecodeUTF8(o.via.str.ptr, o.via.str.size, nullptr);
      if (!s) {
        PyErr_Clear();
        return false;
      }
      *out = py::reinterpret_steal<py::object>(s);
      return true;
    }
    default: return false;
  }
}

py::object DecodeTracksPayload(py::bytes payload, size_t max_array_len, size_t max_map_len, size_t max_str_len) {
  char* data = nullptr;
  Py_ssize_t size = 0;
  if (PyBytes_AsStringAndSize(payload.ptr(), &data, &size) != 0) {
    PyErr_Clear();
    return py::none();
  }
  msgpack::object_handle oh;
  size_t offset = 0;
  try {
    // Binary and extension values are not part of the schema: a limit of 0 refuses them.
    msgpack::unpack(oh, data, static_cast<size_t>(size), offset, nullptr, nullptr,
                    msgpack::unpack_limit(max_array_len, max_map_len, max_str_len, 0, 0, 16));
  } catch (const std::exception&) {
    return py::none();
  }
  if (offset != static_cast<size_t>(size)) return py::none();  // trailing bytes
  const msgpack::object& root = oh.get();
  if (root.type != msgpack::type::MAP) return py::none();
  py::dict header;
  const msgpack::object* rows = nullptr;
  for (uint32_t i = 0; i < root.via.map.size; ++i) {
    const msgpack::object_kv& kv = root.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR) return py::none();
    const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
    if (key == "tracks") {  // the last one wins, as in a Python dict
      rows = &kv.val;
      continue;
    }
    py::object value;
    if (!MsgScalar(kv.val, &value)) return py::none();
    py::object k;
    if (!MsgScalar(kv.key, &k)) return py::none();
    header[k] = value;
  }
  if (!rows || rows->type != msgpack::type::ARRAY) return py::none();
  const auto n = static_cast<Py_ssize_t>(rows->via.array.size);
  TrackArrays a(n);
  for (Py_ssize_t i = 0; i < n; ++i) {
    const msgpack::object& row = rows->via.array.ptr[i];
    if (row.type != msgpack::type::ARRAY || !a.Row(i, row.via.array.ptr, row.via.array.size)) return py::none();
  }
  return py::make_tuple(header, a.ids, a.cls, a.score, a.xyxy, a.extra);
}

}  // namespace

void ExportTrackRows(py::module_& m) {
  m.def("decode_tracks_payload", &DecodeTracksPayload, py::arg("payload"), py::arg("max_array_len"),
        py::arg("max_map_len"), py::arg("max_str_len"),
        "A whole tracks.<cam> msgpack payload -> (header dict without 'tracks', then the arrays of "
        "track_rows_to_arrays), parsed in C++ within the given limits; None when anything is not "
        "what the schema's fast path takes (the caller then decodes in Python and names the field).");
  m.def("track_rows_to_arrays", &TrackRowsToArrays, py::arg("rows"),
        "Rows [id, cls, score, x1, y1, x2, y2, gx?, gy?, kmh?] of a tracks message (a list of lists) "
        "-> (id int64, cls int32, score float32, xyxy float32 (N,4), gx/gy/kmh float32 (N,3)), or "
        "None when any value is not what the schema allows (the caller then names the field).");
}

}  // namespace smartcity::bindings
