/* Attention scaling benchmark: forward and backward time and peak memory of
 * each attention operator against sequence length, to show that the kernel
 * methods grow linearly and softmax quadratically (DESIGN.md, "cost grows as
 * the work grows"). B 1, H 4, head dim 64, lengths 256..16384 (doubling),
 * bidirectional and causal, default options. One CSV line per (operator,
 * mode, length) on stdout. Not a test: run it by hand, alone on the machine.
 *
 *   attention_scaling [THREADS [MAX_LEN [MAX_SECONDS [OPERATOR...]]]]
 *
 * Operators come from the plugin path (ETNAS_PLUGIN_PATH); by default
 * softmax, linear, cosformer and performer, those found. Each configuration
 * runs in a child process, so peak_rss_mb is its own peak resident set.
 * Once forward + backward of an (operator, mode) takes over MAX_SECONDS
 * (default 60), its longer lengths are skipped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <etnas/attention.h>

#include "blas_tune.h"
#include "hostimpl.h"
#include "inifile.h"
#include "options.h"
#include "plugin.h"

#define BATCH 1
#define HEADS 4
#define DIM 64
#define MIN_LEN 256
#define MAX_PASSES 50

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *filled(int64_t n, uint64_t seed)
{
    float *x = malloc((size_t)n * sizeof(float));
    if (!x)
        return NULL;
    et_rng g = et_rng_from_seed(seed);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(0.5 * et_rng_normal(&g));
    return x;
}

static double mb(int64_t floats)
{
    return (double)floats * sizeof(float) / (1024.0 * 1024.0);
}

/* Runs one configuration and prints its CSV line; returns forward+backward
 * seconds, or a negative value on failure. */
static double measure(const et_plugin *p, int mode, int32_t len, int32_t threads)
{
    char *err = NULL;
    et_option_value opts[32];
    memset(opts, 0, sizeof opts);
    et_config_section none = {.name = (char *)p->desc->name, .kind = (char *)p->desc->name,
                              .label = "", .file = "bench"};
    if (et_options_bind(p->desc->options, &none, NULL, 0, opts, &err)) {
        fprintf(stderr, "bench: %s: %s\n", p->desc->name, err);
        free(err);
        return -1;
    }
    et_threads_set(threads);
    et_host host;
    et_host_init(&host, 1, threads, NULL);
    const et_attention_vtable *vt = p->desc->vtable;
    void *st = NULL;
    et_attn_shape s = {BATCH, HEADS, len, len, DIM, DIM, mode, NULL};
    if (vt->create(&host, opts, &st, &err) || vt->prepare(st, &s, &err)) {
        fprintf(stderr, "bench: %s: %s\n", p->desc->name, err ? err : "create/prepare failed");
        free(err);
        vt->destroy(st);
        return -1;
    }
    if (vt->set_step)
        vt->set_step(st, 1, 0);
    int64_t n = (int64_t)BATCH * HEADS * len * DIM, nsaved = vt->saved_floats(st, &s),
            nwork = vt->work_floats(st, &s);
    float *q = filled(n, 1), *k = filled(n, 2), *v = filled(n, 3), *dout = filled(n, 4),
          *out = calloc((size_t)n, sizeof(float)), *dq = calloc((size_t)n, sizeof(float)),
          *dk = calloc((size_t)n, sizeof(float)), *dv = calloc((size_t)n, sizeof(float)),
          *saved = calloc((size_t)(nsaved > 0 ? nsaved : 1), sizeof(float)),
          *work = calloc((size_t)(nwork > 0 ? nwork : 1), sizeof(float));
    double total = -1;
    if (q && k && v && dout && out && dq && dk && dv && saved && work) {
        int64_t sh = (int64_t)len * DIM, sb = HEADS * sh;
        et_attn_view vq = {q, sb, sh, DIM}, vk = {k, sb, sh, DIM}, vv = {v, sb, sh, DIM},
                     vo = {out, sb, sh, DIM}, vg = {dout, sb, sh, DIM}, vdq = {dq, sb, sh, DIM},
                     vdk = {dk, sb, sh, DIM}, vdv = {dv, sb, sh, DIM};
        /* one warm-up pass, then the best of as many passes as fit in ~2 s
         * (at least 1, at most MAX_PASSES): short runs get many samples, so
         * a moment of load from elsewhere does not set their minimum */
        double best_f = INFINITY, best_b = INFINITY, spent = 0;
        int ok = 1;
        for (int rep = 0; rep <= MAX_PASSES && ok && (rep < 2 || spent < 2.0); rep++) {
            double t0 = now();
            ok = !vt->forward(st, &s, vq, vk, vv, vo, saved, work);
            double t1 = now();
            ok = ok && !vt->backward(st, &s, vq, vk, vv, vo, vg, saved, vdq, vdk, vdv, work);
            double t2 = now();
            if (rep > 0) {
                best_f = fmin(best_f, t1 - t0);
                best_b = fmin(best_b, t2 - t1);
            }
            spent += t2 - t0;
        }
        if (ok) {
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            printf("%s,%s,%d,%d,%d,%d,%d,%.6f,%.6f,%.3f,%.3f,%.3f,%.1f,%.4f\n", p->desc->name,
                   mode == ET_ATTN_MODE_CAUSAL ? "causal" : "bidirectional", BATCH, HEADS, len,
                   DIM, threads, best_f, best_b, mb(nsaved), mb(nwork), mb(8 * n),
                   (double)ru.ru_maxrss / 1024.0, vt->macs(st, &s) / 1e9);
            fflush(stdout);
            total = best_f + best_b;
        } else {
            fprintf(stderr, "bench: %s: forward or backward failed at length %d\n",
                    p->desc->name, len);
        }
    }
    free(q), free(k), free(v), free(dout), free(out), free(dq), free(dk), free(dv);
    free(saved), free(work);
    vt->destroy(st);
    return total;
}

/* measure() in a child process; returns its seconds or -1. */
static double measure_child(const et_plugin *p, int mode, int32_t len, int32_t threads)
{
    int fd[2];
    if (pipe(fd))
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fd[0]);
        double t = measure(p, mode, len, threads);
        ssize_t w = write(fd[1], &t, sizeof t);
        _exit(w == (ssize_t)sizeof t && t >= 0 ? 0 : 1);
    }
    close(fd[1]);
    double t = -1;
    if (read(fd[0], &t, sizeof t) != (ssize_t)sizeof t)
        t = -1;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? t : -1;
}

int main(int argc, char **argv)
{
    et_blas_tune(argv);
    int32_t threads = argc > 1 ? atoi(argv[1]) : 2;
    int32_t max_len = argc > 2 ? atoi(argv[2]) : 16384;
    double max_seconds = argc > 3 ? atof(argv[3]) : 60.0;
    static const char *const defaults[] = {"softmax", "linear", "cosformer", "performer"};
    const char *const *names = argc > 4 ? (const char *const *)argv + 4 : defaults;
    int n_names = argc > 4 ? argc - 4 : 4;
    if (threads < 1 || max_len < MIN_LEN || !(max_seconds > 0)) {
        fprintf(stderr, "usage: attention_scaling [THREADS [MAX_LEN [MAX_SECONDS [OPERATOR...]]]]\n");
        return 2;
    }
    char *err = NULL;
    char **dirs = et_plugin_path(NULL);
    et_registry reg = {0};
    if (et_registry_scan(&reg, dirs, &err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    printf("operator,mode,batch,heads,len,dim,threads,forward_s,backward_s,saved_mb,work_mb,"
           "tensors_mb,peak_rss_mb,macs_g\n");
    int status = 0;
    for (int i = 0; i < n_names; i++) {
        const et_plugin *p = et_registry_find(&reg, ET_PLUGIN_KIND_ATTENTION, names[i]);
        if (!p) {
            fprintf(stderr, "bench: attention plugin '%s' not found; skipped\n", names[i]);
            continue;
        }
        for (int mode = 0; mode < 2; mode++)
            for (int32_t len = MIN_LEN; len <= max_len; len *= 2) {
                double t = measure_child(p, mode, len, threads);
                if (t < 0)
                    status = 1;
                if (t < 0 || t > max_seconds)
                    break;
            }
    }
    et_registry_free(&reg);
    et_plugin_path_free(dirs);
    return status;
}
