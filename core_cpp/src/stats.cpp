#include "smartcity/stats.hpp"

#include <chrono>
#include <cmath>

namespace smartcity {

const char* StateName(StreamState s) {
  switch (s) {
    case StreamState::kConnecting: return "connecting";
    case StreamState::kRunning: return "running";
    case StreamState::kBackoff: return "backoff";
    case StreamState::kStopped: return "stopped";
    case StreamState::kFailed: return "failed";
  }
  return "unknown";
}

namespace {
constexpr double kMinSeconds = 1e-6;
int BucketOf(double seconds) {
  if (!(seconds > kMinSeconds)) return 0;
  const int b = static_cast<int>(std::log2(seconds / kMinSeconds) * 8.0) + 1;
  return b >= LatencyHistogram::kBuckets ? LatencyHistogram::kBuckets - 1 : b;
}
double BucketMid(int b) {
  if (b == 0) return kMinSeconds;
  return kMinSeconds * std::exp2((b - 0.5) / 8.0);
}
}  // namespace

void LatencyHistogram::Record(double seconds) { counts_[BucketOf(seconds)].fetch_add(1, std::memory_order_relaxed); }

uint64_t LatencyHistogram::Count() const {
  uint64_t n = 0;
  for (const auto& c : counts_) n += c.load(std::memory_order_relaxed);
  return n;
}

double LatencyHistogram::Quantile(double q) const {
  std::array<uint64_t, kBuckets> snap{};
  uint64_t n = 0;
  for (int i = 0; i < kBuckets; ++i) {
    snap[i] = counts_[i].load(std::memory_order_relaxed);
    n += snap[i];
  }
  if (n == 0) return 0.0;
  const double target = q * static_cast<double>(n);
  uint64_t acc = 0;
  for (int i = 0; i < kBuckets; ++i) {
    acc += snap[i];
    if (static_cast<double>(acc) >= target && snap[i] > 0) return BucketMid(i);
  }
  return BucketMid(kBuckets - 1);
}

void LatencyHistogram::Reset() {
  for (auto& c : counts_) c.store(0, std::memory_order_relaxed);
}

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t WallNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace smartcity
