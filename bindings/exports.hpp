// One Export function per exported type; module.cpp calls them in order.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>

#include "smartcity/batch.hpp"

namespace smartcity::bindings {

void ExportBuildInfo(pybind11::module_& m);
void ExportGeometry(pybind11::module_& m);
void ExportStreamConfig(pybind11::module_& m);
void ExportBatch(pybind11::module_& m);
void ExportPipeline(pybind11::module_& m);
void ExportNv12(pybind11::module_& m);
void ExportPostprocess(pybind11::module_& m);
void ExportTracker(pybind11::module_& m);
void ExportPublisher(pybind11::module_& m);
void ExportTrackRows(pybind11::module_& m);

// A Batch object for Python, or None for a null lease.
pybind11::object WrapBatch(std::shared_ptr<BatchLease> lease);

}  // namespace smartcity::bindings
