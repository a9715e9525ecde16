#include "journal/hash.hpp"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <new>
#include <vector>

#include "fs/sys/sys.hpp"

namespace scopefs::journal {

std::string Hash128::hex() const {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(high),
                static_cast<unsigned long long>(low));
  return buf;
}

bool Hash128::parse(std::string_view hex, Hash128& out) {
  if (hex.size() != 32) return false;
  auto half = [](std::string_view s, uint64_t& v) {
    v = 0;
    for (char c : s) {
      int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
      if (d < 0) return false;
      v = (v << 4) | static_cast<uint64_t>(d);
    }
    return true;
  };
  return half(hex.substr(0, 16), out.high) && half(hex.substr(16), out.low);
}

Hash128 empty_hash() { return hash_bytes({}); }

Hasher::Hasher() : state_(XXH3_createState()) {
  if (!state_) throw std::bad_alloc();
  XXH3_128bits_reset(state_);
}
Hasher::~Hasher() { XXH3_freeState(state_); }
void Hasher::reset() { XXH3_128bits_reset(state_); }
void Hasher::update(const void* data, size_t n) { XXH3_128bits_update(state_, data, n); }
Hash128 Hasher::digest() const {
  XXH128_hash_t h = XXH3_128bits_digest(state_);
  return Hash128{h.high64, h.low64};
}

Hash128 hash_bytes(std::string_view data) {
  XXH128_hash_t h = XXH3_128bits(data.data(), data.size());
  return Hash128{h.high64, h.low64};
}

namespace {

Result<uint64_t> hash_read(int fd, uint64_t from, uint64_t to, Hasher& h, std::vector<char>& buf) {
  uint64_t off = from, total = 0;
  while (off < to) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), to - off));
    auto n = sys::pread_fd(fd, buf.data(), want, static_cast<off_t>(off));
    if (!n) return Errno{n.error()};
    if (*n == 0) break;
    h.update(buf.data(), *n);
    off += *n;
    total += *n;
  }
  return total;
}

void hash_zeros(uint64_t n, Hasher& h) {
  static const std::vector<char> zeros(1 << 16, '\0');
  while (n > 0) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(zeros.size(), n));
    h.update(zeros.data(), k);
    n -= k;
  }
}

}  // namespace

// Holes (and unwritten extents) are hashed as zeros without being read, so
// hashing a sparse file neither reads nor caches its holes.
Result<uint64_t> hash_fd_range(int fd, uint64_t from, Hasher& h) {
  std::vector<char> buf(1 << 20);
  auto st = sys::stat_fd(fd);
  if (!st) return Errno{st.error()};
  auto size = static_cast<uint64_t>(st->st_size);
  uint64_t off = from;
  while (off < size) {
    auto data = sys::lseek_fd(fd, static_cast<off_t>(off), SEEK_DATA);
    if (!data) {
      if (data.error() == ENXIO) {  // only a hole up to EOF
        hash_zeros(size - off, h);
        off = size;
        break;
      }
      // No SEEK_DATA support: read everything.
      auto n = hash_read(fd, off, UINT64_MAX, h, buf);
      if (!n) return Errno{n.error()};
      return off + *n - from;
    }
    auto d = static_cast<uint64_t>(*data);
    if (d > size) d = size;
    if (d > off) hash_zeros(d - off, h);
    auto hole = sys::lseek_fd(fd, static_cast<off_t>(d), SEEK_HOLE);
    uint64_t end = hole ? std::min<uint64_t>(static_cast<uint64_t>(*hole), size) : size;
    auto n = hash_read(fd, d, end, h, buf);
    if (!n) return Errno{n.error()};
    off = d + *n;
    if (*n < end - d) break;  // file shrank meanwhile
  }
  return off - from;
}

Result<Hash128> hash_fd(int fd) {
  Hasher h;
  auto r = hash_fd_range(fd, 0, h);
  if (!r) return Errno{r.error()};
  return h.digest();
}

}  // namespace scopefs::journal
