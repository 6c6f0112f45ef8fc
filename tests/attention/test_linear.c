/* Tests of the linear-Transformer attention plugin: against a naive double
 * reference (elu+1 features, direct pair sums), and every generic check of
 * attn_check.h (gradients, padding, causality, decoding, threads, strided
 * layouts) in every mode, run by attn_suite.h. */
#include <criterion/criterion.h>
#include <math.h>

#include "attn_check.h"
#include "attn_suite.h"

const et_plugin_descriptor *etnas_plugin(void);

/* Stated tolerances; errors are attn_check's scaled errors. */
#define TOL_REF 2e-6     /* fp32 kernel core vs double */
#define TOL_GRAD 2e-3    /* analytic vs float central differences, step 5e-3 */
#define TOL_PAD 1e-6     /* padded keys never enter any sum */
#define TOL_CAUSAL 0.0   /* later rows are never read: bitwise */
#define TOL_DECODE 1e-5  /* spec */
#define TOL_THREADS 0.0  /* heads are independent: bitwise */

static double elu1(double x)
{
    return x > 0 ? x + 1 : exp(x);
}

/* out_i = sum_j w_ij v_j / (sum_j w_ij + eps), w_ij = phi(q_i).phi(k_j) over the
 * visible keys, all in double; ctx points at eps. */
static void ref_linear(void *ctx, const et_attn_shape *s, const float *q, const float *k,
                       const float *v, double *out)
{
    double eps = *(const double *)ctx;
    int64_t L = s->len_q, S = s->len_k, d = s->dim_qk, dv = s->dim_v;
    for (int64_t bh = 0; bh < (int64_t)s->batch * s->heads; bh++) {
        int64_t b = bh / s->heads, nk = s->key_len ? s->key_len[b] : S;
        for (int64_t i = 0; i < L; i++) {
            double *o = out + (bh * L + i) * dv, den = 0;
            for (int64_t c = 0; c < dv; c++)
                o[c] = 0;
            for (int64_t j = 0; j < nk && (s->mode != ET_ATTN_MODE_CAUSAL || j <= i); j++) {
                double w = 0;
                for (int64_t c = 0; c < d; c++)
                    w += elu1(q[(bh * L + i) * d + c]) * elu1(k[(bh * S + j) * d + c]);
                den += w;
                for (int64_t c = 0; c < dv; c++)
                    o[c] += w * v[(bh * S + j) * dv + c];
            }
            for (int64_t c = 0; c < dv; c++)
                o[c] /= den + eps;
        }
    }
}

static const int32_t keys_self[2] = {10, 6};  /* L = S = 10 */
static const int32_t keys_cross[2] = {11, 4}; /* S = 11 */
static const int32_t keys_empty[2] = {0, 7};  /* a sequence with no valid key */

static const attn_suite suite = {etnas_plugin, 10, 777, keys_self, keys_cross, keys_empty};

Test(linear, matches_reference_every_mode_layout_chunk)
{
    /* L = 10: chunk 5 divides it, 3 and 4 do not, 64 exceeds it */
    const char *chunks[] = {"chunk=64", "chunk=3", "chunk=4", "chunk=5"};
    double eps = 1e-6;
    for (int ch = 0; ch < 4; ch++)
        attn_suite_reference(&suite, chunks[ch], 1, ref_linear, &eps, TOL_REF);
}

/* The eps option reaches the guard: a large eps changes the output, as the
 * reference with the same eps says. */
Test(linear, eps_option_is_used)
{
    double eps = 0.5;
    attn_check_op op = attn_suite_open(etnas_plugin(), "eps=0.5", 1);
    attn_check_case c =
        attn_suite_case(&suite, ET_ATTN_MODE_CAUSAL, ATTN_CHECK_LAYOUT_BHTC, keys_self);
    double e = attn_check_reference(&op, &c, ref_linear, &eps);
    cr_assert(e <= TOL_REF, "err %g", e);
    double small = 1e-6;
    cr_assert(attn_check_reference(&op, &c, ref_linear, &small) > 1e-3,
              "eps=0.5 made no difference");
    attn_check_op_close(&op);
}

Test(linear, gradients_every_mode)
{
    const char *chunks[] = {"chunk=3", "chunk=64"};
    for (int ch = 0; ch < 2; ch++)
        attn_suite_grad(&suite, chunks[ch], 2, 5e-3, TOL_GRAD);
}

Test(linear, gradients_with_empty_sequence)
{
    attn_suite_grad_empty(&suite, "chunk=4", 1, 5e-3, TOL_GRAD);
}

Test(linear, padding_invariance)
{
    attn_suite_padding(&suite, "chunk=4", 2, 5, TOL_PAD);
}

Test(linear, causality)
{
    const char *chunks[] = {"chunk=4", "chunk=64"};
    for (int ch = 0; ch < 2; ch++)
        attn_suite_causality(&suite, chunks[ch], 1, TOL_CAUSAL);
}

Test(linear, decode_equals_teacher_forcing)
{
    const char *chunks[] = {"chunk=64", "chunk=5"};
    for (int ch = 0; ch < 2; ch++)
        attn_suite_decode(&suite, chunks[ch], 2, 23, TOL_DECODE);
}

Test(linear, threads_agree)
{
    attn_suite_threads(&suite, "chunk=4", 2, TOL_THREADS);
}

Test(linear, refuses_causal_cross_and_bad_options)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), NULL, 1);
    attn_suite_refuses_causal_cross(&op, 8);
    attn_check_op_close(&op);
    attn_suite_refuses_option(etnas_plugin(), "eps=0", "eps");
}

/* Scratch does not grow with the length: features are made a chunk at a
 * time inside the core's loops (before, phi(q) and phi(k) of the whole
 * sequence were 2 (L+S) d floats a worker). Saved floats are den, L a head;
 * the decode state does not depend on the length. */
Test(linear, scratch_independent_of_length_and_macs)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), "chunk=64", 2);
    for (int32_t mode = 0; mode < 3; mode++) {
        et_attn_shape a = {1, 4, 1024, 1024, 64, 64, mode, NULL};
        et_attn_shape b = a;
        b.len_q = b.len_k = 16384;
        int64_t wa = op.vt->work_floats(op.state, &a), wb = op.vt->work_floats(op.state, &b);
        cr_assert(wa == wb, "%s: work %lld -> %lld", attn_suite_mode_name(mode),
                  (long long)wa, (long long)wb);
        /* per worker: two 64 x 64 states, the chunk step, three 64-row blocks */
        cr_assert(wb <= 2 * (2 * (64 * 64 + 64) + 64 * 65 + 2 * 64 * 64 + 3 * 64 * 64),
                  "%s: work %lld", attn_suite_mode_name(mode), (long long)wb);
        cr_assert(op.vt->saved_floats(op.state, &b) == 4 * 16384);
        cr_assert(op.vt->decode_floats(op.state, &b, 16384) ==
                  op.vt->decode_floats(op.state, &a, 8));
    }
    et_attn_shape a = {1, 4, 4096, 4096, 64, 64, ET_ATTN_MODE_CAUSAL, NULL};
    double N = 4096, r = 64, dv = 64;
    cr_assert(op.vt->macs(op.state, &a) == 4 * (2 * N * r * dv + N * r + N * 64 * (r + dv)));
    a.mode = ET_ATTN_MODE_CROSS;
    a.len_q = 100;
    cr_assert(op.vt->macs(op.state, &a) == 4 * (r * dv * (100 + N) + r * 100));
    attn_check_op_close(&op);
}

/* Lengths past one default chunk (64) that it does not divide, with valid
 * keys ending inside a later chunk: reference, gradients, padding. */
Test(linear, lengths_across_chunks)
{
    static const int32_t keys_long[2] = {66, 23};
    double eps = 1e-6;
    attn_check_op op = attn_suite_open(etnas_plugin(), NULL, 2);
    for (int32_t mode = 0; mode < 3; mode++) {
        int cross = mode == ET_ATTN_MODE_CROSS;
        attn_check_case c = {.batch = 2, .heads = 2, .len_q = cross ? 37 : 70, .len_k = 70,
                             .dim_qk = 3, .dim_v = 2, .mode = mode, .key_len = keys_long,
                             .layout = ATTN_CHECK_LAYOUT_BTHC, .scale = 1.0,
                             .seed = 901 + mode};
        const char *name = attn_suite_mode_name(mode);
        double e = attn_check_reference(&op, &c, ref_linear, &eps);
        cr_assert(e <= TOL_REF, "%s: reference err %g > %g", name, e, TOL_REF);
        double e3[3];
        e = attn_check_grad(&op, &c, 5e-3, e3);
        cr_log_info("linear grad L=%d %s: q %.3g k %.3g v %.3g", c.len_q, name, e3[0], e3[1],
                    e3[2]);
        cr_assert(e <= TOL_GRAD, "%s: dq %g dk %g dv %g > %g", name, e3[0], e3[1], e3[2],
                  TOL_GRAD);
        e = attn_check_padding(&op, &c, 70);
        cr_assert(e <= TOL_PAD, "%s: padding err %g > %g", name, e, TOL_PAD);
    }
    attn_check_op_close(&op);
}
