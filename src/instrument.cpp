// The instrumenting decorator: spans and metrics around any adapter's connection.
#include <wscengine/adapter.hpp>
#include <wscengine/telemetry.hpp>
#include <wscengine/url.hpp>

#include <utility>

#include "telemetry_impl.hpp"

namespace wscengine {
namespace detail {

TraceState& current_trace() noexcept {
  thread_local TraceState current;
  return current;
}

std::string traced_url(const std::string& url) {
  auto parsed = parse_url(url);
  if (!parsed) return {};
  std::string text = parsed->to_string();
  return text.substr(0, text.find('?'));
}

namespace {

const char* type_name(MessageType type) { return type == MessageType::text ? "text" : "binary"; }

// A peer's normal or going-away close is how connections end, not a failure.
bool is_failure(const Error& error) {
  if (!error.is(errc::closed)) return true;
  return !error.close || (error.close->code != close_code::normal && error.close->code != close_code::going_away);
}

void record_outcome(Span& span, const Error& error) {
  if (error.is(errc::closed) && error.close) {
    span.set_attribute("wscengine.close.code", static_cast<std::int64_t>(error.close->code));
    span.add_event("connection closed");
  }
  if (is_failure(error)) span.set_error(error);
}

class InstrumentedConnection final : public Connection {
 public:
  InstrumentedConnection(std::unique_ptr<Connection> inner, std::shared_ptr<Tracer> tracer,
                         std::shared_ptr<Metrics> metrics)
      : inner_(std::move(inner)), tracer_(std::move(tracer)), metrics_(std::move(metrics)) {}

  void async_dial(DialRequest request, DialHandler done) override {
    std::shared_ptr<Span> span;
    if (tracer_) {
      span = start("wscengine.dial");
      if (span) span->set_attribute("wscengine.url", traced_url(request.url.to_string()));
    }
    auto started = std::chrono::steady_clock::now();
    // Captures no `this`: the handler may run as the connection is being given up.
    inner_->async_dial(std::move(request), [metrics = metrics_, span = std::move(span), started,
                                            done = std::move(done)](Result<HandshakeResponse> result) mutable {
      if (metrics) {
        auto took = std::chrono::steady_clock::now() - started;
        metrics->dial_duration(took, result ? Error{} : result.error());
        if (result && result->connect_duration.count() > 0)
          metrics->handshake_duration(took - result->connect_duration);
      }
      if (span) {
        if (result) {
          span->set_attribute("wscengine.http.status", static_cast<std::int64_t>(result->status));
          if (!result->subprotocol.empty()) span->set_attribute("wscengine.subprotocol", result->subprotocol);
          span->set_attribute("wscengine.compression", static_cast<std::int64_t>(result->compression));
        } else {
          span->set_error(result.error());
        }
        span->end();
        span.reset();
      }
      done(std::move(result));
    });
  }

  Error try_read(InboundMessage& out) override {
    if (!tracer_) {
      Error error = inner_->try_read(out);
      if (!error && metrics_) metrics_->message_received(out.type, out.payload.size());
      return error;
    }
    auto started = Tracer::Clock::now();
    Error error = inner_->try_read(out);
    if (error.is(errc::would_block)) return error;  // nothing was read: no span
    finish_read(out, error, started);
    return error;
  }

  Error read(InboundMessage& out, std::chrono::milliseconds timeout) override {
    auto started = Tracer::Clock::now();
    Error error = inner_->read(out, timeout);
    finish_read(out, error, started);
    return error;
  }

  void async_wait_readable(WaitHandler done) override { inner_->async_wait_readable(std::move(done)); }
  void cancel_wait() override { inner_->cancel_wait(); }

  Error write(MessageType type, std::string_view payload) override {
    auto span = start("wscengine.write");
    if (span) {
      span->set_attribute("wscengine.message.type", type_name(type));
      span->set_attribute("wscengine.message.length", static_cast<std::int64_t>(payload.size()));
    }
    Error error = inner_->write(type, payload);
    if (!error && metrics_) metrics_->message_sent(type, payload.size());
    if (span && error) record_outcome(*span, error);
    return error;
  }

  Error ping(std::string_view payload, std::chrono::milliseconds timeout) override {
    auto span = start("wscengine.ping");
    Error error = inner_->ping(payload, timeout);
    if (span && error) record_outcome(*span, error);
    return error;
  }

  Error close(const CloseFrame& frame, std::chrono::milliseconds timeout) override {
    auto span = start("wscengine.close");
    if (span) {
      span->set_attribute("wscengine.close.sent_code", static_cast<std::int64_t>(frame.code));
      if (!frame.reason.empty()) span->set_attribute("wscengine.close.sent_reason", frame.reason);
    }
    Error error = inner_->close(frame, timeout);
    if (span && error) record_outcome(*span, error);
    return error;
  }

  // The span ends when the message reached the kernel (or failed). Each async_* below
  // moves its span into the handler, which ends it before the engine goes on: a handler
  // the adapter runs inline (the connection had already ended) would otherwise end it
  // while this function still holds a copy, after the engine may have reported the stop.
  void async_write(MessageType type, std::string_view payload, DoneHandler done) override {
    if (!tracer_ && !metrics_) return inner_->async_write(type, payload, std::move(done));
    std::shared_ptr<Span> span = start("wscengine.write");
    if (span) {
      span->set_attribute("wscengine.message.type", type_name(type));
      span->set_attribute("wscengine.message.length", static_cast<std::int64_t>(payload.size()));
    }
    inner_->async_write(type, payload,
                        [span = std::move(span), metrics = metrics_, type, size = payload.size(),
                         done = std::move(done)](Error error) mutable {
                          if (!error && metrics) metrics->message_sent(type, size);
                          if (span && error) record_outcome(*span, error);
                          span.reset();
                          done(std::move(error));
                        });
  }

  // One span per part; a message sent in parts counts as sent with its last part.
  void async_write_part(MessageType type, std::string_view payload, MessagePart part, DoneHandler done) override {
    if (!tracer_ && !metrics_) return inner_->async_write_part(type, payload, part, std::move(done));
    std::shared_ptr<Span> span = start("wscengine.write_part");
    if (span) {
      span->set_attribute("wscengine.message.type", type_name(type));
      span->set_attribute("wscengine.message.part", part == MessagePart::first    ? "first"
                                                    : part == MessagePart::middle ? "middle"
                                                                                  : "last");
      span->set_attribute("wscengine.message.length", static_cast<std::int64_t>(payload.size()));
    }
    inner_->async_write_part(type, payload, part,
                             [span = std::move(span), metrics = metrics_, type, part, size = payload.size(),
                              done = std::move(done)](Error error) mutable {
                               if (!error && metrics && part == MessagePart::last) metrics->message_sent(type, size);
                               if (span && error) record_outcome(*span, error);
                               span.reset();
                               done(std::move(error));
                             });
  }

  void async_ping(std::string_view payload, std::chrono::milliseconds timeout, DoneHandler done) override {
    std::shared_ptr<Span> span = start("wscengine.ping");  // ends when the pong (or the timeout) came
    inner_->async_ping(payload, timeout, [span = std::move(span), done = std::move(done)](Error error) mutable {
      if (span && error) record_outcome(*span, error);
      span.reset();  // ended before the engine goes on (it may report the stop next)
      done(std::move(error));
    });
  }

  void async_close(const CloseFrame& frame, std::chrono::milliseconds timeout, DoneHandler done) override {
    std::shared_ptr<Span> span = start("wscengine.close");
    if (span) {
      span->set_attribute("wscengine.close.sent_code", static_cast<std::int64_t>(frame.code));
      if (!frame.reason.empty()) span->set_attribute("wscengine.close.sent_reason", frame.reason);
    }
    inner_->async_close(frame, timeout, [span = std::move(span), done = std::move(done)](Error error) mutable {
      if (span && error) record_outcome(*span, error);
      span.reset();  // ended before the engine goes on (it may report the stop next)
      done(std::move(error));
    });
  }

  Connection& inner() noexcept { return *inner_; }

  void abort() noexcept override { inner_->abort(); }
  bool is_open() const noexcept override { return inner_->is_open(); }
  Underlying underlying() noexcept override { return inner_->underlying(); }

 private:
  std::unique_ptr<Span> start(std::string_view name) const {
    const auto& current = current_trace();
    return tracer_ && current.sampled ? tracer_->start_span(name, current.parent, {}, current.link) : nullptr;
  }

  void finish_read(InboundMessage& out, const Error& error, Tracer::Clock::time_point started) {
    if (!error && metrics_) metrics_->message_received(out.type, out.payload.size());
    if (!tracer_) return;
    const auto& current = current_trace();
    // (A message left out by sampling never comes here: the engine reads it past
    // this decorator.)
    auto span = tracer_->start_span("wscengine.read", current.parent, started, current.link);
    if (!span) {
      out.trace = {};
      return;
    }
    if (error) {
      record_outcome(*span, error);
      return;
    }
    span->set_attribute("wscengine.message.type", type_name(out.type));
    span->set_attribute("wscengine.message.length", static_cast<std::int64_t>(out.payload.size()));
    out.trace = span->context();
  }

  const std::unique_ptr<Connection> inner_;
  const std::shared_ptr<Tracer> tracer_;
  const std::shared_ptr<Metrics> metrics_;
};

class InstrumentedConnector final : public Connector {
 public:
  InstrumentedConnector(std::shared_ptr<Connector> inner, std::shared_ptr<Tracer> tracer,
                        std::shared_ptr<Metrics> metrics)
      : inner_(std::move(inner)), tracer_(std::move(tracer)), metrics_(std::move(metrics)) {}
  std::unique_ptr<Connection> make_connection(Runtime& runtime) override {
    return std::make_unique<InstrumentedConnection>(inner_->make_connection(runtime), tracer_, metrics_);
  }
  std::string_view name() const noexcept override { return inner_->name(); }
  AdapterCapabilities capabilities() const noexcept override { return inner_->capabilities(); }

 private:
  const std::shared_ptr<Connector> inner_;
  const std::shared_ptr<Tracer> tracer_;
  const std::shared_ptr<Metrics> metrics_;
};

}  // namespace

Connection& untraced(Connection& connection) noexcept {
  auto* instrumented = dynamic_cast<InstrumentedConnection*>(&connection);
  return instrumented ? instrumented->inner() : connection;
}

}  // namespace detail

TraceContext current_trace_context() noexcept { return detail::current_trace().parent; }

std::shared_ptr<Connector> instrument(std::shared_ptr<Connector> inner, std::shared_ptr<Tracer> tracer,
                                      std::shared_ptr<Metrics> metrics) {
  if (!tracer && !metrics) return inner;
  return std::make_shared<detail::InstrumentedConnector>(std::move(inner), std::move(tracer), std::move(metrics));
}

std::string traceparent(const TraceContext& context) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "00-";
  auto append = [&](auto bytes) {
    for (auto b : bytes) {
      out += hex[b >> 4];
      out += hex[b & 15];
    }
  };
  append(context.trace_id);
  out += '-';
  append(context.span_id);
  out += '-';
  append(std::array<std::uint8_t, 1>{context.flags});
  return out;
}

}  // namespace wscengine
