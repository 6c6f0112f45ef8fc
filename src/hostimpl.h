/* The core's side of et_host: filling the struct and the worker pool behind
 * parallel_for. */
#ifndef ETNAS_CORE_HOSTIMPL_H
#define ETNAS_CORE_HOSTIMPL_H

#include <etnas/host.h>

/* Fill *host with the core's services, seed and thread count (>= 1). The
 * space may be NULL. */
void et_host_init(et_host *host, uint64_t seed, int32_t threads, const et_space *space);

/* Set the worker count of the shared pool; OpenBLAS runs single-threaded
 * inside it. */
void et_threads_set(int32_t threads);

/* Like et_parallel_for, but in `parts` ranges (at most the pool's size; the
 * pool grows to it): for callers that fix their own split. */
void et_parallel_for_parts(int32_t parts, int64_t n, et_parallel_fn fn, void *arg);

/* The parallel_for behind et_host (ctx unused): [0, n) in at most
 * et_threads_set() contiguous ranges, range w on worker w. */
void et_parallel_for(void *ctx, int64_t n, et_parallel_fn fn, void *arg);

#endif
