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

int64_t et_kc_work_floats(const et_kc_shape *p)
{
    int64_t r = p->r, dv = p->dim_v, c = chunk_of(p);
    /* backward: dNUM (C,dv) and dden (C), plus the states KV, z, dKV, dz
     * (bidirectional) or one state H, z then U, w and the chunk products A, B
     * (C,C) (causal); forward needs less */
    if (p->causal)
        return r * dv + r + c * dv + c + 2 * c * c;
    return 2 * (r * dv + r) + c * dv + c;
}

/* KV = phk[:n]^T v[:n] (r,dv), z = colsum phk[:n] (r) */
static void kv_state(const et_kc_shape *p, int64_t n, const float *phk, int64_t ldk,
                     const float *v, int64_t ldv, float *kv, float *z)
{
    int64_t r = p->r, dv = p->dim_v;
    memset(kv, 0, (size_t)(r * dv) * sizeof(float));
    memset(z, 0, (size_t)r * sizeof(float));
    if (n == 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)dv, (int)n, 1.0f, phk,
                (int)ldk, v, (int)ldv, 0.0f, kv, (int)dv);
    add_colsum(z, phk, ldk, n, r);
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

void et_kc_forward(const et_kc_shape *p, const float *phq, int64_t ldq, const float *phk,
                   int64_t ldk, const float *v, int64_t ldv, float *out, int64_t ldo, float *saved,
                   float *work)
{
    int64_t L = p->len_q, r = p->r, dv = p->dim_v, nk = keys_of(p);
    float *h = work, *z = h + r * dv, *a = z + r, *den = saved;
    if (L <= 0)
        return;
    if (!p->causal) {
        kv_state(p, nk, phk, ldk, v, ldv, h, z);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L, (int)dv, (int)r, 1.0f, phq,
                    (int)ldq, h, (int)dv, 0.0f, out, (int)ldo);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)L, (int)r, 1.0f, phq, (int)ldq, z, 1, 0.0f,
                    den, 1);
        normalise(p, out, ldo, den, L);
        return;
    }
    /* causal, chunk by chunk: NUM_c = Q_c H + tril(Q_c K_c^T) V_c, then H += K_c^T V_c */
    int64_t C = chunk_of(p);
    memset(h, 0, (size_t)(r * dv) * sizeof(float));
    memset(z, 0, (size_t)r * sizeof(float));
    for (int64_t c0 = 0; c0 < L; c0 += C) {
        int64_t n = L - c0 < C ? L - c0 : C;
        int64_t kv = nk - c0 < 0 ? 0 : (nk - c0 < n ? nk - c0 : n);
        const float *q = phq + c0 * ldq, *k = phk + c0 * ldk, *vc = v + c0 * ldv;
        float *o = out + c0 * ldo, *dn = den + c0;
        if (c0 > 0 && nk > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)dv, (int)r, 1.0f,
                        q, (int)ldq, h, (int)dv, 0.0f, o, (int)ldo);
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)r, 1.0f, q, (int)ldq, z, 1,
                        0.0f, dn, 1);
        } else {
            zero_rows(o, ldo, n, dv);
            memset(dn, 0, (size_t)n * sizeof(float));
        }
        if (kv > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)kv, (int)r, 1.0f, q,
                        (int)ldq, k, (int)ldk, 0.0f, a, (int)kv);
            tril(a, n, kv);
            for (int64_t i = 0; i < n; i++) {
                float s = 0.0f;
                for (int64_t j = 0; j < kv && j <= i; j++)
                    s += a[i * kv + j];
                dn[i] += s;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)dv, (int)kv, 1.0f,
                        a, (int)kv, vc, (int)ldv, 1.0f, o, (int)ldo);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)dv, (int)kv, 1.0f, k,
                        (int)ldk, vc, (int)ldv, 1.0f, h, (int)dv);
            add_colsum(z, k, ldk, kv, r);
        }
        normalise(p, o, ldo, dn, n);
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

static void backward_bidirectional(const et_kc_shape *p, const float *phq, int64_t ldq,
                                   const float *phk, int64_t ldk, const float *v, int64_t ldv,
                                   const float *out, int64_t ldo, const float *dout, int64_t lddo,
                                   const float *den, float *dphq, int64_t lddq, float *dphk,
                                   int64_t lddk, float *dv_, int64_t lddv, float *work)
{
    int64_t L = p->len_q, S = p->len_k, r = p->r, dv = p->dim_v, nk = keys_of(p), C = chunk_of(p);
    float *kv = work, *z = kv + r * dv, *dkv = z + r, *dz = dkv + r * dv, *dnum = dz + r,
          *dden = dnum + C * dv;
    kv_state(p, nk, phk, ldk, v, ldv, kv, z);
    memset(dkv, 0, (size_t)(r * dv) * sizeof(float));
    memset(dz, 0, (size_t)r * sizeof(float));
    /* dphq_i = KV dnum_i + dden_i z; dKV = sum_i phq_i dnum_i^T; dz = sum_i dden_i phq_i */
    for (int64_t c0 = 0; c0 < L; c0 += C) {
        int64_t n = L - c0 < C ? L - c0 : C;
        const float *q = phq + c0 * ldq;
        float *dq = dphq + c0 * lddq;
        dnum_dden(p, n, out + c0 * ldo, ldo, dout + c0 * lddo, lddo, den + c0, dnum, dden);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)r, (int)dv, 1.0f, dnum,
                    (int)dv, kv, (int)dv, 0.0f, dq, (int)lddq);
        cblas_sger(CblasRowMajor, (int)n, (int)r, 1.0f, dden, 1, z, 1, dq, (int)lddq);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)dv, (int)n, 1.0f, q,
                    (int)ldq, dnum, (int)dv, 1.0f, dkv, (int)dv);
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, (int)r, 1.0f, q, (int)ldq, dden, 1, 1.0f,
                    dz, 1);
    }
    /* dphk_j = dKV v_j + dz; dv_j = dKV^T phk_j, for the valid keys */
    if (nk > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nk, (int)r, (int)dv, 1.0f, v,
                    (int)ldv, dkv, (int)dv, 0.0f, dphk, (int)lddk);
        add_row_vector(dphk, lddk, nk, dz, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nk, (int)dv, (int)r, 1.0f, phk,
                    (int)ldk, dkv, (int)dv, 0.0f, dv_, (int)lddv);
    }
    zero_rows(dphk + nk * lddk, lddk, S - nk, r);
    zero_rows(dv_ + nk * lddv, lddv, S - nk, dv);
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

static void backward_causal(const et_kc_shape *p, const float *phq, int64_t ldq, const float *phk,
                            int64_t ldk, const float *v, int64_t ldv, const float *out,
                            int64_t ldo, const float *dout, int64_t lddo, const float *den,
                            float *dphq, int64_t lddq, float *dphk, int64_t lddk, float *dv_,
                            int64_t lddv, float *work)
{
    int64_t L = p->len_q, S = p->len_k, r = p->r, dv = p->dim_v, nk = keys_of(p), C = chunk_of(p);
    float *h = work, *z = h + r * dv, *dnum = z + r, *dden = dnum + C * dv,
          *a = dden + C, *b = a + C * C;
    int64_t nchunks = (L + C - 1) / C;

    /* forward sweep, prefix state H, z: dphq_i = H_i dnum_i + dden_i z_i */
    memset(h, 0, (size_t)(r * dv) * sizeof(float));
    memset(z, 0, (size_t)r * sizeof(float));
    for (int64_t c0 = 0; c0 < L; c0 += C) {
        int64_t n = L - c0 < C ? L - c0 : C;
        int64_t kv = nk - c0 < 0 ? 0 : (nk - c0 < n ? nk - c0 : n);
        const float *k = phk + c0 * ldk, *vc = v + c0 * ldv;
        float *dq = dphq + c0 * lddq;
        dnum_dden(p, n, out + c0 * ldo, ldo, dout + c0 * lddo, lddo, den + c0, dnum, dden);
        if (c0 > 0 && nk > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)r, (int)dv, 1.0f,
                        dnum, (int)dv, h, (int)dv, 0.0f, dq, (int)lddq);
            cblas_sger(CblasRowMajor, (int)n, (int)r, 1.0f, dden, 1, z, 1, dq, (int)lddq);
        } else {
            zero_rows(dq, lddq, n, r);
        }
        if (kv > 0) {
            chunk_b(n, kv, dv, dnum, dden, vc, ldv, b);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)r, (int)kv, 1.0f,
                        b, (int)kv, k, (int)ldk, 1.0f, dq, (int)lddq);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)dv, (int)kv, 1.0f, k,
                        (int)ldk, vc, (int)ldv, 1.0f, h, (int)dv);
            add_colsum(z, k, ldk, kv, r);
        }
    }

    /* reverse sweep, suffix sums U = sum_{i>=j} phq_i dnum_i^T (r,dv) and
     * w = sum_{i>=j} dden_i phq_i (r), reusing h and z as U and w:
     * dphk_j = U_j v_j + w_j, dv_j = U_j^T phk_j */
    float *u = h, *w = z;
    memset(u, 0, (size_t)(r * dv) * sizeof(float));
    memset(w, 0, (size_t)r * sizeof(float));
    for (int64_t ci = nchunks - 1; ci >= 0; ci--) {
        int64_t c0 = ci * C;
        int64_t n = L - c0 < C ? L - c0 : C;
        int64_t kv = nk - c0 < 0 ? 0 : (nk - c0 < n ? nk - c0 : n);
        const float *q = phq + c0 * ldq, *k = phk + c0 * ldk, *vc = v + c0 * ldv;
        float *dk = dphk + c0 * lddk, *dvc = dv_ + c0 * lddv;
        dnum_dden(p, n, out + c0 * ldo, ldo, dout + c0 * lddo, lddo, den + c0, dnum, dden);
        if (kv > 0) {
            int later = c0 + n < L; /* U and w hold the chunks after this one */
            chunk_b(n, kv, dv, dnum, dden, vc, ldv, b);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)kv, (int)r, 1.0f, q,
                        (int)ldq, k, (int)ldk, 0.0f, a, (int)kv);
            tril(a, n, kv);
            if (later) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)kv, (int)r, (int)dv,
                            1.0f, vc, (int)ldv, u, (int)dv, 0.0f, dk, (int)lddk);
                add_row_vector(dk, lddk, kv, w, r);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)kv, (int)dv, (int)r,
                            1.0f, k, (int)ldk, u, (int)dv, 0.0f, dvc, (int)lddv);
            } else {
                zero_rows(dk, lddk, kv, r);
                zero_rows(dvc, lddv, kv, dv);
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kv, (int)r, (int)n, 1.0f, b,
                        (int)kv, q, (int)ldq, 1.0f, dk, (int)lddk);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kv, (int)dv, (int)n, 1.0f, a,
                        (int)kv, dnum, (int)dv, 1.0f, dvc, (int)lddv);
        }
        zero_rows(dk + kv * lddk, lddk, n - kv, r);
        zero_rows(dvc + kv * lddv, lddv, n - kv, dv);
        if (c0 > 0) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)dv, (int)n, 1.0f, q,
                        (int)ldq, dnum, (int)dv, 1.0f, u, (int)dv);
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, (int)r, 1.0f, q, (int)ldq, dden, 1,
                        1.0f, w, 1);
        }
    }
    /* key rows past the queries are never seen in causal attention */
    zero_rows(dphk + L * lddk, lddk, S - L, r);
    zero_rows(dv_ + L * lddv, lddv, S - L, dv);
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

double et_kc_macs(const et_kc_shape *p)
{
    double L = p->len_q, S = p->len_k, r = p->r, dv = p->dim_v;
    if (p->causal)
        return 2.0 * L * r * dv + L * r + L * (double)chunk_of(p) * (r + dv);
    return r * dv * (L + S) + r * L;
}

int64_t et_kc_decode_floats(const et_kc_shape *p)
{
    return (int64_t)p->r * p->dim_v + p->r;
}

void et_kc_decode_reset(const et_kc_shape *p, float *state)
{
    memset(state, 0, (size_t)et_kc_decode_floats(p) * sizeof(float));
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
