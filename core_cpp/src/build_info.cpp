#include "smartcity/build_info.hpp"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>
}

#ifndef SMARTCITY_VERSION
#define SMARTCITY_VERSION "unknown"
#endif
#ifndef SMARTCITY_BUILD_TYPE
#define SMARTCITY_BUILD_TYPE "unknown"
#endif
#ifndef SMARTCITY_COMPILER
#define SMARTCITY_COMPILER "unknown"
#endif
#ifndef SMARTCITY_CUDA_ARCHS
#define SMARTCITY_CUDA_ARCHS ""
#endif
#ifndef SMARTCITY_CUDA_VERSION
#define SMARTCITY_CUDA_VERSION ""
#endif

namespace smartcity {

namespace {
std::string Ver(unsigned v) {
  return std::to_string(AV_VERSION_MAJOR(v)) + "." + std::to_string(AV_VERSION_MINOR(v)) + "." +
         std::to_string(AV_VERSION_MICRO(v));
}
}  // namespace

std::vector<std::pair<std::string, std::string>> BuildInfo() {
  return {
      {"version", SMARTCITY_VERSION},
      {"build_type", SMARTCITY_BUILD_TYPE},
      {"compiler", SMARTCITY_COMPILER},
      {"ffmpeg", av_version_info()},
      {"libavformat", Ver(avformat_version())},
      {"libavcodec", Ver(avcodec_version())},
      {"libavutil", Ver(avutil_version())},
      {"libswscale", Ver(swscale_version())},
      {"libavcodec_built_against", Ver(LIBAVCODEC_VERSION_INT)},
#ifdef SMARTCITY_WITH_CUDA
      {"cuda", "yes"},
      {"cuda_version", SMARTCITY_CUDA_VERSION},
      {"cuda_architectures", SMARTCITY_CUDA_ARCHS},
#else
      {"cuda", "no"},
      {"cuda_version", ""},
      {"cuda_architectures", ""},
#endif
  };
}

void SetFfmpegLogLevel(int level) { av_log_set_level(level); }

}  // namespace smartcity
