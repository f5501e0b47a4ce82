// wscengine — what a TLS certificate check sees (CertificateCheck) and the public-key
// pins it can be held to. Standard types only (C++17 and later), so that every adapter
// can run the same check whatever language level its library needs.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wscengine {

/// One certificate of the chain a server presented during the TLS handshake. A plain
/// value: copy it, keep it, read it from any thread.
struct PeerCertificate {
  std::string der{};      ///< the certificate itself, DER bytes
  std::string subject{};  ///< its subject, one line (RFC 2253), e.g. "CN=example.com,O=Example"
  std::string issuer{};   ///< its issuer, in the same form
  /// SHA-256 of its SubjectPublicKeyInfo, base64 with a "sha256/" prefix: the form
  /// TlsOptions::pinned_public_keys takes, so a pin can be copied from here.
  std::string public_key_pin{};
};

/// What TlsOptions::verify_callback is shown, once per TLS handshake: the server's
/// chain and the verdict the engine reached on its own (chain, host name, pins). A plain
/// value, built for the call; the callback may copy what it wants to keep.
struct CertificateCheck {
  std::string host{};  ///< the name checked: tls.server_name, or else the URL's host
  /// True when the chain verified against the trust store (when tls.verify_peer is on),
  /// the host name matched, and a pinned key (when there are pins) is in the chain.
  bool verified = false;
  std::string verdict{};  ///< why not, in words, e.g. "certificate has expired"; empty when verified
  /// Leaf first. The verified chain up to the trust anchor when the chain verified; the
  /// certificates as the server sent them otherwise.
  std::vector<PeerCertificate> chain{};
};

/// Decides a TLS handshake: true accepts the server, false refuses it (the dial then
/// fails with errc::tls_verification_failed). It has the last word: it may accept what
/// the engine refused (a lab server's own certificate) or refuse what it accepted.
/// Runs on the I/O thread doing the handshake, once per handshake: keep it short and
/// do not block. An exception it throws refuses the handshake, naming the exception.
using CertificateVerifier = std::function<bool(const CertificateCheck&)>;

/// Parses a public-key pin: "sha256/BASE64" or plain BASE64 (44 characters, as in
/// HPKP and curl's --pinnedpubkey), the SHA-256 of a SubjectPublicKeyInfo. Returns the
/// 32 digest bytes, or nothing when `pin` is not one. Thread-safe (a pure function).
std::optional<std::string> parse_public_key_pin(std::string_view pin);

}  // namespace wscengine
