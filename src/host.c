/* The core's side of et_host: the services struct and a persistent worker
 * pool, so parallel loops in hot paths neither create threads nor allocate. */
#include "hostimpl.h"

#include <cblas.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "space.h"
#include "util.h"

#define ET_MAX_WORKERS 64

static struct {
    pthread_mutex_t lock;
    pthread_cond_t start, done;
    pthread_t tid[ET_MAX_WORKERS];
    int32_t started;    /* worker threads alive (excluding the caller) */
    int32_t threads;    /* ranges per loop, caller included */
    uint64_t generation;
    int32_t pending;
    int64_t n;
    et_parallel_fn fn;
    void *arg;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          {0}, 0, 1, 0, 0, 0, NULL, NULL};

static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER;

static void run_range(int32_t w, int32_t parts, int64_t n, et_parallel_fn fn, void *arg)
{
    int64_t begin = n * w / parts, end = n * (w + 1) / parts;
    if (begin < end)
        fn(arg, begin, end, w);
}

static void *worker_main(void *p)
{
    int32_t w = (int32_t)(intptr_t)p;
    uint64_t seen = 0;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen)
            pthread_cond_wait(&pool.start, &pool.lock);
        seen = pool.generation;
        int32_t parts = pool.threads;
        int64_t n = pool.n;
        et_parallel_fn fn = pool.fn;
        void *arg = pool.arg;
        pthread_mutex_unlock(&pool.lock);
        if (w < parts)
            run_range(w, parts, n, fn, arg);
        pthread_mutex_lock(&pool.lock);
        if (w < parts && --pool.pending == 0)
            pthread_cond_signal(&pool.done);
    }
    return NULL;
}

void et_threads_set(int32_t threads)
{
    if (threads < 1)
        threads = 1;
    if (threads > ET_MAX_WORKERS)
        threads = ET_MAX_WORKERS;
    pthread_mutex_lock(&call_lock);
    pthread_mutex_lock(&pool.lock);
    while (pool.started < threads - 1) {
        int32_t w = pool.started + 1;
        if (pthread_create(&pool.tid[w], NULL, worker_main, (void *)(intptr_t)w) != 0)
            break;
        pthread_detach(pool.tid[w]);
        pool.started++;
    }
    pool.threads = pool.started + 1 < threads ? pool.started + 1 : threads;
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&call_lock);
    /* the engine splits its GEMMs over this pool itself (layers.c); BLAS
     * threads on top would only compete with it */
    openblas_set_num_threads(1);
}

void et_parallel_for(void *ctx, int64_t n, et_parallel_fn fn, void *arg)
{
    (void)ctx;
    et_parallel_for_parts(0, n, fn, arg);
}

void et_parallel_for_parts(int32_t want, int64_t n, et_parallel_fn fn, void *arg)
{
    if (n <= 0)
        return;
    if (want > 0) {
        pthread_mutex_lock(&pool.lock);
        int32_t have = pool.started + 1;
        pthread_mutex_unlock(&pool.lock);
        if (have < want) {
            int32_t keep = pool.threads;
            et_threads_set(want);
            pool.threads = keep;
        }
    }
    pthread_mutex_lock(&call_lock);
    int32_t parts = want > 0 ? (want < pool.started + 1 ? want : pool.started + 1) : pool.threads;
    if (parts > n)
        parts = (int32_t)n;
    if (parts <= 1) {
        pthread_mutex_unlock(&call_lock);
        fn(arg, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    pool.n = n;
    pool.fn = fn;
    pool.arg = arg;
    int32_t saved = pool.threads;
    pool.threads = parts;
    pool.pending = parts - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.lock);
    run_range(0, parts, n, fn, arg);
    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0)
        pthread_cond_wait(&pool.done, &pool.lock);
    pool.threads = saved;
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&call_lock);
}

static void host_log(void *ctx, int32_t level, const char *fmt, ...)
{
    (void)ctx;
    if (level > et_log_verbosity)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *s = et_vstrdupf(fmt, ap);
    va_end(ap);
    et_log(level, "%s", s ? s : "(out of memory)");
    free(s);
}

static char *host_errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = et_vstrdupf(fmt, ap);
    va_end(ap);
    return s;
}

/* Progress of a long phase with rate and time left: on a terminal a bar
 * redrawn in place, otherwise a log line at each tenth of a known total
 * (every call at debug level). */
static void host_progress(void *ctx, const char *phase, int64_t done, int64_t total)
{
    (void)ctx;
    static struct timespec start;
    static int64_t start_done;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (done <= 1 || done < start_done) {
        start = ts;
        start_done = done;
    }
    double dt = (double)(ts.tv_sec - start.tv_sec) + 1e-9 * (double)(ts.tv_nsec - start.tv_nsec);
    double rate = dt > 0 ? (double)(done - start_done) / dt : 0.0;
    double eta = rate > 0 && total > 0 ? (double)(total - done) / rate : 0.0;
    if (total > 0 && et_log_verbosity >= ET_LOG_LEVEL_INFO && isatty(fileno(stderr))) {
        char bar[31];
        int filled = (int)(30 * done / total);
        for (int i = 0; i < 30; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %lld/%lld, %.2f/s, ETA %.0f s  ", phase, bar, (long long)done,
                (long long)total, rate, eta);
        if (done >= total)
            fputc('\n', stderr);
        return;
    }
    int tenth = total > 0 && (done == total || (done * 10 / total) != ((done - 1) * 10 / total));
    int level = tenth ? ET_LOG_LEVEL_INFO : ET_LOG_LEVEL_DEBUG;
    if (total > 0)
        et_log(level, "%s: %lld/%lld, %.2f/s, ETA %.0f s", phase, (long long)done,
               (long long)total, rate, eta);
    else
        et_log(level, "%s: %lld", phase, (long long)done);
}

void et_host_init(et_host *host, uint64_t seed, int32_t threads, const et_space *space)
{
    *host = (et_host){
        .abi_version = ET_ABI_VERSION,
        .size = sizeof(et_host),
        .ctx = NULL,
        .seed = seed,
        .threads = threads < 1 ? 1 : threads,
        .log = host_log,
        .errorf = host_errorf,
        .progress = host_progress,
        .parallel_for = et_parallel_for,
        .space = space,
        .arch_format = et_arch_format,
        .arch_parse = et_arch_parse,
        .arch_hash = et_arch_hash,
        .arch_validate = et_arch_validate,
        .arch_sample = et_arch_sample,
        .arch_mutate = et_arch_mutate,
        .arch_crossover = et_arch_crossover,
        .arch_feature_count = et_arch_feature_count,
        .arch_features = et_arch_features,
        .arch_largest = et_arch_largest,
    };
}
