#include "support/process.hpp"

#include <fstream>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <stdexcept>

namespace wscengine::test {
namespace {

// In the child, before exec: its own process group (so that killing the group also
// ends what it started: a server's workers, a shell's children), and SIGKILL when
// the test process dies without running its destructors (a crash, an abort).
void become_owned_child(pid_t parent) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) std::_Exit(127);  // the parent died before prctl
}

// Ends the child's whole process group and reaps the child.
void kill_and_reap(pid_t pid) {
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);  // in case it left its group
  int status = 0;
  ::waitpid(pid, &status, 0);
}

}  // namespace

ChildProcess::ChildProcess(std::vector<std::string> argv) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    become_owned_child(parent);
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::_Exit(127);
  }
  ::close(pipe_fds[1]);
  out_ = pipe_fds[0];
}

ChildProcess::~ChildProcess() {
  kill();
  if (out_ >= 0) ::close(out_);
}

void ChildProcess::kill() {
  if (pid_ > 0) {
    kill_and_reap(pid_);
    pid_ = -1;
  }
}

void ChildProcess::signal(int signo) {
  if (pid_ > 0) ::kill(pid_, signo);
}

std::string ChildProcess::first_line(std::chrono::milliseconds timeout) {
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{out_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char c;
    if (::read(out_, &c, 1) != 1) break;
    if (c == '\n') return line;
    line += c;
  }
  return "";
}

namespace {

// Runs `argv`: `input` on its stdin, then end of input unless `keep_input_open`. When
// `feed` is given, it is asked what to do after every chunk of output.
CommandResult run(const std::vector<std::string>& argv, const std::string& input, std::chrono::milliseconds timeout,
                  const std::function<CommandStep(const CommandResult&)>& feed, bool keep_input_open) {
  int in[2], out[2], err[2];
  if (::pipe(in) != 0 || ::pipe(out) != 0 || ::pipe(err) != 0) throw std::runtime_error("pipe failed");
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    become_owned_child(parent);
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) ::close(fd);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::_Exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  int stdin_fd = in[1];
  // A child that has exited makes a write to its stdin fail with EPIPE, not end the test.
  std::signal(SIGPIPE, SIG_IGN);
  // Small inputs fit the pipe buffer: write all at once.
  auto write_all = [&](const std::string& text) {
    std::size_t written = 0;
    while (stdin_fd >= 0 && written < text.size()) {
      auto n = ::write(stdin_fd, text.data() + written, text.size() - written);
      if (n <= 0) break;
      written += static_cast<std::size_t>(n);
    }
  };
  auto close_stdin = [&] {
    if (stdin_fd >= 0) ::close(stdin_fd);
    stdin_fd = -1;
  };
  write_all(input);
  if (!keep_input_open) close_stdin();
  CommandResult result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool interrupted = false;
  int open_fds = 2;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    if (::poll(fds, 2, static_cast<int>(std::min<long long>(left.count(), 100))) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buffer[4096];
      auto n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      (i == 0 ? result.out : result.err).append(buffer, static_cast<std::size_t>(n));
    }
    if (feed && !interrupted) {
      CommandStep step = feed(result);
      write_all(step.input);
      if (step.end_input) close_stdin();
      if (step.interrupt) {
        interrupted = true;
        ::kill(pid, SIGINT);
      }
    }
  }
  close_stdin();
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::kill(-pid, SIGKILL);  // whatever it started and left behind in its group
  if (!result.timed_out && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv, const std::string& input,
                          std::chrono::milliseconds timeout, const std::string& interrupt_when_err_has) {
  if (interrupt_when_err_has.empty()) return run(argv, input, timeout, {}, false);
  return run(
      argv, input, timeout,
      [&](const CommandResult& so_far) {
        CommandStep step;
        step.interrupt = so_far.err.find(interrupt_when_err_has) != std::string::npos;
        return step;
      },
      false);
}

CommandResult run_interactive(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                              const std::function<CommandStep(const CommandResult& so_far)>& feed) {
  return run(argv, {}, timeout, feed, true);
}

CommandResult run_in_terminal(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                              const std::function<CommandStep(const CommandResult&)>& feed) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) throw std::runtime_error("no pseudo-terminal");
  const std::string slave_name = ::ptsname(master);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::setsid();  // a session of its own, whose controlling terminal is the pty (and its own group)
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) std::_Exit(127);
    const int slave = ::open(slave_name.c_str(), O_RDWR);
    if (slave < 0) std::_Exit(127);
    ::ioctl(slave, TIOCSCTTY, 0);
    for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) ::dup2(slave, fd);
    if (slave > STDERR_FILENO) ::close(slave);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::_Exit(127);
  }
  CommandResult result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool interrupted = false, input_ended = false, reaped = false;
  int status = 0;
  auto type = [&](const std::string& text) {
    for (std::size_t done = 0; done < text.size();) {
      auto n = ::write(master, text.data() + done, text.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
  };
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 100))) > 0) {
      char buffer[4096];
      auto n = ::read(master, buffer, sizeof buffer);
      if (n <= 0) break;  // EIO: every process with the terminal open has gone
      result.out.append(buffer, static_cast<std::size_t>(n));
    } else if (::waitpid(pid, &status, WNOHANG) == pid) {
      reaped = true;  // what it printed last was read above
      break;
    }
    if (feed && !interrupted) {
      CommandStep step = feed(result);
      if (!input_ended) type(step.input);
      if (step.end_input && !input_ended) {
        type("\x04");  // Ctrl-D: end of input, at the start of a line
        input_ended = true;
      }
      if (step.interrupt) {
        interrupted = true;
        ::kill(pid, SIGINT);
      }
    }
  }
  ::close(master);
  // It may outlive its terminal for a moment (or hang): waited for until the deadline.
  while (!reaped && !result.timed_out) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      reaped = true;
    } else if (std::chrono::steady_clock::now() >= deadline) {
      result.timed_out = true;
    } else {
      ::usleep(10000);
    }
  }
  ::kill(-pid, SIGKILL);  // whatever it started and left behind in its session
  if (!reaped) ::waitpid(pid, &status, 0);
  if (!result.timed_out && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

bool make_test_certificate(const std::string& dir) {
  std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost"
      " -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout '" +
      dir + "/key.pem' -out '" + dir + "/cert.pem' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

std::string temp_dir() {
  char pattern[] = "/tmp/wscengine-test-XXXXXX";
  const char* made = ::mkdtemp(pattern);
  if (!made) throw std::runtime_error("mkdtemp failed");
  return made;
}

long rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

}  // namespace wscengine::test
