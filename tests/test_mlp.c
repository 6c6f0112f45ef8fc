/* HAT's latency predictor MLP (plugins/proxies/mlp.c): forward against a
 * double-precision reference, backward by finite differences, a fit of a
 * synthetic latency-like function, serialisation, determinism, and bad
 * input refused with a message. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/plugin.h>
#include <etnas/rng.h>

#include "fdcheck.h"
#include "mlp.h"

#define TOL 1e-2

static mlp_config small_config(int32_t hidden, int32_t hidden_layers, uint64_t seed)
{
    mlp_config cfg;
    mlp_config_default(&cfg);
    cfg.hidden = hidden;
    cfg.hidden_layers = hidden_layers;
    cfg.seed = seed;
    return cfg;
}

static mlp *create_ok(const mlp_config *cfg, int64_t f)
{
    mlp *m = NULL;
    char *err = NULL;
    int rc = mlp_create(cfg, f, &m, &err);
    cr_assert_eq(rc, 0, "mlp_create: %d %s", rc, err ? err : "");
    return m;
}

/* The network in double, straight from the documented parameter layout:
 * out (n), scaled inputs xs (n, f). */
static void reference_forward(mlp *m, const float *xs, int64_t n, double *out)
{
    const float *p = mlp_params(m);
    int32_t layers = mlp_layer_count(m);
    for (int64_t r = 0; r < n; r++) {
        double a[64], z[64];
        int64_t in = mlp_layer_in(m, 0);
        for (int64_t j = 0; j < in; j++)
            a[j] = xs[r * in + j];
        const float *q = p;
        for (int32_t l = 0; l < layers; l++) {
            int64_t w_in = mlp_layer_in(m, l), w_out = mlp_layer_out(m, l);
            cr_assert(w_in <= 64 && w_out <= 64);
            for (int64_t o = 0; o < w_out; o++) {
                double s = q[w_out * w_in + o];
                for (int64_t j = 0; j < w_in; j++)
                    s += (double)q[o * w_in + j] * a[j];
                z[o] = l + 1 < layers && s < 0 ? 0 : s;
            }
            q += w_out * (w_in + 1);
            memcpy(a, z, (size_t)w_out * sizeof *a);
        }
        out[r] = a[0];
    }
}

Test(mlp, defaults_follow_hat)
{
    mlp_config cfg;
    mlp_config_default(&cfg);
    cr_assert_eq(cfg.hidden, 400);
    cr_assert_eq(cfg.hidden_layers, 3);
    cr_assert_float_eq(cfg.lr, 1e-5, 1e-20);
    cr_assert_eq(cfg.batch, 128);
    cr_assert_eq(cfg.steps, 5000);
    mlp *m = create_ok(&cfg, 10);
    /* 10 -> 400 -> 400 -> 400 -> 400 -> 1 */
    cr_assert_eq(mlp_layer_count(m), 5);
    int64_t want[6] = {10, 400, 400, 400, 400, 1};
    for (int32_t l = 0; l < 5; l++) {
        cr_assert_eq(mlp_layer_in(m, l), want[l]);
        cr_assert_eq(mlp_layer_out(m, l), want[l + 1]);
    }
    cr_assert_eq(mlp_param_count(m), 10 * 400 + 400 + 3 * (400 * 400 + 400) + 400 + 1);
    /* nn.Linear's initialisation bound 1/sqrt(fan_in) */
    const float *p = mlp_params(m);
    float first = 0, second = 0;
    for (int64_t i = 0; i < 10 * 400 + 400; i++)
        first = fmaxf(first, fabsf(p[i]));
    for (int64_t i = 4400; i < 4400 + 400 * 401; i++)
        second = fmaxf(second, fabsf(p[i]));
    cr_assert(first <= 1 / sqrtf(10) && first > 0.9f / sqrtf(10), "layer 0 bound %g", first);
    cr_assert(second <= 0.05f && second > 0.045f, "layer 1 bound %g", second);
    mlp_destroy(m);
}

Test(mlp, forward_matches_reference)
{
    for (int32_t hl = 0; hl < 3; hl++) {
        mlp_config cfg = small_config(9, hl, 11 + (uint64_t)hl);
        mlp *m = create_ok(&cfg, 4);
        enum { N = 300 }; /* more than one prediction chunk */
        static float x[N * 4], y[N];
        static double ref[N];
        et_rng r = et_rng_from_seed(5);
        fd_fill(x, N * 4, &r, 1.0f);
        cr_assert_eq(mlp_predict(m, x, N, y, NULL), 0);
        reference_forward(m, x, N, ref);
        for (int i = 0; i < N; i++)
            cr_assert_float_eq(y[i], ref[i], 1e-5 + 1e-5 * fabs(ref[i]), "hidden_layers %d row %d",
                               (int)hl, i);
        mlp_destroy(m);
    }
}

typedef struct grad_case {
    mlp *m;
    const float *xs, *ys;
    int64_t n;
} grad_case;

static double case_loss(void *ctx)
{
    grad_case *c = ctx;
    double loss = NAN;
    cr_assert_eq(mlp_loss_grad(c->m, c->xs, c->ys, c->n, &loss, NULL, NULL), 0);
    return loss;
}

Test(mlp, gradient_matches_finite_differences)
{
    for (int32_t hl = 0; hl < 3; hl++) {
        mlp_config cfg = small_config(8, hl, 21 + (uint64_t)hl);
        mlp *m = create_ok(&cfg, 3);
        enum { N = 6 };
        float xs[N * 3], ys[N];
        et_rng r = et_rng_from_seed(31 + (uint64_t)hl);
        fd_fill(xs, N * 3, &r, 1.0f);
        fd_fill(ys, N, &r, 1.0f);
        int64_t np = mlp_param_count(m);
        float *grad = malloc((size_t)np * sizeof *grad);
        double loss;
        char *err = NULL;
        cr_assert_eq(mlp_loss_grad(m, xs, ys, N, &loss, grad, &err), 0, "%s", err ? err : "");
        grad_case c = {m, xs, ys, N};
        cr_assert_float_eq(loss, case_loss(&c), 1e-12);
        double e = fd_check(case_loss, &c, mlp_params(m), grad, np, np, 1e-3f);
        cr_assert_lt(e, TOL, "hidden_layers %d: relative gradient error %g", (int)hl, e);
        /* a wrong gradient would be caught: flip one entry */
        grad[np / 2] += 0.5f + fabsf(grad[np / 2]);
        cr_assert_gt(fd_check(case_loss, &c, mlp_params(m), grad, np, np, 1e-3f), TOL);
        free(grad);
        mlp_destroy(m);
    }
}

/* A latency-like target of HAT-style features: embed dim, layers, mean FFN
 * dim, mean heads; x (n, 4), y (n) in "ms". */
enum { LF = 4 };
static void synth_latency(int64_t n, uint64_t seed, float *x, float *y)
{
    static const float embed[] = {512, 640}, ffn[] = {1024, 2048, 3072}, heads[] = {4, 8};
    et_rng r = et_rng_from_seed(seed);
    for (int64_t i = 0; i < n; i++) {
        float e = embed[et_rng_below(&r, 2)];
        int64_t layers = 1 + (int64_t)et_rng_below(&r, 6);
        double f = 0, h = 0;
        for (int64_t l = 0; l < layers; l++) {
            f += ffn[et_rng_below(&r, 3)];
            h += heads[et_rng_below(&r, 2)];
        }
        f /= (double)layers;
        h /= (double)layers;
        float *row = x + i * LF;
        row[0] = e;
        row[1] = (float)layers;
        row[2] = (float)f;
        row[3] = (float)h;
        /* per layer: matmul cost grows with E^2 and E x FFN, attention with heads */
        double per_layer = 1.5e-5 * e * e + 1.2e-6 * e * f + 0.4 * h;
        y[i] = (float)(12.0 + layers * per_layer + 0.02 * et_rng_normal(&r));
    }
}

static mlp_config fit_config(uint64_t seed)
{
    mlp_config cfg = small_config(64, 2, seed);
    cfg.lr = 1e-3;
    cfg.batch = 64;
    cfg.steps = 2500;
    return cfg;
}

Test(mlp, fits_latency_like_function)
{
    enum { N = 800, NT = 200 };
    static float x[N * LF], y[N], xt[NT * LF], yt[NT];
    synth_latency(N, 1, x, y);
    synth_latency(NT, 2, xt, yt);
    double mean = 0, var = 0;
    for (int i = 0; i < NT; i++)
        mean += yt[i] / NT;
    for (int i = 0; i < NT; i++)
        var += (yt[i] - mean) * (yt[i] - mean) / NT;
    mlp_config cfg = fit_config(3);
    mlp *m = NULL;
    char *err = NULL;
    cr_assert_eq(mlp_train(&cfg, x, y, N, LF, NULL, &m, &err), 0, "%s", err ? err : "");
    double rmse, tau;
    cr_assert_eq(mlp_evaluate(m, xt, yt, NT, &rmse, &tau, &err), 0, "%s", err ? err : "");
    /* the spread of the targets is several ms; the fit is within a few % of it */
    cr_assert_lt(rmse, 0.05 * sqrt(var), "held-out RMSE %g ms (target std %g ms)", rmse,
                 sqrt(var));
    cr_assert_gt(tau, 0.9, "held-out tau %g", tau);
    cr_assert(mlp_train_loss(m) < 1e-3, "training loss %g", mlp_train_loss(m));
    /* the scales came from the training rows */
    const float *xs = mlp_x_scale(m);
    cr_assert_eq(xs[0], 640.0f);
    cr_assert_eq(xs[1], 6.0f);
    float ymax = 0;
    for (int i = 0; i < N; i++)
        ymax = fmaxf(ymax, fabsf(y[i]));
    cr_assert_eq(mlp_y_scale(m), ymax);
    mlp_destroy(m);
}

Test(mlp, given_scales_are_kept)
{
    enum { N = 50 };
    static float x[N * LF], y[N];
    synth_latency(N, 9, x, y);
    mlp_config cfg = fit_config(4);
    cfg.steps = 5;
    float x_max[LF] = {1024, 12, 4096, 16};
    mlp *m = NULL;
    cr_assert_eq(mlp_train(&cfg, x, y, N, LF, x_max, &m, NULL), 0);
    cr_assert_eq(memcmp(mlp_x_scale(m), x_max, sizeof x_max), 0);
    mlp_destroy(m);
}

static uint8_t *train_saved(uint64_t seed, const float *x, const float *y, int64_t n,
                            size_t *len)
{
    mlp_config cfg = fit_config(seed);
    cfg.steps = 150;
    mlp *m = NULL;
    char *err = NULL;
    cr_assert_eq(mlp_train(&cfg, x, y, n, LF, NULL, &m, &err), 0, "%s", err ? err : "");
    uint8_t *buf = NULL;
    cr_assert_eq(mlp_save(m, &buf, len, &err), 0, "%s", err ? err : "");
    mlp_destroy(m);
    return buf;
}

Test(mlp, same_seed_same_model)
{
    enum { N = 200 };
    static float x[N * LF], y[N];
    synth_latency(N, 5, x, y);
    size_t l1, l2, l3;
    uint8_t *a = train_saved(7, x, y, N, &l1), *b = train_saved(7, x, y, N, &l2);
    uint8_t *c = train_saved(8, x, y, N, &l3);
    cr_assert(l1 == l2 && memcmp(a, b, l1) == 0, "two runs of one seed differ");
    cr_assert(l1 == l3 && memcmp(a, c, l1) != 0, "another seed gives the same model");
    free(a);
    free(b);
    free(c);
}

Test(mlp, save_load_round_trip)
{
    enum { N = 200 };
    static float x[N * LF], y[N], p1[N], p2[N];
    synth_latency(N, 6, x, y);
    size_t len;
    uint8_t *buf = train_saved(1, x, y, N, &len);
    mlp *m = NULL, *bad = NULL;
    char *err = NULL;
    cr_assert_eq(mlp_load(buf, len, &m, &err), 0, "%s", err ? err : "");
    /* save of the loaded model reproduces the bytes */
    uint8_t *again = NULL;
    size_t len2;
    cr_assert_eq(mlp_save(m, &again, &len2, NULL), 0);
    cr_assert(len2 == len && memcmp(buf, again, len) == 0);
    mlp *m2 = NULL;
    cr_assert_eq(mlp_load(again, len2, &m2, NULL), 0);
    cr_assert_eq(mlp_predict(m, x, N, p1, NULL), 0);
    cr_assert_eq(mlp_predict(m2, x, N, p2, NULL), 0);
    cr_assert_eq(memcmp(p1, p2, sizeof p1), 0);
    cr_assert_eq(mlp_train_loss(m), mlp_train_loss(m2));

    cr_assert_eq(mlp_load(buf, len - 4, &bad, &err), ET_STATUS_ERR_FORMAT);
    cr_assert(err && strstr(err, "truncated"), "%s", err ? err : "(none)");
    cr_assert_null(bad);
    free(err);
    err = NULL;
    buf[0] = 'X';
    cr_assert_eq(mlp_load(buf, len, &bad, &err), ET_STATUS_ERR_FORMAT);
    cr_assert_not_null(err);
    free(err);
    err = NULL;
    /* a NaN parameter */
    memcpy(again + len2 - 4, (const uint8_t[]){0x00, 0x00, 0xc0, 0x7f}, 4);
    cr_assert_eq(mlp_load(again, len2, &bad, &err), ET_STATUS_ERR_FORMAT);
    cr_assert(err && strstr(err, "non-finite"), "%s", err ? err : "(none)");
    free(err);
    free(buf);
    free(again);
    mlp_destroy(m);
    mlp_destroy(m2);
    mlp_destroy(NULL);
}

Test(mlp, refuses_bad_input)
{
    enum { N = 20 };
    float x[N * LF], y[N];
    synth_latency(N, 10, x, y);
    mlp_config cfg = fit_config(1);
    cfg.steps = 3;
    mlp *m = NULL;
    char *err = NULL;

    cr_assert_eq(mlp_train(&cfg, x, y, 0, LF, NULL, &m, &err), ET_STATUS_ERR_USAGE);
    cr_assert(err && strstr(err, "no rows"), "%s", err ? err : "(none)");
    free(err);
    err = NULL;

    x[5 * LF + 2] = NAN;
    cr_assert_eq(mlp_train(&cfg, x, y, N, LF, NULL, &m, &err), ET_STATUS_ERR_NUMERIC);
    cr_assert(err && strstr(err, "row 5, column 2"), "%s", err ? err : "(none)");
    free(err);
    err = NULL;
    x[5 * LF + 2] = 1024;
    y[7] = -INFINITY;
    cr_assert_eq(mlp_train(&cfg, x, y, N, LF, NULL, &m, &err), ET_STATUS_ERR_NUMERIC);
    cr_assert(err && strstr(err, "target"), "%s", err ? err : "(none)");
    free(err);
    err = NULL;
    y[7] = 20;

    float x_max[LF] = {640, 0, 3072, 8};
    cr_assert_eq(mlp_train(&cfg, x, y, N, LF, x_max, &m, &err), ET_STATUS_ERR_USAGE);
    cr_assert(err && strstr(err, "feature 1"), "%s", err ? err : "(none)");
    free(err);
    err = NULL;

    mlp_config bad = cfg;
    bad.lr = 0;
    cr_assert_eq(mlp_train(&bad, x, y, N, LF, NULL, &m, &err), ET_STATUS_ERR_USAGE);
    free(err);
    err = NULL;
    bad = cfg;
    bad.hidden = 0;
    cr_assert_eq(mlp_train(&bad, x, y, N, LF, NULL, &m, &err), ET_STATUS_ERR_USAGE);
    free(err);
    err = NULL;
    bad = cfg;
    bad.batch = 0;
    cr_assert_eq(mlp_train(&bad, x, y, N, LF, NULL, &m, &err), ET_STATUS_ERR_USAGE);
    free(err);
    err = NULL;
    cr_assert_null(m);

    /* a huge learning rate blows up and says so */
    bad = cfg;
    bad.lr = 1e30;
    bad.steps = 50;
    int rc = mlp_train(&bad, x, y, N, LF, NULL, &m, &err);
    cr_assert_eq(rc, ET_STATUS_ERR_NUMERIC, "rc %d", rc);
    cr_assert(err && strstr(err, "diverged"), "%s", err ? err : "(none)");
    cr_assert_null(m);
    free(err);
    err = NULL;

    cr_assert_eq(mlp_train(&cfg, x, y, N, LF, NULL, &m, &err), 0, "%s", err ? err : "");
    float out[2], row[2 * LF] = {512, 2, 1024, 4, 512, 2, INFINITY, 4};
    cr_assert_eq(mlp_predict(m, row, 2, out, &err), ET_STATUS_ERR_NUMERIC);
    cr_assert(err && strstr(err, "row 1, column 2"), "%s", err ? err : "(none)");
    free(err);
    err = NULL;
    double rmse, tau;
    cr_assert_eq(mlp_evaluate(m, x, y, 0, &rmse, &tau, &err), ET_STATUS_ERR_USAGE);
    free(err);
    mlp_destroy(m);
}
