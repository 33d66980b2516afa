// One Export function per exported type; module.cpp calls them in order.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "smartcity/batch.hpp"
#include "smartcity/tracker.hpp"

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

// The model's box-bottom bias into a tracker config: (height px, offset px) pairs (None: none)
// and the class ids it applies to (0..31); std::invalid_argument naming bottom_bias_classes.
using BottomBias = std::optional<std::vector<std::pair<float, float>>>;
// The classes a bias applies to by default: the vehicles (bicycle, car, motorcycle, bus, truck).
inline const std::vector<int> kBottomBiasDefaultClasses{1, 2, 3, 4, 5};
void SetBottomBias(TrackerConfig& c, const BottomBias& bias, const std::vector<int>& classes, double scale = 1.0);
// Class ids 0..31 as a bit mask; std::invalid_argument naming `field` for one out of range.
uint32_t ClassMask(const std::vector<int>& classes, const char* field);
// The classes whose tracks keep their id across a gap by default: the vehicles, as above.
inline const std::vector<int>& kRecoverDefaultClasses = kBottomBiasDefaultClasses;
// Id recovery settings into a tracker config; std::invalid_argument naming recover_classes.
void SetRecovery(TrackerConfig& c, double recover_s, double gate_m, double min_s, const std::vector<int>& classes);

// A Batch object for Python, or None for a null lease.
pybind11::object WrapBatch(std::shared_ptr<BatchLease> lease);

}  // namespace smartcity::bindings
