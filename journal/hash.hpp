// Content hashes: XXH3-128, printed in the canonical form `xxhsum -H2` prints
// (32 hex digits, big-endian high then low half). The streaming state is an
// RAII object (STYLE rule 15) fed incrementally while a file is written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fs/result.hpp"

struct XXH3_state_s;

namespace scopefs::journal {

struct Hash128 {
  uint64_t high = 0;
  uint64_t low = 0;
  bool operator==(const Hash128&) const = default;
  std::string hex() const;
  static bool parse(std::string_view hex, Hash128& out);
};

// The hash of empty content.
Hash128 empty_hash();

class Hasher {
 public:
  Hasher();
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void reset();
  void update(const void* data, size_t n);
  Hash128 digest() const;

 private:
  XXH3_state_s* state_;
};

Hash128 hash_bytes(std::string_view data);
// Hashes bytes [from, EOF) of `fd` into `h` with pread; returns bytes hashed.
Result<uint64_t> hash_fd_range(int fd, uint64_t from, Hasher& h);
Result<Hash128> hash_fd(int fd);

}  // namespace scopefs::journal
