#include <wscengine/adapter.hpp>
#include <wscengine/client.hpp>

#include <algorithm>
#include <cctype>
#include <future>
#include <utility>

#include "engine_core.hpp"

namespace wscengine {

// ---------------------------------------------------------------- PauseGuard

PauseGuard::PauseGuard(std::shared_ptr<detail::EngineCore> core) : core_(std::move(core)) {}
PauseGuard::PauseGuard(PauseGuard&& other) noexcept : core_(std::move(other.core_)) {}
PauseGuard& PauseGuard::operator=(PauseGuard&& other) noexcept {
  if (this != &other) {
    unlock();
    core_ = std::move(other.core_);
  }
  return *this;
}
PauseGuard::~PauseGuard() { unlock(); }
void PauseGuard::unlock() {
  if (auto core = std::move(core_)) core->resume();
}

// ---------------------------------------------------------------- SessionConnection

SessionConnection::SessionConnection(std::weak_ptr<detail::Session> session) : session_(std::move(session)) {}

namespace {
Error no_session() { return Error(errc::not_connected, "the session is over"); }
// Delivery::io_thread runs on_message on an I/O thread, which must not wait for the
// network it serves.
bool on_io_thread(const detail::Session& s) { return s.runtime && s.runtime->on_io_thread(); }
Error would_stall_io(const char* what) {
  return Error(errc::would_deadlock, std::string(what) +
                                         " on one of the runtime's I/O threads (on_message with Delivery::io_thread) "
                                         "would stall the I/O it waits for; call it from another thread");
}
}  // namespace

Error SessionConnection::send(MessageType type, std::string_view payload) const {
  auto s = session_.lock();
  return s ? s->sends->send(*s->connection, type, payload, nullptr) : no_session();
}
Error SessionConnection::async_send(MessageType type, std::string_view payload, SendHandler done) const {
  if (!done) return Error(errc::invalid_option, "async_send needs a handler");
  auto s = session_.lock();
  return s ? s->sends->send(*s->connection, type, payload, std::move(done)) : no_session();
}
std::future<Error> SessionConnection::async_send(MessageType type, std::string_view payload) const {
  auto promise = std::make_shared<std::promise<Error>>();
  auto outcome = promise->get_future();
  if (Error e = async_send(type, payload, [promise](Error e) { promise->set_value(std::move(e)); }))
    promise->set_value(std::move(e));
  return outcome;
}
Result<MessageWriter> SessionConnection::begin_message(MessageType type) const {
  auto s = session_.lock();
  if (!s) return no_session();
  if (!s->streamed_writes)
    return Error(errc::unsupported,
                 "this adapter cannot send a message in parts (AdapterCapabilities::streamed_writes)");
  if (Error refused = s->sends->begin_parts()) return refused;
  return MessageWriter(s, type);
}

// ---------------------------------------------------------------- MessageWriter

MessageWriter::MessageWriter(std::weak_ptr<detail::Session> session, MessageType type)
    : session_(std::move(session)), type_(type), active_(true) {}
MessageWriter::MessageWriter(MessageWriter&& other) noexcept
    : session_(std::move(other.session_)),
      type_(other.type_),
      active_(std::exchange(other.active_, false)),
      started_(other.started_) {}
MessageWriter& MessageWriter::operator=(MessageWriter&& other) noexcept {
  if (this != &other) {
    give_up();
    session_ = std::move(other.session_);
    type_ = other.type_;
    active_ = std::exchange(other.active_, false);
    started_ = other.started_;
  }
  return *this;
}
MessageWriter::~MessageWriter() { give_up(); }

Error MessageWriter::write(std::string_view part, SendHandler done) { return send(part, false, std::move(done)); }
Error MessageWriter::finish(std::string_view last_part, SendHandler done) {
  return send(last_part, true, std::move(done));
}

Error MessageWriter::send(std::string_view part, bool last, SendHandler done) {
  if (!active_) return Error(errc::not_connected, "no message is being sent: begin_message() first");
  auto s = session_.lock();
  if (!s) return no_session();
  const MessagePart kind = last ? (started_ ? MessagePart::last : MessagePart::whole)
                                : (started_ ? MessagePart::middle : MessagePart::first);
  Error e = s->sends->send_part(*s->connection, type_, part, kind, std::move(done));
  if (e.is(errc::send_queue_full)) return e;  // not taken: write it again
  started_ = true;
  if (last) {
    active_ = false;
    s->sends->end_parts(*s->connection);
  }
  return e;
}

// A message begun and never finished cannot be ended cleanly: the connection goes.
void MessageWriter::give_up() noexcept {
  if (!std::exchange(active_, false)) return;
  if (auto s = session_.lock()) {
    s->connection->abort();
    try {
      s->sends->end_parts(*s->connection);
    } catch (...) {
    }
  }
}

std::size_t SessionConnection::buffered_amount() const noexcept {
  auto s = session_.lock();
  return s ? s->sends->buffered_amount() : 0;
}
Error SessionConnection::read(InboundMessage& out, std::chrono::milliseconds timeout) const {
  auto s = session_.lock();
  if (!s) return no_session();
  return on_io_thread(*s) ? would_stall_io("read()") : s->connection->read(out, timeout);
}
Error SessionConnection::ping(std::string_view payload, std::chrono::milliseconds timeout) const {
  auto s = session_.lock();
  if (!s) return no_session();
  if (on_io_thread(*s)) return would_stall_io("ping()");
  const auto sent = std::chrono::steady_clock::now();
  Error e = s->connection->ping(payload, timeout);
  if (!e) s->counters->round_trip(std::chrono::steady_clock::now() - sent);
  return e;
}
SessionStats SessionConnection::stats() const noexcept {
  auto s = session_.lock();
  return s ? s->counters->snapshot() : SessionStats{};
}
void SessionConnection::abort() const noexcept {
  if (auto s = session_.lock()) s->connection->abort();
}
bool SessionConnection::is_open() const noexcept {
  auto s = session_.lock();
  return s && s->connection->is_open();
}
std::uint64_t SessionConnection::session_id() const noexcept {
  auto s = session_.lock();
  return s ? s->id : 0;
}
Underlying SessionConnection::underlying() const noexcept {
  auto s = session_.lock();
  return s ? s->connection->underlying() : Underlying{};
}

// ---------------------------------------------------------------- Context

namespace {
const SessionConnection kNoConnection;
}

Context::Context(detail::EngineCore& core, detail::Session* session)
    : core_(&core), session_(session), connection_(session ? &session->handle : &kNoConnection) {}

std::uint64_t Context::session_id() const noexcept { return session_ ? session_->id : 0; }
std::stop_token Context::stop_token() const noexcept {
  return session_ ? session_->stop.get_token() : std::stop_token{};
}
void Context::restart() {
  core_->request_end(session_ ? session_->shared_from_this() : nullptr, detail::EndReason::restart);
}
void Context::exit() { core_->request_end(session_ ? session_->shared_from_this() : nullptr, detail::EndReason::exit); }
PauseGuard Context::pause() {
  if (core_->reader_inside_on_this_thread()) return PauseGuard();  // on_read_error already holds it
  core_->pause();
  return PauseGuard(core_->shared_from_this());
}

// ---------------------------------------------------------------- Client defaults

Error Client::on_open(Context&, const HandshakeResponse&, bool) { return {}; }
void Client::on_read_error(Context&, const Error&) {}
std::optional<CloseFrame> Client::on_close(Context&, const std::optional<CloseFrame>&) { return std::nullopt; }
void Client::on_close_error(Context&, const Error&) {}
void Client::on_restart_error(Context&, const Error&, std::uint32_t) {}

Error LambdaClient::on_open(Context& ctx, const HandshakeResponse& r, bool restarting) {
  return open ? open(ctx, r, restarting) : Error{};
}
void LambdaClient::on_message(Context& ctx, const Message& m) {
  if (message) message(ctx, m);
}
void LambdaClient::on_read_error(Context& ctx, const Error& e) {
  if (read_error) read_error(ctx, e);
}
std::optional<CloseFrame> LambdaClient::on_close(Context& ctx, const std::optional<CloseFrame>& received) {
  return close ? close(ctx, received) : std::nullopt;
}
void LambdaClient::on_close_error(Context& ctx, const Error& e) {
  if (close_error) close_error(ctx, e);
}
void LambdaClient::on_restart_error(Context& ctx, const Error& e, std::uint32_t n) {
  if (restart_error) restart_error(ctx, e, n);
}

// ---------------------------------------------------------------- Connection helpers

static std::optional<std::string_view> find_header(const std::vector<Header>& headers, std::string_view name) {
  auto equal = [](std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
             return std::tolower(x) == std::tolower(y);
           });
  };
  for (const auto& h : headers)
    if (equal(h.name, name)) return std::string_view(h.value);
  return std::nullopt;
}

std::optional<std::string_view> HandshakeResponse::header(std::string_view name) const {
  return find_header(headers, name);
}

std::optional<std::string_view> Error::http_header(std::string_view name) const {
  return find_header(http_headers, name);
}

Result<HandshakeResponse> Connection::dial(DialRequest request) {
  std::promise<Result<HandshakeResponse>> done;
  auto answer = done.get_future();
  async_dial(std::move(request), [&done](Result<HandshakeResponse> r) { done.set_value(std::move(r)); });
  return answer.get();
}

}  // namespace wscengine
