// What this build of the core holds: versions, CUDA, compiler.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace smartcity {

// Ordered key/value pairs, e.g. ("cuda", "yes"), ("ffmpeg_runtime", "5.1.8-0+deb12u1").
std::vector<std::pair<std::string, std::string>> BuildInfo();

// FFmpeg's own log level (AV_LOG_QUIET = -8 ... AV_LOG_DEBUG = 48). The core sets it to
// AV_LOG_FATAL when the Python module loads: decoder chatter goes to the stats, not stderr.
void SetFfmpegLogLevel(int level);

}  // namespace smartcity
