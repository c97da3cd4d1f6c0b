#pragma once
// Fuzz-style loader check: mutations of a valid saved file must
// load or be refused with an hfisher::Error, never crash or throw anything
// else (a std::bad_alloc would mean a size was trusted before it was checked).

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include <unistd.h>

namespace hfisher_test {

/// A scratch file name unique to this process: ctest runs a test binary and
/// its .team2 twin at the same time, and they must not share files.
inline std::string unique_temp(const std::string& name) {
  return ::testing::TempDir() + "hfisher_" + std::to_string(::getpid()) + "_" + name;
}

struct FuzzCounts {
  int loaded = 0;   ///< mutations that loaded (e.g. a flipped bit in a value)
  int refused = 0;  ///< mutations refused with an hfisher::Error
};

/// Reads the valid file at `path` (its payload, if sealed) and writes each
/// mutation, unsealed so that the parser and not the checksum meets it, to
/// `path + ".fuzz"`, then calls load(that path): truncations, `flips` random
/// single-bit flips, every 4-byte field of the first 128 bytes overwritten
/// with -1, 0, 2^30 and 2^31 - 1, and bytes appended. Any exception other
/// than hfisher::Error is a test failure naming the mutation.
FuzzCounts fuzz_loader(const std::string& path, const std::function<void(const std::string&)>& load, int flips = 150,
                       unsigned seed = 7);

}  // namespace hfisher_test
