#include "support/recorder.hpp"

#include <algorithm>

namespace wscengine::test {

Recorder::SessionState& Recorder::state_locked(std::uint64_t session) {
  for (auto& [id, st] : sessions_)
    if (id == session) return st;
  sessions_.emplace_back(session, SessionState{});
  return sessions_.back().second;
}

void Recorder::violation(std::string what) {
  std::lock_guard lock(mutex_);
  violations_.push_back(std::move(what));
}

void Recorder::record(Event e) {
  std::lock_guard lock(mutex_);
  // Adapter-only kinds (error.hpp) pass between an adapter and the engine, never to a user.
  if (e.error.is(errc::would_block) || e.error.is(errc::already_connected))
    violations_.push_back("a callback got the adapter-only error " + e.error.message());
  events_.push_back(std::move(e));
  cv_.notify_all();
}

Error Recorder::on_open(Context& ctx, const HandshakeResponse& r, bool restarting) {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) violations_.push_back("OnOpen after Stop returned");
    if (open_session_ != 0 && open_session_ != ctx.session_id()) {
      violations_.push_back("OnOpen of session " + std::to_string(ctx.session_id()) + " before OnClose of session " +
                            std::to_string(open_session_) + " returned");
    }
    if (ctx.session_id() == 0) violations_.push_back("OnOpen with session id 0");
  }
  Error result = on_open_hook ? on_open_hook(ctx, r, restarting) : Error{};
  {
    std::lock_guard lock(mutex_);
    auto& st = state_locked(ctx.session_id());
    st.open_returned = true;
    st.open_succeeded = !result;
    if (!result) open_session_ = ctx.session_id();
    Event e{Event::open, ctx.session_id()};
    e.restarting = restarting;
    e.error = result;
    events_.push_back(std::move(e));
    cv_.notify_all();
  }
  return result;
}

void Recorder::on_message(Context& ctx, const Message& m) {
  int now = ++in_message_;
  int seen = max_in_message_.load();
  while (now > seen && !max_in_message_.compare_exchange_weak(seen, now)) {
  }
  {
    std::lock_guard lock(mutex_);
    if (stopped_) violations_.push_back("OnMessage after Stop returned");
    if (static_cast<std::size_t>(now) > slots_) violations_.push_back("more than N OnMessage at once");
    auto& st = state_locked(ctx.session_id());
    if (!st.open_succeeded) violations_.push_back("OnMessage before OnOpen returned success");
    if (st.closed) violations_.push_back("OnMessage after OnClose");
    if (m.is_first()) {
      if (slots_ == 1 && m.sequence != st.next_sequence) {
        violations_.push_back("sequence " + std::to_string(m.sequence) + " expected " +
                              std::to_string(st.next_sequence));
      }
      st.next_sequence = std::max(st.next_sequence, m.sequence + 1);
      if (m.part == MessagePart::first) st.streaming[m.sequence] = {0, false};
    }
    // Streamed parts: after their first part, in order (offsets add up), one at a time.
    if (m.part != MessagePart::whole) {
      auto it = st.streaming.find(m.sequence);
      if (it == st.streaming.end()) {
        violations_.push_back("a part of message " + std::to_string(m.sequence) + " without its first part");
      } else {
        if (m.offset != it->second.first)
          violations_.push_back("part offset " + std::to_string(m.offset) + " expected " +
                                std::to_string(it->second.first));
        if (it->second.second) violations_.push_back("two parts of one message in on_message at once");
        it->second.first += m.payload.size();
        it->second.second = true;
      }
    }
  }
  struct Leave {  // also when the hook throws
    std::atomic<int>& count;
    ~Leave() { --count; }
  } leave{in_message_};
  struct LeavePart {
    Recorder& r;
    std::uint64_t session, sequence;
    bool streamed, last;
    ~LeavePart() {
      if (!streamed) return;
      std::lock_guard lock(r.mutex_);
      auto& st = r.state_locked(session);
      auto it = st.streaming.find(sequence);
      if (it == st.streaming.end()) return;
      it->second.second = false;
      if (last) st.streaming.erase(it);
    }
  } leave_part{*this, ctx.session_id(), m.sequence, m.part != MessagePart::whole, m.part == MessagePart::last};
  record(Event{Event::message, ctx.session_id(), std::string(m.payload), m.sequence});
  if (on_message_hook) on_message_hook(ctx, m);
}

void Recorder::on_read_error(Context& ctx, const Error& err) {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) violations_.push_back("OnReadError after Stop returned");
    auto& st = state_locked(ctx.session_id());
    if (!st.open_succeeded || st.closed) violations_.push_back("OnReadError outside an open session");
  }
  if (on_read_error_hook) on_read_error_hook(ctx, err);
  Event e{Event::read_error, ctx.session_id(), err.message()};
  e.error = err;
  record(std::move(e));
}

std::optional<CloseFrame> Recorder::on_close(Context& ctx, const std::optional<CloseFrame>& received) {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) violations_.push_back("OnClose after Stop returned");
    auto& st = state_locked(ctx.session_id());
    if (!st.open_succeeded) violations_.push_back("OnClose for a session whose OnOpen did not succeed");
    if (st.closed) violations_.push_back("second OnClose for session " + std::to_string(ctx.session_id()));
    if (in_message_.load() != 0) violations_.push_back("OnClose while OnMessage runs");
    if (!ctx.cancelled()) violations_.push_back("OnClose context not cancelled");
    st.closed = true;
  }
  std::optional<CloseFrame> reply = on_close_hook ? on_close_hook(ctx, received) : std::nullopt;
  Event e{Event::close, ctx.session_id()};
  e.received = received;
  e.initiator = ctx.initiator();
  {
    std::lock_guard lock(mutex_);
    open_session_ = 0;
    events_.push_back(std::move(e));
    cv_.notify_all();
  }
  return reply;
}

void Recorder::on_close_error(Context& ctx, const Error& err) {
  Event e{Event::close_error, ctx.session_id(), err.message()};
  e.error = err;
  record(std::move(e));
}

void Recorder::on_restart_error(Context& ctx, const Error& err, std::uint32_t n) {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) violations_.push_back("OnRestartError after Stop returned");
  }
  if (on_restart_error_hook) on_restart_error_hook(ctx, err, n);
  Event e{Event::restart_error, ctx.session_id(), err.message()};
  e.retry = n;
  e.error = err;
  record(std::move(e));
}

std::vector<Event> Recorder::events() const {
  std::lock_guard lock(mutex_);
  return events_;
}
std::vector<Event> Recorder::events_of(Event::Kind kind) const {
  std::lock_guard lock(mutex_);
  std::vector<Event> out;
  for (const auto& e : events_)
    if (e.kind == kind) out.push_back(e);
  return out;
}
std::size_t Recorder::count(Event::Kind kind) const { return events_of(kind).size(); }
std::vector<std::string> Recorder::violations() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out = violations_;
  // Every session whose OnOpen succeeded must have had its OnClose once stopped.
  if (stopped_) {
    for (const auto& [id, st] : sessions_)
      if (st.open_succeeded && !st.closed) out.push_back("no OnClose for session " + std::to_string(id));
  }
  return out;
}
bool Recorder::wait_for(const std::function<bool(const std::vector<Event>&)>& pred,
                        std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return pred(events_); });
}
bool Recorder::wait_count(Event::Kind kind, std::size_t n, std::chrono::milliseconds timeout) const {
  return wait_for(
      [&](const std::vector<Event>& es) {
        return static_cast<std::size_t>(
                   std::count_if(es.begin(), es.end(), [&](const Event& e) { return e.kind == kind; })) >= n;
      },
      timeout);
}
void Recorder::mark_stopped() {
  std::lock_guard lock(mutex_);
  stopped_ = true;
}
void Recorder::mark_started() {
  std::lock_guard lock(mutex_);
  stopped_ = false;
}

::testing::AssertionResult each_taken_once_in_order(const std::vector<Event>& dispatched,
                                                    const std::vector<int>& by_hand, int total) {
  std::vector<int> taken(static_cast<std::size_t>(total), 0);
  auto take = [&](const std::vector<int>& numbers, const char* who) -> ::testing::AssertionResult {
    int last = -1;
    for (int n : numbers) {
      if (n < 0 || n >= total) return ::testing::AssertionFailure() << who << " took message " << n << ", never sent";
      if (n <= last) return ::testing::AssertionFailure() << who << " took message " << n << " after " << last;
      last = n;
      ++taken[static_cast<std::size_t>(n)];
    }
    return ::testing::AssertionSuccess();
  };
  std::vector<int> on_message;
  for (const auto& e : dispatched) on_message.push_back(std::stoi(e.payload));
  if (auto r = take(on_message, "OnMessage"); !r) return r;
  if (auto r = take(by_hand, "the hand reader"); !r) return r;
  for (int n = 0; n < total; ++n) {
    if (taken[static_cast<std::size_t>(n)] != 1)
      return ::testing::AssertionFailure()
             << "message " << n << " was taken " << taken[static_cast<std::size_t>(n)] << " times";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace wscengine::test
