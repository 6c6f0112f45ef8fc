/* Tests of the softmax attention plugin: against a naive double reference,
 * and every generic check of attn_check.h (gradients, padding, causality,
 * decoding, threads, strided layouts) in every mode. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_check.h"

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

static attn_check_op open_op(const char *overrides, int32_t threads)
{
    attn_check_op op;
    char *err = NULL;
    int rc = attn_check_op_open(&op, etnas_plugin(), overrides, threads, &err);
    cr_assert(rc == 0, "open: %s", err ? err : "?");
    return op;
}

static const int32_t keys_self[2] = {9, 5};   /* L = S = 9 */
static const int32_t keys_cross[2] = {11, 4}; /* S = 11 */
static const int32_t keys_empty[2] = {0, 6};  /* a sequence with no valid key */

static attn_check_case make_case(int32_t mode, int32_t layout, const int32_t *key_len)
{
    int cross = mode == ET_ATTN_MODE_CROSS;
    return (attn_check_case){.batch = 2, .heads = 3, .len_q = cross ? 6 : 9,
                             .len_k = cross ? 11 : 9, .dim_qk = 4,
                             .dim_v = cross ? 5 : 4, .mode = mode, .key_len = key_len,
                             .layout = layout, .scale = 1.0, .seed = 1234 + mode * 10 + layout};
}

static const char *mode_name(int32_t mode)
{
    return mode == 0 ? "bidirectional" : mode == 1 ? "causal" : "cross";
}

Test(softmax, matches_reference_every_mode_layout_block)
{
    const char *blocks[] = {"block=64", "block=2", "block=4"};
    for (int bl = 0; bl < 3; bl++) {
        attn_check_op op = open_op(blocks[bl], 1);
        for (int32_t mode = 0; mode < 3; mode++)
            for (int32_t layout = 0; layout < 3; layout++)
                for (int pad = 0; pad < 3; pad++) {
                    const int32_t *kl = pad == 0 ? NULL
                                        : pad == 1 ? (mode == 2 ? keys_cross : keys_self)
                                                   : keys_empty;
                    attn_check_case c = make_case(mode, layout, kl);
                    double e = attn_check_reference(&op, &c, ref_softmax, NULL);
                    cr_assert(e <= TOL_REF, "%s %s layout %d pad %d: err %g > %g", blocks[bl],
                              mode_name(mode), layout, pad, e, TOL_REF);
                }
        attn_check_op_close(&op);
    }
}

/* Logits up to ~50: the running max must keep exp in range. */
Test(softmax, large_logits_stay_finite)
{
    attn_check_op op = open_op("block=3", 1);
    for (int32_t mode = 0; mode < 3; mode++) {
        attn_check_case c = make_case(mode, ATTN_CHECK_LAYOUT_BTHC, NULL);
        c.scale = 5.0;
        double e = attn_check_reference(&op, &c, ref_softmax, NULL);
        cr_assert(e <= 1e-5, "%s: err %g", mode_name(mode), e);
    }
    attn_check_op_close(&op);
}

Test(softmax, gradients_every_mode)
{
    attn_check_op op = open_op("block=3", 2);
    for (int32_t mode = 0; mode < 3; mode++)
        for (int32_t layout = 1; layout < 3; layout++) {
            attn_check_case c = make_case(mode, layout, mode == 2 ? keys_cross : keys_self);
            c.heads = 2;
            double e3[3];
            double e = attn_check_grad(&op, &c, 1e-2, e3);
            cr_log_info("softmax grad %s layout %d: q %.3g k %.3g v %.3g", mode_name(mode),
                        layout, e3[0], e3[1], e3[2]);
            cr_assert(e <= TOL_GRAD, "%s layout %d: dq %g dk %g dv %g > %g", mode_name(mode),
                      layout, e3[0], e3[1], e3[2], TOL_GRAD);
        }
    attn_check_op_close(&op);
}

Test(softmax, attention_dropout_gradients_and_switches)
{
    attn_check_op op = open_op("block=3,dropout=0.3", 1);
    op.vt->set_step(op.state, 1, 7); /* training: the mask of step 7 */
    for (int32_t mode = 0; mode < 3; mode++) {
        attn_check_case c = make_case(mode, ATTN_CHECK_LAYOUT_BHTC,
                                      mode == 2 ? keys_cross : keys_self);
        c.heads = 2;
        double e3[3];
        double e = attn_check_grad(&op, &c, 1e-2, e3);
        cr_assert(e <= TOL_GRAD, "dropout, %s: dq %g dk %g dv %g > %g", mode_name(mode), e3[0],
                  e3[1], e3[2], TOL_GRAD);
    }
    /* dropout changes the output in training, the mask follows the step,
     * and evaluation is the plain softmax */
    attn_check_op plain = open_op("block=3", 1);
    attn_check_case c = make_case(0, ATTN_CHECK_LAYOUT_BHTC, keys_self);
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
    attn_check_op op = open_op("block=4", 1);
    for (int32_t mode = 0; mode < 3; mode++) {
        attn_check_case c = make_case(mode, ATTN_CHECK_LAYOUT_BHTC, keys_empty);
        c.heads = 1;
        double e = attn_check_grad(&op, &c, 1e-2, NULL);
        cr_assert(e <= TOL_GRAD, "%s: err %g > %g", mode_name(mode), e, TOL_GRAD);
    }
    attn_check_op_close(&op);
}

Test(softmax, padding_invariance)
{
    attn_check_op op = open_op("block=4", 2);
    for (int32_t mode = 0; mode < 3; mode++)
        for (int32_t layout = 0; layout < 3; layout++) {
            attn_check_case c = make_case(mode, layout, mode == 2 ? keys_cross : keys_self);
            double e = attn_check_padding(&op, &c, 5);
            cr_assert(e <= TOL_PAD, "%s layout %d: err %g > %g", mode_name(mode), layout, e,
                      TOL_PAD);
        }
    attn_check_op_close(&op);
}

Test(softmax, causality)
{
    attn_check_op op = open_op("block=4", 1);
    for (int32_t layout = 0; layout < 3; layout++)
        for (int pad = 0; pad < 2; pad++) {
            attn_check_case c = make_case(ET_ATTN_MODE_CAUSAL, layout, pad ? keys_self : NULL);
            double e = attn_check_causality(&op, &c);
            cr_assert(e <= TOL_CAUSAL, "layout %d pad %d: err %g > %g", layout, pad, e,
                      TOL_CAUSAL);
        }
    attn_check_op_close(&op);
}

Test(softmax, decode_equals_teacher_forcing)
{
    const char *blocks[] = {"block=64", "block=3"};
    for (int bl = 0; bl < 2; bl++) {
        attn_check_op op = open_op(blocks[bl], 2);
        for (int32_t layout = 0; layout < 3; layout++) {
            attn_check_case c = make_case(ET_ATTN_MODE_CAUSAL, layout, NULL);
            c.len_q = c.len_k = 17;
            double e = attn_check_decode(&op, &c);
            cr_assert(e <= TOL_DECODE, "%s layout %d: err %g > %g", blocks[bl], layout, e,
                      TOL_DECODE);
        }
        attn_check_op_close(&op);
    }
}

Test(softmax, threads_agree)
{
    for (int32_t mode = 0; mode < 3; mode++) {
        attn_check_case c = make_case(mode, ATTN_CHECK_LAYOUT_BTHC,
                                      mode == 2 ? keys_cross : keys_self);
        c.heads = 5;
        double e = attn_check_threads(etnas_plugin(), "block=4", &c, 2);
        cr_assert(e <= TOL_THREADS, "%s: err %g", mode_name(mode), e);
    }
}

Test(softmax, refuses_causal_cross_and_bad_options)
{
    attn_check_op op = open_op(NULL, 1);
    et_attn_shape s = {1, 1, 4, 6, 8, 8, ET_ATTN_MODE_CAUSAL, NULL};
    char *err = NULL;
    int rc = op.vt->prepare(op.state, &s, &err);
    cr_assert(rc == ET_STATUS_ERR_UNSUPPORTED);
    cr_assert(err && strstr(err, "cross"), "message: %s", err ? err : "(none)");
    free(err);
    s.mode = ET_ATTN_MODE_CROSS;
    err = NULL;
    cr_assert(op.vt->prepare(op.state, &s, &err) == 0);
    attn_check_op_close(&op);
    attn_check_op bad;
    cr_assert(attn_check_op_open(&bad, etnas_plugin(), "block=0", 1, &err) < 0);
    cr_assert(err && strstr(err, "block"));
    free(err);
    attn_check_op_close(&bad);
    ((const et_attention_vtable *)etnas_plugin()->vtable)->destroy(NULL);
}

Test(softmax, memory_and_macs)
{
    attn_check_op op = open_op("block=64", 2);
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
