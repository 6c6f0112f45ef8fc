/* Tests of the shared kernel attention core (plugins/attention/kernel_core.h):
 * the BLAS fast path against the double references, chunked causal against
 * the plain recurrence for chunk sizes that do and do not divide N, backward
 * against central differences of the double reference, decoding against the
 * causal forward, and padding rows that are never read. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/rng.h>

#include "kernel_core.h"

/* Stated tolerances (scaled error max|a-b| / max(1, max|ref|) unless noted). */
#define TOL_FORWARD 1e-5 /* fp32 fast path vs double reference */
#define TOL_DECODE 1e-5  /* spec: incremental = teacher-forced to 1e-5 */
#define TOL_GRAD 1e-4    /* max|g - fd| / max|fd|, fd in double on the reference */
#define TOL_LONG 1e-4    /* N = 4096 causal vs the double recurrence */

/* One head's inputs with row strides wider than the rows (gaps hold NaN, so
 * reading a gap poisons the result) and padded key rows set to NaN. */
typedef struct head {
    et_kc_shape p;
    int64_t ldq, ldk, ldv, ldo;
    float *phq, *phk, *v;
} head;

static float *alloc_nan(int64_t n)
{
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    cr_assert(x);
    for (int64_t i = 0; i < n; i++)
        x[i] = NAN;
    return x;
}

/* phi rows are positive (features of a kernel), v rows any sign. */
static head head_make(et_kc_shape p, uint64_t seed)
{
    head t = {.p = p, .ldq = p.r + 3, .ldk = p.r + 1, .ldv = p.dim_v + 2, .ldo = p.dim_v + 1};
    et_rng g = et_rng_from_seed(seed);
    t.phq = alloc_nan(p.len_q * t.ldq);
    t.phk = alloc_nan(p.len_k * t.ldk);
    t.v = alloc_nan(p.len_k * t.ldv);
    for (int64_t i = 0; i < p.len_q; i++)
        for (int64_t c = 0; c < p.r; c++)
            t.phq[i * t.ldq + c] = (float)(0.05 + et_rng_uniform(&g));
    for (int64_t j = 0; j < p.key_len && j < p.len_k; j++) {
        for (int64_t c = 0; c < p.r; c++)
            t.phk[j * t.ldk + c] = (float)(0.05 + et_rng_uniform(&g));
        for (int64_t c = 0; c < p.dim_v; c++)
            t.v[j * t.ldv + c] = (float)et_rng_normal(&g);
    }
    return t;
}

static void head_free(head *t)
{
    free(t->phq);
    free(t->phk);
    free(t->v);
}

/* out (L,dv) with stride ldo; returns the scaled error against ref (L,dv)
 * and checks that the gap after each row was left alone. */
static double scaled_error(const head *t, const float *out, const double *ref)
{
    double num = 0.0, mx = 1.0;
    for (int64_t i = 0; i < t->p.len_q; i++) {
        for (int64_t c = 0; c < t->p.dim_v; c++) {
            double d = fabs(out[i * t->ldo + c] - ref[i * t->p.dim_v + c]);
            num = d > num || isnan(d) ? d : num;
            mx = fmax(mx, fabs(ref[i * t->p.dim_v + c]));
        }
        cr_assert(out[i * t->ldo + t->p.dim_v] == 7.0f, "row %lld: gap overwritten", (long long)i);
    }
    return num / mx;
}

static float *out_alloc(const head *t)
{
    float *out = alloc_nan(t->p.len_q * t->ldo);
    for (int64_t i = 0; i < t->p.len_q; i++)
        out[i * t->ldo + t->p.dim_v] = 7.0f;
    return out;
}

static double fast_vs(const head *t, int recurrence)
{
    const et_kc_shape *p = &t->p;
    float *out = out_alloc(t), *saved = alloc_nan(et_kc_saved_floats(p)),
          *work = alloc_nan(et_kc_work_floats(p));
    double *ref = malloc((size_t)(p->len_q * p->dim_v) * sizeof(double));
    cr_assert(ref);
    et_kc_forward(p, t->phq, t->ldq, t->phk, t->ldk, t->v, t->ldv, out, t->ldo, saved, work);
    if (recurrence)
        et_kc_naive_recurrence(p, t->phq, t->ldq, t->phk, t->ldk, t->v, t->ldv, ref, NULL);
    else
        et_kc_naive_forward(p, t->phq, t->ldq, t->phk, t->ldk, t->v, t->ldv, ref, NULL);
    double e = scaled_error(t, out, ref);
    free(out);
    free(saved);
    free(work);
    free(ref);
    return e;
}

static et_kc_shape shape(int32_t L, int32_t S, int32_t key_len, int32_t r, int32_t dv,
                         int32_t causal, int32_t chunk, int32_t guard)
{
    return (et_kc_shape){L, S, key_len, r, dv, causal, chunk, guard, 1e-6f};
}

Test(kernel_core, bidirectional_and_cross_match_naive)
{
    const int32_t cases[][3] = {{9, 9, 9}, {9, 9, 5}, {5, 11, 11}, {12, 7, 3}, {6, 6, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int32_t guard = 0; guard < 2; guard++) {
            head t = head_make(shape(cases[i][0], cases[i][1], cases[i][2], 6, 5, 0, 4, guard),
                               100 + i);
            double e = fast_vs(&t, 0);
            cr_log_info("bidirectional L=%d S=%d keys=%d guard=%d: err %.3g", cases[i][0],
                        cases[i][1], cases[i][2], guard, e);
            cr_assert(e <= TOL_FORWARD, "case %zu guard %d: err %g > %g", i, guard, e,
                      TOL_FORWARD);
            head_free(&t);
        }
}

Test(kernel_core, chunked_causal_matches_recurrence)
{
    /* N = 12: chunks 1, 3, 4, 6, 12 divide it; 5, 7, 11, 64 do not (64 > N) */
    const int32_t chunks[] = {1, 3, 4, 5, 6, 7, 11, 12, 64};
    const int32_t keys[] = {12, 8, 5, 0};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++)
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            for (int32_t guard = 0; guard < 2; guard++) {
                head t = head_make(shape(12, 12, keys[k], 5, 3, 1, chunks[c], guard), 7 + c);
                double e1 = fast_vs(&t, 1), e2 = fast_vs(&t, 0);
                cr_assert(e1 <= TOL_FORWARD && e2 <= TOL_FORWARD,
                          "chunk %d keys %d guard %d: err %g (recurrence) %g (naive)", chunks[c],
                          keys[k], guard, e1, e2);
                head_free(&t);
            }
}

Test(kernel_core, references_agree)
{
    head t = head_make(shape(10, 10, 7, 4, 3, 1, 3, ET_KC_GUARD_ADD), 11);
    double a[30], b[30], da[10], db[10];
    et_kc_naive_forward(&t.p, t.phq, t.ldq, t.phk, t.ldk, t.v, t.ldv, a, da);
    et_kc_naive_recurrence(&t.p, t.phq, t.ldq, t.phk, t.ldk, t.v, t.ldv, b, db);
    for (int i = 0; i < 30; i++)
        cr_assert(fabs(a[i] - b[i]) <= 1e-12 * (1 + fabs(a[i])), "out %d: %g vs %g", i, a[i], b[i]);
    for (int i = 0; i < 10; i++)
        cr_assert(fabs(da[i] - db[i]) <= 1e-12 * (1 + fabs(da[i])));
    head_free(&t);
}

/* A long causal sequence: chunked fp32 vs the double recurrence. Values are
 * positive so the prefix states grow with N, the case where rebuilding them
 * by subtraction would lose digits. */
Test(kernel_core, long_causal_no_cancellation)
{
    head t = head_make(shape(4096, 4096, 4096, 8, 4, 1, 64, ET_KC_GUARD_ADD), 5);
    double e = fast_vs(&t, 1);
    cr_log_info("causal N=4096: err %.3g", e);
    cr_assert(e <= TOL_LONG, "err %g > %g", e, TOL_LONG);
    head_free(&t);
}

/* Loss = sum w_ij out_ij of the double reference. */
static double ref_loss(const head *t, const double *w, double *buf)
{
    et_kc_naive_forward(&t->p, t->phq, t->ldq, t->phk, t->ldk, t->v, t->ldv, buf, NULL);
    double s = 0.0;
    for (int64_t i = 0; i < t->p.len_q * t->p.dim_v; i++)
        s += w[i] * buf[i];
    return s;
}

/* max|g - fd| / max|fd| over the rows x cols block x (stride ld) whose
 * analytic gradient is g (stride ldg). The step is exact in float: the
 * perturbed values are rounded first and their true difference divides. */
static double grad_error(head *t, const double *w, double *buf, float *x, int64_t rows,
                         int64_t cols, int64_t ld, const float *g, int64_t ldg)
{
    double num = 0.0, mx = 0.0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < cols; c++) {
            float keep = x[i * ld + c];
            float hi = keep + 1e-4f, lo = keep - 1e-4f;
            x[i * ld + c] = hi;
            double lp = ref_loss(t, w, buf);
            x[i * ld + c] = lo;
            double lm = ref_loss(t, w, buf);
            x[i * ld + c] = keep;
            /* padded rows hold NaN, which the reference never reads */
            double fd = isnan(keep) ? 0.0 : (lp - lm) / ((double)hi - (double)lo);
            double d = fabs(fd - g[i * ldg + c]);
            num = d > num || isnan(d) ? d : num;
            mx = fmax(mx, fabs(fd));
        }
    return num / fmax(mx, 1e-12);
}

/* Backward of the head t (freed here) against central differences. */
static void check_backward_head(head t, uint64_t seed)
{
    et_kc_shape p = t.p;
    int64_t L = p.len_q, S = p.len_k, r = p.r, dv = p.dim_v;
    float *out = out_alloc(&t), *saved = alloc_nan(et_kc_saved_floats(&p)),
          *work = alloc_nan(et_kc_work_floats(&p));
    et_kc_forward(&p, t.phq, t.ldq, t.phk, t.ldk, t.v, t.ldv, out, t.ldo, saved, work);
    et_rng g = et_rng_from_seed(seed + 1);
    double *w = malloc((size_t)(L * dv) * sizeof(double)), *buf = malloc((size_t)(L * dv) * sizeof(double));
    float *dout = alloc_nan(L * (dv + 4));
    cr_assert(w && buf);
    for (int64_t i = 0; i < L; i++)
        for (int64_t c = 0; c < dv; c++) {
            w[i * dv + c] = et_rng_normal(&g);
            dout[i * (dv + 4) + c] = (float)w[i * dv + c];
        }
    int64_t lq = r + 2, lk = r + 1, lv = dv + 3;
    float *dq = alloc_nan(L * lq), *dk = alloc_nan(S * lk), *dvv = alloc_nan(S * lv);
    for (int64_t i = 0; i < L; i++)
        dq[i * lq + r] = 7.0f;
    for (int64_t j = 0; j < S; j++) {
        dk[j * lk + r] = 7.0f;
        dvv[j * lv + dv] = 7.0f;
    }
    float *work2 = alloc_nan(et_kc_work_floats(&p));
    et_kc_backward(&p, t.phq, t.ldq, t.phk, t.ldk, t.v, t.ldv, out, t.ldo, dout, dv + 4, saved,
                   dq, lq, dk, lk, dvv, lv, work2);
    for (int64_t i = 0; i < L; i++)
        cr_assert(dq[i * lq + r] == 7.0f, "dphq gap overwritten");
    for (int64_t j = 0; j < S; j++)
        cr_assert(dk[j * lk + r] == 7.0f && dvv[j * lv + dv] == 7.0f, "dphk/dv gap overwritten");
    double eq = grad_error(&t, w, buf, t.phq, L, r, t.ldq, dq, lq);
    double ek = grad_error(&t, w, buf, t.phk, S, r, t.ldk, dk, lk);
    double ev = grad_error(&t, w, buf, t.v, S, dv, t.ldv, dvv, lv);
    cr_log_info("backward L=%d S=%d keys=%d causal=%d chunk=%d guard=%d: %.3g %.3g %.3g", p.len_q,
                p.len_k, p.key_len, p.causal, p.chunk, p.guard, eq, ek, ev);
    cr_assert(eq <= TOL_GRAD && ek <= TOL_GRAD && ev <= TOL_GRAD,
              "L=%d S=%d keys=%d causal=%d chunk=%d guard=%d: dphq %g dphk %g dv %g > %g",
              p.len_q, p.len_k, p.key_len, p.causal, p.chunk, p.guard, eq, ek, ev, TOL_GRAD);
    free(w);
    free(buf);
    free(dout);
    free(dq);
    free(dk);
    free(dvv);
    free(out);
    free(saved);
    free(work);
    free(work2);
    head_free(&t);
}

static void check_backward(et_kc_shape p, uint64_t seed)
{
    check_backward_head(head_make(p, seed), seed);
}

Test(kernel_core, backward_bidirectional_and_cross)
{
    for (int32_t guard = 0; guard < 2; guard++) {
        check_backward(shape(7, 7, 7, 4, 3, 0, 3, guard), 21);
        check_backward(shape(7, 7, 4, 4, 3, 0, 2, guard), 22);
        check_backward(shape(5, 9, 6, 3, 4, 0, 64, guard), 23);
        check_backward(shape(8, 3, 3, 5, 2, 0, 3, guard), 24);
    }
}

Test(kernel_core, backward_causal_chunks)
{
    const int32_t chunks[] = {1, 3, 4, 5, 12, 64};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++)
        for (int32_t guard = 0; guard < 2; guard++) {
            check_backward(shape(12, 12, 12, 4, 3, 1, chunks[c], guard), 31 + c);
            check_backward(shape(12, 12, 7, 4, 3, 1, chunks[c], guard), 41 + c);
        }
}

/* Rows of phi(q) that are zero (a ReLU map can give them) put den = 0 under
 * max(den, eps): the output is 0 and the clamp's zero slope stops dden. */
Test(kernel_core, clamp_guard_zero_rows)
{
    et_kc_shape p = shape(6, 6, 6, 3, 2, 0, 4, ET_KC_GUARD_MAX);
    head t = head_make(p, 3);
    for (int c = 0; c < 3; c++)
        t.phq[2 * t.ldq + c] = 0.0f;
    float *out = out_alloc(&t), saved[6], *work = alloc_nan(et_kc_work_floats(&p));
    et_kc_forward(&p, t.phq, t.ldq, t.phk, t.ldk, t.v, t.ldv, out, t.ldo, saved, work);
    cr_assert(saved[2] == 0.0f);
    for (int c = 0; c < 2; c++)
        cr_assert(out[2 * t.ldo + c] == 0.0f);
    head_free(&t);
    free(out);
    free(work);
}

/* A large eps that is active on some rows (phi(q) scaled down) and not on
 * others, so max(den, eps) and den + eps differ in value and in slope. */
Test(kernel_core, guard_active_on_some_rows)
{
    for (int32_t causal = 0; causal < 2; causal++)
        for (int32_t guard = 0; guard < 2; guard++) {
            head t = head_make(shape(8, 8, 7, 3, 2, causal, 3, guard), 60 + causal);
            for (int64_t i = 4; i < 8; i += 2)
                for (int c = 0; c < 3; c++)
                    t.phq[i * t.ldq + c] *= 1e-3f;
            double out[16], den[8], small = 0.0, big = INFINITY;
            et_kc_naive_forward(&t.p, t.phq, t.ldq, t.phk, t.ldk, t.v, t.ldv, out, den);
            for (int i = 0; i < 8; i++) {
                if (i >= 4 && i % 2 == 0)
                    small = fmax(small, den[i]);
                else
                    big = fmin(big, den[i]);
            }
            cr_assert(big > 100 * small, "test data: dens not separated (%g, %g)", small, big);
            t.p.eps = (float)sqrt(small * big);
            double e = fast_vs(&t, 0);
            cr_assert(e <= TOL_FORWARD, "causal %d guard %d eps %g: err %g", causal, guard,
                      t.p.eps, e);
            check_backward_head(t, 70 + causal);
        }
}

Test(kernel_core, decode_matches_causal_forward)
{
    const int32_t chunks[] = {1, 4, 5, 64};
    for (size_t ci = 0; ci < sizeof chunks / sizeof chunks[0]; ci++)
        for (int32_t guard = 0; guard < 2; guard++) {
            et_kc_shape p = shape(20, 20, 20, 6, 5, 1, chunks[ci], guard);
            head t = head_make(p, 50 + ci);
            float *out = out_alloc(&t), *saved = alloc_nan(20),
                  *work = alloc_nan(et_kc_work_floats(&p));
            et_kc_forward(&p, t.phq, t.ldq, t.phk, t.ldk, t.v, t.ldv, out, t.ldo, saved, work);
            float *state = alloc_nan(et_kc_decode_floats(&p)), step[5];
            et_kc_decode_reset(&p, state);
            double err = 0.0;
            for (int64_t i = 0; i < 20; i++) {
                et_kc_decode_step(&p, state, t.phq + i * t.ldq, t.phk + i * t.ldk,
                                  t.v + i * t.ldv, step);
                for (int c = 0; c < 5; c++)
                    err = fmax(err, fabs(step[c] - out[i * t.ldo + c]) /
                                        fmax(1.0, fabs(out[i * t.ldo + c])));
            }
            cr_assert(err <= TOL_DECODE, "chunk %d guard %d: decode err %g > %g", chunks[ci],
                      guard, err, TOL_DECODE);
            free(state);
            free(out);
            free(saved);
            free(work);
            head_free(&t);
        }
}

Test(kernel_core, macs_follow_spec)
{
    et_kc_shape p = shape(100, 80, 80, 16, 8, 0, 64, 0);
    cr_assert(et_kc_macs(&p) == 16.0 * 8 * 180 + 16.0 * 100);
    p = shape(100, 100, 100, 16, 8, 1, 32, 0);
    cr_assert(et_kc_macs(&p) == 2.0 * 100 * 16 * 8 + 100.0 * 16 + 100.0 * 32 * 24);
}
