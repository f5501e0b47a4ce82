// websocketpp behind the bridge. This file is compiled as C++17 (see
// wspp_bridge.hpp) and is the only one that includes websocketpp.
//
// websocketpp's own error codes are made boost::system ones
// (_WEBSOCKETPP_NO_CPP11_SYSTEM_ERROR_): with std::error_code its transport turns
// every Asio error into "pass_through" and a refused connection could not be told
// from a DNS failure.
#define _WEBSOCKETPP_NO_CPP11_SYSTEM_ERROR_ 1
// websocketpp gives each connection an io_context::strand, and Asio backs every such
// strand of an io_context with one of only 193 shared implementations, chosen by a hash
// of its address: two connections that draw the same one wait for each other, so a
// blocked on_message (Delivery::io_thread) stalled an unrelated connection about one
// time in 25 with nine connections. Taken in turn instead, the 193 are all used before
// any is shared. Only this file uses these strands (Beast's are executor strands).
#define BOOST_ASIO_ENABLE_SEQUENTIAL_STRAND_ALLOCATION 1

#include "wspp_bridge.hpp"
#include "wspp_strand_executor.hpp"

#include <wscengine/detail/client_tls.hpp>
#include <wscengine/detail/tls_contexts.hpp>

#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_client.hpp>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <sstream>

namespace wscengine::websocketpp_adapter::bridge {
namespace {

namespace asio = boost::asio;
using error_code = boost::system::error_code;

bool is_resolver_error(const error_code& ec) {
  return ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again ||
         ec == asio::error::no_data || ec == asio::error::no_recovery || ec == asio::error::service_not_found ||
         ec.category() == asio::error::get_addrinfo_category() || ec.category() == asio::error::get_netdb_category();
}

DialOutcome failed(Failure failure, std::string detail) {
  DialOutcome out;
  out.failure = failure;
  out.detail = std::move(detail);
  return out;
}

template <class Config>
class BridgeImpl final : public Bridge, public std::enable_shared_from_this<BridgeImpl<Config>> {
  using Endpoint = websocketpp::client<Config>;
  using ConnectionPtr = typename Endpoint::connection_ptr;
  using MessagePtr = typename Endpoint::message_ptr;
  static constexpr bool kTls = !std::is_same_v<Config, websocketpp::config::asio_client>;

 public:
  explicit BridgeImpl(asio::io_context& io) : io_(io) {}

  ~BridgeImpl() override { abort(); }

  DialOutcome dial(DialParams params, Events events) override {
    params_ = std::move(params);
    // The endpoint lives as long as its connection: every handler set below holds
    // it. websocketpp connections refer to their endpoint's random generator and
    // call back into it after connect, so it must not die first.
    auto box = std::make_shared<EndpointBox>();
    std::shared_ptr<Endpoint> endpoint(box, &box->endpoint);  // keeps the box, log included
    endpoint->clear_access_channels(websocketpp::log::alevel::all);
    endpoint->clear_error_channels(websocketpp::log::elevel::all);
    if (!params_.proxy_uri.empty()) {
      // websocketpp reports a proxy's refusal only as proxy_failed and writes the
      // status to its error log ("Proxy connection error: 407 (...)"): keep that line.
      endpoint->set_error_channels(websocketpp::log::elevel::info);
      endpoint->get_elog().set_ostream(&box->log);
      log_ = std::shared_ptr<std::ostringstream>(box, &box->log);
    }
    error_code ec;
    endpoint->init_asio(&io_, ec);
    if (ec) return failed(Failure::io, "websocketpp init_asio: " + ec.message());
    endpoint->set_user_agent(params_.user_agent);
    if constexpr (kTls) {
      // The process's context for these settings (trust store loaded once); what
      // differs per connection is set on its SSL object (on_socket).
      auto box = std::make_shared<TlsBox>();
      std::string error;
      box->context = wscengine::detail::process_tls_contexts().get(
          {params_.ca_file, params_.ca_pem, params_.certificate_file, params_.private_key_file,
           params_.private_key_password, params_.tls13_only},
          error);
      if (!box->context) return failed(Failure::invalid_option, error);
      std::string().swap(params_.ca_pem);  // parsed into the context: not kept per connection
      if (error = box->gate.configure(params_.verify_peer, params_.tls_name, params_.pinned_public_keys,
                                      params_.verify_callback);
          !error.empty())
        return failed(Failure::invalid_option, error);
      box->binding.gate = box->gate.active() ? &box->gate : nullptr;
      box->binding.session_key = wscengine::detail::tls_session_key(
          params_.session_resumption, params_.origin_host, params_.origin_port, params_.tls_name, params_.verify_peer,
          params_.pinned_public_keys, static_cast<bool>(params_.verify_callback), "http/1.1");
      tls_box_ = box;
      // websocketpp keeps the context as long as the connection's SSL object, and with
      // it the box: the gate and binding the context's callbacks reach through it.
      std::shared_ptr<asio::ssl::context> tls(box, &box->context->context());
      endpoint->set_tls_init_handler([tls](websocketpp::connection_hdl) { return tls; });
    }
    ConnectionPtr con = endpoint->get_connection(params_.uri, ec);
    if (ec || !con) return failed(Failure::invalid_url, "websocketpp rejected '" + params_.uri + "': " + ec.message());
    con->set_termination_handler({});  // the default one calls into the endpoint by raw pointer
    for (const auto& [name, value] : params_.headers) con->append_header(name, value);
    for (const auto& protocol : params_.subprotocols) {
      con->add_subprotocol(protocol, ec);
      if (ec) return failed(Failure::invalid_url, "subprotocol '" + protocol + "': " + ec.message());
    }
    if (!params_.proxy_uri.empty()) {
      con->set_proxy(params_.proxy_uri, ec);
      if (!ec && !params_.proxy_username.empty())
        con->set_proxy_basic_auth(params_.proxy_username, params_.proxy_password, ec);
      if (!ec) con->set_proxy_timeout(params_.handshake_timeout_ms, ec);
      if (ec) return failed(Failure::invalid_option, "proxy " + params_.proxy_uri + ": " + ec.message());
    }
    con->set_max_message_size(params_.max_message_size);
    con->set_open_handshake_timeout(params_.handshake_timeout_ms);
    // After a close handshake the client waits this long for the server to end TCP.
    con->set_close_handshake_timeout(std::min(params_.handshake_timeout_ms, 5000L));

    std::weak_ptr<BridgeImpl> weak = this->shared_from_this();
    auto ev = std::make_shared<Events>(std::move(events));
    con->set_tcp_pre_init_handler([weak, endpoint](websocketpp::connection_hdl) {
      if (auto self = weak.lock()) self->on_socket();
    });
    con->set_open_handler([weak, endpoint, ev](websocketpp::connection_hdl) {
      auto self = weak.lock();
      if (!self) return;
      if constexpr (kTls)
        wscengine::detail::SharedTlsContext::count_handshake(self->connection()->get_socket().native_handle());
      ev->dialled(self->outcome(Failure::none, {}));
    });
    con->set_fail_handler([weak, endpoint, ev](websocketpp::connection_hdl) {
      if (auto self = weak.lock()) ev->dialled(self->failure());
    });
    con->set_message_handler([weak, endpoint, ev](websocketpp::connection_hdl, MessagePtr msg) {
      bool text = msg->get_opcode() == websocketpp::frame::opcode::text;
      if (!ev->message(text, std::move(msg->get_raw_payload()))) {
        // We run inside handle_read_frame, on the connection's strand. pause_reading()
        // would only post the flag change, so handle_read_frame would start one more
        // read first, and a resume before that read ends would start a second,
        // concurrent one. Setting the flag here, synchronously, stops the next read.
        if (auto self = weak.lock()) self->connection()->handle_pause_reading();
      }
    });
    con->set_pong_handler(
        [endpoint, ev](websocketpp::connection_hdl, std::string payload) { ev->pong(std::move(payload)); });
    // Called inline while websocketpp reads frames in order: a ping behind a message
    // that failed the connection (see Events::answer_ping) goes unanswered.
    con->set_ping_handler([endpoint, ev](websocketpp::connection_hdl, std::string payload) {
      return !ev->answer_ping || ev->answer_ping(payload);
    });
    // close() runs on the connection's strand (see close()).
    con->set_interrupt_handler([weak, endpoint](websocketpp::connection_hdl) {
      if (auto self = weak.lock()) self->close_on_strand();
    });
    con->set_close_handler([weak, endpoint, ev](websocketpp::connection_hdl) {
      if (auto self = weak.lock()) ev->ended(self->ending());
    });
    {
      std::lock_guard lock(mutex_);
      con_ = con;
    }
    endpoint->connect(con);
    return {};
  }

  void send(bool text, std::string_view payload, Queued queued) override {
    auto con = connection();
    if (!con) {
      if (queued) queued("not connected");
      return;
    }
    // Framed here on the sending thread (UTF-8 checked, masked, header written), as
    // websocketpp's own send() would do on it: the strand, which may also be reading,
    // only queues the frame.
    auto opcode = text ? websocketpp::frame::opcode::text : websocketpp::frame::opcode::binary;
    auto message = framer_messages_->get_message(opcode, payload.size());
    message->append_payload(payload.data(), payload.size());
    auto frame = framer_messages_->get_message();
    if (auto ec = framer_.prepare_data_frame(message, frame)) {
      if (queued) queued(ec == websocketpp::processor::error::invalid_payload ? std::string(kNotUtf8) : ec.message());
      return;
    }
    con->get_strand()->dispatch([con, frame = std::move(frame), queued = std::move(queued)] {
      auto ec = con->send(frame);  // a prepared frame: websocketpp queues it as it is
      if (queued) queued(ec ? ec.message() : std::string());
    });
  }

  void send_part(bool text, std::string_view payload, bool first, bool last, Queued queued) override {
    auto con = connection();
    if (!con) {
      if (queued) queued("not connected");
      return;
    }
    // websocketpp's processor checks the UTF-8 of each text frame on its own, so the
    // first frame of a text message is framed as binary and its opcode set after: the
    // header's first byte holds FIN and the opcode, and masking does not depend on it.
    using websocketpp::frame::opcode::value;
    const value opcode = first ? websocketpp::frame::opcode::binary : websocketpp::frame::opcode::continuation;
    auto message = framer_messages_->get_message(opcode, payload.size());
    message->set_fin(last);
    message->append_payload(payload.data(), payload.size());
    auto frame = framer_messages_->get_message();
    if (auto ec = framer_.prepare_data_frame(message, frame)) {
      if (queued) queued(ec.message());
      return;
    }
    if (first && text) {
      std::string header = frame->get_header();
      header[0] = static_cast<char>((static_cast<unsigned char>(header[0]) & 0xf0) | websocketpp::frame::opcode::text);
      frame->set_header(header);
    }
    con->get_strand()->dispatch([con, frame = std::move(frame), queued = std::move(queued)] {
      auto ec = con->send(frame);
      if (queued) queued(ec ? ec.message() : std::string());
    });
  }

  void ping(std::string_view payload, Queued queued) override {
    auto con = connection();
    if (!con) {
      if (queued) queued("not connected");
      return;
    }
    con->get_strand()->dispatch([con, payload = std::string(payload), queued = std::move(queued)] {
      error_code ec;
      con->ping(payload, ec);
      if (queued) queued(ec ? ec.message() : std::string());
    });
  }

  // websocketpp's close() writes the connection state under a lock its read
  // handler does not take (a data race ThreadSanitizer reports when the peer's
  // frames arrive meanwhile), so the close is handed to the connection's strand
  // through interrupt(), where the read handler also runs.
  std::string close(std::uint16_t code, std::string_view reason) override {
    auto con = connection();
    if (!con) return "not connected";
    {
      std::lock_guard lock(mutex_);
      pending_close_ = {code, std::string(reason)};
    }
    error_code ec = con->interrupt();
    return ec ? ec.message() : std::string();
  }

  void abort() noexcept override {
    aborted_ = true;
    if (int fd = fd_.load(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }

  void resume_reading() override {
    if (auto con = connection()) con->resume_reading();
  }

  const std::type_info& underlying_type() const noexcept override { return typeid(typename Endpoint::connection_type); }
  void* underlying_object() noexcept override { return connection().get(); }

 private:
  void close_on_strand() {
    std::optional<std::pair<std::uint16_t, std::string>> close;
    {
      std::lock_guard lock(mutex_);
      close.swap(pending_close_);
    }
    auto con = connection();
    if (!close || !con) return;
    error_code ignored;  // already closing (the peer's close crossed ours): the close handler reports the end
    con->close(close->first, close->second, ignored);
  }

  ConnectionPtr connection() {
    std::lock_guard lock(mutex_);
    return con_;
  }

  // TCP is connected, TLS not yet started: the descriptor exists, and the TLS
  // name settings websocketpp made can still be corrected.
  void on_socket() {
    auto con = connection();
    if constexpr (kTls) {
      SSL* ssl = con->get_socket().native_handle();
      // Pins and the verify callback run in OpenSSL's verification, which verify_none
      // skips; their gate accepts a chain that does not verify when verify_peer is off.
      SSL_set_verify(ssl, params_.verify_peer || tls_box_->gate.active() ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
      tls_box_->context->prepare(ssl, tls_box_->binding);  // the gate, and the origin's session
      // websocketpp sends the URI host as SNI, even an address literal.
      SSL_set_tlsext_host_name(ssl, params_.send_sni ? const_cast<char*>(params_.tls_name.c_str()) : nullptr);
      if (params_.verify_peer) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
        error_code not_an_address;
        asio::ip::make_address(params_.tls_name, not_an_address);
        if (not_an_address)
          X509_VERIFY_PARAM_set1_host(param, params_.tls_name.c_str(), 0);
        else
          X509_VERIFY_PARAM_set1_ip_asc(param, params_.tls_name.c_str());
      }
    }
    int fd = static_cast<int>(con->get_raw_socket().native_handle());
    fd_ = fd;
    if (aborted_) ::shutdown(fd, SHUT_RDWR);
  }

  DialOutcome outcome(Failure failure, std::string detail) {
    DialOutcome out = failed(failure, std::move(detail));
    auto con = connection();
    const auto& response = con->get_response();
    out.status = static_cast<int>(response.get_status_code());
    for (const auto& [name, value] : response.get_headers()) out.headers.emplace_back(name, value);
    out.subprotocol = con->get_subprotocol();
    return out;
  }

  DialOutcome failure() {
    auto con = connection();
    error_code ec = con->get_ec();
    std::string what = ec.message();
    namespace socket_error = websocketpp::transport::asio::socket;
    if (ec == websocketpp::transport::error::make_error_code(websocketpp::transport::error::timeout) ||
        ec == websocketpp::error::make_error_code(websocketpp::error::open_handshake_timeout) ||
        ec == socket_error::make_error_code(socket_error::error::tls_handshake_timeout))
      return failed(Failure::timeout, what);
    if (ec == websocketpp::transport::asio::error::make_error_code(websocketpp::transport::asio::error::proxy_failed))
      return proxy_refusal();
    if (ec == websocketpp::transport::asio::error::make_error_code(websocketpp::transport::asio::error::proxy_invalid))
      return failed(Failure::invalid_option, "proxy " + params_.proxy_uri + ": " + what);
    if (is_resolver_error(ec)) return failed(Failure::dns, what);
    if (ec == asio::error::connection_refused) return failed(Failure::refused, what);
    if (ec == socket_error::make_error_code(socket_error::error::tls_handshake_failed)) {
      if constexpr (kTls) {
        if (tls_box_ && !tls_box_->gate.refusal().empty())
          return failed(Failure::tls_verification, tls_box_->gate.refusal());
        long result = SSL_get_verify_result(con->get_socket().native_handle());
        if (result != X509_V_OK) return failed(Failure::tls_verification, X509_verify_cert_error_string(result));
      }
      return failed(Failure::tls_handshake, what);
    }
    if (ec == websocketpp::processor::error::make_error_code(websocketpp::processor::error::invalid_http_status)) {
      auto out = outcome(Failure::http_status, con->get_response().get_status_msg());
      return out;
    }
    if (ec == websocketpp::error::make_error_code(websocketpp::error::general))
      return outcome(Failure::handshake,
                     "the HTTP response could not be parsed (malformed, or over websocketpp's 16000-byte header "
                     "limit)");
    if (ec.category() == websocketpp::processor::error::get_processor_category() ||
        ec.category() == websocketpp::error::get_category())
      return outcome(Failure::handshake, what);
    if (con->get_response_code() == 0) return failed(Failure::connect, what);  // never got an HTTP answer
    return outcome(Failure::io, what);
  }

  // The status line websocketpp logged for the proxy's refusal, if any.
  DialOutcome proxy_refusal() {
    DialOutcome out = failed(Failure::proxy, "no valid answer to CONNECT");
    if (!log_) return out;
    std::string text = log_->str();  // written on this strand, before the fail handler
    const std::string marker = "Proxy connection error: ";
    auto at = text.rfind(marker);
    if (at == std::string::npos) return out;
    auto line_end = text.find('\n', at);
    std::string line = text.substr(at + marker.size(),
                                   line_end == std::string::npos ? std::string::npos : line_end - at - marker.size());
    out.status = std::atoi(line.c_str());
    out.detail = "answered CONNECT with " + line;
    return out;
  }

  Ending ending() {
    auto con = connection();
    Ending end;
    end.remote_code = con->get_remote_close_code();
    end.close_received = end.remote_code != websocketpp::close::status::abnormal_close;
    end.remote_reason = con->get_remote_close_reason();
    end.local_code = con->get_local_close_code();
    end.local_reason = con->get_local_close_reason();
    if (error_code ec = con->get_ec()) end.error = ec.message();
    return end;
  }

  // The endpoint and the stream its error log writes to, which must outlive it.
  struct EndpointBox {
    std::ostringstream log;
    Endpoint endpoint;
  };

  // The shared TLS context and what its callbacks reach for this connection.
  struct TlsBox {
    wscengine::detail::CertificateGate gate;
    wscengine::detail::TlsBinding binding;
    std::shared_ptr<wscengine::detail::SharedTlsContext> context;
  };

  asio::io_context& io_;
  DialParams params_;                        // set before connect, then read-only
  std::shared_ptr<TlsBox> tls_box_;          // set before connect
  std::shared_ptr<std::ostringstream> log_;  // set before connect; read by the fail handler
  std::mutex mutex_;
  ConnectionPtr con_;
  std::optional<std::pair<std::uint16_t, std::string>> pending_close_;  // (mutex_)
  std::atomic<int> fd_{-1};
  std::atomic<bool> aborted_{false};
  // Frames data messages off the strand (see send()). prepare_data_frame() reads only
  // settings fixed at construction and the generator, which locks itself, so sending
  // threads may use it at once.
  typename Config::rng_type framer_rng_;
  std::shared_ptr<typename Config::con_msg_manager_type> framer_messages_ =
      std::make_shared<typename Config::con_msg_manager_type>();
  websocketpp::processor::hybi13<Config> framer_{kTls, false, framer_messages_, framer_rng_};
};

}  // namespace

std::shared_ptr<Bridge> make_bridge(boost::asio::io_context& io, bool tls) {
  // websocketpp's _htonll() learns the byte order on its first call into a plain static
  // int. Made here, once, under the guard of a static's initialisation: every thread that
  // builds a bridge has seen that write before its connection frames or reads a 64-bit
  // length, so sending threads framing at once only read it.
  [[maybe_unused]] static const bool byte_order_known = (websocketpp::lib::net::_htonll(1), true);
  if (tls) return std::make_shared<BridgeImpl<websocketpp::config::asio_tls_client>>(io);
  return std::make_shared<BridgeImpl<websocketpp::config::asio_client>>(io);
}

TlsCounts tls_counts() {
  const auto& c = detail::tls_counters();
  return {c.contexts_created.load(), c.handshakes_full.load(), c.handshakes_resumed.load()};
}

}  // namespace wscengine::websocketpp_adapter::bridge
