// Test support: a child process (a peer server) whose first stdout line is read,
// killed and reaped when the object goes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace wscengine::test {

/// Runs `argv` with stdout on a pipe. Thread safety: one owner.
class ChildProcess {
 public:
  explicit ChildProcess(std::vector<std::string> argv);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  /// The first line the child printed, or "" if none within the timeout.
  std::string first_line(std::chrono::milliseconds timeout);
  void kill();

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

/// Makes a self-signed certificate for "localhost" and 127.0.0.1 in `dir`
/// (cert.pem, key.pem) with the openssl tool. Returns false if that failed.
bool make_test_certificate(const std::string& dir);

/// A fresh temporary directory.
std::string temp_dir();

}  // namespace wscengine::test
