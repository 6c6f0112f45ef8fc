/* Tests of the softmax attention plugin: against a naive double reference,
 * and every generic check of attn_check.h (gradients, padding, causality,
 * decoding, threads, strided layouts) in every mode, run by attn_suite.h. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "attn_check.h"
#include "attn_suite.h"

const et_plugin_descriptor *etnas_plugin(void);

/* Stated tolerances; errors are attn_check's scaled errors. */
#define TOL_REF 2e-6     /* fp32 blockwise vs double */
#define TOL_GRAD 1e-3    /* analytic vs float central differences, step 1e-2 */
#define TOL_PAD 1e-6     /* padded keys never enter any sum */
#define TOL_CAUSAL 0.0   /* later rows are never read: bitwise */
#define TOL_DECODE 1e-5  /* spec */
#define TOL_THREADS 0.0  /* heads are independent: bitwise */

/* The textbook formula in double: softmax over visible keys, 0 if none. */
static void ref_softmax(void *ctx, const et_attn_shape *s, const float *q, const float *k,
                        const float *v, double *out)
{
    (void)ctx;
    int64_t L = s->len_q, S = s->len_k, d = s->dim_qk, dv = s->dim_v;
    double *w = malloc((size_t)(S > 0 ? S : 1) * sizeof(double));
    cr_assert(w);
    for (int64_t bh = 0; bh < (int64_t)s->batch * s->heads; bh++) {
        int64_t b = bh / s->heads, nk = s->key_len ? s->key_len[b] : S;
        for (int64_t i = 0; i < L; i++) {
            double mx = -INFINITY, sum = 0.0;
            for (int64_t j = 0; j < S; j++) {
                w[j] = -INFINITY;
                if (j >= nk || (s->mode == ET_ATTN_MODE_CAUSAL && j > i))
                    continue;
                double z = 0.0;
                for (int64_t c = 0; c < d; c++)
                    z += (double)q[(bh * L + i) * d + c] * k[(bh * S + j) * d + c];
                w[j] = z / sqrt((double)d);
                mx = fmax(mx, w[j]);
            }
            double *o = out + (bh * L + i) * dv;
            for (int64_t c = 0; c < dv; c++)
                o[c] = 0.0;
            if (mx == -INFINITY)
                continue;
            for (int64_t j = 0; j < S; j++)
                sum += w[j] == -INFINITY ? 0.0 : exp(w[j] - mx);
            for (int64_t j = 0; j < S; j++)
                if (w[j] != -INFINITY)
                    for (int64_t c = 0; c < dv; c++)
                        o[c] += exp(w[j] - mx) / sum * v[(bh * S + j) * dv + c];
        }
    }
    free(w);
}

static const int32_t keys_self[2] = {9, 5};   /* L = S = 9 */
static const int32_t keys_cross[2] = {11, 4}; /* S = 11 */
static const int32_t keys_empty[2] = {0, 6};  /* a sequence with no valid key */

static const attn_suite suite = {etnas_plugin, 9, 1234, keys_self, keys_cross, keys_empty};

Test(softmax, matches_reference_every_mode_layout_block)
{
    const char *blocks[] = {"block=64", "block=2", "block=4"};
    for (int bl = 0; bl < 3; bl++)
        attn_suite_reference(&suite, blocks[bl], 1, ref_softmax, NULL, TOL_REF);
}

/* Logits up to ~50: the running max must keep exp in range. */
Test(softmax, large_logits_stay_finite)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), "block=3", 1);
    for (int32_t mode = 0; mode < 3; mode++) {
        attn_check_case c = attn_suite_case(&suite, mode, ATTN_CHECK_LAYOUT_BTHC, NULL);
        c.scale = 5.0;
        double e = attn_check_reference(&op, &c, ref_softmax, NULL);
        cr_assert(e <= 1e-5, "%s: err %g", attn_suite_mode_name(mode), e);
    }
    attn_check_op_close(&op);
}

Test(softmax, gradients_every_mode)
{
    attn_suite_grad(&suite, "block=3", 2, 1e-2, TOL_GRAD);
}

Test(softmax, attention_dropout_gradients_and_switches)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), "block=3,dropout=0.3", 1);
    op.vt->set_step(op.state, 1, 7); /* training: the mask of step 7 */
    for (int32_t mode = 0; mode < 3; mode++) {
        attn_check_case c = attn_suite_case(&suite, mode, ATTN_CHECK_LAYOUT_BHTC,
                                            attn_suite_padded(&suite, mode));
        c.heads = 2;
        double e3[3];
        double e = attn_check_grad(&op, &c, 1e-2, e3);
        cr_assert(e <= TOL_GRAD, "dropout, %s: dq %g dk %g dv %g > %g",
                  attn_suite_mode_name(mode), e3[0], e3[1], e3[2], TOL_GRAD);
    }
    /* dropout changes the output in training, the mask follows the step,
     * and evaluation is the plain softmax */
    attn_check_op plain = attn_suite_open(etnas_plugin(), "block=3", 1);
    attn_check_case c = attn_suite_case(&suite, 0, ATTN_CHECK_LAYOUT_BHTC, keys_self);
    float *q, *k, *v;
    attn_check_inputs(&c, &q, &k, &v);
    int64_t n = (int64_t)c.batch * c.heads * c.len_q * c.dim_v;
    float *o1 = malloc(sizeof(float) * (size_t)n), *o2 = malloc(sizeof(float) * (size_t)n);
    float *o3 = malloc(sizeof(float) * (size_t)n), *o4 = malloc(sizeof(float) * (size_t)n);
    cr_assert_eq(attn_check_forward(&plain, &c, q, k, v, o1), 0);
    cr_assert_eq(attn_check_forward(&op, &c, q, k, v, o2), 0);
    op.vt->set_step(op.state, 1, 8);
    cr_assert_eq(attn_check_forward(&op, &c, q, k, v, o3), 0);
    op.vt->set_step(op.state, 0, 8);
    cr_assert_eq(attn_check_forward(&op, &c, q, k, v, o4), 0);
    double d12 = 0, d23 = 0, d14 = 0;
    for (int64_t i = 0; i < n; i++) {
        d12 += fabs(o1[i] - o2[i]);
        d23 += fabs(o2[i] - o3[i]);
        d14 += fabs(o1[i] - o4[i]);
    }
    cr_assert_gt(d12, 1e-3, "training with dropout changes the output");
    cr_assert_gt(d23, 1e-3, "another step, another mask");
    cr_assert_lt(d14, 1e-6, "evaluation has no dropout");
    free(o1);
    free(o2);
    free(o3);
    free(o4);
    free(q);
    free(k);
    free(v);
    attn_check_op_close(&plain);
    attn_check_op_close(&op);
}

Test(softmax, gradients_with_empty_sequence)
{
    attn_suite_grad_empty(&suite, "block=4", 1, 1e-2, TOL_GRAD);
}

Test(softmax, padding_invariance)
{
    attn_suite_padding(&suite, "block=4", 2, 5, TOL_PAD);
}

Test(softmax, causality)
{
    attn_suite_causality(&suite, "block=4", 1, TOL_CAUSAL);
}

Test(softmax, decode_equals_teacher_forcing)
{
    attn_suite_decode(&suite, "block=64", 2, 17, TOL_DECODE);
    attn_suite_decode(&suite, "block=3", 2, 17, TOL_DECODE);
}

Test(softmax, threads_agree)
{
    attn_suite_threads(&suite, "block=4", 2, TOL_THREADS);
}

Test(softmax, refuses_causal_cross_and_bad_options)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), NULL, 1);
    attn_suite_refuses_causal_cross(&op, 8);
    attn_check_op_close(&op);
    attn_suite_refuses_option(etnas_plugin(), "block=0", "block");
}

Test(softmax, memory_and_macs)
{
    attn_check_op op = attn_suite_open(etnas_plugin(), "block=64", 2);
    et_attn_shape a = {1, 4, 1024, 1024, 64, 64, ET_ATTN_MODE_BIDIRECTIONAL, NULL};
    et_attn_shape b = a;
    b.len_q = b.len_k = 16384;
    /* scratch does not grow with the lengths; saved state grows as L */
    cr_assert(op.vt->work_floats(op.state, &a) == op.vt->work_floats(op.state, &b));
    cr_assert(op.vt->work_floats(op.state, &b) <= 2 * (2 * 64 * 64 + 2 * 64));
    cr_assert(op.vt->saved_floats(op.state, &b) == 4 * 16384);
    cr_assert(op.vt->macs(op.state, &a) == 4.0 * 1024 * 1024 * 128);
    a.mode = ET_ATTN_MODE_CAUSAL;
    cr_assert(op.vt->macs(op.state, &a) == 4.0 * 1024 * 1025 / 2 * 128);
    a.mode = ET_ATTN_MODE_CROSS;
    a.len_q = 10;
    a.dim_v = 32;
    cr_assert(op.vt->macs(op.state, &a) == 4.0 * 10 * 1024 * 96);
    attn_check_op_close(&op);
}
