/* Engine kernels: the BLAS linear against its naive reference on supernet
 * slices, and every backward against finite differences. Gradient tolerance:
 * relative L2 error <= 1e-2 with float kernels and h = 1e-2 (float rounding
 * of the loss bounds the achievable error near 1e-3). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/arch.h>

#include "fdcheck.h"
#include "layers.h"

#define TOL 1e-2

Test(layers, linear_blas_equals_naive_on_slices)
{
    /* a (8 x 12) slice of a (16 x 20) weight, inputs with ld 15 > C */
    enum { N = 7, C = 12, OC = 8, LDW = 20, LDI = 15, LDO = 11 };
    et_rng r = et_rng_from_seed(1);
    float w[16 * LDW], b[16], x[N * LDI], y1[N * LDO], y2[N * LDO];
    fd_fill(w, 16 * LDW, &r, 1);
    fd_fill(b, 16, &r, 1);
    fd_fill(x, N * LDI, &r, 1);
    et_linear_forward(y1, LDO, x, LDI, w, LDW, b, N, C, OC);
    et_linear_forward_naive(y2, LDO, x, LDI, w, LDW, b, N, C, OC);
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++)
            cr_assert_float_eq(y1[i * LDO + o], y2[i * LDO + o], 1e-4);
    float g[N * LDO], dx1[N * LDI] = {0}, dx2[N * LDI] = {0}, dw1[16 * LDW] = {0},
                      dw2[16 * LDW] = {0}, db1[16] = {0}, db2[16] = {0};
    fd_fill(g, N * LDO, &r, 1);
    et_linear_backward(dx1, LDI, dw1, LDW, db1, g, LDO, x, LDI, w, LDW, N, C, OC);
    et_linear_backward_naive(dx2, LDI, dw2, LDW, db2, g, LDO, x, LDI, w, LDW, N, C, OC);
    for (int i = 0; i < N * LDI; i++)
        cr_assert_float_eq(dx1[i], dx2[i], 1e-4);
    for (int i = 0; i < 16 * LDW; i++) {
        cr_assert_float_eq(dw1[i], dw2[i], 1e-4);
        if (i / LDW >= OC || i % LDW >= C)
            cr_assert_eq(dw1[i], 0.0f, "gradient outside the slice at %d", i);
    }
    for (int i = 0; i < 16; i++)
        cr_assert_float_eq(db1[i], db2[i], 1e-4);
}

typedef struct ln_ctx {
    float *x, *g, *b, *w, *y, *mean, *rstd;
    int n, c;
} ln_ctx;

static double ln_loss(void *p)
{
    ln_ctx *t = p;
    et_layernorm_forward(t->y, t->mean, t->rstd, t->x, t->g, t->b, t->n, t->c);
    return fd_dot(t->w, t->y, (int64_t)t->n * t->c);
}

Test(layers, layernorm_gradients)
{
    enum { N = 5, C = 16 };
    et_rng r = et_rng_from_seed(2);
    float x[N * C], g[C], b[C], w[N * C], y[N * C], mean[N], rstd[N];
    fd_fill(x, N * C, &r, 2);
    fd_fill(g, C, &r, 1);
    fd_fill(b, C, &r, 1);
    fd_fill(w, N * C, &r, 1);
    ln_ctx t = {x, g, b, w, y, mean, rstd, N, C};
    ln_loss(&t);
    float dx[N * C] = {0}, dg[C] = {0}, db[C] = {0};
    et_layernorm_backward(dx, dg, db, w, x, g, mean, rstd, N, C);
    cr_assert_lt(fd_check(ln_loss, &t, x, dx, N * C, 1000, 1e-2f), TOL);
    cr_assert_lt(fd_check(ln_loss, &t, g, dg, C, 1000, 1e-2f), TOL);
    cr_assert_lt(fd_check(ln_loss, &t, b, db, C, 1000, 1e-2f), TOL);
    /* the normalised rows have mean 0 and variance 1 before the affine map */
    float one[C], zero[C] = {0};
    for (int k = 0; k < C; k++)
        one[k] = 1;
    et_layernorm_forward(y, mean, rstd, x, one, zero, N, C);
    for (int i = 0; i < N; i++) {
        double m = 0, v = 0;
        for (int k = 0; k < C; k++)
            m += y[i * C + k];
        for (int k = 0; k < C; k++)
            v += (y[i * C + k] - m / C) * (y[i * C + k] - m / C);
        cr_assert_float_eq(m / C, 0.0, 1e-5);
        cr_assert_float_eq(v / C, 1.0, 1e-3);
    }
}

typedef struct act_ctx {
    int kind;
    float *x, *w, *y;
    int n;
} act_ctx;

static double act_loss(void *p)
{
    act_ctx *t = p;
    et_activation_forward(t->kind, t->y, t->x, t->n);
    return fd_dot(t->w, t->y, t->n);
}

Test(layers, activation_values_and_gradients)
{
    enum { N = 64 };
    et_rng r = et_rng_from_seed(3);
    float x[N], w[N], y[N];
    fd_fill(x, N, &r, 2);
    fd_fill(w, N, &r, 1);
    for (int i = 0; i < N; i++)
        if (fabsf(x[i]) < 0.05f)
            x[i] = 0.5f; /* keep relu kinks away from the FD step */
    for (int kind = 0; kind <= ET_ACTIVATION_GELU_ERF; kind++) {
        act_ctx t = {kind, x, w, y, N};
        float dx[N] = {0};
        act_loss(&t);
        et_activation_backward(kind, dx, x, w, N);
        cr_assert_lt(fd_check(act_loss, &t, x, dx, N, N, 1e-3f), TOL, "activation %d", kind);
    }
    float v[3] = {-1.0f, 0.0f, 2.0f}, o[3];
    et_activation_forward(ET_ACTIVATION_SQUARED_RELU, o, v, 3);
    cr_assert(o[0] == 0 && o[1] == 0 && o[2] == 4.0f);
    et_activation_forward(ET_ACTIVATION_GELU, o, v, 3);
    cr_assert_float_eq(o[2], 1.9545977f, 1e-5); /* tanh-approximated GELU(2) */
    cr_assert_float_eq(o[0], -0.158808f, 1e-5);
    et_activation_forward(ET_ACTIVATION_GELU_ERF, o, v, 3);
    cr_assert_float_eq(o[2], 1.9544997f, 1e-6); /* 2 Phi(2) */
    cr_assert_float_eq(o[0], -0.1586553f, 1e-6); /* -Phi(-1) */
    cr_assert(o[1] == 0.0f);
}

/* The exact GELU against its naive reference x (1 + erf(x / sqrt 2)) / 2 in
 * double precision, over [-12, 12]: within 3e-7 absolute and 1e-6 relative
 * (A&S 7.1.26 has 1.5e-7 on erf; float rounding adds the rest). */
Test(layers, gelu_erf_matches_libm_erf)
{
    enum { N = 2401 };
    float x[N], y[N];
    for (int i = 0; i < N; i++)
        x[i] = -12.0f + 0.01f * (float)i;
    et_activation_forward(ET_ACTIVATION_GELU_ERF, y, x, N);
    for (int i = 0; i < N; i++) {
        double ref = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
        cr_assert_leq(fabs(y[i] - ref), 3e-7 + 1e-6 * fabs(ref), "x %g: %.9g vs %.9g", x[i], y[i], ref);
    }
}

typedef struct ce_ctx {
    float *z, *dz;
    int32_t *t;
    int n, v;
    float eps;
} ce_ctx;

static double ce_loss(void *p)
{
    ce_ctx *c = p;
    return et_cross_entropy(NULL, c->z, c->v, c->t, c->n, c->v, c->eps, 1.0f, NULL);
}

Test(layers, cross_entropy_smoothing_gradients_and_ignore)
{
    enum { N = 6, V = 9 };
    et_rng r = et_rng_from_seed(4);
    float z[N * V], dz[N * V];
    int32_t t[N] = {0, 3, -1, 8, 2, 2};
    fd_fill(z, N * V, &r, 2);
    for (int s = 0; s < 2; s++) {
        ce_ctx c = {z, dz, t, N, V, s ? 0.1f : 0.0f};
        int64_t counted;
        double l = et_cross_entropy(dz, z, V, t, N, V, c.eps, 1.0f, &counted);
        cr_assert_eq(counted, 5);
        cr_assert_float_eq(l, ce_loss(&c), 1e-9);
        cr_assert_lt(fd_check(ce_loss, &c, z, dz, N * V, 1000, 1e-2f), TOL);
        for (int k = 0; k < V; k++)
            cr_assert_eq(dz[2 * V + k], 0.0f, "ignored row has no gradient");
    }
    /* hand case: two classes, equal logits, eps 0.2: loss = log 2 */
    float z2[2] = {1.0f, 1.0f};
    int32_t t2[1] = {0};
    cr_assert_float_eq(et_cross_entropy(NULL, z2, 2, t2, 1, 2, 0.2f, 1.0f, NULL), log(2.0), 1e-7);
}

typedef struct mp_ctx {
    float *x, *w, *y;
    int32_t *len;
} mp_ctx;

static double mp_loss(void *p)
{
    mp_ctx *m = p;
    et_meanpool_forward(m->y, m->x, m->len, 3, 5, 4);
    return fd_dot(m->w, m->y, 12);
}

Test(layers, meanpool_gradients_respect_lengths)
{
    et_rng r = et_rng_from_seed(5);
    float x[60], w[12], y[12], dx[60] = {0};
    int32_t len[3] = {5, 2, 3};
    fd_fill(x, 60, &r, 1);
    fd_fill(w, 12, &r, 1);
    mp_ctx m = {x, w, y, len};
    mp_loss(&m);
    et_meanpool_backward(dx, w, len, 3, 5, 4);
    cr_assert_lt(fd_check(mp_loss, &m, x, dx, 60, 60, 1e-2f), TOL);
    cr_assert_eq(dx[(1 * 5 + 3) * 4], 0.0f, "padded position gets no gradient");
}

Test(layers, dropout_mask_is_regenerated_exactly)
{
    enum { N = 10000 };
    float *x = malloc(N * sizeof *x), *g = malloc(N * sizeof *g);
    for (int i = 0; i < N; i++)
        x[i] = g[i] = 1.0f;
    et_dropout_forward(x, N, 0.25f, 9, 3);
    et_dropout_backward(g, N, 0.25f, 9, 3);
    int kept = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(x[i], g[i], "same mask forward and backward");
        cr_assert(x[i] == 0.0f || fabsf(x[i] - 1.0f / 0.75f) < 1e-6f);
        kept += x[i] != 0.0f;
    }
    cr_assert(fabs(kept / (double)N - 0.75) < 0.02, "kept %d", kept);
    for (int i = 0; i < N; i++)
        g[i] = 1.0f;
    et_dropout_forward(g, N, 0.25f, 9, 4);
    cr_assert_neq(memcmp(x, g, N * sizeof *x), 0, "another stream, another mask");
    free(x);
    free(g);
}

Test(layers, fast_exp_matches_libm)
{
    double worst = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.001953125f) {
        double want = exp((double)x), got = et_expf(x);
        double rel = fabs(got - want) / want;
        worst = rel > worst ? rel : worst;
    }
    cr_assert_lt(worst, 3e-7, "worst relative error %g", worst);
    cr_assert_eq(et_expf(-1000.0f) < 2e-38f, 1);
    cr_assert_eq(et_expf(0.0f), 1.0f);
}
