#include <gtest/gtest.h>

#include "smartcity/stats.hpp"

namespace smartcity {
namespace {

TEST(LatencyHistogram, EmptyIsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.Count(), 0u);
  EXPECT_EQ(h.Quantile(0.5), 0.0);
}

TEST(LatencyHistogram, QuantilesWithinBucketResolution) {
  LatencyHistogram h;
  for (int i = 1; i <= 1000; ++i) h.Record(i * 1e-5);  // 10 us .. 10 ms, uniform
  EXPECT_EQ(h.Count(), 1000u);
  EXPECT_NEAR(h.Quantile(0.5), 5e-3, 5e-3 * 0.1);
  EXPECT_NEAR(h.Quantile(0.99), 9.9e-3, 9.9e-3 * 0.1);
  EXPECT_LT(h.Quantile(0.01), 2e-4);
  h.Reset();
  EXPECT_EQ(h.Count(), 0u);
}

TEST(LatencyHistogram, OutliersGoToTheEdgeBuckets) {
  LatencyHistogram h;
  h.Record(0);
  h.Record(-1);
  h.Record(1e6);
  EXPECT_EQ(h.Count(), 3u);
  EXPECT_GT(h.Quantile(1.0), 10.0);
}

TEST(StateName, NamesEveryState) {
  EXPECT_STREQ(StateName(StreamState::kConnecting), "connecting");
  EXPECT_STREQ(StateName(StreamState::kRunning), "running");
  EXPECT_STREQ(StateName(StreamState::kBackoff), "backoff");
  EXPECT_STREQ(StateName(StreamState::kStopped), "stopped");
  EXPECT_STREQ(StateName(StreamState::kFailed), "failed");
}

}  // namespace
}  // namespace smartcity
