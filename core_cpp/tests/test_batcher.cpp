#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "smartcity/batch.hpp"
#ifdef SMARTCITY_WITH_CUDA
#include "smartcity/nv12.hpp"
#endif

namespace smartcity {
namespace {

TensorLayout Small() {
  TensorLayout t;
  t.width = 32;
  t.height = 32;
  return t;
}

void Write(Batcher& b, const std::string& cam, int64_t number, bool block = false) {
  SlotTicket t;
  ASSERT_TRUE(b.Acquire(&t, block, nullptr));
  t.meta->camera_id = cam;
  t.meta->frame_number = number;
  t.meta->valid = true;
  reinterpret_cast<float*>(t.data)[0] = static_cast<float>(number);
  b.Commit(t);
}

TEST(Batcher, TimesOutEmpty) {
  auto b = std::make_shared<Batcher>(Small(), 4, 2);
  EXPECT_EQ(b->Next(4, 10), nullptr);
}

TEST(Batcher, ReturnsPartialBatchAtDeadlineAndFullBatchAtOnce) {
  auto b = std::make_shared<Batcher>(Small(), 4, 3);
  Write(*b, "a", 0);
  auto partial = b->Next(4, 20);
  ASSERT_NE(partial, nullptr);
  EXPECT_EQ(partial->size(), 1);
  for (int i = 0; i < 4; ++i) Write(*b, "b", i);
  auto full = b->Next(4, 10000);  // must not wait for the deadline
  ASSERT_NE(full, nullptr);
  EXPECT_EQ(full->size(), 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(full->meta()[i].frame_number, i);
    const float first = reinterpret_cast<const float*>(full->data() + i * Small().SlotBytes())[0];
    EXPECT_EQ(first, static_cast<float>(i));
  }
}

TEST(Batcher, DropsWhenEveryBufferIsLeasedAndRecoversOnRelease) {
  auto b = std::make_shared<Batcher>(Small(), 1, 2);
  Write(*b, "a", 0);
  auto l1 = b->Next(1, 0);
  Write(*b, "a", 1);
  auto l2 = b->Next(1, 0);
  ASSERT_NE(l1, nullptr);
  ASSERT_NE(l2, nullptr);
  SlotTicket t;
  EXPECT_FALSE(b->Acquire(&t, false, nullptr));
  EXPECT_EQ(b->free_buffers(), 0);
  l1.reset();
  EXPECT_EQ(b->free_buffers(), 1);
  EXPECT_TRUE(b->Acquire(&t, false, nullptr));
  b->Commit(t);
}

TEST(Batcher, EveryBufferAbsorbsABurstWhileTheConsumerIsBusy) {
  // Before: only the buffer being filled took frames, so with the consumer busy a burst beyond
  // one batch was dropped however many buffers the pool had.
  auto b = std::make_shared<Batcher>(Small(), 2, 3);
  for (int i = 0; i < 6; ++i) Write(*b, "a", i);
  SlotTicket t;
  EXPECT_FALSE(b->Acquire(&t, false, nullptr));  // 3 buffers x 2 slots: the 7th is dropped
  for (int batch = 0; batch < 3; ++batch) {      // oldest first
    auto l = b->Next(2, 0);
    ASSERT_NE(l, nullptr);
    ASSERT_EQ(l->size(), 2);
    EXPECT_EQ(l->meta()[0].frame_number, 2 * batch);
    EXPECT_EQ(l->meta()[1].frame_number, 2 * batch + 1);
  }
  EXPECT_EQ(b->Next(2, 0), nullptr);
}

TEST(Batcher, BlockingProducersDeliverEveryFrameExactlyOnce) {
  auto b = std::make_shared<Batcher>(Small(), 4, 3);
  constexpr int kProducers = 4, kFrames = 200;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kFrames; ++i) Write(*b, "cam" + std::to_string(p), i, /*block=*/true);
    });
  }
  std::set<std::pair<std::string, int64_t>> seen;
  while (seen.size() < kProducers * kFrames) {
    auto lease = b->Next(4, 1000);
    ASSERT_NE(lease, nullptr);
    for (int i = 0; i < lease->size(); ++i) {
      const auto& m = lease->meta()[i];
      EXPECT_TRUE(seen.insert({m.camera_id, m.frame_number}).second) << "duplicate slot";
    }
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(seen.size(), static_cast<size_t>(kProducers * kFrames));
}

TEST(Batcher, CloseWakesBlockedProducersAndConsumers) {
  auto b = std::make_shared<Batcher>(Small(), 1, 2);
  Write(*b, "a", 0);
  auto l1 = b->Next(1, 0);
  Write(*b, "a", 1);
  auto l2 = b->Next(1, 0);
  std::atomic<bool> returned{false};
  std::thread producer([&] {
    SlotTicket t;
    EXPECT_FALSE(b->Acquire(&t, true, nullptr));
    returned = true;
  });
  std::thread consumer([&] { EXPECT_EQ(b->Next(1, 60000), nullptr); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(returned.load());
  b->Close();
  producer.join();
  consumer.join();
  EXPECT_TRUE(returned.load());
}

TEST(Batcher, RejectsBadSizes) {
  EXPECT_THROW(Batcher(Small(), 0, 2), std::invalid_argument);
  EXPECT_THROW(Batcher(Small(), 4, 1), std::invalid_argument);
  TensorLayout bad = Small();
  bad.pad_value = 300;
  EXPECT_THROW(Batcher(bad, 4, 2), std::invalid_argument);
}

TEST(Batcher, HostBatchesHaveNoDeviceSideAndTicketsSayWhere) {
  auto b = std::make_shared<Batcher>(Small(), 2, 2);
  EXPECT_EQ(b->device(), -1);
  SlotTicket t;
  ASSERT_TRUE(b->Acquire(&t, false, nullptr));
  EXPECT_EQ(t.device_data, nullptr);
  ASSERT_NE(t.place, nullptr);
  EXPECT_EQ(*t.place, SlotPlace::kHost);
  t.meta->valid = true;
  b->Commit(t);
  auto lease = b->Next(2, 0);
  ASSERT_NE(lease, nullptr);
  EXPECT_FALSE(lease->DeviceDataAvailable());
  EXPECT_EQ(lease->DeviceData(), nullptr);
  EXPECT_EQ(lease->HostData(), lease->data());
  EXPECT_EQ(lease->SlotsOn(SlotPlace::kHost), 1);
  EXPECT_EQ(lease->SlotsOn(SlotPlace::kDevice), 0);
}

TEST(Batcher, DeviceBatchesNeedAVisibleDevice) {
  // No GPU on the machines the tests run on: a device batcher is refused with the reason
  // (the GPU side is checked by nvdec_check on a GPU machine, bench/gpu/device_check.sh).
#ifdef SMARTCITY_WITH_CUDA
  if (cuda::DeviceCount() > 0) GTEST_SKIP() << "a GPU is visible";
#endif
  EXPECT_THROW(Batcher(Small(), 2, 2, 0), std::runtime_error);
}

}  // namespace
}  // namespace smartcity
