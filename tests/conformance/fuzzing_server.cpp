// The fuzzing server's frames, sessions and cases (see fuzzing_server.hpp).
#include "fuzzing_server.hpp"

#include "frames.hpp"
#include "support/loopback.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <stdexcept>

namespace wscengine::conformance {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::ok:
      return "OK";
    case Verdict::non_strict:
      return "NON-STRICT";
    case Verdict::failed:
      return "FAILED";
    case Verdict::unsupported:
      return "UNSUPPORTED";
  }
  return "?";
}

// ------------------------------------------------------------------ frames

std::string encode(const Frame& f) {
  auto first = static_cast<std::uint8_t>((f.fin ? 0x80 : 0) | (f.rsv & 0x70) | (f.opcode & 0x0f));
  return tools::server_frame(first, f.payload);
}

std::string text(std::string payload, bool fin) { return encode({fin, 0, 1, std::move(payload)}); }
std::string binary(std::string payload, bool fin) { return encode({fin, 0, 2, std::move(payload)}); }
std::string continuation(std::string payload, bool fin) { return encode({fin, 0, 0, std::move(payload)}); }
std::string ping(std::string payload) { return encode({true, 0, 9, std::move(payload)}); }
std::string close_frame(std::uint16_t code, std::string reason) {
  std::string payload{static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
  return encode({true, 0, 8, payload + reason});
}

std::string deflate(const std::string& data) {
  z_stream z{};
  deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  std::string out(compressBound(data.size()) + 16, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  ::deflate(&z, Z_SYNC_FLUSH);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  if (out.size() >= 4 && out.compare(out.size() - 4, 4, std::string("\x00\x00\xff\xff", 4)) == 0)
    out.resize(out.size() - 4);
  return out;
}

std::string inflate(const std::string& data) {
  std::string in = data + std::string("\x00\x00\xff\xff", 4);
  z_stream z{};
  inflateInit2(&z, -15);
  z.next_in = reinterpret_cast<Bytef*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char chunk[65536];
  int rc = Z_OK;
  do {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof chunk;
    rc = ::inflate(&z, Z_SYNC_FLUSH);
    out.append(chunk, sizeof chunk - z.avail_out);
  } while (rc == Z_OK && z.avail_out == 0);
  inflateEnd(&z);
  return out;
}

// ------------------------------------------------------------------ session

std::optional<std::string> Request::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  return std::nullopt;
}

bool Session::fill(std::size_t n, Clock::time_point deadline) {
  while (buffer_.size() < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char chunk[65536];
    ssize_t got = ::recv(fd_, chunk, sizeof chunk, 0);
    if (got <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<std::size_t>(got));
  }
  return true;
}

bool Session::read_request(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::size_t end;
  while ((end = buffer_.find("\r\n\r\n")) == std::string::npos)
    if (!fill(buffer_.size() + 1, deadline)) return false;
  std::string head = buffer_.substr(0, end);
  buffer_.erase(0, end + 4);
  auto line_end = head.find("\r\n");
  std::string first = head.substr(0, line_end);
  auto sp1 = first.find(' '), sp2 = first.rfind(' ');
  request_.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
  std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    auto next = head.find("\r\n", pos);
    if (next == std::string::npos) next = head.size();
    std::string line = head.substr(pos, next - pos);
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      request_.headers.emplace_back(line.substr(0, colon), value);
    }
    pos = next + 2;
  }
  return true;
}

std::string Session::accept_response(const std::vector<std::string>& extra_headers) const {
  std::string key = request_.header("Sec-WebSocket-Key").value_or("") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest);
  unsigned char encoded[64];
  int n = EVP_EncodeBlock(encoded, digest, SHA_DIGEST_LENGTH);
  std::string out = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
  out += "Sec-WebSocket-Accept: " + std::string(reinterpret_cast<char*>(encoded), static_cast<std::size_t>(n)) + "\r\n";
  for (const auto& h : extra_headers) out += h + "\r\n";
  return out + "\r\n";
}

void Session::send_raw(const std::string& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;  // the client went away; the judge will see it
    sent += static_cast<std::size_t>(n);
  }
}

std::optional<Frame> Session::read_frame(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  if (!fill(2, deadline)) return std::nullopt;
  auto b0 = static_cast<std::uint8_t>(buffer_[0]), b1 = static_cast<std::uint8_t>(buffer_[1]);
  std::size_t header = 2;
  std::uint64_t len = b1 & 0x7f;
  if (len == 126) {
    if (!fill(4, deadline)) return std::nullopt;
    len = (static_cast<std::uint8_t>(buffer_[2]) << 8) | static_cast<std::uint8_t>(buffer_[3]);
    header = 4;
  } else if (len == 127) {
    if (!fill(10, deadline)) return std::nullopt;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<std::uint8_t>(buffer_[2 + i]);
    header = 10;
  }
  bool masked = b1 & 0x80;
  if (masked) header += 4;
  if (!fill(header + len, deadline)) return std::nullopt;
  Frame f;
  f.fin = b0 & 0x80;
  f.rsv = b0 & 0x70;
  f.opcode = b0 & 0x0f;
  f.masked = masked;
  f.payload = buffer_.substr(header, len);
  if (masked) {
    const char* key = buffer_.data() + header - 4;
    for (std::size_t i = 0; i < f.payload.size(); ++i) f.payload[i] = static_cast<char>(f.payload[i] ^ key[i % 4]);
  } else {
    unmasked_ = true;
  }
  buffer_.erase(0, header + len);
  return f;
}

// ------------------------------------------------------------------ listener

Listener::Listener() { fd_ = test::listen_loopback(port_, 8); }

Listener::~Listener() { ::close(fd_); }

int Listener::accept(std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return -1;
  int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  int one = 1;
  if (fd >= 0) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

}  // namespace wscengine::conformance
