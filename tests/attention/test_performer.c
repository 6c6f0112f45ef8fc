/* Tests of the Performer FAVOR+ attention plugin (plugins/attention/
 * performer.c): the generic checks of attn_check in every mode, a naive
 * double evaluation with W rebuilt from the documented recipe, convergence
 * to exact softmax attention as the features grow, seeds and redraws of W,
 * the causal stabiliser, padded keys, and refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/attention.h>
#include <etnas/rng.h>

#include "attn_check.h"
#include "attn_suite.h"

const et_plugin_descriptor *etnas_plugin(void);

/* Stated tolerances (scaled error max|a-b| / max(1, max|ref|) unless noted). */
#define TOL_REFERENCE 2e-6   /* fp32 plugin (float W, expf) vs double formulas */
#define TOL_GRAD 2e-3        /* attn_check_grad: central differences of the fp32 forward */
#define TOL_FROZEN_GRAD 1e-5 /* fp32 backward vs double differences of the reference */
#define FD_STEP 2.5e-3       /* step of attn_check_grad relative to the input scale */
#define TOL_DECODE 1e-5      /* spec: incremental = teacher-forced to 1e-5 */
#define TOL_EXACT 0.0        /* causality, threads, seeds: the same float operations */
#define TOL_PADDING 1e-6     /* longer rows let BLAS block differently: last bits move */

static const int32_t PAD2[2] = {5, 3};
static const int32_t PAD3[3] = {6, 2, 4};
static const int32_t PAD_LONG[2] = {97, 130}; /* padding over several 64-row chunks */

/* ---------------------------------------------------------------- reference */

/* What the naive evaluation needs to know of an instance. */
typedef struct favor_ref {
    uint64_t seed;
    int64_t draw;
    int32_t m;
    int ortho_scaling;
    double eps;
    /* NULL-able (B,H,L) and (B,H): where the stabilisers go, or with
     * `frozen` set, where they come from instead of their rules. */
    double *cq, *ck;
    int frozen;
} favor_ref;

/* W (m,d) from the recipe in performer.c's header comment, written
 * independently: classical Gram-Schmidt, all in double. */
static double *ref_draw(const favor_ref *f, int32_t d)
{
    int32_t m = f->m;
    double *w = malloc((size_t)m * d * sizeof *w), *g = malloc((size_t)d * d * sizeof *g);
    double *proj = malloc((size_t)d * sizeof *proj);
    cr_assert(w && g && proj);
    et_rng root = et_rng_from_seed(f->seed);
    et_rng rng = et_rng_split(&root, (uint64_t)f->draw);
    for (int32_t m0 = 0; m0 < m; m0 += d) {
        for (int32_t i = 0; i < d * d; i++)
            g[i] = et_rng_normal(&rng);
        for (int32_t i = 0; i < d; i++) {
            double *gi = g + i * d;
            for (int32_t j = 0; j < i; j++) {
                proj[j] = 0.0;
                for (int32_t c = 0; c < d; c++)
                    proj[j] += gi[c] * g[j * d + c];
            }
            for (int32_t j = 0; j < i; j++)
                for (int32_t c = 0; c < d; c++)
                    gi[c] -= proj[j] * g[j * d + c];
            double n = 0.0;
            for (int32_t c = 0; c < d; c++)
                n += gi[c] * gi[c];
            for (int32_t c = 0; c < d; c++)
                gi[c] /= sqrt(n);
        }
        for (int32_t i = 0; i < d && m0 + i < m; i++) {
            double scale = sqrt((double)d);
            if (f->ortho_scaling == 0) {
                double sq = 0.0;
                for (int32_t c = 0; c < d; c++) {
                    double z = et_rng_normal(&rng);
                    sq += z * z;
                }
                scale = sqrt(sq);
            }
            for (int32_t c = 0; c < d; c++)
                w[(m0 + i) * d + c] = scale * g[i * d + c];
        }
    }
    free(g);
    free(proj);
    return w;
}

/* u = W d^(-1/4) x (m) and h = |d^(-1/4) x|^2 / 2 of one row. */
static double ref_project(const double *w, int32_t m, int32_t d, const float *x, double *u)
{
    double s = pow(d, -0.25), h = 0.0;
    for (int32_t c = 0; c < d; c++)
        h += 0.5 * (s * x[c]) * (s * x[c]);
    for (int32_t r = 0; r < m; r++) {
        u[r] = 0.0;
        for (int32_t c = 0; c < d; c++)
            u[r] += w[r * d + c] * s * x[c];
    }
    return h;
}

static double ref_max(const double *u, int64_t n)
{
    double c = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        c = fmax(c, u[i]);
    return c;
}

/* q (B,H,L,d), k (B,H,S,d), v (B,H,S,dv) -> out (B,H,L,dv) */
static void ref_performer(void *ctx, const et_attn_shape *s, const float *q, const float *k,
                          const float *v, double *out)
{
    const favor_ref *f = ctx;
    int32_t L = s->len_q, S = s->len_k, d = s->dim_qk, dv = s->dim_v, m = f->m;
    double *w = ref_draw(f, d);
    double bound = 0.0;
    for (int32_t r = 0; r < m; r++) {
        double n = 0.0;
        for (int32_t c = 0; c < d; c++)
            n += w[r * d + c] * w[r * d + c];
        bound = fmax(bound, n / 2);
    }
    double *uq = malloc((size_t)L * m * sizeof *uq), *uk = malloc((size_t)S * m * sizeof *uk);
    double *hq = malloc((size_t)L * sizeof *hq), *hk = malloc((size_t)S * sizeof *hk);
    double *num = malloc((size_t)dv * sizeof *num);
    cr_assert(uq && uk && hq && hk && num);
    double ratio = 1.0 / sqrt(m);
    for (int32_t b = 0; b < s->batch; b++)
        for (int32_t h = 0; h < s->heads; h++) {
            int64_t bh = (int64_t)b * s->heads + h;
            int32_t valid = s->key_len ? s->key_len[b] : S;
            for (int32_t i = 0; i < L; i++)
                hq[i] = ref_project(w, m, d, q + (bh * L + i) * d, uq + (int64_t)i * m);
            for (int32_t j = 0; j < valid; j++)
                hk[j] = ref_project(w, m, d, k + (bh * S + j) * d, uk + (int64_t)j * m);
            double ck = 0.0;
            if (valid > 0 && s->mode != ET_ATTN_MODE_CAUSAL)
                ck = ref_max(uk, (int64_t)valid * m);
            else if (valid > 0)
                ck = fmax(ref_max(uk, m), bound - 60.0);
            if (f->ck && f->frozen)
                ck = f->ck[bh];
            else if (f->ck)
                f->ck[bh] = ck;
            for (int32_t i = 0; i < L; i++) {
                const double *ui = uq + (int64_t)i * m;
                double cq = ref_max(ui, m), den = 0.0;
                if (f->cq && f->frozen)
                    cq = f->cq[bh * L + i];
                else if (f->cq)
                    f->cq[bh * L + i] = cq;
                memset(num, 0, (size_t)dv * sizeof *num);
                for (int32_t j = 0; j < valid; j++) {
                    if (s->mode == ET_ATTN_MODE_CAUSAL && j > i)
                        break;
                    const double *uj = uk + (int64_t)j * m;
                    double kij = 0.0;
                    for (int32_t r = 0; r < m; r++)
                        kij += ratio * (exp(ui[r] - hq[i] - cq) + f->eps) * ratio *
                               (exp(uj[r] - hk[j] - ck) + f->eps);
                    den += kij;
                    for (int32_t c = 0; c < dv; c++)
                        num[c] += kij * v[(bh * S + j) * dv + c];
                }
                for (int32_t c = 0; c < dv; c++)
                    out[(bh * L + i) * dv + c] = num[c] / fmax(den, 0.5 * f->eps * f->eps);
            }
        }
    free(w);
    free(uq);
    free(uk);
    free(hq);
    free(hk);
    free(num);
}

/* Exact softmax attention, bidirectional or cross, over the valid keys. */
static void ref_softmax(void *ctx, const et_attn_shape *s, const float *q, const float *k,
                        const float *v, double *out)
{
    (void)ctx;
    int32_t L = s->len_q, S = s->len_k, d = s->dim_qk, dv = s->dim_v;
    double *logit = malloc((size_t)S * sizeof *logit);
    cr_assert(logit);
    for (int64_t bh = 0; bh < (int64_t)s->batch * s->heads; bh++) {
        int32_t valid = s->key_len ? s->key_len[bh / s->heads] : S;
        for (int32_t i = 0; i < L; i++) {
            double mx = -INFINITY, z = 0.0;
            for (int32_t j = 0; j < valid; j++) {
                logit[j] = 0.0;
                for (int32_t c = 0; c < d; c++)
                    logit[j] += (double)q[(bh * L + i) * d + c] * k[(bh * S + j) * d + c];
                logit[j] /= sqrt(d);
                mx = fmax(mx, logit[j]);
            }
            for (int32_t j = 0; j < valid; j++)
                z += logit[j] = exp(logit[j] - mx);
            for (int32_t c = 0; c < dv; c++) {
                double acc = 0.0;
                for (int32_t j = 0; j < valid; j++)
                    acc += logit[j] * v[(bh * S + j) * dv + c];
                out[(bh * L + i) * dv + c] = valid > 0 ? acc / z : 0.0;
            }
        }
    }
    free(logit);
}

/* ---------------------------------------------------------------- helpers */

/* One forward of an open instance on the case's inputs into a fresh
 * (B,H,L,dv) buffer (free it). */
static float *run(attn_check_op *op, const attn_check_case *c)
{
    float *q, *k, *v;
    attn_check_inputs(c, &q, &k, &v);
    float *out = malloc((size_t)c->batch * c->heads * c->len_q * c->dim_v * sizeof *out);
    cr_assert(out);
    cr_assert_eq(attn_check_forward(op, c, q, k, v, out), 0);
    free(q);
    free(k);
    free(v);
    return out;
}

static double max_diff(const float *a, const float *b, int64_t n)
{
    double e = 0.0;
    for (int64_t i = 0; i < n; i++)
        e = fmax(e, fabs((double)a[i] - b[i]));
    return e;
}

static int64_t out_count(const attn_check_case *c)
{
    return (int64_t)c->batch * c->heads * c->len_q * c->dim_v;
}

/* One forward through the vtable on contiguous buffers, without prepare. */
static int forward_only(attn_check_op *op, const et_attn_shape *s, const float *q,
                        const float *k, const float *v, float *out, float *saved, float *work)
{
    int64_t L = s->len_q, S = s->len_k, d = s->dim_qk, dvn = s->dim_v;
    et_attn_view qv = {(float *)q, s->heads * L * d, L * d, d},
                 kv = {(float *)k, s->heads * S * d, S * d, d},
                 vv = {(float *)v, s->heads * S * dvn, S * dvn, dvn},
                 ov = {out, s->heads * L * dvn, L * dvn, dvn};
    return op->vt->forward(op->state, s, qv, kv, vv, ov, saved, work);
}

/* ---------------------------------------------------------------- tests */

Test(performer, descriptor)
{
    const char *const keys[] = {"features", "redraw_interval", "ortho_scaling", "eps", NULL};
    attn_suite_descriptor(etnas_plugin(), "performer", keys);
    const et_attention_vtable *vt = etnas_plugin()->vtable;
    cr_assert_not_null(vt->set_step);
}

/* An out-of-range value passed to create without the host's range check
 * is refused by the plugin itself with a message, and destroy after the
 * failed create is safe. */
Test(performer, create_refuses_bad_options)
{
    attn_suite_refuses_option(etnas_plugin(), "features=0", "features");
}

/* Every mode, padding included, against the formulas in double with W
 * rebuilt from the recipe: this pins the draw as well as the map. m is not
 * always a multiple of d, so the last block is truncated. */
Test(performer, reference_all_modes)
{
    struct {
        const char *overrides;
        int ortho_scaling;
        int32_t m;
        double eps;
        attn_check_case c;
    } cases[] = {
        {"features=20", 0, 20, 1e-6,
         {2, 2, 7, 7, 8, 5, ET_ATTN_MODE_BIDIRECTIONAL, PAD2, 0, 0, 1}},
        {"features=10,ortho_scaling=1", 1, 10, 1e-6,
         {2, 2, 6, 6, 4, 3, ET_ATTN_MODE_BIDIRECTIONAL, PAD2, 1, 0, 2}},
        {"features=24", 0, 24, 1e-6,
         {3, 2, 70, 70, 6, 5, ET_ATTN_MODE_CAUSAL, PAD3, 0, 0, 3}},
        {"features=24,eps=1e-3", 0, 24, 1e-3,
         {3, 2, 9, 9, 6, 5, ET_ATTN_MODE_CAUSAL, PAD3, 2, 0, 4}},
        {"features=16,eps=1e-4", 0, 16, 1e-4,
         {3, 2, 5, 7, 4, 6, ET_ATTN_MODE_CROSS, PAD3, 1, 0, 5}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        attn_check_op op = attn_suite_open(etnas_plugin(), cases[i].overrides, 2);
        favor_ref f = {op.host->seed, 0, cases[i].m, cases[i].ortho_scaling, cases[i].eps,
                       NULL, NULL, 0};
        double e = attn_check_reference(&op, &cases[i].c, ref_performer, &f);
        cr_expect_leq(e, TOL_REFERENCE, "case %zu: error %g", i, e);
        attn_check_op_close(&op);
    }
}

/* The generic check differentiates the forward as it runs, stabilisers
 * included; with eps ~ 0 they cancel exactly, so this checks the backward
 * formulas in every layout. The stabilisers at a working eps are the next
 * test's business. */
Test(performer, gradients_all_modes)
{
    const attn_suite_row rows[] = {
        {"features=16,eps=1e-12", {2, 2, 5, 5, 4, 3, ET_ATTN_MODE_BIDIRECTIONAL, PAD2, 0, 0, 11},
         NULL},
        {"features=16,eps=1e-12", {2, 2, 6, 6, 4, 3, ET_ATTN_MODE_CAUSAL, PAD2, 1, 0, 12}, NULL},
        {"features=8,eps=1e-12", {2, 1, 70, 70, 3, 2, ET_ATTN_MODE_CAUSAL, NULL, 2, 0.5, 13},
         NULL},
        {"features=12,eps=1e-12", {2, 2, 4, 6, 4, 3, ET_ATTN_MODE_CROSS, PAD2, 0, 0, 14}, NULL},
        {"features=8,eps=1e-12",
         {2, 1, 130, 130, 3, 2, ET_ATTN_MODE_BIDIRECTIONAL, PAD_LONG, 1, 0.5, 15}, NULL},
        {"features=8,eps=1e-12", {2, 1, 66, 130, 3, 2, ET_ATTN_MODE_CROSS, PAD_LONG, 0, 0.5, 16},
         NULL},
    };
    const attn_suite_check gradients = {.kind = ATTN_SUITE_GRAD, .threads = 2, .tol = TOL_GRAD,
                                        .h = FD_STEP};
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &gradients);
}

/* One forward and backward through the vtable on contiguous buffers. */
static void forward_backward(attn_check_op *op, const et_attn_shape *s, const float *q,
                             const float *k, const float *v, const float *dout, float *dq,
                             float *dk, float *dv)
{
    int64_t bh = (int64_t)s->batch * s->heads, L = s->len_q, S = s->len_k, d = s->dim_qk,
            dvn = s->dim_v;
    char *err = NULL;
    cr_assert_eq(op->vt->prepare(op->state, s, &err), 0, "%s", err ? err : "?");
    float *out = malloc((size_t)(bh * L * dvn) * sizeof *out);
    float *saved = malloc((size_t)op->vt->saved_floats(op->state, s) * sizeof *saved);
    float *work = malloc((size_t)op->vt->work_floats(op->state, s) * sizeof *work);
    cr_assert(out && saved && work);
    et_attn_view qv = {(float *)q, s->heads * L * d, L * d, d},
                 kv = {(float *)k, s->heads * S * d, S * d, d},
                 vv = {(float *)v, s->heads * S * dvn, S * dvn, dvn},
                 ov = {out, s->heads * L * dvn, L * dvn, dvn},
                 gv = {(float *)dout, s->heads * L * dvn, L * dvn, dvn},
                 dqv = {dq, s->heads * L * d, L * d, d}, dkv = {dk, s->heads * S * d, S * d, d},
                 dvv = {dv, s->heads * S * dvn, S * dvn, dvn};
    cr_assert_eq(op->vt->forward(op->state, s, qv, kv, vv, ov, saved, work), 0);
    cr_assert_eq(op->vt->backward(op->state, s, qv, kv, vv, ov, gv, saved, dqv, dkv, dvv, work),
                 0);
    free(out);
    free(saved);
    free(work);
}

/* sum_i w_i out_i of the double reference. */
static double ref_loss(favor_ref *f, const et_attn_shape *s, const float *q, const float *k,
                       const float *v, const float *w, double *out)
{
    ref_performer(f, s, q, k, v, out);
    double loss = 0.0;
    for (int64_t i = 0; i < (int64_t)s->batch * s->heads * s->len_q * s->dim_v; i++)
        loss += w[i] * out[i];
    return loss;
}

/* max|g - fd| / max|fd| over x, fd by central differences (step h) of the
 * double reference with the stabilisers frozen at their values for the
 * unperturbed inputs: the backward of the spec, where c is a constant. */
static double frozen_grad_error(favor_ref *f, const et_attn_shape *s, const float *q,
                                const float *k, const float *v, const float *w, float *x,
                                const float *g, int64_t n, double *out)
{
    const double h = 1e-3;
    double num = 0.0, mx = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = (float)(keep + h);
        double hi = x[i], lp = ref_loss(f, s, q, k, v, w, out);
        x[i] = (float)(keep - h);
        double lo = x[i], lm = ref_loss(f, s, q, k, v, w, out);
        x[i] = keep;
        double fd = (lp - lm) / (hi - lo);
        num = fmax(num, fabs(fd - g[i]));
        mx = fmax(mx, fabs(fd));
    }
    return num / mx;
}

/* At a working eps (1e-4, one reference's default) the stabilisers do not
 * cancel exactly, and backward treats them as constants (the reference's
 * stop-gradient): against differences of the double reference with the
 * stabilisers frozen it agrees to fp32 accuracy, far closer than to the
 * exact derivative (stabilisers moving) of the same cases. */
Test(performer, gradients_hold_stabilisers_constant)
{
    static const int32_t pad[2] = {4, 2};
    const int32_t modes[3] = {ET_ATTN_MODE_BIDIRECTIONAL, ET_ATTN_MODE_CAUSAL,
                              ET_ATTN_MODE_CROSS};
    for (int mi = 0; mi < 3; mi++) {
        attn_check_op op = attn_suite_open(etnas_plugin(), "features=16,eps=1e-4", 1);
        attn_check_case c = {2, 2, 5, 5, 3, 2, modes[mi], pad, 0, 0, 17};
        if (modes[mi] == ET_ATTN_MODE_CROSS)
            c.len_q = 3;
        et_attn_shape s = {c.batch, c.heads, c.len_q, c.len_k, c.dim_qk, c.dim_v, c.mode, pad};
        int64_t bh = 4, nq = bh * c.len_q * 3, nk = bh * c.len_k * 3, nv = bh * c.len_k * 2,
                no = bh * c.len_q * 2;
        float *q, *k, *v;
        attn_check_inputs(&c, &q, &k, &v);
        float *w = malloc((size_t)no * sizeof *w), *dq = malloc((size_t)nq * sizeof *dq),
              *dk = malloc((size_t)nk * sizeof *dk), *dv = malloc((size_t)nv * sizeof *dv);
        double *out = malloc((size_t)no * sizeof *out);
        double *cq = malloc((size_t)bh * c.len_q * sizeof *cq);
        double *ck = malloc((size_t)bh * sizeof *ck);
        cr_assert(w && dq && dk && dv && out && cq && ck);
        et_rng g = et_rng_from_seed(99);
        for (int64_t i = 0; i < no; i++)
            w[i] = (float)et_rng_normal(&g);
        forward_backward(&op, &s, q, k, v, w, dq, dk, dv);
        favor_ref f = {op.host->seed, 0, 16, 0, 1e-4, cq, ck, 0};
        ref_performer(&f, &s, q, k, v, out);
        f.frozen = 1;
        double e[3] = {frozen_grad_error(&f, &s, q, k, v, w, q, dq, nq, out),
                       frozen_grad_error(&f, &s, q, k, v, w, k, dk, nk, out),
                       frozen_grad_error(&f, &s, q, k, v, w, v, dv, nv, out)};
        cr_expect_leq(fmax(e[0], fmax(e[1], e[2])), TOL_FROZEN_GRAD, "mode %d: dq %g dk %g dv %g",
                      (int)modes[mi], e[0], e[1], e[2]);
        free(q), free(k), free(v), free(w), free(dq), free(dk), free(dv);
        free(out), free(cq), free(ck);
        attn_check_op_close(&op);
    }
}

/* Bidirectional and cross keys are mapped a chunk (64 rows) at a time, each
 * under the max of u so far; a chunk that raises it rescales what the
 * chunks before it summed. Keys that grow along the sequence raise it
 * chunk after chunk, and a large eps makes a wrong rescale of its share
 * show: the outputs still match the double formulas, whose key stabiliser
 * is the max over all valid keys. */
Test(performer, key_stabiliser_across_chunks)
{
    const int32_t modes[2] = {ET_ATTN_MODE_BIDIRECTIONAL, ET_ATTN_MODE_CROSS};
    for (int mi = 0; mi < 2; mi++) {
        attn_check_op op = attn_suite_open(etnas_plugin(), "features=16,eps=1e-2", 2);
        attn_check_case c = {2, 2, 130, 130, 4, 3, modes[mi], PAD_LONG, 0, 0, 101 + (uint64_t)mi};
        if (modes[mi] == ET_ATTN_MODE_CROSS)
            c.len_q = 37;
        et_attn_shape s = {c.batch, c.heads, c.len_q, c.len_k, c.dim_qk, c.dim_v, c.mode,
                           c.key_len};
        float *q, *k, *v;
        attn_check_inputs(&c, &q, &k, &v);
        for (int64_t bh = 0; bh < 4; bh++)
            for (int64_t j = 0; j < c.len_k; j++)
                for (int64_t t = 0; t < c.dim_qk; t++)
                    k[(bh * c.len_k + j) * c.dim_qk + t] *= 0.5f + (float)j / 40.0f;
        int64_t n = out_count(&c);
        float *out = malloc((size_t)n * sizeof *out);
        double *want = malloc((size_t)n * sizeof *want);
        cr_assert(out && want);
        char *err = NULL;
        cr_assert_eq(op.vt->prepare(op.state, &s, &err), 0, "%s", err ? err : "?");
        float *saved = malloc((size_t)op.vt->saved_floats(op.state, &s) * sizeof *saved);
        float *work = malloc((size_t)op.vt->work_floats(op.state, &s) * sizeof *work);
        cr_assert(saved && work);
        cr_assert_eq(forward_only(&op, &s, q, k, v, out, saved, work), 0);
        favor_ref f = {op.host->seed, 0, 16, 0, 1e-2, NULL, NULL, 0};
        ref_performer(&f, &s, q, k, v, want);
        double e = 0.0, mx = 1.0;
        for (int64_t i = 0; i < n; i++) {
            e = fmax(e, fabs(out[i] - want[i]));
            mx = fmax(mx, fabs(want[i]));
        }
        cr_expect_leq(e / mx, TOL_REFERENCE, "mode %d: error %g", (int)modes[mi], e / mx);
        free(q), free(k), free(v), free(out), free(want), free(saved), free(work);
        attn_check_op_close(&op);
    }
}

/* Features are made a chunk at a time and never kept whole: scratch does
 * not grow with the length, and saved state grows as L (den, plus one key
 * stabiliser per head). */
Test(performer, memory_does_not_grow_with_features)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), NULL, 2);
    for (int32_t mode = 0; mode < 3; mode++) {
        et_attn_shape a = {1, 4, 1024, 1024, 64, 64, mode, NULL};
        et_attn_shape b = a;
        b.len_q = b.len_k = 16384;
        cr_expect_eq(op.vt->work_floats(op.state, &a), op.vt->work_floats(op.state, &b),
                     "mode %d", (int)mode);
        cr_expect_eq(op.vt->saved_floats(op.state, &b), 4 * (16384 + 1));
    }
    attn_check_op_close(&op);
}

/* Padded keys leave the numerator, the denominator and the key stabiliser:
 * redrawing them 5x larger and appending more changes nothing. */
Test(performer, padding_invariance)
{
    const attn_suite_row rows[] = {
        {"features=32", {2, 2, 6, 6, 4, 3, ET_ATTN_MODE_BIDIRECTIONAL, PAD2, 0, 0, 21}, NULL},
        {"features=32", {3, 2, 5, 7, 4, 3, ET_ATTN_MODE_CROSS, PAD3, 1, 0, 22}, NULL},
        {"features=32", {2, 2, 6, 6, 4, 3, ET_ATTN_MODE_CAUSAL, PAD2, 2, 0, 23}, NULL},
    };
    const attn_suite_check padding = {.kind = ATTN_SUITE_PADDING, .threads = 1,
                                      .tol = TOL_PADDING, .extra = 3};
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &padding);
}

/* A large eps makes the stabiliser visible in the outputs, so a key
 * stabiliser that looked at later keys would move earlier rows here. */
Test(performer, causality)
{
    const attn_suite_row rows[] = {
        {"features=32,eps=1e-2", {2, 2, 9, 9, 8, 3, ET_ATTN_MODE_CAUSAL, PAD2, 0, 2.0, 31},
         NULL},
        {"features=64,eps=1e-3", {2, 2, 9, 9, 8, 3, ET_ATTN_MODE_CAUSAL, PAD2, 1, 2.0, 31},
         NULL},
    };
    const attn_suite_check causality = {.kind = ATTN_SUITE_CAUSALITY, .threads = 2,
                                        .tol = TOL_EXACT};
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &causality);
}

Test(performer, decode_equals_teacher_forcing)
{
    const attn_suite_row rows[] = {
        {"features=32", {2, 2, 11, 11, 4, 3, ET_ATTN_MODE_CAUSAL, NULL, 0, 0, 41}, NULL},
        {"features=40", {2, 2, 70, 70, 8, 3, ET_ATTN_MODE_CAUSAL, NULL, 1, 0, 42}, NULL},
        {"features=16,eps=1e-3", {1, 3, 5, 5, 6, 6, ET_ATTN_MODE_CAUSAL, NULL, 2, 1.5, 43},
         NULL},
    };
    const attn_suite_check decode = {.kind = ATTN_SUITE_DECODE, .threads = 2, .tol = TOL_DECODE};
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &decode);
}

/* Relative RMS distance of the plugin's output from exact softmax
 * attention on the same inputs. */
static double softmax_distance(attn_check_op *op, const attn_check_case *c)
{
    int64_t n = out_count(c);
    float *q, *k, *v, *out = malloc((size_t)n * sizeof *out);
    double *want = malloc((size_t)n * sizeof *want), se = 0.0, sr = 0.0;
    cr_assert(out && want);
    attn_check_inputs(c, &q, &k, &v);
    cr_assert_eq(attn_check_forward(op, c, q, k, v, out), 0);
    et_attn_shape s = {c->batch, c->heads, c->len_q, c->len_k, c->dim_qk, c->dim_v, c->mode,
                       c->key_len};
    ref_softmax(NULL, &s, q, k, v, want);
    for (int64_t i = 0; i < n; i++) {
        se += (out[i] - want[i]) * (out[i] - want[i]);
        sr += want[i] * want[i];
    }
    free(q), free(k), free(v), free(out), free(want);
    return sqrt(se / sr);
}

/* FAVOR+ estimates softmax attention: averaged over seeds (independent
 * draws of W), the error against the exact attention on the same q, k, v
 * falls as m grows, as 1/sqrt(m): a factor 4 from 64 to 1024 in theory,
 * at least 2 required. The RMS error is used because the max over outputs
 * follows the few heaviest-tailed estimates; the inputs are kept small
 * (|xh|^2 ~ 1) because the estimator's variance grows as exp(|qh + kh|^2). */
Test(performer, converges_to_softmax)
{
    const int32_t features[] = {64, 256, 1024};
    const int seeds = 8;
    double err[3] = {0, 0, 0};
    int32_t pad[2] = {16, 11};
    attn_check_case c = {2, 2, 16, 16, 16, 4, ET_ATTN_MODE_BIDIRECTIONAL, pad, 0, 0.5, 61};
    for (int f = 0; f < 3; f++)
        for (int sd = 0; sd < seeds; sd++) {
            char o[64];
            snprintf(o, sizeof o, "features=%d", (int)features[f]);
            attn_check_op op = attn_suite_open(etnas_plugin(), o, 1);
            op.host->seed = 1000u + (uint64_t)sd;
            err[f] += softmax_distance(&op, &c) / seeds;
            attn_check_op_close(&op);
        }
    cr_log_info("performer vs softmax, relative RMS: m=64 %.4f, m=256 %.4f, m=1024 %.4f",
                err[0], err[1], err[2]);
    cr_expect_lt(err[1], err[0], "m=256 (%g) is no better than m=64 (%g)", err[1], err[0]);
    cr_expect_lt(err[2], err[1], "m=1024 (%g) is no better than m=256 (%g)", err[2], err[1]);
    cr_expect_lt(err[2], 0.5 * err[0], "m=1024 (%g) vs m=64 (%g): slower than 1/sqrt(m)",
                 err[2], err[0]);
}

/* W comes from the host seed: the same seed repeats outputs bit for bit,
 * another seed draws other features. */
Test(performer, seed_determines_features)
{
    attn_check_case c = {2, 2, 7, 7, 8, 4, ET_ATTN_MODE_BIDIRECTIONAL, PAD2, 0, 0, 71};
    float *out[3];
    for (int i = 0; i < 3; i++) {
        attn_check_op op = attn_suite_open(etnas_plugin(), "features=32", 1);
        op.host->seed = i < 2 ? 5u : 6u;
        out[i] = run(&op, &c);
        attn_check_op_close(&op);
    }
    cr_expect_eq(max_diff(out[0], out[1], out_count(&c)), 0.0, "same seed, other outputs");
    cr_expect_gt(max_diff(out[0], out[2], out_count(&c)), 1e-4, "other seed, same outputs");
    for (int i = 0; i < 3; i++)
        free(out[i]);
}

/* Training redraws W every redraw_interval steps, from the step alone;
 * evaluation keeps the current W; interval 0 never redraws. */
Test(performer, redraw_on_set_step)
{
    attn_check_case c = {2, 2, 7, 7, 8, 4, ET_ATTN_MODE_BIDIRECTIONAL, NULL, 0, 0, 81};
    int64_t n = out_count(&c);
    attn_check_op op = attn_suite_open(etnas_plugin(), "features=32,redraw_interval=10", 1);
    float *s0 = run(&op, &c);
    op.vt->set_step(op.state, 1, 9);
    float *s9 = run(&op, &c);
    op.vt->set_step(op.state, 1, 10);
    float *s10 = run(&op, &c);
    op.vt->set_step(op.state, 0, 25);
    float *eval = run(&op, &c);
    op.vt->set_step(op.state, 1, 3);
    float *back = run(&op, &c);
    cr_expect_eq(max_diff(s0, s9, n), 0.0, "redrawn inside an interval");
    cr_expect_gt(max_diff(s0, s10, n), 1e-4, "not redrawn at step 10");
    cr_expect_eq(max_diff(s10, eval, n), 0.0, "redrawn in evaluation");
    cr_expect_eq(max_diff(s0, back, n), 0.0, "draw 0 did not repeat");
    attn_check_op_close(&op);

    op = attn_suite_open(etnas_plugin(), "features=32", 1);
    float *never = run(&op, &c);
    op.vt->set_step(op.state, 1, 12345);
    float *later = run(&op, &c);
    cr_expect_eq(max_diff(never, later, n), 0.0, "redraw_interval = 0 redrew");
    cr_expect_eq(max_diff(never, s0, n), 0.0, "draw 0 depends on the interval");
    attn_check_op_close(&op);
    float *all[] = {s0, s9, s10, eval, back, never, later};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* W is drawn for d: a prepare with another d redraws it and coming back
 * repeats the first features; a forward with a d below the prepared one
 * (narrower heads) gets the same W as a prepare with that d; a d above
 * every prepared one is refused, since only prepare allocates. */
Test(performer, features_follow_the_dim)
{
    attn_check_case c8 = {1, 2, 6, 6, 8, 3, ET_ATTN_MODE_BIDIRECTIONAL, NULL, 0, 0, 91};
    attn_check_case c4 = c8;
    c4.dim_qk = 4;
    attn_check_op op = attn_suite_open(etnas_plugin(), "features=16", 1);
    float *a = run(&op, &c8);
    float *b = run(&op, &c4);
    float *again = run(&op, &c8);
    cr_expect_eq(max_diff(a, again, out_count(&c8)), 0.0);
    favor_ref f = {op.host->seed, 0, 16, 0, 1e-6, NULL, NULL, 0};
    cr_expect_leq(attn_check_reference(&op, &c4, ref_performer, &f), TOL_REFERENCE);

    et_attn_shape s8 = {1, 2, 6, 6, 8, 3, ET_ATTN_MODE_BIDIRECTIONAL, NULL};
    et_attn_shape s4 = s8;
    s4.dim_qk = 4;
    char *err = NULL;
    cr_assert_eq(op.vt->prepare(op.state, &s8, &err), 0);
    float *q, *k, *v, out[36], *saved, *work;
    attn_check_inputs(&c4, &q, &k, &v);
    saved = malloc((size_t)op.vt->saved_floats(op.state, &s8) * sizeof *saved);
    work = malloc((size_t)op.vt->work_floats(op.state, &s8) * sizeof *work);
    cr_assert(saved && work);
    cr_assert_eq(forward_only(&op, &s4, q, k, v, out, saved, work), 0);
    cr_expect_eq(max_diff(out, b, out_count(&c4)), 0.0, "smaller d: other features");

    cr_assert_eq(op.vt->prepare(op.state, &s4, &err), 0);
    cr_assert_eq(forward_only(&op, &s4, q, k, v, out, saved, work), 0);
    cr_expect_eq(max_diff(out, b, out_count(&c4)), 0.0);
    free(q), free(k), free(v);
    attn_check_case c16 = c8;
    c16.dim_qk = 16;
    et_attn_shape s16 = s8;
    s16.dim_qk = 16;
    attn_check_inputs(&c16, &q, &k, &v);
    cr_expect_eq(forward_only(&op, &s16, q, k, v, out, saved, work), ET_STATUS_ERR_USAGE,
                 "a d above every prepared one was accepted");
    free(q), free(k), free(v), free(saved), free(work);
    attn_check_op_close(&op);
    free(a);
    free(b);
    free(again);
}

/* A sequence with no valid key: den = 0, the guard gives out = 0, and no
 * gradient is produced. */
Test(performer, no_visible_key)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), "features=16,eps=1e-12", 1);
    int32_t none[2] = {0, 4};
    attn_check_case c = {2, 1, 4, 4, 4, 3, ET_ATTN_MODE_CROSS, none, 0, 0, 95};
    float *out = run(&op, &c);
    for (int i = 0; i < 12; i++)
        cr_expect_eq(out[i], 0.0f, "out[%d] = %g", i, out[i]);
    double e3[3];
    cr_expect_leq(attn_check_grad(&op, &c, FD_STEP, e3), TOL_GRAD);
    free(out);
    attn_check_op_close(&op);
}

Test(performer, threads_match_serial)
{
    const attn_suite_row rows[] = {
        {"features=24", {3, 3, 9, 9, 4, 5, ET_ATTN_MODE_CAUSAL, PAD3, 0, 0, 51}, NULL},
        {"features=24", {3, 2, 5, 8, 4, 5, ET_ATTN_MODE_CROSS, PAD3, 1, 0, 52}, NULL},
    };
    const attn_suite_check threads = {.kind = ATTN_SUITE_THREADS, .threads = 2, .tol = TOL_EXACT};
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &threads);
}

/* spec/attention.md, Cost: map (L+S)(m d + d) plus the core with r = m. */
Test(performer, macs)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), "features=32", 1);
    et_attn_shape s = {2, 3, 5, 7, 4, 6, ET_ATTN_MODE_CROSS, NULL};
    double d = 4, dv = 6, m = 32, L = 5, S = 7;
    double want = 6 * ((L + S) * (m * d + d) + m * dv * (L + S) + m * L);
    cr_expect_float_eq(op.vt->macs(op.state, &s), want, 1e-9 * want);
    et_attn_shape c = {2, 3, 100, 100, 4, 6, ET_ATTN_MODE_CAUSAL, NULL};
    double n = 100, chunk = 64;
    want = 6 * (2 * n * (m * d + d) + 2 * n * m * dv + n * m + n * chunk * (m + dv));
    cr_expect_float_eq(op.vt->macs(op.state, &c), want, 1e-9 * want);
    attn_check_op_close(&op);
}

Test(performer, prepare_refusals)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), NULL, 1);
    attn_suite_refuses_causal_cross(&op, 4);
    char *err = NULL;
    int32_t bad[1] = {-1};
    et_attn_shape s = {1, 1, 4, 4, 4, 4, ET_ATTN_MODE_CAUSAL, bad};
    cr_expect_eq(op.vt->prepare(op.state, &s, &err), ET_STATUS_ERR_USAGE);
    free(err);
    attn_check_op_close(&op);
}
