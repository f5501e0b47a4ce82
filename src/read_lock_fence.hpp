// Private: the fences of the read lock's fast path (EngineCore::enter_read_lock,
// leave_read_lock, pause()).
#pragma once

namespace wscengine::detail {

/// How the read lock orders the reader's flag against a pauser's (a Dekker pair: each
/// side stores its flag, then loads the other's).
///
/// - asymmetric: the reader, once per message, needs only a compiler barrier; a pauser
///   (rare) pays for both with Linux's `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`,
///   which makes every running thread of the process pass a full memory barrier. Chosen
///   when the process could register for it (Linux 4.14 and later, not under Valgrind).
/// - symmetric: both sides use sequentially consistent operations (a locked instruction
///   each on x86, about 8 ns on the benchmark machine, bench/profile.md).
///
/// Thread safety: every function may be called from any thread.
enum class FenceMode { asymmetric, symmetric };

/// The mode an engine built now uses: asymmetric when membarrier registers (once per
/// process), unless set_fence_mode_for_testing() asked for symmetric.
FenceMode fence_mode() noexcept;

/// The pauser's side: after its flag's store, before it loads the reader's flag.
void heavy_fence(FenceMode mode) noexcept;

/// For tests: engines built from now on use `mode` when the machine allows it.
void set_fence_mode_for_testing(FenceMode mode) noexcept;

}  // namespace wscengine::detail
