// The core lease behind a Python Batch, for bindings that take a batch back from Python.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>

#include "smartcity/batch.hpp"

namespace smartcity::bindings {

// Throws TypeError when `batch` is not a Batch, RuntimeError when it was released.
std::shared_ptr<BatchLease> LeaseOf(const pybind11::handle& batch);

}  // namespace smartcity::bindings
