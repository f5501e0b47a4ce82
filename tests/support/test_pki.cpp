#include "support/test_pki.hpp"

#include "support/process.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace wscengine::test {
namespace {

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Certificate = std::unique_ptr<X509, decltype(&X509_free)>;

Key new_key() {
  // P-256: quick to make, and a key type every TLS stack here accepts.
  Key key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
  if (!key) throw std::runtime_error("test PKI: cannot make a key");
  return key;
}

void add_extension(X509* certificate, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, certificate, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!extension || !X509_add_ext(certificate, extension, -1))
    throw std::runtime_error(std::string("test PKI: cannot add extension ") + value);
  X509_EXTENSION_free(extension);
}

// A certificate for `subject_key`, signed by `issuer_key` (the issuer's certificate:
// `issuer`, or itself when null), valid from `from_seconds` to `to_seconds` from now.
Certificate make_certificate(EVP_PKEY* subject_key, const char* common_name, X509* issuer, EVP_PKEY* issuer_key,
                             bool ca, long from_seconds, long to_seconds, long serial) {
  Certificate certificate(X509_new(), &X509_free);
  X509* c = certificate.get();
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
  X509_gmtime_adj(X509_getm_notBefore(c), from_seconds);
  X509_gmtime_adj(X509_getm_notAfter(c), to_seconds);
  X509_set_pubkey(c, subject_key);
  X509_NAME* name = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("wscengine tests"), -1, -1,
                             0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
  X509* signer = issuer ? issuer : c;
  if (ca) {
    add_extension(c, signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(c, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(c, signer, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(c, signer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    add_extension(c, signer, NID_ext_key_usage, "serverAuth");
  }
  add_extension(c, signer, NID_subject_key_identifier, "hash");
  if (!X509_sign(c, issuer_key, EVP_sha256())) throw std::runtime_error("test PKI: cannot sign");
  return certificate;
}

std::string pem_of(X509* certificate) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  PEM_write_bio_X509(bio.get(), certificate);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

std::string pem_of(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("test PKI: cannot write " + path);
}

}  // namespace

TestPki make_test_pki(bool expired, const std::string& ca_name) {
  constexpr long kDay = 24 * 3600;
  TestPki pki;
  pki.dir = temp_dir();
  Key ca_key = new_key();
  // Each CA its own name unless told: OpenSSL looks issuers up by name.
  pki.ca_name = ca_name.empty() ? "wscengine test CA " + pki.dir.substr(pki.dir.rfind('/') + 1) : ca_name;
  Certificate ca = make_certificate(ca_key.get(), pki.ca_name.c_str(), nullptr, ca_key.get(), true, -kDay, 7 * kDay, 1);
  Key server_key = new_key();
  Certificate server = make_certificate(server_key.get(), "localhost", ca.get(), ca_key.get(), false,
                                        expired ? -3 * kDay : -kDay, expired ? -kDay : 2 * kDay, 2);
  Key unrelated_key = new_key();
  Certificate unrelated =
      make_certificate(unrelated_key.get(), "unrelated", nullptr, unrelated_key.get(), true, -kDay, kDay, 3);

  pki.ca_pem = pem_of(ca.get());
  pki.ca_file = pki.dir + "/ca.pem";
  pki.server_chain = pki.dir + "/server.pem";
  pki.server_key = pki.dir + "/server-key.pem";
  write_file(pki.ca_file, pki.ca_pem);
  write_file(pki.server_chain, pem_of(server.get()) + pki.ca_pem);
  write_file(pki.server_key, pem_of(server_key.get()));
  write_file(pki.dir + "/server-only.pem", pem_of(server.get()));
  write_file(pki.dir + "/unrelated.pem", pem_of(unrelated.get()));
  pki.ca_pin = pin_of_certificate_file(pki.ca_file);
  pki.server_pin = pin_of_certificate_file(pki.dir + "/server-only.pem");
  pki.unrelated_pin = pin_of_certificate_file(pki.dir + "/unrelated.pem");
  if (pki.ca_pin.empty() || pki.server_pin.empty() || pki.unrelated_pin.empty())
    throw std::runtime_error("test PKI: the openssl tool could not compute the pins");
  return pki;
}

std::string pin_of_certificate_file(const std::string& file) {
  // The recipe HPKP (RFC 7469 §2.4) and curl document, run by the openssl tool.
  std::string command = "openssl x509 -in '" + file +
                        "' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | "
                        "openssl enc -base64 -A";
  std::string out;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[128];
    while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
    if (::pclose(pipe) != 0) return {};
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.size() == 44 ? "sha256/" + out : std::string();
}

}  // namespace wscengine::test
