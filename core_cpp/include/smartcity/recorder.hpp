// Evidence clips: the packets a stream's PacketRing holds for a stream-time range, remuxed
// without re-encoding into an MP4 file.
//
// Time base: t0 and t1 are stream times in seconds, the same clock as Batch.pts, the tracks
// messages' `pts` and RingInfo's first_s / last_s (packet or frame timestamp * the stream's
// time base, plus the offset that keeps a looped file's time increasing). A new session (a
// reconnect) empties the ring and may restart that clock.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "smartcity/packet_ring.hpp"

namespace smartcity {

// The range asked for is not (or not yet) in the ring; the message says what the ring holds.
class ClipRangeError : public std::out_of_range {
 public:
  explicit ClipRangeError(const std::string& what) : std::out_of_range(what) {}
};

// The clip could not be written: the path, the disk, or a codec MP4 cannot hold.
class ClipWriteError : public std::runtime_error {
 public:
  explicit ClipWriteError(const std::string& what) : std::runtime_error(what) {}
};

struct ClipInfo {
  int packets = 0;
  bool keyframe_start = false;  // the first packet is a keyframe (always, from a ring)
  double first_s = 0;           // stream time of the first packet (the keyframe at or before t0)
  double last_s = 0;            // latest stream time in the clip: <= t1, or a little after t1 for a
                                // reference frame that B-frames before t1 need
  double duration_s = 0;        // last_s - first_s + one frame
  int64_t bytes = 0;            // size of the file written
  std::string codec;            // codec name, e.g. h264
};

// Writes the packets of ring from the keyframe at or before t0 through t1 to an MP4 file at
// path (faststart: the index comes first, so it plays while downloading). Timestamps are
// rebased so that the clip starts at 0. Throws std::invalid_argument for a non-finite range or
// t1 < t0, ClipRangeError when the ring is empty, when [t0, t1] does not overlap what it holds,
// or when t1 is newer than its newest packet (not yet in the ring: wait and ask again), and
// ClipWriteError when the file cannot be written (the partial file is removed). A t0 older than
// the ring starts the clip at the ring's first keyframe; ClipInfo.first_s says where it starts.
ClipInfo WriteClip(const PacketRing& ring, double t0, double t1, const std::string& path);

// The same from packets already copied out of a ring (tests, tools).
ClipInfo WriteClip(const RingPackets& packets, const std::string& path);

}  // namespace smartcity
