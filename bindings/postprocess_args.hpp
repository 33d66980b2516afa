// What smartcity.postprocess and Pipeline.submit share: the config from Python arguments, and
// the run from output arrays to a list of Detections.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "smartcity/postprocess.hpp"

namespace smartcity::bindings {

// Throws std::invalid_argument (ValueError) naming the bad argument.
PostprocessConfig MakePostprocessConfig(
    const std::string& format, int input_w, int input_h,
    const pybind11::array_t<int32_t, pybind11::array::c_style | pybind11::array::forcecast>& class_map,
    float score_threshold, float iou_threshold, int max_detections, const pybind11::object& class_score_thresholds);

// Decodes `outputs` (numpy arrays) for the slots, with the GIL released for the work. Slots
// whose `valid` is false get an empty Detections (their geometry is never used).
pybind11::list RunPostprocess(const pybind11::sequence& outputs, std::vector<SlotGeometry> slots,
                              const std::vector<bool>& valid, const PostprocessConfig& config);

}  // namespace smartcity::bindings
