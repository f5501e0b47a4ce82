#include <wscengine/correlator.hpp>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace wscengine {

using Clock = std::chrono::steady_clock;

struct Correlator::State : std::enable_shared_from_this<Correlator::State> {
  struct Entry {
    Callback done;
    std::multimap<Clock::time_point, std::string>::iterator deadline;
  };

  explicit State(IdExtractor e) : extract(std::move(e)) {}

  const IdExtractor extract;
  mutable std::mutex mutex;
  std::condition_variable wake;
  std::map<std::string, Entry, std::less<>> pending;        // (mutex)
  std::multimap<Clock::time_point, std::string> deadlines;  // (mutex)
  bool stopping = false;                                    // (mutex)
  bool timer_running = false;                               // (mutex)
  std::thread timer;                                        // (mutex) joined by the destructor

  // Removes `id` and returns its callback (empty if it was not pending).
  Callback take_locked(std::string_view id) {
    auto it = pending.find(id);
    if (it == pending.end()) return {};
    Callback done = std::move(it->second.done);
    deadlines.erase(it->second.deadline);
    pending.erase(it);
    return done;
  }

  // The timer thread lives while requests wait: started by the first, it ends when
  // none is left, so an idle correlator holds no thread.
  void timer_loop() {
    std::unique_lock lock(mutex);
    for (;;) {
      if (stopping || deadlines.empty()) {
        timer_running = false;
        return;
      }
      auto first = deadlines.begin()->first;
      if (Clock::now() < first) {
        wake.wait_until(lock, first);
        continue;
      }
      std::vector<Callback> expired;
      auto now = Clock::now();
      while (!deadlines.empty() && deadlines.begin()->first <= now) {
        std::string id = deadlines.begin()->second;
        expired.push_back(take_locked(id));
      }
      lock.unlock();
      for (auto& done : expired) done(Error(errc::timeout, "no answer to the request in time"));
      lock.lock();
    }
  }
};

Correlator::Correlator(IdExtractor extract_id) : state_(std::make_shared<State>(std::move(extract_id))) {}

Correlator::~Correlator() {
  std::vector<Callback> cancelled;
  std::thread timer;
  {
    std::lock_guard lock(state_->mutex);
    state_->stopping = true;
    for (auto& [id, entry] : state_->pending) cancelled.push_back(std::move(entry.done));
    state_->pending.clear();
    state_->deadlines.clear();
    timer = std::move(state_->timer);
  }
  state_->wake.notify_all();
  if (timer.joinable()) {
    if (timer.get_id() == std::this_thread::get_id())
      timer.detach();  // destroyed from a timeout callback: the loop ends by itself
    else
      timer.join();
  }
  for (auto& done : cancelled) done(Error(errc::cancelled, "the correlator was destroyed"));
}

void Correlator::expect(std::string id, std::chrono::milliseconds timeout, Callback done) {
  std::thread finished;  // a timer thread that already ended, joined outside the lock
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->pending.count(id)) {
      auto deadline = state_->deadlines.emplace(Clock::now() + timeout, id);
      state_->pending.emplace(id, State::Entry{std::move(done), deadline});
      if (!state_->timer_running) {
        finished = std::move(state_->timer);
        state_->timer_running = true;
        state_->timer = std::thread([state = state_] { state->timer_loop(); });
      } else if (deadline == state_->deadlines.begin()) {
        state_->wake.notify_all();  // a new earliest deadline
      }
      done = nullptr;
    }
  }
  if (finished.joinable()) finished.join();
  if (done) done(Error(errc::invalid_option, "request id '" + id + "' is already waiting for an answer"));
}

std::future<Result<InboundMessage>> Correlator::expect(std::string id, std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<Result<InboundMessage>>>();
  auto future = promise->get_future();
  expect(std::move(id), timeout, [promise](Result<InboundMessage> r) { promise->set_value(std::move(r)); });
  return future;
}

std::future<Result<InboundMessage>> Correlator::request(const SessionConnection& connection, std::string id,
                                                        std::string_view payload, std::chrono::milliseconds timeout) {
  std::string key = id;
  auto future = expect(std::move(id), timeout);
  if (Error e = connection.send_text(payload)) {
    Callback done;
    {
      std::lock_guard lock(state_->mutex);
      done = state_->take_locked(key);
    }
    if (done) done(std::move(e));
  }
  return future;
}

bool Correlator::deliver(const Message& message) {
  auto id = state_->extract(message);
  if (!id) return false;
  Callback done;
  {
    std::lock_guard lock(state_->mutex);
    done = state_->take_locked(*id);
  }
  if (!done) return false;
  done(InboundMessage{message.type, std::string(message.payload), {}});
  return true;
}

void Correlator::connection_lost() {
  std::vector<Callback> lost;
  {
    std::lock_guard lock(state_->mutex);
    for (auto& [id, entry] : state_->pending) lost.push_back(std::move(entry.done));
    state_->pending.clear();
    state_->deadlines.clear();
  }
  state_->wake.notify_all();
  for (auto& done : lost) done(Error(errc::connection_lost, "the connection ended before the answer came"));
}

std::size_t Correlator::pending() const {
  std::lock_guard lock(state_->mutex);
  return state_->pending.size();
}

}  // namespace wscengine
