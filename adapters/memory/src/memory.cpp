#include <wscengine/asio.hpp>
#include <wscengine/memory.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <variant>

namespace wscengine::memory {
namespace detail {

struct Drop {};
struct InjectedError {
  Error error;
  bool fail_connection;
};
using Event = std::variant<InboundMessage, CloseFrame, Drop, InjectedError>;

struct Pipe {
  mutable std::mutex mutex;
  mutable std::condition_variable cv;
  std::deque<Event> inbound;
  std::vector<InboundMessage> outbound;
  InboundMessage partial;  // a message the client sends in parts, until its last
  bool open = false;
  bool answer_pings = true;
  std::size_t max_message_size = SIZE_MAX;
  StreamOptions stream;         // DialRequest::stream
  std::size_t part_offset = 0;  // bytes of the front message already read as parts
  std::optional<CloseFrame> client_close;
  CloseFrame last_close{close_code::abnormal, {}};
  Connection::WaitHandler waiter;
  Connection::DialHandler hanging_dial;
  // Pings to a peer that does not answer: ended by their timer or by the connection's
  // end, on the runtime's I/O context (no thread waits).
  boost::asio::io_context* io = nullptr;
  std::vector<std::shared_ptr<Connection::DoneHandler>> unanswered_pings;

  // The connection is over: pings waiting for a pong end with `closed`.
  void end_locked() {
    open = false;
    for (auto& ping : std::exchange(unanswered_pings, {})) {
      boost::asio::post(*io, [ping, frame = last_close] { (*ping)(Error::closed(frame, "closed during ping")); });
    }
  }

  // Takes the waiter to call once the lock is released.
  Connection::WaitHandler push(Event e) {
    std::lock_guard lock(mutex);
    inbound.push_back(std::move(e));
    cv.notify_all();
    return std::exchange(waiter, nullptr);
  }
};

constexpr std::size_t kKeptRequests = 100;

struct ServerState {
  mutable std::mutex mutex;
  mutable std::condition_variable cv;
  std::deque<std::pair<Error, bool>> scripted;  // error, or hang when the bool is true
  HandshakeResponse response{101, {}, {}, false};
  std::deque<std::shared_ptr<Peer>> accepted;
  std::vector<DialRequest> requests;  // the latest kKeptRequests
  std::size_t dials = 0;
};

namespace {

class MemoryConnection final : public Connection {
 public:
  MemoryConnection(std::shared_ptr<ServerState> server, boost::asio::io_context& io)
      : server_(std::move(server)), pipe_(std::make_shared<Pipe>()) {
    pipe_->io = &io;
  }

  void async_dial(DialRequest request, DialHandler done) override {
    {
      std::lock_guard lock(pipe_->mutex);
      if (dialed_) return done(Error(errc::already_connected, "dial on a connected in-memory connection"));
      dialed_ = true;
    }
    if (request.offer_compression) {
      return done(Error(errc::unsupported, "the in-memory adapter has no permessage-deflate: offer_compression"));
    }
    std::unique_lock lock(server_->mutex);
    ++server_->dials;
    server_->requests.push_back(request);
    // A log, not a leak: endless reconnects keep only the latest dials.
    if (server_->requests.size() > kKeptRequests) server_->requests.erase(server_->requests.begin());
    if (!server_->scripted.empty()) {
      auto [error, hang] = server_->scripted.front();
      server_->scripted.pop_front();
      lock.unlock();
      if (!hang) return done(error);
      std::unique_lock pipe_lock(pipe_->mutex);
      if (aborted_) {
        pipe_lock.unlock();
        return done(Error(errc::cancelled, "in-memory dial aborted"));
      }
      pipe_->hanging_dial = std::move(done);
      return;
    }
    HandshakeResponse response = server_->response;
    {
      std::lock_guard pipe_lock(pipe_->mutex);
      if (aborted_) {
        lock.unlock();
        return done(Error(errc::cancelled, "in-memory dial aborted"));
      }
      pipe_->open = true;
      pipe_->max_message_size = request.max_message_size;
      pipe_->stream = request.stream;
    }
    server_->accepted.push_back(std::make_shared<Peer>(pipe_));
    server_->cv.notify_all();
    lock.unlock();
    done(std::move(response));
  }

  Error try_read(InboundMessage& out) override {
    std::lock_guard lock(pipe_->mutex);
    return take_locked(out);
  }

  void async_wait_readable(WaitHandler done) override {
    std::unique_lock lock(pipe_->mutex);
    if (!pipe_->inbound.empty() || !pipe_->open) {
      lock.unlock();
      return done({});
    }
    pipe_->waiter = std::move(done);
  }

  void cancel_wait() override {
    WaitHandler waiter;
    {
      std::lock_guard lock(pipe_->mutex);
      waiter = std::exchange(pipe_->waiter, nullptr);
    }
    if (waiter) waiter(Error(errc::cancelled, "wait cancelled"));
  }

  Error read(InboundMessage& out, std::chrono::milliseconds timeout) override {
    std::unique_lock lock(pipe_->mutex);
    if (!pipe_->cv.wait_for(lock, timeout, [&] { return !pipe_->inbound.empty() || !pipe_->open; })) {
      return Error(errc::timeout, "no message within " + std::to_string(timeout.count()) + " ms");
    }
    return take_locked(out);
  }

  Error write(MessageType type, std::string_view payload) override {
    std::lock_guard lock(pipe_->mutex);
    if (!pipe_->open) return Error::closed(pipe_->last_close, "write on a closed in-memory connection");
    pipe_->outbound.push_back(InboundMessage{type, std::string(payload), {}});
    pipe_->cv.notify_all();
    return {};
  }

  // A message in parts reaches the peer whole, once its last part came.
  void async_write_part(MessageType type, std::string_view payload, MessagePart part, DoneHandler done) override {
    std::unique_lock lock(pipe_->mutex);
    if (!pipe_->open) {
      Error e = Error::closed(pipe_->last_close, "write on a closed in-memory connection");
      lock.unlock();
      return done(std::move(e));
    }
    if (part == MessagePart::first) pipe_->partial = InboundMessage{type, {}, {}};
    pipe_->partial.payload.append(payload);
    if (part == MessagePart::last) {
      pipe_->outbound.push_back(std::move(pipe_->partial));
      pipe_->partial = {};
      pipe_->cv.notify_all();
    }
    lock.unlock();
    done({});
  }

  Error ping(std::string_view payload, std::chrono::milliseconds timeout) override {
    if (payload.size() > 125) return Error(errc::invalid_option, "ping payload over 125 bytes");
    std::unique_lock lock(pipe_->mutex);
    if (!pipe_->open) return Error::closed(pipe_->last_close, "ping on a closed in-memory connection");
    if (pipe_->answer_pings) return {};
    pipe_->cv.wait_for(lock, timeout, [&] { return !pipe_->open; });
    return pipe_->open ? Error(errc::timeout, "no pong") : Error::closed(pipe_->last_close, "closed during ping");
  }

  void async_ping(std::string_view payload, std::chrono::milliseconds timeout, DoneHandler done) override {
    if (payload.size() > 125) return done(Error(errc::invalid_option, "ping payload over 125 bytes"));
    std::unique_lock lock(pipe_->mutex);
    if (!pipe_->open) {
      Error e = Error::closed(pipe_->last_close, "ping on a closed in-memory connection");
      lock.unlock();
      return done(std::move(e));
    }
    if (pipe_->answer_pings) {
      lock.unlock();
      return done({});
    }
    auto ping = std::make_shared<DoneHandler>(std::move(done));
    pipe_->unanswered_pings.push_back(ping);
    auto timer = std::make_shared<boost::asio::steady_timer>(*pipe_->io, timeout);
    timer->async_wait([timer, ping, pipe = pipe_](const boost::system::error_code&) {
      {
        std::lock_guard lock(pipe->mutex);
        auto at = std::find(pipe->unanswered_pings.begin(), pipe->unanswered_pings.end(), ping);
        if (at == pipe->unanswered_pings.end()) return;  // the connection ended first
        pipe->unanswered_pings.erase(at);
      }
      (*ping)(Error(errc::timeout, "no pong"));
    });
  }

  Error close(const CloseFrame& frame, std::chrono::milliseconds) override {
    std::lock_guard lock(pipe_->mutex);
    if (!pipe_->open) return Error::closed(pipe_->last_close, "close on a closed in-memory connection");
    pipe_->client_close = frame;
    pipe_->last_close = frame;
    pipe_->end_locked();
    pipe_->cv.notify_all();
    return {};
  }

  void abort() noexcept override {
    WaitHandler waiter;
    DialHandler dial;
    {
      std::lock_guard lock(pipe_->mutex);
      aborted_ = true;
      pipe_->end_locked();
      pipe_->cv.notify_all();
      waiter = std::exchange(pipe_->waiter, nullptr);
      dial = std::exchange(pipe_->hanging_dial, nullptr);
    }
    if (waiter) waiter({});
    if (dial) dial(Error(errc::cancelled, "in-memory dial aborted"));
  }

  bool is_open() const noexcept override {
    std::lock_guard lock(pipe_->mutex);
    return pipe_->open;
  }

  Underlying underlying() noexcept override { return {&typeid(Pipe), pipe_.get()}; }

 private:
  Error take_locked(InboundMessage& out) {
    if (pipe_->inbound.empty()) {
      if (!pipe_->open) return Error::closed(pipe_->last_close, "in-memory connection closed");
      return Error(errc::would_block);
    }
    if (auto* m = std::get_if<InboundMessage>(&pipe_->inbound.front())) {
      const auto& stream = pipe_->stream;
      const std::size_t total = m->payload.size();
      const bool too_big = stream.enabled ? stream.max_message_size != 0 && total > stream.max_message_size
                                          : total > pipe_->max_message_size;
      if (too_big) {  // as a library fails it: close 1009
        pipe_->end_locked();
        pipe_->client_close = CloseFrame{close_code::too_big, "message too big"};
        pipe_->inbound.clear();
        pipe_->cv.notify_all();
        return Error(errc::message_too_big, stream.enabled ? "streamed message over stream.max_message_size (" +
                                                                 std::to_string(stream.max_message_size) + " bytes)"
                                                           : "message over max_message_size (" +
                                                                 std::to_string(pipe_->max_message_size) + " bytes)");
      }
      out.type = m->type;
      // Streamed (DialRequest::stream): a message larger than a part comes in parts.
      if (stream.enabled && (pipe_->part_offset != 0 || total > stream.max_part_size)) {
        const std::size_t n = std::min(stream.max_part_size, total - pipe_->part_offset);
        out.payload.assign(m->payload, pipe_->part_offset, n);
        out.part = pipe_->part_offset == 0           ? MessagePart::first
                   : pipe_->part_offset + n == total ? MessagePart::last
                                                     : MessagePart::middle;
        pipe_->part_offset += n;
        if (pipe_->part_offset < total) return {};
        pipe_->part_offset = 0;
      } else {
        out.payload.assign(m->payload);
        out.part = MessagePart::whole;
      }
      pipe_->inbound.pop_front();
      return {};
    }
    Event e = std::move(pipe_->inbound.front());
    pipe_->inbound.pop_front();
    if (auto* frame = std::get_if<CloseFrame>(&e)) {
      pipe_->last_close = *frame;
      pipe_->end_locked();  // the library answers the close frame by itself
      pipe_->inbound.clear();
      pipe_->cv.notify_all();
      return Error::closed(*frame, "peer closed");
    }
    if (std::holds_alternative<Drop>(e)) {
      pipe_->last_close = CloseFrame{close_code::abnormal, {}};
      pipe_->end_locked();
      pipe_->inbound.clear();
      pipe_->cv.notify_all();
      return Error::closed(pipe_->last_close, "connection dropped without a close frame");
    }
    auto& injected = std::get<InjectedError>(e);
    if (injected.fail_connection) {
      pipe_->end_locked();
      pipe_->cv.notify_all();
    }
    return injected.error;
  }

  std::shared_ptr<ServerState> server_;
  std::shared_ptr<Pipe> pipe_;
  bool dialed_ = false;   // guarded by pipe_->mutex
  bool aborted_ = false;  // guarded by pipe_->mutex
};

class MemoryConnector final : public Connector {
 public:
  explicit MemoryConnector(std::shared_ptr<ServerState> server) : server_(std::move(server)) {}
  std::unique_ptr<Connection> make_connection(Runtime& runtime) override {
    return std::make_unique<MemoryConnection>(server_, io_context(runtime));
  }
  std::string_view name() const noexcept override { return "memory"; }
  // No DEFLATE, and a write is queued for the peer at once, however much waits:
  // neither compression nor back-pressure. Streamed, a message larger than a part
  // comes in parts of max_part_size. The peer's messages land in the pipe from
  // its own thread, so try_read polls.
  AdapterCapabilities capabilities() const noexcept override {
    return {.compression = false,
            .write_backpressure = false,
            .polled_reads = true,
            .streamed_reads = true,
            .streamed_writes = true};
  }

 private:
  std::shared_ptr<ServerState> server_;
};

}  // namespace
}  // namespace detail

// ---------------------------------------------------------------- Peer

Peer::Peer(std::shared_ptr<detail::Pipe> pipe) : pipe_(std::move(pipe)) {}

namespace {
// A waiting reader is woken on the runtime's I/O context, as a socket's readiness
// wakes it in the real adapters (so Delivery::io_thread reads on an I/O thread here too).
void deliver(detail::Pipe& pipe, detail::Event e) {
  if (auto waiter = pipe.push(std::move(e))) boost::asio::post(*pipe.io, [waiter = std::move(waiter)] { waiter({}); });
}
}  // namespace

void Peer::send(MessageType type, std::string payload) {
  deliver(*pipe_, InboundMessage{type, std::move(payload), {}});
}
void Peer::send_close(CloseFrame frame) { deliver(*pipe_, std::move(frame)); }
void Peer::drop() { deliver(*pipe_, detail::Drop{}); }
void Peer::inject_read_error(Error error, bool fail_connection) {
  deliver(*pipe_, detail::InjectedError{std::move(error), fail_connection});
}
void Peer::answer_pings(bool answer) {
  std::lock_guard lock(pipe_->mutex);
  pipe_->answer_pings = answer;
}
std::vector<InboundMessage> Peer::received() const {
  std::lock_guard lock(pipe_->mutex);
  return pipe_->outbound;
}
bool Peer::wait_received(std::size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(pipe_->mutex);
  return pipe_->cv.wait_for(lock, timeout, [&] { return pipe_->outbound.size() >= count; });
}
std::optional<CloseFrame> Peer::client_close() const {
  std::lock_guard lock(pipe_->mutex);
  return pipe_->client_close;
}
bool Peer::wait_closed(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(pipe_->mutex);
  return pipe_->cv.wait_for(lock, timeout, [&] { return !pipe_->open; });
}
bool Peer::is_open() const {
  std::lock_guard lock(pipe_->mutex);
  return pipe_->open;
}

// ---------------------------------------------------------------- Server

std::shared_ptr<Server> Server::create() { return std::make_shared<Server>(std::make_shared<detail::ServerState>()); }
Server::Server(std::shared_ptr<detail::ServerState> state) : state_(std::move(state)) {}

std::shared_ptr<Connector> Server::connector() const { return std::make_shared<detail::MemoryConnector>(state_); }

void Server::fail_next_dials(Error error, std::size_t count) {
  std::lock_guard lock(state_->mutex);
  for (std::size_t i = 0; i < count; ++i) state_->scripted.emplace_back(error, false);
}
void Server::hang_next_dials(std::size_t count) {
  std::lock_guard lock(state_->mutex);
  for (std::size_t i = 0; i < count; ++i) state_->scripted.emplace_back(Error{}, true);
}
void Server::set_handshake_response(HandshakeResponse response) {
  std::lock_guard lock(state_->mutex);
  state_->response = std::move(response);
}
std::shared_ptr<Peer> Server::accept(std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mutex);
  if (!state_->cv.wait_for(lock, timeout, [&] { return !state_->accepted.empty(); })) return nullptr;
  auto peer = std::move(state_->accepted.front());
  state_->accepted.pop_front();
  return peer;
}
std::size_t Server::dial_count() const {
  std::lock_guard lock(state_->mutex);
  return state_->dials;
}
std::vector<DialRequest> Server::dial_requests() const {
  std::lock_guard lock(state_->mutex);
  return state_->requests;
}

}  // namespace wscengine::memory
