// The calls GCC's -fsanitize=thread instrumentation makes before every load and store, defined here in
// place of the ThreadSanitizer runtime (which is not linked): they report the accesses to the current
// SmemTrace (kernels/cuda/cta/smem_trace.h) with the instruction's address, so that a program compiled
// with that flag has its scalar shared-memory accesses counted too. Compiled without the flag.
#include "cta/smem_trace.h"

namespace {
inline void note(void* p, int bytes, bool store, const void* pc) {
  if (decayfw::cta::SmemTrace* t = decayfw::cta::SmemTrace::current()) t->access_at(p, bytes, store, pc);
}
}  // namespace

extern "C" {
#define DECAYFW_TSAN_HOOKS(N)                                                                                   \
  __attribute__((noinline)) void __tsan_read##N(void* p) { note(p, N, false, __builtin_return_address(0)); }    \
  __attribute__((noinline)) void __tsan_write##N(void* p) { note(p, N, true, __builtin_return_address(0)); }    \
  __attribute__((noinline)) void __tsan_unaligned_read##N(void* p) { note(p, N, false, __builtin_return_address(0)); } \
  __attribute__((noinline)) void __tsan_unaligned_write##N(void* p) { note(p, N, true, __builtin_return_address(0)); }
DECAYFW_TSAN_HOOKS(1)
DECAYFW_TSAN_HOOKS(2)
DECAYFW_TSAN_HOOKS(4)
DECAYFW_TSAN_HOOKS(8)
DECAYFW_TSAN_HOOKS(16)
#undef DECAYFW_TSAN_HOOKS
void __tsan_read_range(void*, unsigned long) {}
void __tsan_write_range(void*, unsigned long) {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_init() {}
void __tsan_atomic_signal_fence(int) {}  // SmemTrace::Quiet's compiler fences
void __tsan_vptr_update(void*, void*) {}
void __tsan_vptr_read(void*) {}
}
