// GoogleTest entry point. Debian's LibTorch starts with one intra-op thread; use every core so the
// multi-threaded paths of the ops are the ones tested.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <thread>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  at::set_num_threads(static_cast<int>(std::max(2u, std::thread::hardware_concurrency())));
  return RUN_ALL_TESTS();
}
