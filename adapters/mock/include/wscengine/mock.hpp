// wscengine — GoogleMock doubles of the adapter interface, for unit tests.
#pragma once

#include <gmock/gmock.h>

#include <memory>
#include <utility>

#include <wscengine/adapter.hpp>

namespace wscengine::mock {

/// A Connection whose every call is a GoogleMock expectation.
/// Thread safety: as GoogleMock mocks (expectations set before use).
class MockConnection : public Connection {
 public:
  /// \cond
  MOCK_METHOD(void, async_dial, (DialRequest request, DialHandler done), (override));
  MOCK_METHOD(Error, try_read, (InboundMessage & out), (override));
  MOCK_METHOD(void, async_wait_readable, (WaitHandler done), (override));
  MOCK_METHOD(void, cancel_wait, (), (override));
  MOCK_METHOD(Error, read, (InboundMessage & out, std::chrono::milliseconds timeout), (override));
  MOCK_METHOD(Error, write, (MessageType type, std::string_view payload), (override));
  MOCK_METHOD(Error, ping, (std::string_view payload, std::chrono::milliseconds timeout), (override));
  MOCK_METHOD(Error, close, (const CloseFrame& frame, std::chrono::milliseconds timeout), (override));
  MOCK_METHOD(void, abort, (), (noexcept, override));
  MOCK_METHOD(bool, is_open, (), (const, noexcept, override));
  MOCK_METHOD(Underlying, underlying, (), (noexcept, override));
  /// \endcond
};

/// A Connector that hands out prepared connections in order; each call to
/// make_connection takes the next one (and fails the test when none is left).
/// Thread safety: make_connection may be called from any thread.
class QueueConnector : public Connector {
 public:
  /// Adds a connection for a later make_connection.
  void push(std::unique_ptr<Connection> c) {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(c));
  }
  /// The oldest prepared connection.
  std::unique_ptr<Connection> make_connection(Runtime&) override {
    std::lock_guard lock(mutex_);
    if (queue_.empty()) {
      ADD_FAILURE() << "QueueConnector: no connection prepared";
      return nullptr;
    }
    auto c = std::move(queue_.front());
    queue_.erase(queue_.begin());
    return c;
  }
  std::string_view name() const noexcept override { return "mock"; }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<Connection>> queue_;
};

}  // namespace wscengine::mock
