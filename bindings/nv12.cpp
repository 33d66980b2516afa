#include <pybind11/pybind11.h>

#include "exports.hpp"

namespace py = pybind11;

namespace smartcity::bindings {

void ExportNv12(py::module_& m) { (void)m; }

}  // namespace smartcity::bindings
