/* Host services: everything a plugin may ask of the core, handed to it at
 * create. Plugins never link against libetnas; they call through this struct.
 *
 * Append-only: new members go at the end and never change the meaning of old
 * ones. A plugin that needs a member added after the first release checks
 * `ET_HOST_HAS(host, member)` before calling it. */
#ifndef ETNAS_HOST_H
#define ETNAS_HOST_H

#include <stddef.h>
#include <stdint.h>

#include <etnas/arch.h>
#include <etnas/plugin.h>
#include <etnas/rng.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum et_log_level {
    ET_LOG_LEVEL_ERROR = 0,
    ET_LOG_LEVEL_WARN = 1,
    ET_LOG_LEVEL_INFO = 2,
    ET_LOG_LEVEL_DEBUG = 3
} et_log_level;

/* A parallel loop body: handles indices [begin, end) on worker `worker`. */
typedef void (*et_parallel_fn)(void *arg, int64_t begin, int64_t end, int32_t worker);

typedef struct et_host et_host;

struct et_host {
    uint32_t abi_version; /* ET_ABI_VERSION of the host */
    uint32_t size;        /* sizeof(et_host) as the host was built */
    void *ctx;            /* the host's own state: pass it back, never touch it */

    /* Seed of this plugin instance's random stream: et_rng_from_seed(seed).
     * Derived from the experiment seed and the plugin's section, so it repeats
     * run to run and differs between sections. */
    uint64_t seed;
    /* Worker threads the experiment allows (>= 1). */
    int32_t threads;

    /* Log a line (no trailing newline needed). */
    void (*log)(void *ctx, int32_t level, const char *fmt, ...) ET_PRINTF(3, 4);
    /* A malloc'd formatted message, for `char **err` out-parameters. */
    char *(*errorf)(const char *fmt, ...) ET_PRINTF(1, 2);
    /* Progress of a long phase: `done` of `total` units (total 0 = unknown). */
    void (*progress)(void *ctx, const char *phase, int64_t done, int64_t total);
    /* Run fn over [0, n) split into at most `threads` contiguous ranges, the
     * same split every run; returns when all ranges are done. */
    void (*parallel_for)(void *ctx, int64_t n, et_parallel_fn fn, void *arg);

    /* The experiment's search space (NULL when the plugin runs outside an
     * experiment) and the arch services over it. */
    const et_space *space;
    /* Canonical text into buf (size n); returns its length or a negative code. */
    int (*arch_format)(const et_space *space, const et_arch *arch, char *buf, size_t n);
    int (*arch_parse)(const et_space *space, const char *text, et_arch *out, char **err);
    uint64_t (*arch_hash)(const et_space *space, const et_arch *arch);
    int (*arch_validate)(const et_space *space, const et_arch *arch, char **err);
    void (*arch_sample)(const et_space *space, et_rng *rng, et_arch *out);
    void (*arch_mutate)(const et_space *space, et_rng *rng, const et_arch *parent, double p,
                        et_arch *out);
    void (*arch_crossover)(const et_space *space, et_rng *rng, const et_arch *a,
                           const et_arch *b, double p, et_arch *out);
    int32_t (*arch_feature_count)(const et_space *space);
    void (*arch_features)(const et_space *space, const et_arch *arch, float *out);

    /* Later issues append model, training and evaluation services here. */
};

#define ET_HOST_HAS(host, member) \
    ((host)->size >= offsetof(et_host, member) + sizeof(((et_host *)0)->member))

#ifdef __cplusplus
}
#endif
#endif
