/* Tests of the shared kernel attention core (plugins/attention/kernel_core.h):
 * the BLAS fast path against the double references, chunked causal against
 * the plain recurrence for chunk sizes that do and do not divide N, backward
 * against central differences of the double reference, decoding against the
 * causal forward, padding rows that are never read, and the mapped drivers
 * (features made a block at a time) against the whole-row ones. */
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

/* A feature map for the mapped drivers that copies rows of the head's
 * whole feature arrays, so their results can be set beside et_kc_forward
 * and et_kc_backward on the same rows. It audits the calls: blocks of 1 to
 * `block` rows inside the visible rows, backward handed the features that
 * `features` gives those rows; and it writes the gradients it is handed to
 * dq (L,r) and dk (S,r), contiguous. */
typedef struct copy_map {
    const head *t;
    int64_t block, visible; /* block rows; visible key rows */
    float *dq, *dk;
    int64_t q_end, k_end; /* one past the last query and key row asked for */
    int bad;              /* calls that broke the contract */
} copy_map;

static void copy_rows(const copy_map *m, et_kc_side side, int64_t i0, int64_t n, float *phi)
{
    const head *t = m->t;
    const float *x = side == ET_KC_SIDE_QUERY ? t->phq + i0 * t->ldq : t->phk + i0 * t->ldk;
    int64_t ld = side == ET_KC_SIDE_QUERY ? t->ldq : t->ldk;
    for (int64_t i = 0; i < n; i++)
        memcpy(phi + i * t->p.r, x + i * ld, (size_t)t->p.r * sizeof(float));
}

static int copy_call_ok(copy_map *m, et_kc_side side, int64_t i0, int64_t n)
{
    int64_t end = side == ET_KC_SIDE_QUERY ? m->t->p.len_q : m->visible;
    int ok = i0 >= 0 && n >= 1 && n <= m->block && i0 + n <= end;
    m->bad += !ok;
    return ok;
}

static void copy_features(void *ctx, et_kc_side side, int64_t i0, int64_t n, float *phi)
{
    copy_map *m = ctx;
    if (!copy_call_ok(m, side, i0, n))
        return;
    copy_rows(m, side, i0, n, phi);
    int64_t *end = side == ET_KC_SIDE_QUERY ? &m->q_end : &m->k_end;
    *end = i0 + n > *end ? i0 + n : *end;
}

static void copy_backward(void *ctx, et_kc_side side, int64_t i0, int64_t n, const float *phi,
                          float *dphi)
{
    copy_map *m = ctx;
    int64_t r = m->t->p.r;
    if (!copy_call_ok(m, side, i0, n))
        return;
    float *want = alloc_nan(n * r);
    copy_rows(m, side, i0, n, want);
    m->bad += memcmp(want, phi, (size_t)(n * r) * sizeof(float)) != 0;
    free(want);
    float *dx = (side == ET_KC_SIDE_QUERY ? m->dq : m->dk) + i0 * r;
    memcpy(dx, dphi, (size_t)(n * r) * sizeof(float));
}

/* max|a - b| / max(1, max|b|) over rows x cols blocks with strides la, lb */
static double block_error(const float *a, int64_t la, const float *b, int64_t lb, int64_t rows,
                          int64_t cols)
{
    double num = 0.0, mx = 1.0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < cols; c++) {
            double d = fabs((double)a[i * la + c] - b[i * lb + c]);
            num = d > num || isnan(d) ? d : num;
            mx = fmax(mx, fabs(b[i * lb + c]));
        }
    return num / mx;
}

/* Forward and backward of the mapped drivers vs the whole-row ones on the
 * head t (freed here); returns the largest scaled difference of out, dphq,
 * dphk and dv, after asserting the map's audit, the untouched gaps and the
 * rows the drivers ask for. */
static double mapped_vs_whole(head t, uint64_t seed)
{
    const et_kc_shape *p = &t.p;
    int64_t L = p->len_q, S = p->len_k, r = p->r, dv = p->dim_v;
    int64_t C = p->chunk > 0 ? p->chunk : 64, most = L > S ? L : S;
    int64_t visible = p->key_len < S ? p->key_len : S;
    if (p->causal && visible > L)
        visible = L;
    copy_map m = {.t = &t, .block = C < most ? C : (most > 0 ? most : 1), .visible = visible};
    et_kc_map map = {.features = copy_features, .backward = copy_backward, .ctx = &m};

    float *out = out_alloc(&t), *out2 = out_alloc(&t);
    float *saved = alloc_nan(et_kc_saved_floats(p)), *saved2 = alloc_nan(et_kc_saved_floats(p));
    float *work = alloc_nan(et_kc_work_floats(p)), *mwork = alloc_nan(et_kc_mapped_work_floats(p));
    et_kc_forward(p, t.phq, t.ldq, t.phk, t.ldk, t.v, t.ldv, out, t.ldo, saved, work);
    et_kc_mapped_forward(p, &map, t.v, t.ldv, out2, t.ldo, saved2, mwork);
    cr_assert(m.bad == 0 && m.q_end == L && m.k_end == visible,
              "forward: %d bad calls, rows asked %lld of %lld queries, %lld of %lld keys",
              m.bad, (long long)m.q_end, (long long)L, (long long)m.k_end, (long long)visible);
    double err = block_error(out2, t.ldo, out, t.ldo, L, dv);
    for (int64_t i = 0; i < L; i++)
        cr_assert(out2[i * t.ldo + dv] == 7.0f, "row %lld: gap overwritten", (long long)i);

    et_rng g = et_rng_from_seed(seed);
    int64_t lddo = dv + 2, lv = dv + 3;
    float *dout = alloc_nan(L * lddo);
    for (int64_t i = 0; i < L; i++)
        for (int64_t c = 0; c < dv; c++)
            dout[i * lddo + c] = (float)et_rng_normal(&g);
    float *dq = alloc_nan(L * r), *dk = alloc_nan(S * r), *dvv = alloc_nan(S * lv);
    float *dq2 = alloc_nan(L * r), *dk2 = alloc_nan(S * r), *dvv2 = alloc_nan(S * lv);
    for (int64_t j = 0; j < S; j++)
        dvv2[j * lv + dv] = 7.0f;
    et_kc_backward(p, t.phq, t.ldq, t.phk, t.ldk, t.v, t.ldv, out, t.ldo, dout, lddo, saved, dq,
                   r, dk, r, dvv, lv, work);
    m.dq = dq2;
    m.dk = dk2;
    m.q_end = m.k_end = 0;
    float *mwork2 = alloc_nan(et_kc_mapped_work_floats(p));
    et_kc_mapped_backward(p, &map, t.v, t.ldv, out2, t.ldo, dout, lddo, saved2, dvv2, lv, mwork2);
    cr_assert(m.bad == 0 && m.q_end == L && m.k_end == visible,
              "backward: %d bad calls, rows asked %lld of %lld queries, %lld of %lld keys",
              m.bad, (long long)m.q_end, (long long)L, (long long)m.k_end, (long long)visible);
    for (int64_t j = 0; j < S; j++)
        cr_assert(dvv2[j * lv + dv] == 7.0f, "dv row %lld: gap overwritten", (long long)j);
    /* rows past the visible keys get no gradient from the map (NaN stays) */
    for (int64_t j = visible; j < S; j++)
        cr_assert(isnan(dk2[j * r]), "key row %lld past the visible ones was written",
                  (long long)j);
    err = fmax(err, block_error(dq2, r, dq, r, L, r));
    err = fmax(err, block_error(dk2, r, dk, r, visible, r));
    err = fmax(err, block_error(dvv2, lv, dvv, lv, S, dv));
    free(out), free(out2), free(saved), free(saved2), free(work), free(mwork), free(mwork2);
    free(dout), free(dq), free(dk), free(dvv), free(dq2), free(dk2), free(dvv2);
    head_free(&t);
    return err;
}

/* The mapped drivers run the same chunk steps on features made a block at
 * a time: equal to the whole-row path up to the rounding of sums split
 * differently, in every mode, for chunks that do and do not divide the
 * lengths, key blocks longer than the queries (cross, S > L), padding. */
Test(kernel_core, mapped_equals_whole_rows)
{
    const int32_t chunks[] = {1, 3, 4, 5, 12, 64};
    const int32_t cases[][4] = {/* L, S, key_len, causal */
                                {12, 12, 12, 0}, {12, 12, 7, 0}, {12, 12, 0, 0}, {5, 11, 11, 0},
                                {5, 11, 9, 0},   {12, 3, 2, 0},  {12, 12, 12, 1}, {12, 12, 7, 1},
                                {12, 12, 0, 1},  {13, 13, 13, 1}};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            for (int32_t guard = 0; guard < 2; guard++) {
                et_kc_shape p = shape(cases[i][0], cases[i][1], cases[i][2], 5, 3, cases[i][3],
                                      chunks[c], guard);
                double e = mapped_vs_whole(head_make(p, 80 + i), 90 + c);
                cr_assert(e <= TOL_FORWARD, "L=%d S=%d keys=%d causal=%d chunk=%d guard=%d: %g",
                          cases[i][0], cases[i][1], cases[i][2], cases[i][3], chunks[c], guard,
                          e);
            }
}

/* Scratch of the mapped drivers is the same at 1024 and 16384 rows: the
 * features of a block, not of a sequence. */
Test(kernel_core, mapped_scratch_independent_of_length)
{
    for (int32_t causal = 0; causal < 2; causal++) {
        et_kc_shape a = shape(1024, 1024, 1024, 128, 64, causal, 64, 0);
        et_kc_shape b = shape(16384, 16384, 300, 128, 64, causal, 64, 0);
        cr_assert_eq(et_kc_mapped_work_floats(&a), et_kc_mapped_work_floats(&b));
        cr_assert(et_kc_mapped_work_floats(&b) <= et_kc_work_floats(&b) + 3 * 64 * 128);
    }
    /* one query against many keys (cross decoding): key blocks stay a chunk */
    et_kc_shape x = shape(1, 16384, 16384, 128, 64, 0, 64, 0);
    et_kc_shape y = shape(1, 1024, 1024, 128, 64, 0, 64, 0);
    cr_assert_eq(et_kc_mapped_work_floats(&x), et_kc_mapped_work_floats(&y));
}
