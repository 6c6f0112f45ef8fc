/* Zero-cost proxies (src/zerocost.c) and the engine gradients they rest
 * on: the input gradient and the backward from given output gradients,
 * both by finite differences (relative L2 error <= 2e-2, h = 1e-2, float
 * kernels); the symmetric eigensolver on known spectra (1e-9); each score
 * against its formula computed here from the engine's gradients (1e-9
 * relative), seeded repeatability; LTS on a hand-counted arch. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_ref.h"
#include "fdcheck.h"
#include "hostimpl.h"
#include "inifile.h"
#include "model.h"
#include "space.h"
#include "testutil.h"
#include "zerocost.h"

static const et_attn_impl ref_impl[1] = {{&attn_ref_vtable, NULL}};

enum { B = 4, LEN = 3, IN = 5, C = 3 };

#define SPACE                                                                                  \
    "encoder_embed_dim = 8\nencoder_layers = 2\nencoder_ffn_dim = 12\nencoder_heads = 2\n"      \
    "encoder_activation = gelu\nhead_dim = 4\nnorm = pre\npooling = mean\n"

static et_space space;
static et_host host;

typedef struct zfix {
    et_model *m;
    et_arch a;
    et_batch b;
    float x[B * LEN * IN], w[B * C];
    int32_t y[B];
} zfix;

static void setup_fix(zfix *f)
{
    space = tu_space(SPACE);
    et_host_init(&host, 5, 1, &space);
    et_model_config cfg = {.input_dim = IN, .max_len = LEN, .num_classes = C, .max_batch = B,
                           .label_smoothing = 0.1f, .enc_attention = ref_impl};
    char *err = NULL;
    cr_assert_eq(et_model_create(&space, &cfg, &host, &f->m, &err), 0, "%s", err);
    et_model_init(f->m, 3);
    et_arch_largest(&space, &f->a);
    et_rng r = et_rng_from_seed(8);
    fd_fill(f->x, B * LEN * IN, &r, 1.0f);
    fd_fill(f->w, B * C, &r, 1.0f);
    for (int i = 0; i < B; i++)
        f->y[i] = i % C;
    memset(&f->b, 0, sizeof f->b);
    f->b.size = B;
    f->b.src_len = LEN;
    f->b.src_vec = f->x;
    f->b.labels = f->y;
}

/* R = sum w * logits */
static double weighted_outputs(void *p)
{
    zfix *f = p;
    double loss;
    char *err = NULL;
    cr_assert_eq(et_model_forward(f->m, &f->b, 0, 0, 0, &loss, NULL, &err), 0, "%s", err);
    return fd_dot(f->w, et_model_logits(f->m), B * C);
}

Test(zerocost, input_gradient_and_output_backward_match_finite_differences)
{
    zfix f;
    setup_fix(&f);
    char *err = NULL;
    et_model_want_input_grad(f.m, 1);
    cr_assert_eq(et_model_bind(f.m, &f.a, B, LEN, &err), 0, "%s", err);
    et_model_zero_grads(f.m);
    weighted_outputs(&f);
    cr_assert_eq(et_model_backward_outputs(f.m, f.w, &err), 0, "%s", err);
    int64_t per;
    const float *dx = et_model_input_grad(f.m, &per);
    cr_assert_eq(per, LEN * IN);
    static float gx[B * LEN * IN];
    memcpy(gx, dx, sizeof gx);
    double e = fd_check(weighted_outputs, &f, f.x, gx, B * LEN * IN, 60, 1e-2f);
    cr_assert_lt(e, 2e-2, "input gradient: relative error %g", e);
    /* and a weight tensor's gradient from the same backward */
    int32_t nt;
    const et_tensor *t = et_model_tensors(f.m, &nt);
    float *p = et_model_params(f.m, NULL), *g = et_model_grads(f.m, NULL);
    for (int32_t i = 0; i < nt; i++)
        if (!strcmp(t[i].name, "fc1.weight")) {
            int64_t n = (int64_t)t[i].rows * t[i].cols;
            float *copy = malloc(sizeof *copy * (size_t)n);
            memcpy(copy, g + t[i].offset, sizeof *copy * (size_t)n);
            e = fd_check(weighted_outputs, &f, p + t[i].offset, copy, n, 40, 1e-2f);
            free(copy);
            cr_assert_lt(e, 2e-2, "fc1.weight: relative error %g", e);
            break;
        }
    et_model_destroy(f.m);
}

Test(zerocost, eigenvalues_of_known_matrices)
{
    double a[4] = {2, 1, 1, 2}, ev[3];
    et_sym_eigenvalues(a, 2, ev);
    double lo = fmin(ev[0], ev[1]), hi = fmax(ev[0], ev[1]);
    cr_assert_float_eq(lo, 1.0, 1e-9);
    cr_assert_float_eq(hi, 3.0, 1e-9);
    /* Q diag(1, 4, 9) Q^T for a rotation Q: the spectrum comes back */
    double c = cos(0.3), s = sin(0.3), d[3] = {1, 4, 9};
    double q[9] = {c, -s, 0, s * 0.8, c * 0.8, -0.6, s * 0.6, c * 0.6, 0.8}, m[9] = {0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++)
                m[i * 3 + j] += q[i * 3 + k] * d[k] * q[j * 3 + k];
    et_sym_eigenvalues(m, 3, ev);
    double sorted[3] = {ev[0], ev[1], ev[2]};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (sorted[j] < sorted[i]) {
                double t = sorted[i];
                sorted[i] = sorted[j];
                sorted[j] = t;
            }
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(sorted[i], d[i], 1e-9);
}

/* The formulas, from the engine's own gradients at the same init. */
static double by_hand(zfix *f, int kind)
{
    char *err = NULL;
    et_model_init(f->m, 77);
    cr_assert_eq(et_model_bind(f->m, &f->a, B, LEN, &err), 0, "%s", err);
    int64_t n;
    float *p = et_model_params(f->m, &n);
    static float ones[B * LEN * IN];
    et_batch x = f->b;
    if (kind == ET_ZC_SYNFLOW) {
        for (int64_t i = 0; i < n; i++)
            p[i] = fabsf(p[i]);
        for (int i = 0; i < B * LEN * IN; i++)
            ones[i] = 1.0f;
        x.src_vec = ones;
    }
    et_model_zero_grads(f->m);
    double loss;
    cr_assert_eq(et_model_forward(f->m, &x, 0, 0, 0, &loss, NULL, &err), 0, "%s", err);
    if (kind == ET_ZC_SYNFLOW)
        cr_assert_eq(et_model_backward_outputs(f->m, NULL, &err), 0, "%s", err);
    else
        cr_assert_eq(et_model_backward(f->m, 1.0f / B, &err), 0, "%s", err);
    const float *g = et_model_grads(f->m, NULL);
    int32_t nt;
    const et_tensor *t = et_model_tensors(f->m, &nt);
    double total = 0;
    for (int32_t i = 0; i < nt; i++) {
        if (!t[i].decay)
            continue;
        double sq = 0;
        for (int64_t k = 0; k < (int64_t)t[i].rows * t[i].cols; k++) {
            double w = p[t[i].offset + k], d = g[t[i].offset + k];
            sq += d * d;
            total += kind == ET_ZC_SNIP ? fabs(w * d) : kind == ET_ZC_SYNFLOW ? w * d : 0;
        }
        if (kind == ET_ZC_GRAD_NORM)
            total += sqrt(sq);
    }
    return total;
}

Test(zerocost, scores_follow_their_formulas_and_repeat)
{
    zfix f;
    setup_fix(&f);
    char *err = NULL;
    for (int k = ET_ZC_GRAD_NORM; k <= ET_ZC_SYNFLOW; k++) {
        double s1, s2;
        cr_assert_eq(et_zerocost(f.m, &f.a, &f.b, k, 77, &s1, &err), 0, "%s", err);
        cr_assert_eq(et_zerocost(f.m, &f.a, &f.b, k, 77, &s2, &err), 0, "%s", err);
        cr_assert_eq(s1, s2, "%s repeats", et_zc_kind_name(k));
        double want = by_hand(&f, k);
        cr_assert_float_eq(s1, want, 1e-9 * fabs(want) + 1e-12, "%s: %g against %g",
                           et_zc_kind_name(k), s1, want);
        cr_assert_gt(s1, 0.0, "%s is positive here", et_zc_kind_name(k));
    }
    double j1, j2;
    cr_assert_eq(et_zerocost(f.m, &f.a, &f.b, ET_ZC_JACOB_COV, 77, &j1, &err), 0, "%s", err);
    cr_assert_eq(et_zerocost(f.m, &f.a, &f.b, ET_ZC_JACOB_COV, 78, &j2, &err), 0, "%s", err);
    cr_assert(isfinite(j1) && isfinite(j2));
    cr_assert_neq(j1, j2, "another init gives another jacob_cov");
    cr_assert_eq(et_zc_kind_parse("snip"), ET_ZC_SNIP);
    cr_assert_eq(et_zc_kind_parse("nope"), -1);
    et_model_destroy(f.m);
}

Test(zerocost, lts_counts_the_non_embedding_parameters)
{
    zfix f;
    setup_fix(&f);
    char *err = NULL;
    cr_assert_eq(et_model_bind(f.m, &f.a, B, LEN, &err), 0, "%s", err);
    /* per layer: ln1 2e, qkv 3qe + 3q, proj eq + e, ln2 2e, fc1 fe + f, fc2 ef + e;
     * e 8, q 8 (2 heads x 4), f 12; final LN 2e */
    double e = 8, q = 8, fdim = 12;
    double layer = 2 * e + 3 * q * e + 3 * q + e * q + e + 2 * e + fdim * e + fdim + e * fdim + e;
    cr_assert_float_eq(et_zerocost_lts(f.m), (2 * layer + 2 * e) / 1e6, 1e-12);
    et_model_destroy(f.m);
}
