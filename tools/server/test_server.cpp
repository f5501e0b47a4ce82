#include "test_server.hpp"

#include "frames.hpp"

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/zlib/deflate_stream.hpp>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

namespace wscengine::tools {
namespace {

namespace net = boost::asio;
namespace ssl = net::ssl;
namespace ws = boost::beast::websocket;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
// TCP, or a Unix domain socket (ServerOptions::unix_socket).
using Protocol = net::generic::stream_protocol;
using Socket = Protocol::socket;
using error_code = boost::system::error_code;

void set_receive_timeout(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

template <class Next>
class Session final : public ServerSession {
 public:
  Session(ws::stream<Next>& stream, int fd, std::string target, std::vector<Header> headers)
      : ws_(stream), fd_(fd), target_(std::move(target)), headers_(std::move(headers)) {
    ws_.control_callback([this](ws::frame_type kind, boost::beast::string_view payload) {
      if (kind == ws::frame_type::pong) pongs_.emplace_back(payload.data(), payload.size());
    });
  }
  ~Session() override { ws_.control_callback(); }

  const std::string& target() const override { return target_; }
  std::optional<std::string> header(const std::string& name) const override {
    for (const auto& h : headers_)
      if (boost::beast::iequals(h.name, name)) return h.value;
    return std::nullopt;
  }
  Error send(MessageType type, std::string_view payload) override {
    error_code ec;
    ws_.text(type == MessageType::text);
    ws_.write(net::buffer(payload.data(), payload.size()), ec);
    return ec ? Error(errc::io_error, ec.message()) : Error{};
  }
  Error send_raw(std::string_view bytes) override {
    error_code ec;
    net::write(ws_.next_layer(), net::buffer(bytes.data(), bytes.size()), ec);
    return ec ? Error(errc::io_error, ec.message()) : Error{};
  }
  Error read(InboundMessage& out, std::chrono::milliseconds timeout) override {
    set_receive_timeout(fd_, timeout);
    boost::beast::flat_buffer buffer;
    error_code ec;
    ws_.read(buffer, ec);
    // A close frame arrived; the reply may have failed if the client dropped TCP
    // right after its frame (websocketpp does for 1002/1007/1009), but it was seen.
    if (ec == ws::error::closed || (ec && ws_.reason().code != ws::close_code::none)) {
      return Error::closed({static_cast<std::uint16_t>(ws_.reason().code), std::string(ws_.reason().reason.c_str())},
                           ec == ws::error::closed ? "" : "close frame received; the reply failed: " + ec.message());
    }
    if (ec) return Error(errc::io_error, ec.message());
    out.type = ws_.got_text() ? MessageType::text : MessageType::binary;
    out.payload = boost::beast::buffers_to_string(buffer.data());
    return {};
  }
  Result<Digest> read_digest(std::chrono::milliseconds timeout) override {
    set_receive_timeout(fd_, timeout);
    const auto limit = ws_.read_message_max();
    ws_.read_message_max(0);  // no bound: nothing is kept
    Digest digest;
    std::string chunk(64 * 1024, '\0');
    error_code ec;
    do {
      const std::size_t n = ws_.read_some(boost::asio::buffer(chunk), ec);
      if (ec) break;
      digest.fnv1a = fnv1a(std::string_view(chunk.data(), n), digest.fnv1a);
      digest.size += n;
      ++digest.frames;
    } while (!ws_.is_message_done());
    ws_.read_message_max(limit);
    if (ec == ws::error::closed)
      return Error::closed({static_cast<std::uint16_t>(ws_.reason().code), std::string(ws_.reason().reason.c_str())},
                           "");
    if (ec) return Error(errc::io_error, ec.message());
    digest.type = ws_.got_text() ? MessageType::text : MessageType::binary;
    return digest;
  }
  Error close(CloseFrame frame) override {
    set_receive_timeout(fd_, std::chrono::seconds(5));
    ws::close_reason reason;
    reason.code = frame.code;
    reason.reason = frame.reason;
    error_code ec;
    ws_.close(reason, ec);
    return ec ? Error(errc::io_error, ec.message()) : Error{};
  }
  void drop() override { ::shutdown(fd_, SHUT_RDWR); }
  Error ping(std::string_view payload) override {
    error_code ec;
    ws_.ping(ws::ping_data(payload.data(), payload.size()), ec);
    return ec ? Error(errc::io_error, ec.message()) : Error{};
  }
  std::vector<std::string> pongs() const override { return pongs_; }
  bool wait_readable(std::chrono::milliseconds timeout) override {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
  }
  bool message_or_close_waiting() override {
    if constexpr (!std::is_same_v<Next, Socket>) {
      return false;  // TLS: the bytes in the kernel are encrypted
    } else {
      // Room for thousands of the client's pings queued in front of its close.
      std::vector<unsigned char> bytes(64 * 1024);
      const ssize_t got = ::recv(fd_, bytes.data(), bytes.size(), MSG_PEEK | MSG_DONTWAIT);
      const std::size_t n = got > 0 ? static_cast<std::size_t>(got) : 0;
      std::size_t at = 0;
      while (at + 2 <= n) {
        const unsigned opcode = bytes[at] & 0x0f;
        if (opcode != 0x9 && opcode != 0xa) return true;  // data, continuation or close
        // A ping or pong: at most 125 payload bytes, so a 7-bit length; masked (client).
        at += 2 + ((bytes[at + 1] & 0x80) != 0 ? 4 : 0) + (bytes[at + 1] & 0x7f);
      }
      return false;
    }
  }

 private:
  ws::stream<Next>& ws_;
  int fd_;
  std::string target_;
  std::vector<Header> headers_;
  std::vector<std::string> pongs_;  // the session's thread only
};

}  // namespace

struct TestServer::Impl {
  explicit Impl(ServerOptions o) : options(std::move(o)), acceptor(io) {}

  ServerOptions options;
  net::io_context io;
  net::basic_socket_acceptor<Protocol> acceptor;
  std::optional<ssl::context> tls;
  std::thread accept_thread;
  std::mutex mutex;
  std::list<std::thread> threads;
  std::list<int> fds;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> accepted{0};
  std::string last_sni;  // (mutex)
  std::uint16_t port = 0;

  template <class Next>
  void serve(TestServer& server, ws::stream<Next>& stream, int fd) {
    set_receive_timeout(fd, std::chrono::seconds(10));
    boost::beast::flat_buffer buffer;
    http::request<http::string_body> request;
    error_code ec;
    http::read(stream.next_layer(), buffer, request, ec);
    if (ec) return;
    std::vector<Header> headers;
    for (const auto& f : request) headers.push_back({std::string(f.name_string()), std::string(f.value())});
    std::string target(request.target());
    if (server.on_request) {
      if (int status = server.on_request(target, headers); status != 0) {
        http::response<http::string_body> refuse{static_cast<http::status>(status), request.version()};
        refuse.set(http::field::content_type, "text/plain");
        for (const auto& h : server.refusal_headers) refuse.set(h.name, h.value);
        refuse.body() = "refused by test server\n";
        refuse.prepare_payload();
        http::write(stream.next_layer(), refuse, ec);
        return;
      }
    }
    std::string chosen = server.choose_subprotocol;
    stream.set_option(ws::stream_base::decorator([chosen](ws::response_type& res) {
      res.set(http::field::server, "wscengine-test-server");
      if (!chosen.empty()) res.set(http::field::sec_websocket_protocol, chosen);
    }));
    ws::permessage_deflate pmd;
    pmd.server_enable = true;
    stream.set_option(pmd);
    stream.read_message_max(64u << 20);
    stream.accept(request, ec);
    if (ec) return;
    Session<Next> session(stream, fd, target, std::move(headers));
    if (server.on_session) server.on_session(session);
  }

  // Unlists the descriptor before its socket closes, so that stop() never shuts
  // down a descriptor number the process has reused for another socket.
  void forget(int fd) {
    std::lock_guard lock(mutex);
    fds.remove(fd);
  }

  void handle(TestServer& server, Socket socket) {
    int fd = socket.native_handle();
    if (tls) {
      ws::stream<ssl::stream<Socket>> stream(std::move(socket), *tls);
      set_receive_timeout(fd, std::chrono::seconds(10));
      error_code ec;
      stream.next_layer().handshake(ssl::stream_base::server, ec);
      {
        const char* sni = SSL_get_servername(stream.next_layer().native_handle(), TLSEXT_NAMETYPE_host_name);
        std::lock_guard lock(mutex);
        last_sni = sni ? sni : "";
      }
      if (!ec) serve(server, stream, fd);
      forget(fd);
    } else {
      ws::stream<Socket> stream(std::move(socket));
      serve(server, stream, fd);
      forget(fd);
    }
  }
};

TestServer::TestServer(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
TestServer::~TestServer() { stop(); }

std::uint16_t TestServer::start() {
  auto& o = impl_->options;
  if (!o.cert_file.empty()) {
    impl_->tls.emplace(ssl::context::tls_server);
    impl_->tls->use_certificate_chain_file(o.cert_file);
    impl_->tls->use_private_key_file(o.key_file, ssl::context::pem);
    if (!o.client_ca_file.empty()) {
      impl_->tls->load_verify_file(o.client_ca_file);
      impl_->tls->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    }
    if (o.tls12_only) SSL_CTX_set_max_proto_version(impl_->tls->native_handle(), TLS1_2_VERSION);
  }
  Protocol::endpoint endpoint;
  if (!o.unix_socket.empty()) {
    ::unlink(o.unix_socket.c_str());  // a socket file left by an earlier run
    endpoint = net::local::stream_protocol::endpoint(o.unix_socket);
  } else {
    endpoint = tcp::endpoint(net::ip::make_address(o.host), o.port);
  }
  impl_->acceptor.open(endpoint.protocol());
  if (o.unix_socket.empty()) impl_->acceptor.set_option(net::socket_base::reuse_address(true));
  impl_->acceptor.bind(endpoint);
  impl_->acceptor.listen();
  if (o.unix_socket.empty()) {
    sockaddr_storage bound{};
    socklen_t length = sizeof bound;
    ::getsockname(impl_->acceptor.native_handle(), reinterpret_cast<sockaddr*>(&bound), &length);
    impl_->port = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                                   : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  }
  impl_->accept_thread = std::thread([this] {
    for (;;) {
      error_code ec;
      Socket socket(impl_->io);
      impl_->acceptor.accept(socket, ec);
      if (impl_->stopping) return;
      if (ec) continue;
      ++impl_->accepted;
      if (impl_->options.unix_socket.empty()) socket.set_option(tcp::no_delay(true), ec);
      std::lock_guard lock(impl_->mutex);
      impl_->fds.push_back(socket.native_handle());
      impl_->threads.emplace_back([this, s = std::move(socket)]() mutable { impl_->handle(*this, std::move(s)); });
    }
  });
  return impl_->port;
}

void TestServer::stop() {
  if (impl_->stopping.exchange(true)) return;
  if (impl_->accept_thread.joinable()) {
    ::shutdown(impl_->acceptor.native_handle(), SHUT_RDWR);
    impl_->accept_thread.join();
  }
  error_code ignored;
  impl_->acceptor.close(ignored);
  if (!impl_->options.unix_socket.empty()) ::unlink(impl_->options.unix_socket.c_str());
  std::list<std::thread> threads;
  {
    std::lock_guard lock(impl_->mutex);
    for (int fd : impl_->fds) ::shutdown(fd, SHUT_RDWR);  // wakes every session thread
    threads.swap(impl_->threads);
  }
  for (auto& t : threads) t.join();
}

std::uint16_t TestServer::port() const noexcept { return impl_->port; }
std::string TestServer::url(const std::string& target) const {
  if (!impl_->options.unix_socket.empty())
    return std::string(impl_->tls ? "wss+unix://" : "ws+unix://") + impl_->options.unix_socket + ":" + target;
  std::string host = impl_->tls ? "localhost" : impl_->options.host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";  // an IPv6 literal
  return std::string(impl_->tls ? "wss://" : "ws://") + host + ":" + std::to_string(impl_->port) + target;
}
std::size_t TestServer::accepted() const noexcept { return impl_->accepted; }
std::string TestServer::last_sni() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->last_sni;
}

void echo_session(ServerSession& session) {
  for (;;) {
    InboundMessage m;
    if (session.read(m, std::chrono::seconds(30))) return;
    if (session.send(m.type, m.payload)) return;
  }
}

std::string deflated_message(std::string_view payload) {
  namespace zlib = boost::beast::zlib;
  zlib::deflate_stream deflater;
  deflater.reset(6, 15, 8, zlib::Strategy::normal);
  std::string out(payload.size() + payload.size() / 8 + 64, '\0');
  zlib::z_params params;
  params.next_in = payload.data();
  params.avail_in = payload.size();
  params.next_out = out.data();
  params.avail_out = out.size();
  boost::system::error_code ec;
  deflater.write(params, zlib::Flush::sync, ec);
  out.resize(out.size() - params.avail_out);
  if (out.size() >= 4 && out.compare(out.size() - 4, 4, std::string_view("\x00\x00\xff\xff", 4)) == 0)
    out.resize(out.size() - 4);
  return out;
}

}  // namespace wscengine::tools
