// Test support: a child process (a peer server) whose first stdout line is read,
// killed and reaped when the object goes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
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
  /// Sends `signo` (SIGSTOP freezes the peer: its sockets stay open, silent).
  void signal(int signo);

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

/// What a finished command left behind.
struct CommandResult {
  int exit_code = -1;      ///< -1 when killed by a signal or the timeout
  bool timed_out = false;  ///< killed because it ran past the timeout
  std::string out, err;
};

/// Runs `argv` to completion with `input` on its stdin (then end of input), stdout
/// and stderr captured; killed after `timeout`. When `interrupt_when_err_has` is
/// not empty, SIGINT is sent once stderr contains it.
CommandResult run_command(const std::vector<std::string>& argv, const std::string& input,
                          std::chrono::milliseconds timeout, const std::string& interrupt_when_err_has = {});

/// What an interactive command is given next (see run_interactive).
struct CommandStep {
  std::string input;       ///< written to its stdin now
  bool end_input = false;  ///< then end of input
  bool interrupt = false;  ///< then SIGINT (asked no more after that)
};

/// Runs `argv` with stdin open: after every chunk of stdout or stderr, `feed` is
/// given everything printed so far and says what to do; killed after `timeout`.
CommandResult run_interactive(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                              const std::function<CommandStep(const CommandResult& so_far)>& feed);

/// run_interactive with a pseudo-terminal instead of pipes: stdin, stdout and stderr
/// are its terminal (so isatty() holds), what it prints comes back in `out` (stdout
/// and stderr together, with what the terminal echoes of the input), and `end_input`
/// types Ctrl-D.
CommandResult run_in_terminal(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                              const std::function<CommandStep(const CommandResult& so_far)>& feed);

/// Makes a self-signed certificate for "localhost" and 127.0.0.1 in `dir`
/// (cert.pem, key.pem) with the openssl tool. Returns false if that failed.
bool make_test_certificate(const std::string& dir);

/// A fresh temporary directory.
std::string temp_dir();

/// This process's resident set (VmRSS), in KiB; -1 when /proc cannot say.
/// Thread safety: pure.
long rss_kib();

}  // namespace wscengine::test
