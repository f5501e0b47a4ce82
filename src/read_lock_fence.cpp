#include "read_lock_fence.hpp"

#include <atomic>

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace wscengine::detail {

namespace {

std::atomic<bool> g_symmetric_for_testing{false};

// Registers once per process; false where membarrier is missing or refused (old
// kernels, seccomp filters, Valgrind), so both sides then use full fences.
bool membarrier_registered() noexcept {
#if defined(__linux__) && defined(SYS_membarrier)
  static const bool registered = [] {
    const long commands = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (commands < 0 || (commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
    return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  }();
  return registered;
#else
  return false;
#endif
}

}  // namespace

FenceMode fence_mode() noexcept {
  if (g_symmetric_for_testing.load(std::memory_order_relaxed)) return FenceMode::symmetric;
  return membarrier_registered() ? FenceMode::asymmetric : FenceMode::symmetric;
}

void heavy_fence(FenceMode mode) noexcept {
#if defined(__linux__) && defined(SYS_membarrier)
  // Registered (the mode is asymmetric only then), so it cannot fail with EPERM; a
  // failure would be a kernel bug, and the reader's side could not be repaired here.
  if (mode == FenceMode::asymmetric) (void)syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
#else
  (void)mode;
#endif
}

void set_fence_mode_for_testing(FenceMode mode) noexcept {
  g_symmetric_for_testing.store(mode == FenceMode::symmetric, std::memory_order_relaxed);
}

}  // namespace wscengine::detail
