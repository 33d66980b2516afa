// FFmpeg's message for an error code (an AVERROR value), for the core's error texts. Private to
// core_cpp/src (the public headers need no FFmpeg headers).
#pragma once

#include <string>

extern "C" {
#include <libavutil/error.h>
}

namespace smartcity {

inline std::string AvError(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(err, buf, sizeof(buf));
  return buf;
}

}  // namespace smartcity
