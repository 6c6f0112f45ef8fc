/* Tests of the cosFormer attention plugin (plugins/attention/cosformer.c):
 * the generic checks of attn_check in every mode, a naive double evaluation
 * of the cosFormer formulas, rows whose ReLU features vanish, incremental
 * decoding with positions that keep counting, the choice of M, and refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/attention.h>

#include "attn_check.h"
#include "attn_suite.h"

const et_plugin_descriptor *etnas_plugin(void);

/* Stated tolerances (scaled error max|a-b| / max(1, max|ref|) unless noted). */
#define TOL_REFERENCE 2e-6 /* fp32 plugin vs the double formulas: a few ulps per term */
#define TOL_GRAD 2e-3      /* attn_check_grad: central differences of the fp32 forward */
#define TOL_DECODE 1e-5    /* spec: incremental = teacher-forced to 1e-5 */
#define TOL_EXACT 0.0      /* causality, threads: the same float operations */
#define TOL_PADDING 1e-6   /* longer rows let BLAS block differently: last bits move */
#define FD_STEP 2.5e-3     /* central-difference step relative to the input scale */

static const int32_t PAD2[2] = {5, 3};
static const int32_t PAD3[3] = {6, 2, 4};

/* Options of one instance, as the naive reference reads them. */
typedef struct cos_opts {
    double eps;
    int per_sample;
    int32_t max_positions;
} cos_opts;

/* M of sequence b, restated from the plugin's documentation. */
static double ref_period(const cos_opts *o, const et_attn_shape *s, int32_t b)
{
    int32_t valid_k = s->key_len ? s->key_len[b] : s->len_k;
    int32_t m;
    if (s->mode == ET_ATTN_MODE_CAUSAL)
        m = o->max_positions > 0 ? o->max_positions : s->len_q;
    else if (!o->per_sample)
        m = s->len_q > s->len_k ? s->len_q : s->len_k;
    else if (s->mode == ET_ATTN_MODE_CROSS)
        m = s->len_q > valid_k ? s->len_q : valid_k;
    else
        m = valid_k;
    return m > 0 ? m : 1;
}

static double ref_angle(int64_t i, double m)
{
    return 1.5707963267948966 * fmin((double)(i + 1), m) / m;
}

/* The weights in their closed form, relu(q_i).relu(k_j) cos(theta_i - theta_j),
 * rather than through the sine/cosine features the plugin builds.
 * q (B,H,L,d), k (B,H,S,d), v (B,H,S,dv) -> out (B,H,L,dv) */
static void ref_cosformer(void *ctx, const et_attn_shape *s, const float *q, const float *k,
                          const float *v, double *out)
{
    const cos_opts *o = ctx;
    int32_t L = s->len_q, S = s->len_k, d = s->dim_qk, dv = s->dim_v;
    double *num = malloc((size_t)dv * sizeof *num);
    cr_assert(num);
    for (int32_t b = 0; b < s->batch; b++)
        for (int32_t h = 0; h < s->heads; h++) {
            int64_t bh = (int64_t)b * s->heads + h;
            double m = ref_period(o, s, b);
            int32_t valid = s->key_len ? s->key_len[b] : S;
            for (int32_t i = 0; i < L; i++) {
                const float *qi = q + (bh * L + i) * d;
                double den = 0.0;
                memset(num, 0, (size_t)dv * sizeof *num);
                for (int32_t j = 0; j < valid; j++) {
                    if (s->mode == ET_ATTN_MODE_CAUSAL && j > i)
                        break;
                    const float *kj = k + (bh * S + j) * d;
                    double dot = 0.0;
                    for (int32_t c = 0; c < d; c++)
                        dot += fmax(qi[c], 0.0) * fmax(kj[c], 0.0);
                    double w = dot * cos(ref_angle(i, m) - ref_angle(j, m));
                    den += w;
                    for (int32_t c = 0; c < dv; c++)
                        num[c] += w * v[(bh * S + j) * dv + c];
                }
                for (int32_t c = 0; c < dv; c++)
                    out[(bh * L + i) * dv + c] = num[c] / fmax(den, o->eps);
            }
        }
    free(num);
}

/* ReLU has a kink at 0, where central differences average two slopes: the
 * gradient cases take the first seed from `seed` on whose q and k entries
 * all lie further than 2 steps from 0. */
static attn_check_case kink_free(attn_check_case c)
{
    for (;; c.seed++) {
        float *q, *k, *v;
        attn_check_inputs(&c, &q, &k, &v);
        double gap = 2.0 * FD_STEP * (c.scale > 0 ? c.scale : 1.0);
        int ok = 1;
        int64_t nq = (int64_t)c.batch * c.heads * c.len_q * c.dim_qk;
        int64_t nk = (int64_t)c.batch * c.heads * c.len_k * c.dim_qk;
        for (int64_t i = 0; i < nq && ok; i++)
            ok = fabs(q[i]) > gap;
        for (int64_t i = 0; i < nk && ok; i++)
            ok = fabs(k[i]) > gap;
        free(q);
        free(k);
        free(v);
        if (ok)
            return c;
    }
}

/* The reference and gradient checks of the tables below. */
static const attn_suite_check reference = {.kind = ATTN_SUITE_REFERENCE, .threads = 2,
                                           .tol = TOL_REFERENCE, .ref = ref_cosformer};
static const attn_suite_check gradients = {.kind = ATTN_SUITE_GRAD, .threads = 2,
                                           .tol = TOL_GRAD, .h = FD_STEP, .adjust = kink_free};

Test(cosformer, descriptor)
{
    const char *const keys[] = {"eps", "m_mode", "max_positions", NULL};
    attn_suite_descriptor(etnas_plugin(), "cosformer", keys);
}

/* An out-of-range value passed to create without the host's range check
 * is refused by the plugin itself with a message, and destroy after the
 * failed create is safe. */
Test(cosformer, create_refuses_bad_options)
{
    attn_suite_refuses_option(etnas_plugin(), "eps=0", "eps");
}

/* Every mode, padding included, against the closed form in double. */
Test(cosformer, reference_all_modes)
{
    cos_opts plain = {1e-6, 0, 0}, per_sample = {1e-6, 1, 0}, m90 = {1e-6, 0, 90},
             per_sample_eps = {1e-3, 1, 0};
    attn_suite_row rows[] = {
        {NULL, {2, 3, 7, 7, 4, 5, ET_ATTN_MODE_BIDIRECTIONAL, NULL, 0, 0, 1}, &plain},
        {"m_mode=per_sample", {2, 2, 6, 6, 4, 3, ET_ATTN_MODE_BIDIRECTIONAL, PAD2, 1, 0, 2},
         &per_sample},
        {NULL, {2, 2, 6, 6, 4, 3, ET_ATTN_MODE_BIDIRECTIONAL, PAD2, 2, 0, 3}, &plain},
        {NULL, {3, 2, 70, 70, 6, 5, ET_ATTN_MODE_CAUSAL, PAD3, 0, 0, 4}, &plain},
        {"max_positions=90", {3, 2, 70, 70, 6, 5, ET_ATTN_MODE_CAUSAL, NULL, 1, 0, 5}, &m90},
        {NULL, {3, 2, 5, 7, 4, 6, ET_ATTN_MODE_CROSS, PAD3, 1, 0, 6}, &plain},
        {"m_mode=per_sample,eps=1e-3", {3, 2, 5, 7, 4, 6, ET_ATTN_MODE_CROSS, PAD3, 0, 0, 7},
         &per_sample_eps},
    };
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &reference);
}

Test(cosformer, gradients_all_modes)
{
    const attn_suite_row rows[] = {
        {NULL, {2, 2, 5, 5, 3, 4, ET_ATTN_MODE_BIDIRECTIONAL, PAD2, 0, 0, 11}, NULL},
        {"m_mode=per_sample", {2, 2, 5, 5, 3, 4, ET_ATTN_MODE_BIDIRECTIONAL, PAD2, 1, 0, 12},
         NULL},
        {NULL, {2, 2, 6, 6, 3, 2, ET_ATTN_MODE_CAUSAL, PAD2, 0, 0, 13}, NULL},
        {"max_positions=9", {2, 1, 6, 6, 3, 2, ET_ATTN_MODE_CAUSAL, PAD2, 2, 0, 14}, NULL},
        {NULL, {2, 2, 4, 6, 3, 2, ET_ATTN_MODE_CROSS, PAD2, 1, 0, 15}, NULL},
    };
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &gradients);
}

/* Padding leaves outputs alone where M does not depend on padding: per
 * sample (bidirectional, cross) and a fixed max_positions (causal). */
Test(cosformer, padding_invariance)
{
    const attn_suite_row rows[] = {
        {"m_mode=per_sample", {2, 2, 6, 6, 4, 3, ET_ATTN_MODE_BIDIRECTIONAL, PAD2, 0, 0, 21},
         NULL},
        {"m_mode=per_sample", {3, 2, 5, 7, 4, 3, ET_ATTN_MODE_CROSS, PAD3, 1, 0, 22}, NULL},
        {"max_positions=16", {2, 2, 6, 6, 4, 3, ET_ATTN_MODE_CAUSAL, PAD2, 2, 0, 23}, NULL},
    };
    const attn_suite_check padding = {.kind = ATTN_SUITE_PADDING, .threads = 1,
                                      .tol = TOL_PADDING, .extra = 3};
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &padding);
}

/* The documented cost of m_mode = max_len (the authors' reference): M is
 * the padded length, so appending padding changes every output. */
Test(cosformer, max_len_depends_on_padding)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), "m_mode=max_len", 1);
    attn_check_case c = {2, 2, 6, 6, 4, 3, ET_ATTN_MODE_BIDIRECTIONAL, PAD2, 0, 0, 24};
    double e = attn_check_padding(&op, &c, 3);
    cr_expect_geq(e, 1e-3, "padding moved outputs by only %g", e);
    attn_check_op_close(&op);
}

Test(cosformer, causality)
{
    const attn_suite_row rows[] = {
        {NULL, {2, 2, 9, 9, 4, 3, ET_ATTN_MODE_CAUSAL, PAD2, 0, 0, 31}, NULL},
        {"max_positions=40", {2, 2, 9, 9, 4, 3, ET_ATTN_MODE_CAUSAL, PAD2, 1, 0, 31}, NULL},
    };
    const attn_suite_check causality = {.kind = ATTN_SUITE_CAUSALITY, .threads = 2,
                                        .tol = TOL_EXACT};
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &causality);
}

/* Teacher forcing and decoding agree at every step, so positions keep
 * counting in decoding; lengths across the 64-row chunks of the core. */
Test(cosformer, decode_equals_teacher_forcing)
{
    const attn_suite_row rows[] = {
        {NULL, {2, 2, 11, 11, 4, 3, ET_ATTN_MODE_CAUSAL, NULL, 0, 0, 41}, NULL},
        {"max_positions=200", {2, 2, 70, 70, 4, 3, ET_ATTN_MODE_CAUSAL, NULL, 1, 0, 42}, NULL},
        {"eps=1e-3", {1, 3, 5, 5, 6, 6, ET_ATTN_MODE_CAUSAL, NULL, 2, 0, 43}, NULL},
    };
    const attn_suite_check decode = {.kind = ATTN_SUITE_DECODE, .threads = 2, .tol = TOL_DECODE};
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &decode);
}

/* One (b, h) of a decode: the state and the views of a single position. */
typedef struct decoder {
    attn_check_op op;
    et_attn_shape s;
    int32_t max_len;
    float *dstate, *work, q[4], k[4], v[2], out[2];
} decoder;

/* prepare sees len; decoding runs for up to max_len positions. */
static void decoder_open(decoder *t, const char *overrides, int32_t len, int32_t max_len)
{
    t->op = attn_suite_open(etnas_plugin(), overrides, 1);
    t->s = (et_attn_shape){1, 1, 1, 1, 4, 2, ET_ATTN_MODE_CAUSAL, NULL};
    t->max_len = max_len;
    char *err = NULL;
    et_attn_shape full = t->s;
    full.len_q = full.len_k = len;
    cr_assert_eq(t->op.vt->prepare(t->op.state, &full, &err), 0, "%s", err ? err : "?");
    t->dstate = malloc((size_t)t->op.vt->decode_floats(t->op.state, &t->s, max_len) *
                       sizeof(float));
    t->work = malloc((size_t)t->op.vt->work_floats(t->op.state, &t->s) * sizeof(float));
    cr_assert(t->dstate && t->work);
    t->op.vt->decode_reset(t->op.state, &t->s, max_len, t->dstate);
}

static int decoder_step(decoder *t, int32_t pos)
{
    for (int c = 0; c < 4; c++) {
        t->q[c] = (float)(0.5 + 0.1 * c);
        t->k[c] = (float)(0.7 - 0.1 * c);
    }
    t->v[0] = (float)pos;
    t->v[1] = 1.0f;
    et_attn_view q = {t->q, 4, 4, 4}, k = {t->k, 4, 4, 4}, v = {t->v, 2, 2, 2},
                 out = {t->out, 2, 2, 2};
    return t->op.vt->decode_step(t->op.state, &t->s, t->max_len, t->dstate, pos, q, k, v, out,
                                 t->work);
}

static void decoder_close(decoder *t)
{
    free(t->dstate);
    free(t->work);
    attn_check_op_close(&t->op);
}

/* The position comes from the caller and must continue the state's count:
 * restarting at 0 (the authors' decoding bug) or skipping is refused. */
Test(cosformer, decode_refuses_positions_out_of_order)
{
    decoder t;
    decoder_open(&t, NULL, 8, 8);
    cr_assert_eq(decoder_step(&t, 0), 0);
    cr_expect_neq(decoder_step(&t, 0), 0, "position 0 twice was accepted");
    cr_assert_eq(decoder_step(&t, 1), 0);
    cr_expect_neq(decoder_step(&t, 3), 0, "a skipped position was accepted");
    cr_assert_eq(decoder_step(&t, 2), 0);
    t.op.vt->decode_reset(t.op.state, &t.s, t.max_len, t.dstate);
    cr_expect_eq(decoder_step(&t, 0), 0, "reset did not restart the count");
    decoder_close(&t);

    decoder_open(&t, "max_positions=3", 3, 8);
    for (int32_t pos = 0; pos < 3; pos++)
        cr_assert_eq(decoder_step(&t, pos), 0);
    cr_expect_neq(decoder_step(&t, 3), 0, "a position past max_positions was accepted");
    decoder_close(&t);
}

/* A query whose entries are all <= 0 has zero features: den = 0, the guard
 * gives out = 0, and the row passes no gradient anywhere. */
Test(cosformer, zero_relu_row)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), NULL, 1);
    const et_attention_vtable *vt = op.vt;
    et_attn_shape s = {1, 1, 5, 5, 3, 2, ET_ATTN_MODE_BIDIRECTIONAL, NULL};
    float q[15], k[15], v[10], out[10], dout[10], dq[15], dk[15], dv[10];
    float dk0[15], dv0[10];
    for (int i = 0; i < 15; i++) {
        q[i] = (float)(0.3 + 0.05 * i);
        k[i] = (float)(((i * 7) % 5) * 0.2 - 0.3);
    }
    for (int i = 0; i < 10; i++) {
        v[i] = (float)(i - 4.5);
        dout[i] = (float)(0.5 - 0.1 * i);
    }
    q[6] = -1.0f; /* row 2 */
    q[7] = 0.0f;
    q[8] = -0.25f;
    char *err = NULL;
    cr_assert_eq(vt->prepare(op.state, &s, &err), 0);
    float *saved = malloc((size_t)vt->saved_floats(op.state, &s) * sizeof(float));
    float *work = malloc((size_t)vt->work_floats(op.state, &s) * sizeof(float));
    cr_assert(saved && work);
    et_attn_view qv = {q, 15, 15, 3}, kv = {k, 15, 15, 3}, vv = {v, 10, 10, 2};
    et_attn_view ov = {out, 10, 10, 2}, gv = {dout, 10, 10, 2};
    et_attn_view dqv = {dq, 15, 15, 3}, dkv = {dk, 15, 15, 3}, dvv = {dv, 10, 10, 2};
    cr_assert_eq(vt->forward(op.state, &s, qv, kv, vv, ov, saved, work), 0);
    cr_expect_eq(out[4], 0.0f);
    cr_expect_eq(out[5], 0.0f);
    cr_expect_neq(out[2], 0.0f, "the test needs other rows to be nonzero");
    cr_assert_eq(vt->backward(op.state, &s, qv, kv, vv, ov, gv, saved, dqv, dkv, dvv, work), 0);
    for (int c = 0; c < 3; c++)
        cr_expect_eq(dq[6 + c], 0.0f, "dq[2][%d] = %g", c, dq[6 + c]);
    /* The row's dout reaches nothing: dk and dv equal those without it. */
    memcpy(dk0, dk, sizeof dk);
    memcpy(dv0, dv, sizeof dv);
    dout[4] = dout[5] = 0.0f;
    cr_assert_eq(vt->backward(op.state, &s, qv, kv, vv, ov, gv, saved, dqv, dkv, dvv, work), 0);
    for (int i = 0; i < 15; i++)
        cr_expect_float_eq(dk[i], dk0[i], 1e-6, "dk[%d]: %g vs %g", i, dk[i], dk0[i]);
    for (int i = 0; i < 10; i++)
        cr_expect_float_eq(dv[i], dv0[i], 1e-6, "dv[%d]: %g vs %g", i, dv[i], dv0[i]);
    free(saved);
    free(work);
    attn_check_op_close(&op);
}

Test(cosformer, threads_match_serial)
{
    const attn_suite_row rows[] = {
        {NULL, {3, 3, 9, 9, 4, 5, ET_ATTN_MODE_CAUSAL, PAD3, 0, 0, 51}, NULL},
        {"m_mode=per_sample", {3, 2, 5, 8, 4, 5, ET_ATTN_MODE_CROSS, PAD3, 1, 0, 52}, NULL},
    };
    const attn_suite_check threads = {.kind = ATTN_SUITE_THREADS, .threads = 2, .tol = TOL_EXACT};
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &threads);
}

/* spec/attention.md, Cost: map 2d(L+S) plus the core with r = 2d. */
Test(cosformer, macs)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), NULL, 1);
    et_attn_shape s = {2, 3, 5, 7, 4, 6, ET_ATTN_MODE_CROSS, NULL};
    double d = 4, dv = 6, r = 2 * d, L = 5, S = 7;
    double want = 6 * (2 * d * (L + S) + r * dv * (L + S) + r * L);
    cr_expect_float_eq(op.vt->macs(op.state, &s), want, 1e-9 * want);
    et_attn_shape c = {2, 3, 100, 100, 4, 6, ET_ATTN_MODE_CAUSAL, NULL};
    double n = 100, chunk = 64;
    want = 6 * (2 * d * 2 * n + 2 * n * r * dv + n * r + n * chunk * (r + dv));
    cr_expect_float_eq(op.vt->macs(op.state, &c), want, 1e-9 * want);
    attn_check_op_close(&op);
}

Test(cosformer, prepare_refusals)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), "max_positions=8", 1);
    attn_suite_refuses_causal_cross(&op, 4);
    char *err = NULL;
    et_attn_shape s = {1, 1, 9, 9, 4, 4, ET_ATTN_MODE_CAUSAL, NULL};
    cr_expect_eq(op.vt->prepare(op.state, &s, &err), ET_STATUS_ERR_USAGE);
    cr_assert(err);
    cr_expect(strstr(err, "max_positions"), "message: %s", err);
    free(err);
    err = NULL;
    s.len_q = s.len_k = 8;
    cr_expect_eq(op.vt->prepare(op.state, &s, &err), 0);
    int32_t bad[1] = {9};
    s.key_len = bad;
    cr_expect_eq(op.vt->prepare(op.state, &s, &err), ET_STATUS_ERR_USAGE);
    free(err);
    attn_check_op_close(&op);
}

/* Lengths past one 64-row chunk that it does not divide, valid keys ending
 * inside a later chunk, and cross-attention with more keys than queries:
 * the features of each chunk are made inside the core's loops, so every
 * chunk must get the positions (angles) of its own rows. */
Test(cosformer, lengths_across_chunks)
{
    static const int32_t pad_self[2] = {97, 130}, pad_cross[2] = {150, 61};
    cos_opts plain = {1e-6, 0, 0}, per_sample = {1e-6, 1, 0}, m200 = {1e-6, 0, 200};
    attn_suite_row rows[] = {
        {NULL, {2, 2, 130, 130, 4, 3, ET_ATTN_MODE_BIDIRECTIONAL, pad_self, 1, 0, 61}, &plain},
        {"m_mode=per_sample",
         {2, 2, 130, 130, 4, 3, ET_ATTN_MODE_BIDIRECTIONAL, pad_self, 0, 0, 62}, &per_sample},
        {"max_positions=200", {2, 2, 130, 130, 4, 3, ET_ATTN_MODE_CAUSAL, pad_self, 2, 0, 63},
         &m200},
        {NULL, {2, 2, 70, 150, 4, 3, ET_ATTN_MODE_CROSS, pad_cross, 1, 0, 64}, &plain},
    };
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &reference);
}

/* Backward across chunks: 70 = 64 + 6 rows, the valid keys of one
 * sequence ending in the second chunk; cross with 67 keys for 40 queries. */
Test(cosformer, gradients_across_chunks)
{
    static const int32_t pad[2] = {66, 70}, pad_cross[2] = {67, 30};
    const attn_suite_row rows[] = {
        {NULL, {2, 1, 70, 70, 3, 2, ET_ATTN_MODE_BIDIRECTIONAL, pad, 1, 0, 71}, NULL},
        {"m_mode=per_sample", {2, 1, 70, 70, 3, 2, ET_ATTN_MODE_BIDIRECTIONAL, pad, 0, 0, 72},
         NULL},
        {NULL, {2, 1, 70, 70, 3, 2, ET_ATTN_MODE_CAUSAL, pad, 2, 0, 73}, NULL},
        {"max_positions=90", {2, 1, 70, 70, 3, 2, ET_ATTN_MODE_CAUSAL, pad, 1, 0, 74}, NULL},
        {NULL, {2, 1, 40, 67, 3, 2, ET_ATTN_MODE_CROSS, pad_cross, 1, 0, 75}, NULL},
    };
    attn_suite_rows(etnas_plugin(), rows, sizeof rows / sizeof rows[0], &gradients);
}

/* Padding invariance and causality at lengths across chunks. */
Test(cosformer, padding_and_causality_across_chunks)
{
    static const int32_t pad[2] = {97, 130};
    attn_check_op op = attn_suite_open(etnas_plugin(), "m_mode=per_sample", 1);
    attn_check_case b = {2, 2, 130, 130, 4, 3, ET_ATTN_MODE_BIDIRECTIONAL, pad, 1, 0, 81};
    double e = attn_check_padding(&op, &b, 40);
    cr_expect_leq(e, TOL_PADDING, "bidirectional: padding error %g", e);
    attn_check_op_close(&op);
    op = attn_suite_open(etnas_plugin(), "max_positions=300", 1);
    attn_check_case c = {2, 2, 130, 130, 4, 3, ET_ATTN_MODE_CAUSAL, pad, 0, 0, 82};
    e = attn_check_padding(&op, &c, 40);
    cr_expect_leq(e, TOL_PADDING, "causal: padding error %g", e);
    e = attn_check_causality(&op, &c);
    cr_expect_leq(e, TOL_EXACT, "causal: causality error %g", e);
    attn_check_op_close(&op);
}

/* Features are made a chunk at a time and never kept whole: scratch is the
 * same at 1024 and 16384 tokens (before, phi(q), phi(k) and their
 * gradients were 4 (L+S) d floats a worker, 32 MB at 16384 tokens). */
Test(cosformer, scratch_independent_of_length)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), NULL, 2);
    for (int32_t mode = 0; mode < 3; mode++) {
        et_attn_shape a = {1, 4, 1024, 1024, 64, 64, mode, NULL};
        et_attn_shape b = a;
        b.len_q = b.len_k = 16384;
        int64_t wa = op.vt->work_floats(op.state, &a), wb = op.vt->work_floats(op.state, &b);
        cr_expect_eq(wa, wb, "mode %d: work %lld -> %lld", (int)mode, (long long)wa,
                     (long long)wb);
        /* per worker, r = 128: two 128 x 64 states, the chunk step, three 64-row blocks */
        cr_expect_leq(wb, 2 * (2 * (128 * 64 + 128) + 64 * 65 + 2 * 64 * 64 + 3 * 64 * 128),
                      "mode %d", (int)mode);
        cr_expect_eq(op.vt->saved_floats(op.state, &b), 4 * 16384);
    }
    attn_check_op_close(&op);
}
