// Where the engine tests find their real checkpoints and fairseq's expected outputs
// (tests/engine/make_engine_fixtures.py, run by the CTest fixture "engine_fixtures").
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace decayfw::testing {

inline std::string fixture(const std::string& name) {
  const char* dir = std::getenv("DECAYFW_ENGINE_FIXTURES");
  if (dir == nullptr) {
    ADD_FAILURE() << "DECAYFW_ENGINE_FIXTURES is not set (run through ctest, which makes the fixtures)";
    return name;
  }
  const std::string path = std::string(dir) + "/" + name;
  if (!std::filesystem::exists(path)) ADD_FAILURE() << "missing fixture " << path;
  return path;
}

}  // namespace decayfw::testing
