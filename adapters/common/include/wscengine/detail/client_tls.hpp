// wscengine — adapter internals: one way to set up a client TLS context from the
// engine's TLS options, shared by the adapters built on Asio. C++17 and standard
// types only, so that the websocketpp bridge can use it too. Not public API.
#pragma once

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <wscengine/certificate.hpp>

#include <algorithm>
#include <cstddef>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace wscengine::detail {

/// The TLS settings an Asio-based adapter applies. A plain value.
struct ClientTlsSettings {
  std::string ca_file;  ///< empty (and no ca_pem): the system trust store
  std::string ca_pem;   ///< CA certificates as PEM text, with or instead of ca_file
  std::string certificate_file;
  std::string private_key_file;
  std::string private_key_password;
  bool tls13_only = false;
};

/// Loads the trust store, the client certificate and key (mutual TLS) and the
/// minimum version into `ctx`. Returns "" or what failed, naming the file.
inline std::string setup_client_tls(boost::asio::ssl::context& ctx, const ClientTlsSettings& s) {
  boost::system::error_code ec;
  if (!s.ca_file.empty()) {
    ctx.load_verify_file(s.ca_file, ec);
    if (ec) return "cannot load CA file '" + s.ca_file + "': " + ec.message();
  }
  if (!s.ca_pem.empty()) {
    ctx.add_certificate_authority(boost::asio::buffer(s.ca_pem), ec);
    if (ec) return "cannot load tls.ca_pem (PEM certificates expected): " + ec.message();
  }
  if (s.ca_file.empty() && s.ca_pem.empty()) ctx.set_default_verify_paths(ec);
  if (!SSL_CTX_set_min_proto_version(ctx.native_handle(), s.tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION))
    return "cannot set the minimum TLS version";
  if (s.certificate_file.empty() != s.private_key_file.empty())
    return "a client certificate needs its private key and the other way round (tls.certificate_file, "
           "tls.private_key_file)";
  if (s.certificate_file.empty()) return {};
  if (!s.private_key_password.empty()) {
    std::string password = s.private_key_password;
    ctx.set_password_callback([password](std::size_t, boost::asio::ssl::context::password_purpose) { return password; },
                              ec);
  }
  ctx.use_certificate_chain_file(s.certificate_file, ec);
  if (ec) return "cannot load client certificate '" + s.certificate_file + "': " + ec.message();
  ctx.use_private_key_file(s.private_key_file, boost::asio::ssl::context::pem, ec);
  if (ec)
    return "cannot load client private key '" + s.private_key_file + "': " + ec.message() +
           (s.private_key_password.empty() ? " (encrypted? set tls.private_key_password)" : " (wrong password?)");
  return {};
}

/// The engine's own certificate check for one connection: public-key pins and the
/// user's verify callback, run by OpenSSL in place of its chain check (which it runs
/// first, itself). One per connection, reached by the shared context's verify callback
/// through the connection's TlsBinding (tls_contexts.hpp); it must outlive its handshakes.
/// Used by one handshake at a time (OpenSSL calls it on the thread running it).
class CertificateGate {
 public:
  /// Takes the check's settings; returns "" or what is wrong with them (a pin that
  /// is not one). `host` is the name the certificate must carry (or an address).
  std::string configure(bool verify_peer, std::string host, const std::vector<std::string>& pins,
                        CertificateVerifier callback) {
    verify_peer_ = verify_peer;
    host_ = std::move(host);
    callback_ = std::move(callback);
    pins_.clear();
    refusal_.clear();
    for (const auto& pin : pins) {
      auto digest = parse_public_key_pin(pin);
      if (!digest) return "tls.pinned_public_keys: '" + pin + "' is not a sha256/BASE64 public-key pin";
      pins_.push_back(std::move(*digest));
    }
    return {};
  }

  /// Whether there is anything to check beyond OpenSSL's own verification.
  bool active() const { return !pins_.empty() || static_cast<bool>(callback_); }

  /// Why the last handshake's check refused the server, in words; empty when it did not.
  const std::string& refusal() const { return refusal_; }

  /// The check itself, in OpenSSL's place (SSL_CTX_set_cert_verify_callback): 1 to
  /// accept the chain in `store`, 0 to refuse it (refusal() says why).
  int verify_chain(X509_STORE_CTX* store) {
    refusal_.clear();
    // The host name is checked here as well, so that the verdict the callback sees
    // means the same on every adapter, with tls.verify_peer on or off.
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(store);
    if (!X509_VERIFY_PARAM_set1_ip_asc(param, host_.c_str())) X509_VERIFY_PARAM_set1_host(param, host_.c_str(), 0);
    bool chain_verified = X509_verify_cert(store) > 0;
    std::string verdict = chain_verified ? "" : X509_verify_cert_error_string(X509_STORE_CTX_get_error(store));
    STACK_OF(X509)* certificates =
        chain_verified ? X509_STORE_CTX_get0_chain(store) : X509_STORE_CTX_get0_untrusted(store);
    std::vector<PeerCertificate> chain;
    std::vector<std::string> digests;
    for (int i = 0; certificates && i < sk_X509_num(certificates); ++i) {
      digests.push_back(public_key_digest(sk_X509_value(certificates, i)));
      chain.push_back(describe(sk_X509_value(certificates, i), digests.back()));
    }
    if (chain.empty()) {  // cannot happen with a server's chain; refuse rather than guess
      if (X509* leaf = X509_STORE_CTX_get0_cert(store)) {
        digests.push_back(public_key_digest(leaf));
        chain.push_back(describe(leaf, digests.back()));
      }
    }
    bool accepted = chain_verified || !verify_peer_;
    if (accepted && !pins_.empty()) {
      // A verified chain vouches for every key in it; an unverified one only for the
      // leaf's, whose private key the handshake proved the server holds.
      std::size_t vouched = chain_verified ? digests.size() : std::min<std::size_t>(1, digests.size());
      bool pinned = false;
      for (std::size_t i = 0; i < vouched && !pinned; ++i)
        for (const auto& pin : pins_) pinned = pinned || digests[i] == pin;
      if (!pinned) {
        accepted = false;
        verdict = "no public key in the chain matches tls.pinned_public_keys (the server's own is " +
                  (chain.empty() ? std::string("unknown") : chain.front().public_key_pin) + ")";
      }
    }
    if (callback_) {
      CertificateCheck seen{host_, accepted, accepted ? std::string() : verdict, std::move(chain)};
      try {
        bool answer = callback_(seen);
        if (!answer && accepted) verdict = "tls.verify_callback refused the certificate";
        accepted = answer;
      } catch (const std::exception& e) {
        accepted = false;
        verdict = std::string("tls.verify_callback threw: ") + e.what();
      } catch (...) {
        accepted = false;
        verdict = "tls.verify_callback threw";
      }
    }
    if (!accepted) {
      refusal_ = verdict;
      X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
      return 0;
    }
    X509_STORE_CTX_set_error(store, X509_V_OK);
    return 1;
  }

 private:
  // SHA-256 of the certificate's DER SubjectPublicKeyInfo (HPKP's pin-sha256).
  static std::string public_key_digest(X509* certificate) {
    unsigned char* spki = nullptr;
    int size = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(certificate), &spki);
    if (size <= 0) return {};
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_size = 0;
    bool ok = EVP_Digest(spki, static_cast<std::size_t>(size), digest, &digest_size, EVP_sha256(), nullptr) == 1;
    OPENSSL_free(spki);
    return ok ? std::string(reinterpret_cast<const char*>(digest), digest_size) : std::string();
  }

  static std::string one_line(X509_NAME* name) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return {};
    char* text = nullptr;
    long size = BIO_get_mem_data(bio.get(), &text);
    return size > 0 ? std::string(text, static_cast<std::size_t>(size)) : std::string();
  }

  static PeerCertificate describe(X509* certificate, const std::string& digest) {
    PeerCertificate out;
    int size = i2d_X509(certificate, nullptr);
    if (size > 0) {
      out.der.resize(static_cast<std::size_t>(size));
      auto* cursor = reinterpret_cast<unsigned char*>(out.der.data());
      i2d_X509(certificate, &cursor);
    }
    out.subject = one_line(X509_get_subject_name(certificate));
    out.issuer = one_line(X509_get_issuer_name(certificate));
    if (!digest.empty()) {
      std::string encoded(4 * ((digest.size() + 2) / 3), '\0');
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                      reinterpret_cast<const unsigned char*>(digest.data()), static_cast<int>(digest.size()));
      out.public_key_pin = "sha256/" + encoded;
    }
    return out;
  }

  bool verify_peer_ = true;
  std::string host_;
  std::vector<std::string> pins_;  // 32-byte SHA-256 digests
  CertificateVerifier callback_;
  std::string refusal_;
};

/// Why a client's TLS handshake failed (see tls_handshake_failure). A plain value.
struct TlsFailure {
  bool verification = false;  ///< the certificate was refused (else the handshake failed)
  std::string detail;         ///< what happened, naming the host
};

/// Why a client's TLS handshake with `host` failed, as the engine reports it: the
/// certificate gate's refusal, OpenSSL's verification verdict (a bad signature in the
/// chain surfaces as "EVP lib", not as a verify failure, so the verdict decides), or
/// the handshake itself.
inline TlsFailure tls_handshake_failure(const boost::system::error_code& ec, SSL* ssl, bool verify_peer,
                                        const CertificateGate& gate, const std::string& host) {
  if (!gate.refusal().empty()) return {true, "server certificate of " + host + ": " + gate.refusal()};
  long result = SSL_get_verify_result(ssl);
  if ((ec.category() == boost::asio::error::get_ssl_category() &&
       ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_CERTIFICATE_VERIFY_FAILED) ||
      (verify_peer && result != X509_V_OK)) {
    return {true, "server certificate of " + host + ": " + X509_verify_cert_error_string(result)};
  }
  return {false, "with " + host + ": " + ec.message()};
}

}  // namespace wscengine::detail
