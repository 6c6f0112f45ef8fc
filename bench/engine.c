/* Engine benchmark (issue: the engine at a large fraction of the machine's
 * GEMM peak). In one run: this machine's OpenBLAS sgemm GFLOP/s at 1024^3
 * and at the model's own GEMM shapes; the training step (forward + backward
 * + AdamW) of a ViT-style encoder classifier, as model FLOP/s = analytic
 * training FLOPs / step time; forward latency at batch 1; the activation
 * arena against peak RSS. Not a test: run it by hand (bench/engine.sh).
 *
 * `engine THREADS sgemm` prints the sgemm figure alone.
 *
 * Model: E 256, 6 layers, 4 heads of 64, FFN 1024, GELU, pre-norm, 64
 * patches + class token = 65 tokens, batch 64, the softmax plugin. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "blas_tune.h"
#include "hostimpl.h"
#include "inifile.h"
#include "model.h"
#include "optim.h"
#include "options.h"
#include "plugin.h"
#include "space.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GFLOP/s of C (m,n) = A (m,k) . B^T (n,k), the layout of et_linear_forward */
static double sgemm_gflops(int m, int n, int k, int trans_a, int trans_b)
{
    float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)n * k),
          *c = malloc(sizeof(float) * (size_t)m * n);
    for (size_t i = 0; i < (size_t)m * k; i++)
        a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)n * k; i++)
        b[i] = (float)(i % 5) * 0.1f;
    int reps = 0;
    double t0 = now(), t;
    do {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, trans_a ? m : k, b,
                    trans_b ? k : n, 0.0f, c, n);
        reps++;
        t = now() - t0;
    } while (t < 0.5 || reps < 3);
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * k * reps / t / 1e9;
}

int main(int argc, char **argv)
{
    et_blas_tune(argv);
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int steps = argc > 2 ? atoi(argv[2]) : 20;
    enum { E = 256, L = 6, H = 4, F = 1024, T = 64, B = 64, IN = 48, C = 10 };
    printf("threads %d, OpenBLAS %s (%s)\n", threads, openblas_get_config(),
           openblas_get_corename());

    /* (a) the machine's sgemm: OpenBLAS itself with the same thread count */
    openblas_set_num_threads(threads);
    double peak = sgemm_gflops(1024, 1024, 1024, 0, 1);
    printf("sgemm 1024^3: %.1f GFLOP/s\n", peak);
    if (argc > 2 && !strcmp(argv[2], "sgemm"))
        return 0; /* the machine's figure alone, for the other benchmarks */
    int N = B * (T + 1);
    struct { const char *what; int m, n, k, ta, tb; } shapes[] = {
        {"qkv  fwd  (N,3q)=(N,E).W^T", N, 3 * H * 64, E, 0, 1},
        {"fc1  fwd  (N,F)=(N,E).W^T", N, F, E, 0, 1},
        {"fc2  fwd  (N,E)=(N,F).W^T", N, E, F, 0, 1},
        {"fc2  dinp (N,F)=(N,E).W", N, F, E, 0, 0},
        {"fc1  dW   (F,E)=dY^T.X", F, E, N, 1, 0},
    };
    double shape_sum = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double g = sgemm_gflops(shapes[i].m, shapes[i].n, shapes[i].k, shapes[i].ta, shapes[i].tb);
        shape_sum += g;
        printf("sgemm %-30s m %5d n %5d k %5d: %.1f GFLOP/s\n", shapes[i].what, shapes[i].m,
               shapes[i].n, shapes[i].k, g);
    }

    /* the model: the engine's pool, OpenBLAS single-threaded inside it */
    et_threads_set(threads);
    char *err = NULL;
    et_config cfg;
    const char *space_text = "[space]\nencoder_embed_dim = 256\nencoder_layers = 6\nencoder_ffn_dim = 1024\n"
                             "encoder_heads = 4\nencoder_attention = softmax\nencoder_activation = gelu\n"
                             "head_dim = 64\nnorm = pre\npooling = cls\n";
    et_space space;
    if (et_config_parse(space_text, "bench", &cfg, &err) ||
        et_space_from_section(&cfg.sections[0], &space, &err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    et_config_free(&cfg);
    char **dirs = et_plugin_path(NULL);
    et_registry reg = {0};
    const et_plugin *softmax;
    if (et_registry_scan(&reg, dirs, &err) ||
        et_registry_get(&reg, ET_PLUGIN_KIND_ATTENTION, "softmax", "bench", &softmax, &err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    et_option_value opts[16];
    memset(opts, 0, sizeof opts);
    et_config_section none = {.name = "softmax", .kind = "softmax", .label = "", .file = "bench"};
    if (et_options_bind(softmax->desc->options, &none, NULL, 0, opts, &err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    et_attn_impl impl = {softmax->desc->vtable, opts};
    et_host host;
    et_host_init(&host, 1, threads, &space);
    et_model_config mc = {.input_dim = IN, .max_len = T, .num_classes = C, .max_batch = B,
                          .label_smoothing = 0.1f, .enc_attention = &impl};
    et_model *m;
    if (et_model_create(&space, &mc, &host, &m, &err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    et_model_init(m, 1);
    et_arch arch;
    et_arch_largest(&space, &arch);
    if (et_model_bind(m, &arch, B, T, &err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    int64_t n_params;
    et_model_params(m, &n_params);
    et_optim opt;
    et_optim_config oc = {.lr = 1e-4, .warmup_steps = 0, .total_steps = 1000, .beta1 = 0.9,
                          .beta2 = 0.98, .eps = 1e-8, .weight_decay = 0.05, .clip_norm = 1.0};
    et_optim_create(&opt, &oc, n_params, &err);
    float *x = malloc(sizeof(float) * B * T * IN);
    int32_t y[B];
    et_rng r = et_rng_from_seed(2);
    for (int i = 0; i < B * T * IN; i++)
        x[i] = (float)et_rng_normal(&r);
    for (int i = 0; i < B; i++)
        y[i] = i % C;
    et_batch b = {.size = B, .src_len = T, .src_vec = x, .labels = y};

    /* analytic FLOPs of one forward (2 x MACs): linear layers, attention
     * core (QK^T and PV), head; training = 3 x forward */
    double tok = (double)B * (T + 1);
    double lin = tok * L * (3.0 * E * E + E * E + 2.0 * E * F) + (double)B * T * IN * E + (double)B * E * C;
    double att = (double)B * H * L * 2.0 * (T + 1) * (T + 1) * 64;
    double fwd_flops = 2.0 * (lin + att);
    double train_flops = 3.0 * fwd_flops;

    double loss;
    for (int w = 0; w < 3; w++) {
        et_model_zero_grads(m);
        et_model_forward(m, &b, 1, 1, w, &loss, NULL, &err);
        et_model_backward(m, 1.0f / B, &err);
        et_optim_step(&opt, m);
    }
    double best = 1e30, sum = 0;
    for (int s = 0; s < steps; s++) {
        double t0 = now();
        et_model_zero_grads(m);
        et_model_forward(m, &b, 1, 1, s, &loss, NULL, &err);
        et_model_backward(m, 1.0f / B, &err);
        et_optim_step(&opt, m);
        double dt = now() - t0;
        best = dt < best ? dt : best;
        sum += dt;
    }
    double mean = sum / steps;
    printf("model: %.2f M parameters, %.3f GFLOP per training step (analytic)\n", n_params / 1e6,
           train_flops / 1e9);
    printf("train step (fwd+bwd+AdamW, batch %d): mean %.1f ms, best %.1f ms\n", B, mean * 1e3,
           best * 1e3);
    printf("model FLOP/s: %.1f GFLOP/s = %.0f%% of sgemm 1024^3 (%.1f), %.0f%% of the mean of the "
           "model's GEMM shapes (%.1f)\n",
           train_flops / mean / 1e9, 100.0 * train_flops / mean / 1e9 / peak, peak,
           100.0 * train_flops / mean / 1e9 / (shape_sum / 5), shape_sum / 5);
    printf("train throughput: %.0f examples/s\n", B / mean);

    /* forward phases, to see where the time goes */
    double tf = 0;
    for (int s = 0; s < steps; s++) {
        double t0 = now();
        et_model_forward(m, &b, 1, 1, s, &loss, NULL, &err);
        tf += now() - t0;
    }
    printf("  of which forward: %.1f ms\n", tf / steps * 1e3);

    /* inference, batch 1 */
    if (et_model_bind(m, &arch, 1, T, &err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    et_batch b1 = {.size = 1, .src_len = T, .src_vec = x, .labels = y};
    double lat[200];
    for (int s = 0; s < 220; s++) {
        double t0 = now();
        et_model_forward(m, &b1, 0, 0, 0, &loss, NULL, &err);
        if (s >= 20)
            lat[s - 20] = now() - t0;
    }
    double ls = 0;
    for (int i = 0; i < 200; i++)
        ls += lat[i];
    printf("inference latency (batch 1, 65 tokens): %.3f ms mean of 200\n", ls / 200 * 1e3);
    et_model_bind(m, &arch, B, T, &err);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("activation arena (batch %d): %.1f MB; parameters+grads %.1f MB; optimizer %.1f MB; "
           "peak RSS %.1f MB\n",
           B, et_model_activation_bytes(m) / 1e6, n_params * 8.0 / 1e6, n_params * 16.0 / 1e6,
           ru.ru_maxrss / 1e3);
    et_optim_destroy(&opt);
    et_model_destroy(m);
    et_registry_free(&reg);
    et_plugin_path_free(dirs);
    free(x);
    return 0;
}
