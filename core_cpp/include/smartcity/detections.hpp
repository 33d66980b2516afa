// Detections of one frame, struct of arrays (DESIGN.md §3): handed to Python as numpy arrays,
// never as per-object Python objects. track_id joins when the tracker lands.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace smartcity {

struct Detections {
  std::vector<float> xyxy;        // size() * 4: x1, y1, x2, y2 in frame pixels
  std::vector<float> score;       // size()
  std::vector<int32_t> class_id;  // size(): appliance class id
  size_t size() const { return score.size(); }
};

}  // namespace smartcity
