// Certificates made for one test, with OpenSSL's API: a CA and a server certificate it
// signed, valid now or expired, for "localhost" and 127.0.0.1. Tests that need only a
// self-signed certificate use make_test_certificate (the openssl tool) instead.
#pragma once

#include <string>

namespace wscengine::test {

/// A small public-key infrastructure in a temporary directory: ca.pem (a CA, its own
/// issuer), server.pem (the server's certificate followed by the CA's: the chain a
/// server sends), server-key.pem. Build with make_test_pki().
struct TestPki {
  std::string dir;
  std::string ca_name;        ///< the CA's common name
  std::string ca_file;        ///< the CA certificate (PEM): what a client trusts
  std::string ca_pem;         ///< the same, as text
  std::string server_chain;   ///< server certificate + CA certificate (PEM)
  std::string server_key;     ///< the server's private key (PEM)
  std::string ca_pin;         ///< "sha256/..." of the CA's public key
  std::string server_pin;     ///< "sha256/..." of the server's public key
  std::string unrelated_pin;  ///< "sha256/..." of a key that signs nothing here
};

/// Makes a fresh TestPki; `expired` makes the server certificate's validity end a
/// day ago; `ca_name` names the CA (default: a name no other TestPki has). Throws
/// std::runtime_error naming what failed.
TestPki make_test_pki(bool expired = false, const std::string& ca_name = {});

/// The public-key pin of the certificate in PEM file `file`, computed by the openssl
/// tool (not by the code under test). Empty when that failed.
std::string pin_of_certificate_file(const std::string& file);

}  // namespace wscengine::test
