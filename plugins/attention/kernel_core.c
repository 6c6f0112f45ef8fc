/* The shared kernel ("linear") attention core: chunked forward and backward
 * through OpenBLAS, the decode step, and the double references
 * (kernel_core.h; math in spec/attention.md). */
#include "kernel_core.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KC_DEFAULT_CHUNK 64

static int64_t chunk_of(const et_kc_shape *p)
{
    int64_t c = p->chunk > 0 ? p->chunk : KC_DEFAULT_CHUNK;
    int64_t l = p->len_q > 0 ? p->len_q : 1;
    return c < l ? c : l;
}

/* Keys that can be seen at all: the valid ones, and in causal mode only those
 * with a query at or after them. */
static int64_t keys_of(const et_kc_shape *p)
{
    int64_t n = p->key_len < 0 ? 0 : p->key_len;
    if (n > p->len_k)
        n = p->len_k;
    if (p->causal && n > p->len_q)
        n = p->len_q;
    return n;
}

static float guard_f(const et_kc_shape *p, float den)
{
    if (p->guard == ET_KC_GUARD_ADD)
        return den + p->eps;
    return den > p->eps ? den : p->eps;
}

static double guard_d(const et_kc_shape *p, double den)
{
    if (p->guard == ET_KC_GUARD_ADD)
        return den + p->eps;
    return den > p->eps ? den : p->eps;
}

/* dD/dden: 0 where the clamp max(den, eps) holds D at eps. */
static float guard_slope(const et_kc_shape *p, float den)
{
    return p->guard == ET_KC_GUARD_ADD || den > p->eps ? 1.0f : 0.0f;
}

static void zero_rows(float *a, int64_t lda, int64_t rows, int64_t cols)
{
    for (int64_t i = 0; i < rows; i++)
        memset(a + i * lda, 0, (size_t)cols * sizeof(float));
}

/* z += column sums of x (n,r) */
static void add_colsum(float *z, const float *x, int64_t ldx, int64_t n, int64_t r)
{
    for (int64_t j = 0; j < n; j++)
        for (int64_t c = 0; c < r; c++)
            z[c] += x[j * ldx + c];
}

/* Zero a (n, kv) block above the diagonal: query i of the chunk sees key j <= i. */
static void tril(float *a, int64_t n, int64_t kv)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < kv; j++)
            a[i * kv + j] = 0.0f;
}

int64_t et_kc_saved_floats(const et_kc_shape *p)
{
    return p->len_q;
}

int64_t et_kc_state_floats(const et_kc_shape *p)
{
    return (int64_t)p->r * p->dim_v + p->r;
}

/* dNUM (C,dv) and dden (C), then for causal steps the chunk products A and
 * B (C,C) */
int64_t et_kc_step_floats(const et_kc_shape *p)
{
    int64_t c = chunk_of(p);
    return c * p->dim_v + c + (p->causal ? 2 * c * c : 0);
}

void et_kc_state_reset(const et_kc_shape *p, float *state)
{
    memset(state, 0, (size_t)et_kc_state_floats(p) * sizeof(float));
}

/* Backward keeps two states in bidirectional attention (KV, z and dKV, dz)
 * and one at a time in causal (H, z, then U, w); forward needs less. */
int64_t et_kc_work_floats(const et_kc_shape *p)
{
    return (p->causal ? 1 : 2) * et_kc_state_floats(p) + et_kc_step_floats(p);
}

void et_kc_keys_add(const et_kc_shape *p, float *state, int64_t n, const float *phk, int64_t ldk,
                    const float *v, int64_t ldv)
{
    int64_t r = p->r, dv = p->dim_v;
    if (n <= 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)dv, (int)n, 1.0f, phk,
                (int)ldk, v, (int)ldv, 1.0f, state, (int)dv);
    add_colsum(state + r * dv, phk, ldk, n, r);
}

/* Divide out rows by D(den). */
static void normalise(const et_kc_shape *p, float *out, int64_t ldo, const float *den, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float inv = 1.0f / guard_f(p, den[i]);
        for (int64_t c = 0; c < p->dim_v; c++)
            out[i * ldo + c] *= inv;
    }
}

void et_kc_queries_forward(const et_kc_shape *p, const float *state, int64_t n, const float *phq,
                           int64_t ldq, float *out, int64_t ldo, float *den)
{
    int64_t r = p->r, dv = p->dim_v;
    if (n <= 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)dv, (int)r, 1.0f, phq,
                (int)ldq, state, (int)dv, 0.0f, out, (int)ldo);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)r, 1.0f, phq, (int)ldq, state + r * dv,
                1, 0.0f, den, 1);
    normalise(p, out, ldo, den, n);
}

void et_kc_causal_forward_step(const et_kc_shape *p, float *state, int64_t seen, int64_t n,
                               int64_t kv, const float *phq, int64_t ldq, const float *phk,
                               int64_t ldk, const float *v, int64_t ldv, float *out, int64_t ldo,
                               float *den, float *work)
{
    int64_t r = p->r, dv = p->dim_v;
    float *h = state, *z = state + r * dv, *a = work;
    /* NUM_c = Q_c H + tril(Q_c K_c^T) V_c, then H += K_c^T V_c */
    if (seen > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)dv, (int)r, 1.0f, phq,
                    (int)ldq, h, (int)dv, 0.0f, out, (int)ldo);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)r, 1.0f, phq, (int)ldq, z, 1, 0.0f,
                    den, 1);
    } else {
        zero_rows(out, ldo, n, dv);
        memset(den, 0, (size_t)n * sizeof(float));
    }
    if (kv > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)kv, (int)r, 1.0f, phq,
                    (int)ldq, phk, (int)ldk, 0.0f, a, (int)kv);
        tril(a, n, kv);
        for (int64_t i = 0; i < n; i++) {
            float s = 0.0f;
            for (int64_t j = 0; j < kv && j <= i; j++)
                s += a[i * kv + j];
            den[i] += s;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)dv, (int)kv, 1.0f, a,
                    (int)kv, v, (int)ldv, 1.0f, out, (int)ldo);
        et_kc_keys_add(p, state, kv, phk, ldk, v, ldv);
    }
    normalise(p, out, ldo, den, n);
}

/* Chunk c0.. of the causal scan: its rows, and its valid keys. */
static int64_t rows_at(const et_kc_shape *p, int64_t c0)
{
    int64_t C = chunk_of(p);
    return p->len_q - c0 < C ? p->len_q - c0 : C;
}

static int64_t keys_at(const et_kc_shape *p, int64_t c0, int64_t n)
{
    int64_t nk = keys_of(p);
    return nk - c0 < 0 ? 0 : (nk - c0 < n ? nk - c0 : n);
}

static int64_t seen_before(const et_kc_shape *p, int64_t c0)
{
    int64_t nk = keys_of(p);
    return c0 < nk ? c0 : nk;
}

void et_kc_forward(const et_kc_shape *p, const float *phq, int64_t ldq, const float *phk,
                   int64_t ldk, const float *v, int64_t ldv, float *out, int64_t ldo, float *saved,
                   float *work)
{
    int64_t L = p->len_q;
    float *state = work, *step = work + et_kc_state_floats(p);
    if (L <= 0)
        return;
    et_kc_state_reset(p, state);
    if (!p->causal) {
        et_kc_keys_add(p, state, keys_of(p), phk, ldk, v, ldv);
        et_kc_queries_forward(p, state, L, phq, ldq, out, ldo, saved);
        return;
    }
    for (int64_t c0 = 0; c0 < L; c0 += chunk_of(p)) {
        int64_t n = rows_at(p, c0);
        et_kc_causal_forward_step(p, state, seen_before(p, c0), n, keys_at(p, c0, n),
                                  phq + c0 * ldq, ldq, phk + c0 * ldk, ldk, v + c0 * ldv, ldv,
                                  out + c0 * ldo, ldo, saved + c0, step);
    }
}

/* dNUM_c = dout_c / D (n,dv) and dden_c = -(dout_i . out_i) / D * dD/dden (n) */
static void dnum_dden(const et_kc_shape *p, int64_t n, const float *out, int64_t ldo,
                      const float *dout, int64_t lddo, const float *den, float *dnum, float *dden)
{
    int64_t dv = p->dim_v;
    for (int64_t i = 0; i < n; i++) {
        float inv = 1.0f / guard_f(p, den[i]);
        const float *g = dout + i * lddo, *o = out + i * ldo;
        float dot = 0.0f;
        for (int64_t c = 0; c < dv; c++) {
            dnum[i * dv + c] = g[c] * inv;
            dot += g[c] * o[c];
        }
        dden[i] = -dot * inv * guard_slope(p, den[i]);
    }
}

/* rows[i] += x for n rows of a (n, r) block */
static void add_row_vector(float *a, int64_t lda, int64_t n, const float *x, int64_t r)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < r; c++)
            a[i * lda + c] += x[c];
}

void et_kc_queries_backward(const et_kc_shape *p, const float *state, float *dstate, int64_t n,
                            const float *phq, int64_t ldq, const float *out, int64_t ldo,
                            const float *dout, int64_t lddo, const float *den, float *dphq,
                            int64_t lddq, float *work)
{
    int64_t r = p->r, dv = p->dim_v;
    const float *kv = state, *z = state + r * dv;
    float *dkv = dstate, *dz = dstate + r * dv, *dnum = work, *dden = dnum + chunk_of(p) * dv;
    if (n <= 0)
        return;
    /* dphq_i = KV dnum_i + dden_i z; dKV += sum_i phq_i dnum_i^T; dz += sum_i dden_i phq_i */
    dnum_dden(p, n, out, ldo, dout, lddo, den, dnum, dden);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)r, (int)dv, 1.0f, dnum,
                (int)dv, kv, (int)dv, 0.0f, dphq, (int)lddq);
    cblas_sger(CblasRowMajor, (int)n, (int)r, 1.0f, dden, 1, z, 1, dphq, (int)lddq);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)dv, (int)n, 1.0f, phq,
                (int)ldq, dnum, (int)dv, 1.0f, dkv, (int)dv);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, (int)r, 1.0f, phq, (int)ldq, dden, 1, 1.0f, dz,
                1);
}

void et_kc_keys_backward(const et_kc_shape *p, const float *dstate, int64_t n, const float *phk,
                         int64_t ldk, const float *v, int64_t ldv, float *dphk, int64_t lddk,
                         float *dv, int64_t lddv)
{
    int64_t r = p->r, ndv = p->dim_v;
    const float *dkv = dstate, *dz = dstate + r * ndv;
    if (n <= 0)
        return;
    /* dphk_j = dKV v_j + dz; dv_j = dKV^T phk_j */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)r, (int)ndv, 1.0f, v,
                (int)ldv, dkv, (int)ndv, 0.0f, dphk, (int)lddk);
    add_row_vector(dphk, lddk, n, dz, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)ndv, (int)r, 1.0f, phk,
                (int)ldk, dkv, (int)ndv, 0.0f, dv, (int)lddv);
}

static void backward_bidirectional(const et_kc_shape *p, const float *phq, int64_t ldq,
                                   const float *phk, int64_t ldk, const float *v, int64_t ldv,
                                   const float *out, int64_t ldo, const float *dout, int64_t lddo,
                                   const float *den, float *dphq, int64_t lddq, float *dphk,
                                   int64_t lddk, float *dv_, int64_t lddv, float *work)
{
    int64_t L = p->len_q, S = p->len_k, nk = keys_of(p), C = chunk_of(p);
    float *state = work, *dstate = state + et_kc_state_floats(p),
          *step = dstate + et_kc_state_floats(p);
    et_kc_state_reset(p, state);
    et_kc_state_reset(p, dstate);
    et_kc_keys_add(p, state, nk, phk, ldk, v, ldv);
    for (int64_t c0 = 0; c0 < L; c0 += C)
        et_kc_queries_backward(p, state, dstate, rows_at(p, c0), phq + c0 * ldq, ldq,
                               out + c0 * ldo, ldo, dout + c0 * lddo, lddo, den + c0,
                               dphq + c0 * lddq, lddq, step);
    et_kc_keys_backward(p, dstate, nk, phk, ldk, v, ldv, dphk, lddk, dv_, lddv);
    zero_rows(dphk + nk * lddk, lddk, S - nk, p->r);
    zero_rows(dv_ + nk * lddv, lddv, S - nk, p->dim_v);
}

/* B = tril(dNUM_c V_c^T + dden 1^T) (n,kv): B_ij = dnum_i . v_j + dden_i for j <= i */
static void chunk_b(int64_t n, int64_t kv, int64_t dv, const float *dnum, const float *dden,
                    const float *vc, int64_t ldv, float *b)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)kv, (int)dv, 1.0f, dnum,
                (int)dv, vc, (int)ldv, 0.0f, b, (int)kv);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < kv; j++)
            b[i * kv + j] = j <= i ? b[i * kv + j] + dden[i] : 0.0f;
}

void et_kc_causal_backward_queries(const et_kc_shape *p, float *state, int64_t seen, int64_t n,
                                   int64_t kv, const float *phk, int64_t ldk, const float *v,
                                   int64_t ldv, const float *out, int64_t ldo, const float *dout,
                                   int64_t lddo, const float *den, float *dphq, int64_t lddq,
                                   float *work)
{
    int64_t r = p->r, dv = p->dim_v, C = chunk_of(p);
    float *h = state, *z = state + r * dv, *dnum = work, *dden = dnum + C * dv, *b = dden + C;
    /* dphq_i = H_i dnum_i + dden_i z_i, H_i and z_i over the keys j <= i */
    dnum_dden(p, n, out, ldo, dout, lddo, den, dnum, dden);
    if (seen > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)r, (int)dv, 1.0f, dnum,
                    (int)dv, h, (int)dv, 0.0f, dphq, (int)lddq);
        cblas_sger(CblasRowMajor, (int)n, (int)r, 1.0f, dden, 1, z, 1, dphq, (int)lddq);
    } else {
        zero_rows(dphq, lddq, n, r);
    }
    if (kv > 0) {
        chunk_b(n, kv, dv, dnum, dden, v, ldv, b);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)r, (int)kv, 1.0f, b,
                    (int)kv, phk, (int)ldk, 1.0f, dphq, (int)lddq);
        et_kc_keys_add(p, state, kv, phk, ldk, v, ldv);
    }
}

void et_kc_causal_backward_keys(const et_kc_shape *p, float *dstate, int64_t later, int64_t n,
                                int64_t kv, const float *phq, int64_t ldq, const float *phk,
                                int64_t ldk, const float *v, int64_t ldv, const float *out,
                                int64_t ldo, const float *dout, int64_t lddo, const float *den,
                                float *dphk, int64_t lddk, float *dv, int64_t lddv, float *work)
{
    int64_t r = p->r, ndv = p->dim_v, C = chunk_of(p);
    float *u = dstate, *w = dstate + r * ndv, *dnum = work, *dden = dnum + C * ndv,
          *a = dden + C, *b = a + C * C;
    /* dphk_j = U_j v_j + w_j, dv_j = U_j^T phk_j with the suffix sums
     * U_j = sum_{i>=j} phq_i dnum_i^T, w_j = sum_{i>=j} dden_i phq_i */
    dnum_dden(p, n, out, ldo, dout, lddo, den, dnum, dden);
    if (kv > 0) {
        chunk_b(n, kv, ndv, dnum, dden, v, ldv, b);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)kv, (int)r, 1.0f, phq,
                    (int)ldq, phk, (int)ldk, 0.0f, a, (int)kv);
        tril(a, n, kv);
        if (later > 0) {
            et_kc_keys_backward(p, dstate, kv, phk, ldk, v, ldv, dphk, lddk, dv, lddv);
        } else {
            zero_rows(dphk, lddk, kv, r);
            zero_rows(dv, lddv, kv, ndv);
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kv, (int)r, (int)n, 1.0f, b,
                    (int)kv, phq, (int)ldq, 1.0f, dphk, (int)lddk);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kv, (int)ndv, (int)n, 1.0f, a,
                    (int)kv, dnum, (int)ndv, 1.0f, dv, (int)lddv);
    }
    zero_rows(dphk + kv * lddk, lddk, n - kv, r);
    zero_rows(dv + kv * lddv, lddv, n - kv, ndv);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)ndv, (int)n, 1.0f, phq,
                (int)ldq, dnum, (int)ndv, 1.0f, u, (int)ndv);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, (int)r, 1.0f, phq, (int)ldq, dden, 1, 1.0f, w,
                1);
}

static void backward_causal(const et_kc_shape *p, const float *phq, int64_t ldq, const float *phk,
                            int64_t ldk, const float *v, int64_t ldv, const float *out,
                            int64_t ldo, const float *dout, int64_t lddo, const float *den,
                            float *dphq, int64_t lddq, float *dphk, int64_t lddk, float *dv_,
                            int64_t lddv, float *work)
{
    int64_t L = p->len_q, S = p->len_k, C = chunk_of(p);
    float *state = work, *step = work + et_kc_state_floats(p);
    int64_t last = (L - 1) / C * C;

    /* forward sweep with the prefix state H, z; then a reverse sweep with
     * the suffix sums U, w in the same floats */
    et_kc_state_reset(p, state);
    for (int64_t c0 = 0; c0 < L; c0 += C) {
        int64_t n = rows_at(p, c0);
        et_kc_causal_backward_queries(p, state, seen_before(p, c0), n, keys_at(p, c0, n),
                                      phk + c0 * ldk, ldk, v + c0 * ldv, ldv, out + c0 * ldo, ldo,
                                      dout + c0 * lddo, lddo, den + c0, dphq + c0 * lddq, lddq,
                                      step);
    }
    et_kc_state_reset(p, state);
    for (int64_t c0 = last; c0 >= 0; c0 -= C) {
        int64_t n = rows_at(p, c0);
        et_kc_causal_backward_keys(p, state, L - c0 - n, n, keys_at(p, c0, n), phq + c0 * ldq, ldq,
                                   phk + c0 * ldk, ldk, v + c0 * ldv, ldv, out + c0 * ldo, ldo,
                                   dout + c0 * lddo, lddo, den + c0, dphk + c0 * lddk, lddk,
                                   dv_ + c0 * lddv, lddv, step);
    }
    /* key rows past the queries are never seen in causal attention */
    zero_rows(dphk + L * lddk, lddk, S - L, p->r);
    zero_rows(dv_ + L * lddv, lddv, S - L, p->dim_v);
}

void et_kc_backward(const et_kc_shape *p, const float *phq, int64_t ldq, const float *phk,
                    int64_t ldk, const float *v, int64_t ldv, const float *out, int64_t ldo,
                    const float *dout, int64_t lddo, const float *saved, float *dphq,
                    int64_t lddq, float *dphk, int64_t lddk, float *dv, int64_t lddv, float *work)
{
    if (p->len_q <= 0) {
        zero_rows(dphk, lddk, p->len_k, p->r);
        zero_rows(dv, lddv, p->len_k, p->dim_v);
        return;
    }
    if (p->causal)
        backward_causal(p, phq, ldq, phk, ldk, v, ldv, out, ldo, dout, lddo, saved, dphq, lddq,
                        dphk, lddk, dv, lddv, work);
    else
        backward_bidirectional(p, phq, ldq, phk, ldk, v, ldv, out, ldo, dout, lddo, saved, dphq,
                               lddq, dphk, lddk, dv, lddv, work);
}

/* Rows of a feature block: query chunks and key blocks alike fit. */
static int64_t block_of(const et_kc_shape *p)
{
    int64_t c = p->chunk > 0 ? p->chunk : KC_DEFAULT_CHUNK;
    int64_t l = p->len_q > p->len_k ? p->len_q : p->len_k;
    l = l > 0 ? l : 1;
    return c < l ? c : l;
}

int64_t et_kc_mapped_work_floats(const et_kc_shape *p)
{
    return et_kc_work_floats(p) + 3 * block_of(p) * p->r;
}

/* The scratch of a mapped call: the states as et_kc_work_floats lays them
 * out (dstate only in bidirectional attention), the step scratch, then the
 * blocks phi(q), phi(k) and dphi. */
typedef struct mapped_work {
    float *state, *dstate, *step, *phq, *phk, *dphi;
} mapped_work;

static mapped_work mapped_work_of(const et_kc_shape *p, float *work)
{
    mapped_work w;
    int64_t sf = et_kc_state_floats(p), b = block_of(p) * p->r;
    w.state = work;
    w.dstate = p->causal ? NULL : work + sf;
    w.step = work + (p->causal ? 1 : 2) * sf;
    w.phq = w.step + et_kc_step_floats(p);
    w.phk = w.phq + b;
    w.dphi = w.phk + b;
    return w;
}

/* Bidirectional and cross: state = (KV, z) of the visible keys, a block at a time. */
static void mapped_key_state(const et_kc_shape *p, const et_kc_map *map, const float *v,
                             int64_t ldv, const mapped_work *w)
{
    int64_t nk = keys_of(p), B = block_of(p);
    et_kc_state_reset(p, w->state);
    for (int64_t j0 = 0; j0 < nk; j0 += B) {
        int64_t n = nk - j0 < B ? nk - j0 : B;
        map->features(map->ctx, ET_KC_SIDE_KEY, j0, n, w->phk);
        et_kc_keys_add(p, w->state, n, w->phk, p->r, v + j0 * ldv, ldv);
    }
}

/* Causal chunk c0 of n rows with kv visible keys: phi(q) of its rows and,
 * when it has any, phi(k) of its keys. */
static void mapped_chunk(const et_kc_map *map, int64_t c0, int64_t n, int64_t kv,
                         const mapped_work *w)
{
    map->features(map->ctx, ET_KC_SIDE_QUERY, c0, n, w->phq);
    if (kv > 0)
        map->features(map->ctx, ET_KC_SIDE_KEY, c0, kv, w->phk);
}

void et_kc_mapped_forward(const et_kc_shape *p, const et_kc_map *map, const float *v,
                          int64_t ldv, float *out, int64_t ldo, float *saved, float *work)
{
    int64_t L = p->len_q, r = p->r;
    mapped_work w = mapped_work_of(p, work);
    if (L <= 0)
        return;
    if (!p->causal) {
        mapped_key_state(p, map, v, ldv, &w);
        for (int64_t i0 = 0; i0 < L; i0 += chunk_of(p)) {
            int64_t n = rows_at(p, i0);
            map->features(map->ctx, ET_KC_SIDE_QUERY, i0, n, w.phq);
            et_kc_queries_forward(p, w.state, n, w.phq, r, out + i0 * ldo, ldo, saved + i0);
        }
        return;
    }
    et_kc_state_reset(p, w.state);
    for (int64_t c0 = 0; c0 < L; c0 += chunk_of(p)) {
        int64_t n = rows_at(p, c0), kv = keys_at(p, c0, n);
        mapped_chunk(map, c0, n, kv, &w);
        et_kc_causal_forward_step(p, w.state, seen_before(p, c0), n, kv, w.phq, r, w.phk, r,
                                  v + c0 * ldv, ldv, out + c0 * ldo, ldo, saved + c0, w.step);
    }
}

/* Bidirectional and cross backward: KV, z again, then the query chunks
 * (their gradients, and dKV, dz), then the key blocks (theirs, and dv). */
static void mapped_backward_bidirectional(const et_kc_shape *p, const et_kc_map *map,
                                          const float *v, int64_t ldv, const float *out,
                                          int64_t ldo, const float *dout, int64_t lddo,
                                          const float *den, float *dv, int64_t lddv,
                                          const mapped_work *w)
{
    int64_t L = p->len_q, S = p->len_k, r = p->r, nk = keys_of(p), B = block_of(p);
    mapped_key_state(p, map, v, ldv, w);
    et_kc_state_reset(p, w->dstate);
    for (int64_t i0 = 0; i0 < L; i0 += chunk_of(p)) {
        int64_t n = rows_at(p, i0);
        map->features(map->ctx, ET_KC_SIDE_QUERY, i0, n, w->phq);
        et_kc_queries_backward(p, w->state, w->dstate, n, w->phq, r, out + i0 * ldo, ldo,
                               dout + i0 * lddo, lddo, den + i0, w->dphi, r, w->step);
        map->backward(map->ctx, ET_KC_SIDE_QUERY, i0, n, w->phq, w->dphi);
    }
    for (int64_t j0 = 0; j0 < nk; j0 += B) {
        int64_t n = nk - j0 < B ? nk - j0 : B;
        map->features(map->ctx, ET_KC_SIDE_KEY, j0, n, w->phk);
        et_kc_keys_backward(p, w->dstate, n, w->phk, r, v + j0 * ldv, ldv, w->dphi, r,
                            dv + j0 * lddv, lddv);
        map->backward(map->ctx, ET_KC_SIDE_KEY, j0, n, w->phk, w->dphi);
    }
    zero_rows(dv + nk * lddv, lddv, S - nk, p->dim_v);
}

/* Causal backward: the sweep in order with the prefix state (query
 * gradients), then the reverse sweep with the suffix sums (key gradients,
 * dv), as backward_causal does on whole rows. */
static void mapped_backward_causal(const et_kc_shape *p, const et_kc_map *map, const float *v,
                                   int64_t ldv, const float *out, int64_t ldo, const float *dout,
                                   int64_t lddo, const float *den, float *dv, int64_t lddv,
                                   const mapped_work *w)
{
    int64_t L = p->len_q, S = p->len_k, r = p->r, C = chunk_of(p);
    int64_t last = (L - 1) / C * C;
    et_kc_state_reset(p, w->state);
    for (int64_t c0 = 0; c0 < L; c0 += C) {
        int64_t n = rows_at(p, c0), kv = keys_at(p, c0, n);
        mapped_chunk(map, c0, n, kv, w);
        et_kc_causal_backward_queries(p, w->state, seen_before(p, c0), n, kv, w->phk, r,
                                      v + c0 * ldv, ldv, out + c0 * ldo, ldo, dout + c0 * lddo,
                                      lddo, den + c0, w->dphi, r, w->step);
        map->backward(map->ctx, ET_KC_SIDE_QUERY, c0, n, w->phq, w->dphi);
    }
    et_kc_state_reset(p, w->state);
    for (int64_t c0 = last; c0 >= 0; c0 -= C) {
        int64_t n = rows_at(p, c0), kv = keys_at(p, c0, n);
        mapped_chunk(map, c0, n, kv, w);
        et_kc_causal_backward_keys(p, w->state, L - c0 - n, n, kv, w->phq, r, w->phk, r,
                                   v + c0 * ldv, ldv, out + c0 * ldo, ldo, dout + c0 * lddo, lddo,
                                   den + c0, w->dphi, r, dv + c0 * lddv, lddv, w->step);
        if (kv > 0)
            map->backward(map->ctx, ET_KC_SIDE_KEY, c0, kv, w->phk, w->dphi);
    }
    zero_rows(dv + L * lddv, lddv, S - L, p->dim_v);
}

void et_kc_mapped_backward(const et_kc_shape *p, const et_kc_map *map, const float *v,
                           int64_t ldv, const float *out, int64_t ldo, const float *dout,
                           int64_t lddo, const float *saved, float *dv, int64_t lddv,
                           float *work)
{
    mapped_work w = mapped_work_of(p, work);
    if (p->causal && p->len_q > 0)
        mapped_backward_causal(p, map, v, ldv, out, ldo, dout, lddo, saved, dv, lddv, &w);
    else if (!p->causal)
        mapped_backward_bidirectional(p, map, v, ldv, out, ldo, dout, lddo, saved, dv, lddv,
                                      &w);
    else
        zero_rows(dv, lddv, p->len_k, p->dim_v);
}

double et_kc_macs(const et_kc_shape *p)
{
    double L = p->len_q, S = p->len_k, r = p->r, dv = p->dim_v;
    if (p->causal)
        return 2.0 * L * r * dv + L * r + L * (double)chunk_of(p) * (r + dv);
    return r * dv * (L + S) + r * L;
}

int64_t et_kc_decode_floats(const et_kc_shape *p)
{
    return et_kc_state_floats(p);
}

void et_kc_decode_reset(const et_kc_shape *p, float *state)
{
    et_kc_state_reset(p, state);
}

void et_kc_decode_step(const et_kc_shape *p, float *state, const float *phq, const float *phk,
                       const float *v, float *out)
{
    int64_t r = p->r, dv = p->dim_v;
    float *h = state, *z = state + r * dv;
    cblas_sger(CblasRowMajor, (int)r, (int)dv, 1.0f, phk, 1, v, 1, h, (int)dv);
    float den = 0.0f;
    for (int64_t c = 0; c < r; c++) {
        z[c] += phk[c];
        den += phq[c] * z[c];
    }
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)r, (int)dv, 1.0f, h, (int)dv, phq, 1, 0.0f, out,
                1);
    float inv = 1.0f / guard_f(p, den);
    for (int64_t c = 0; c < dv; c++)
        out[c] *= inv;
}

void et_kc_naive_forward(const et_kc_shape *p, const float *phq, int64_t ldq, const float *phk,
                         int64_t ldk, const float *v, int64_t ldv, double *out, double *den)
{
    int64_t L = p->len_q, r = p->r, dv = p->dim_v, nk = keys_of(p);
    for (int64_t i = 0; i < L; i++) {
        double *o = out + i * dv, dsum = 0.0;
        for (int64_t c = 0; c < dv; c++)
            o[c] = 0.0;
        for (int64_t j = 0; j < nk && (!p->causal || j <= i); j++) {
            double wij = 0.0;
            for (int64_t c = 0; c < r; c++)
                wij += (double)phq[i * ldq + c] * phk[j * ldk + c];
            for (int64_t c = 0; c < dv; c++)
                o[c] += wij * v[j * ldv + c];
            dsum += wij;
        }
        double dd = guard_d(p, dsum);
        for (int64_t c = 0; c < dv; c++)
            o[c] /= dd;
        if (den)
            den[i] = dsum;
    }
}

void et_kc_naive_recurrence(const et_kc_shape *p, const float *phq, int64_t ldq,
                            const float *phk, int64_t ldk, const float *v, int64_t ldv,
                            double *out, double *den)
{
    int64_t L = p->len_q, r = p->r, dv = p->dim_v, nk = keys_of(p);
    double *kv = calloc((size_t)(r * dv + r), sizeof(double));
    if (!kv) {
        for (int64_t i = 0; i < L * dv; i++)
            out[i] = NAN;
        return;
    }
    double *z = kv + r * dv;
    for (int64_t i = 0; i < L; i++) {
        if (i < nk)
            for (int64_t a = 0; a < r; a++) {
                double f = phk[i * ldk + a];
                z[a] += f;
                for (int64_t c = 0; c < dv; c++)
                    kv[a * dv + c] += f * v[i * ldv + c];
            }
        double dsum = 0.0;
        for (int64_t a = 0; a < r; a++)
            dsum += (double)phq[i * ldq + a] * z[a];
        double dd = guard_d(p, dsum);
        for (int64_t c = 0; c < dv; c++) {
            double s = 0.0;
            for (int64_t a = 0; a < r; a++)
                s += (double)phq[i * ldq + a] * kv[a * dv + c];
            out[i * dv + c] = s / dd;
        }
        if (den)
            den[i] = dsum;
    }
    free(kv);
}
