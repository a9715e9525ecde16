// Cryptographic primitives of the audit trail (libsodium): BLAKE2b-256 for
// the hash chain, Ed25519 for signed checkpoints and export bundles.
//
// A task's signing key lives in STATE_DIR/keys/: `ed25519.key` (the 64-byte
// libsodium secret key, mode 0600, root's) and `ed25519.pub` (32 bytes,
// 0644), created together on first use. The fingerprint that identifies a key
// in reports and bundles is the first 16 bytes of BLAKE2b-256(public key),
// in hex.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace scopefs::journal {

using Digest = std::array<uint8_t, 32>;
using PublicKey = std::array<uint8_t, 32>;
using Signature = std::array<uint8_t, 64>;

// BLAKE2b-256 of the bytes.
Digest blake2b(std::string_view data);
std::string to_hex(const uint8_t* p, size_t n);
template <size_t N>
std::string to_hex(const std::array<uint8_t, N>& a) {
  return to_hex(a.data(), N);
}
// Parses exactly 2*n hex digits into out[0..n).
bool from_hex(std::string_view s, uint8_t* out, size_t n);
template <size_t N>
bool from_hex(std::string_view s, std::array<uint8_t, N>& out) {
  return from_hex(s, out.data(), N);
}

std::string fingerprint(const PublicKey& pk);

class SigningKey {
 public:
  // Loads STATE_DIR/keys/ed25519.key, creating the pair if there is none.
  // Throws std::runtime_error with a clear message when it cannot.
  static SigningKey load_or_create(const std::string& state_dir);
  // A fresh key held in memory (unit tests).
  static SigningKey generate();

  Signature sign(std::string_view message) const;
  const PublicKey& public_key() const { return pk_; }

 private:
  std::array<uint8_t, 64> sk_{};
  PublicKey pk_{};
};

// STATE_DIR/keys/ed25519.pub, if there is one.
std::optional<PublicKey> read_public_key(const std::string& state_dir);
// A public key given on the command line: 64 hex digits, or a file holding
// them (or the raw 32 bytes).
std::optional<PublicKey> parse_public_key_arg(const std::string& arg);
bool verify_signature(const PublicKey& pk, std::string_view message, const Signature& sig);

}  // namespace scopefs::journal
