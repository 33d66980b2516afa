// A 3x3 homography from Python (any array-like of numbers) for the core's row-major arrays.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>

namespace smartcity::bindings {

inline std::array<double, 9> HomographyFrom(const pybind11::object& obj, const char* name) {
  using F64Array = pybind11::array_t<double, pybind11::array::c_style | pybind11::array::forcecast>;
  const F64Array h = F64Array::ensure(obj);
  if (!h || h.ndim() != 2 || h.shape(0) != 3 || h.shape(1) != 3) {
    throw std::invalid_argument(std::string(name) + " must be a 3x3 array of numbers");
  }
  std::array<double, 9> m{};
  std::copy(h.data(), h.data() + 9, m.begin());
  return m;
}

}  // namespace smartcity::bindings
