#include "journal/signing.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace scopefs::journal {
namespace {

void init_sodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) throw std::runtime_error("libsodium cannot be initialised");
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `data` to `path` with `mode` through a temp file and rename.
void write_new_file(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("cannot create " + tmp + ": " + std::strerror(errno));
  bool ok = ::fchmod(fd, mode) == 0 &&
            ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
            ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path + ": " + std::strerror(err));
  }
}

}  // namespace

Digest blake2b(std::string_view data) {
  init_sodium();
  Digest d{};
  crypto_generichash(d.data(), d.size(), reinterpret_cast<const unsigned char*>(data.data()),
                     data.size(), nullptr, 0);
  return d;
}

std::string to_hex(const uint8_t* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kDigits[p[i] >> 4]);
    s.push_back(kDigits[p[i] & 15]);
  }
  return s;
}

bool from_hex(std::string_view s, uint8_t* out, size_t n) {
  if (s.size() != 2 * n) return false;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < n; ++i) {
    int hi = nib(s[2 * i]), lo = nib(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

std::string fingerprint(const PublicKey& pk) {
  Digest d = blake2b(std::string_view(reinterpret_cast<const char*>(pk.data()), pk.size()));
  return to_hex(d.data(), 16);
}

SigningKey SigningKey::generate() {
  init_sodium();
  SigningKey k;
  crypto_sign_keypair(k.pk_.data(), k.sk_.data());
  return k;
}

SigningKey SigningKey::load_or_create(const std::string& state_dir) {
  init_sodium();
  std::string dir = state_dir + "/keys";
  std::string key_path = dir + "/ed25519.key", pub_path = dir + "/ed25519.pub";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    throw std::runtime_error("cannot create " + dir + ": " + std::strerror(errno));
  ::chmod(dir.c_str(), 0700);
  SigningKey k;
  if (auto sk = read_file(key_path)) {
    if (sk->size() != k.sk_.size())
      throw std::runtime_error(key_path + " is not an Ed25519 secret key (" +
                               std::to_string(sk->size()) + " bytes, expected 64)");
    std::memcpy(k.sk_.data(), sk->data(), k.sk_.size());
    crypto_sign_ed25519_sk_to_pk(k.pk_.data(), k.sk_.data());
    struct stat st {};
    if (::stat(key_path.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
      throw std::runtime_error(key_path + " is readable by others (mode " +
                               std::to_string(st.st_mode & 0777) + "): chmod 600 it");
    // The public half is rewritten if it went missing or does not match.
    auto pub = read_file(pub_path);
    if (!pub || pub->size() != k.pk_.size() ||
        std::memcmp(pub->data(), k.pk_.data(), k.pk_.size()) != 0)
      write_new_file(pub_path,
                     std::string(reinterpret_cast<const char*>(k.pk_.data()), k.pk_.size()), 0644);
    return k;
  }
  if (errno != ENOENT && ::access(key_path.c_str(), F_OK) == 0)
    throw std::runtime_error("cannot read " + key_path + ": " + std::strerror(errno));
  k = generate();
  write_new_file(key_path, std::string(reinterpret_cast<const char*>(k.sk_.data()), k.sk_.size()),
                 0600);
  write_new_file(pub_path, std::string(reinterpret_cast<const char*>(k.pk_.data()), k.pk_.size()),
                 0644);
  return k;
}

Signature SigningKey::sign(std::string_view message) const {
  init_sodium();
  Signature sig{};
  crypto_sign_detached(sig.data(), nullptr, reinterpret_cast<const unsigned char*>(message.data()),
                       message.size(), sk_.data());
  return sig;
}

std::optional<PublicKey> read_public_key(const std::string& state_dir) {
  auto pub = read_file(state_dir + "/keys/ed25519.pub");
  if (!pub || pub->size() != 32) return std::nullopt;
  PublicKey pk{};
  std::memcpy(pk.data(), pub->data(), pk.size());
  return pk;
}

std::optional<PublicKey> parse_public_key_arg(const std::string& arg) {
  PublicKey pk{};
  if (from_hex(arg, pk)) return pk;
  auto data = read_file(arg);
  if (!data) return std::nullopt;
  if (data->size() == 32) {
    std::memcpy(pk.data(), data->data(), 32);
    return pk;
  }
  std::string text = *data;
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  if (from_hex(text, pk)) return pk;
  return std::nullopt;
}

bool verify_signature(const PublicKey& pk, std::string_view message, const Signature& sig) {
  init_sodium();
  return crypto_sign_verify_detached(sig.data(),
                                     reinterpret_cast<const unsigned char*>(message.data()),
                                     message.size(), pk.data()) == 0;
}

}  // namespace scopefs::journal
