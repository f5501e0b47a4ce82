// wscengine — adapter internals: one way to set up a client TLS context from the
// engine's TLS options, shared by the adapters built on Asio. C++17 and standard
// types only, so that the websocketpp bridge can use it too. Not public API.
#pragma once

#include <openssl/ssl.h>
#include <boost/asio/ssl/context.hpp>

#include <string>

namespace wscengine::detail {

/// The TLS settings an Asio-based adapter applies. A plain value.
struct ClientTlsSettings {
  std::string ca_file;  ///< empty: the system trust store
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
  } else {
    ctx.set_default_verify_paths(ec);
  }
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

}  // namespace wscengine::detail
