/* The engine's layer kernels: forward/backward pairs on raw float arrays
 * (shapes in layers.h). GEMMs go through OpenBLAS with leading dimensions so
 * a supernet slice is used in place; the rest are plain loops that the
 * compiler vectorises. */
#include "layers.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include <etnas/arch.h>
#include <etnas/rng.h>

#include "hostimpl.h"

/* GEMMs are split over the engine's worker pool, each worker calling a
 * single-threaded OpenBLAS on its block: one set of threads for the whole
 * engine (attention plugins call BLAS from inside pool workers too), and a
 * fixed split per thread count, so results repeat. Small products run on
 * the calling thread. */
#define GEMM_PARALLEL_MIN_MACS 262144.0

typedef struct gemm_job {
    float *out, *dinp, *dw;
    const float *inp, *w, *bias, *dout;
    int64_t ldo, ldi, ldw, lddi, lddw, lddo, c, oc;
} gemm_job;

static void fwd_rows(const gemm_job *j, int64_t r0, int64_t r1)
{
    float *out = j->out + r0 * j->ldo;
    if (j->bias)
        for (int64_t i = 0; i < r1 - r0; i++)
            memcpy(out + i * j->ldo, j->bias, sizeof(float) * (size_t)j->oc);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), (int)j->oc, (int)j->c,
                1.0f, j->inp + r0 * j->ldi, (int)j->ldi, j->w, (int)j->ldw, j->bias ? 1.0f : 0.0f,
                out, (int)j->ldo);
}

static void fwd_job(void *arg, int64_t b, int64_t e, int32_t worker)
{
    (void)worker;
    fwd_rows(arg, b, e);
}

void et_linear_forward(float *out, int64_t ldo, const float *inp, int64_t ldi, const float *w,
                       int64_t ldw, const float *bias, int64_t n, int64_t c, int64_t oc)
{
    gemm_job j = {.out = out, .inp = inp, .w = w, .bias = bias, .ldo = ldo, .ldi = ldi,
                  .ldw = ldw, .c = c, .oc = oc};
    if ((double)n * c * oc < GEMM_PARALLEL_MIN_MACS)
        fwd_rows(&j, 0, n);
    else
        et_parallel_for(NULL, n, fwd_job, &j);
}

/* dinp rows [r0, r1) += dout rows . W */
static void dinp_job(void *arg, int64_t r0, int64_t r1, int32_t worker)
{
    const gemm_job *j = arg;
    (void)worker;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0), (int)j->c, (int)j->oc,
                1.0f, j->dout + r0 * j->lddo, (int)j->lddo, j->w, (int)j->ldw, 1.0f,
                j->dinp + r0 * j->lddi, (int)j->lddi);
}

/* dW rows [o0, o1) += dout[:, o0:o1]^T . inp, and their bias entries: a
 * split over outputs, so no two workers add into the same gradient. */
typedef struct dw_args {
    float *dw, *dbias;
    const float *dout, *inp;
    int64_t lddw, lddo, ldi, n, c;
} dw_args;

static void dw_rows(const dw_args *a, int64_t o0, int64_t o1)
{
    if (a->dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(o1 - o0), (int)a->c, (int)a->n,
                    1.0f, a->dout + o0, (int)a->lddo, a->inp, (int)a->ldi, 1.0f,
                    a->dw + o0 * a->lddw, (int)a->lddw);
    if (a->dbias)
        for (int64_t i = 0; i < a->n; i++) {
            const float *g = a->dout + i * a->lddo;
            for (int64_t o = o0; o < o1; o++)
                a->dbias[o] += g[o];
        }
}

static void dw_rows_job(void *arg, int64_t o0, int64_t o1, int32_t worker)
{
    (void)worker;
    dw_rows(arg, o0, o1);
}

void et_linear_backward(float *dinp, int64_t lddi, float *dw, int64_t lddw, float *dbias,
                        const float *dout, int64_t lddo, const float *inp, int64_t ldi,
                        const float *w, int64_t ldw, int64_t n, int64_t c, int64_t oc)
{
    int big = (double)n * c * oc >= GEMM_PARALLEL_MIN_MACS;
    if (dinp) {
        gemm_job j = {.dinp = dinp, .dout = dout, .w = w, .lddi = lddi, .lddo = lddo, .ldw = ldw,
                      .c = c, .oc = oc};
        if (big)
            et_parallel_for(NULL, n, dinp_job, &j);
        else
            dinp_job(&j, 0, n, 0);
    }
    if (dw || dbias) {
        dw_args a = {dw, dbias, dout, inp, lddw, lddo, ldi, n, c};
        if (big)
            et_parallel_for(NULL, oc, dw_rows_job, &a);
        else
            dw_rows(&a, 0, oc);
    }
}

void et_linear_forward_naive(float *out, int64_t ldo, const float *inp, int64_t ldi,
                             const float *w, int64_t ldw, const float *bias, int64_t n, int64_t c,
                             int64_t oc)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < oc; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int64_t k = 0; k < c; k++)
                s += (double)inp[i * ldi + k] * w[o * ldw + k];
            out[i * ldo + o] = (float)s;
        }
}

void et_linear_backward_naive(float *dinp, int64_t lddi, float *dw, int64_t lddw, float *dbias,
                              const float *dout, int64_t lddo, const float *inp, int64_t ldi,
                              const float *w, int64_t ldw, int64_t n, int64_t c, int64_t oc)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < oc; o++) {
            float g = dout[i * lddo + o];
            if (dbias)
                dbias[o] += g;
            for (int64_t k = 0; k < c; k++) {
                if (dinp)
                    dinp[i * lddi + k] += g * w[o * ldw + k];
                if (dw)
                    dw[o * lddw + k] += g * inp[i * ldi + k];
            }
        }
}

/* Work below this many floats runs on the calling thread: a parallel loop
 * costs more than it saves on small layers. */
#define PARALLEL_MIN 32768

static void ln_fwd_rows(float *out, float *mean, float *rstd, const float *inp,
                        const float *gamma, const float *beta, int64_t r0, int64_t r1, int64_t c)
{
    for (int64_t i = r0; i < r1; i++) {
        const float *x = inp + i * c;
        float *y = out + i * c;
        double m = 0, v = 0;
        for (int64_t k = 0; k < c; k++)
            m += x[k];
        m /= (double)c;
        for (int64_t k = 0; k < c; k++)
            v += (x[k] - m) * (x[k] - m);
        v /= (double)c;
        float s = (float)(1.0 / sqrt(v + 1e-5));
        float mf = (float)m;
        for (int64_t k = 0; k < c; k++)
            y[k] = (x[k] - mf) * s * gamma[k] + beta[k];
        mean[i] = mf;
        rstd[i] = s;
    }
}

typedef struct ln_job {
    float *out, *mean, *rstd, *dinp;
    const float *inp, *gamma, *beta, *dout, *cmean, *crstd;
    int64_t c;
} ln_job;

static void ln_fwd_job(void *arg, int64_t b, int64_t e, int32_t worker)
{
    const ln_job *j = arg;
    (void)worker;
    ln_fwd_rows(j->out, j->mean, j->rstd, j->inp, j->gamma, j->beta, b, e, j->c);
}

void et_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int64_t n, int64_t c)
{
    ln_job j = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .gamma = gamma, .beta = beta,
                .c = c};
    if (n * c < PARALLEL_MIN)
        ln_fwd_rows(out, mean, rstd, inp, gamma, beta, 0, n, c);
    else
        et_parallel_for(NULL, n, ln_fwd_job, &j);
}

/* dinp rows only; the parameter gradients are summed over rows apart, in a
 * fixed order, so they do not depend on the thread count. */
static void ln_bwd_rows(float *dinp, const float *dout, const float *inp, const float *gamma,
                        const float *mean, const float *rstd, int64_t r0, int64_t r1, int64_t c)
{
    for (int64_t i = r0; i < r1; i++) {
        const float *x = inp + i * c, *g = dout + i * c;
        float *dx = dinp + i * c;
        float m = mean[i], s = rstd[i];
        float dnorm_mean = 0, dnorm_norm = 0;
        for (int64_t k = 0; k < c; k++) {
            float xhat = (x[k] - m) * s;
            float dn = gamma[k] * g[k];
            dnorm_mean += dn;
            dnorm_norm += dn * xhat;
        }
        dnorm_mean /= (float)c;
        dnorm_norm /= (float)c;
        for (int64_t k = 0; k < c; k++) {
            float xhat = (x[k] - m) * s;
            dx[k] += (gamma[k] * g[k] - dnorm_mean - xhat * dnorm_norm) * s;
        }
    }
}

static void ln_bwd_job(void *arg, int64_t b, int64_t e, int32_t worker)
{
    const ln_job *j = arg;
    (void)worker;
    ln_bwd_rows(j->dinp, j->dout, j->inp, j->gamma, j->cmean, j->crstd, b, e, j->c);
}

void et_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean,
                           const float *rstd, int64_t n, int64_t c)
{
    ln_job j = {.dinp = dinp, .dout = dout, .inp = inp, .gamma = gamma, .cmean = mean,
                .crstd = rstd, .c = c};
    if (n * c < PARALLEL_MIN)
        ln_bwd_rows(dinp, dout, inp, gamma, mean, rstd, 0, n, c);
    else
        et_parallel_for(NULL, n, ln_bwd_job, &j);
    for (int64_t i = 0; i < n; i++) {
        const float *x = inp + i * c, *g = dout + i * c;
        float m = mean[i], s = rstd[i];
        for (int64_t k = 0; k < c; k++) {
            dbeta[k] += g[k];
            dgamma[k] += (x[k] - m) * s * g[k];
        }
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

static inline float expf_inline(float x)
{
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick, r = x - n ln 2 in two parts */
    float t = x * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.16666667f + r * (0.041666668f +
              r * (0.0083333338f + r * 0.0013888889f)))));
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4B400000 + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

float et_expf(float x)
{
    return expf_inline(x);
}

/* The exact GELU, x * Phi(x), with the normal tail q = 1 - Phi(|x|) by
 * Abramowitz & Stegun 7.1.26 (erfc(z) = t (a1 + ... + a5 t^4) e^{-z^2},
 * t = 1 / (1 + p z), absolute error <= 1.5e-7 on erf): again one vectorisable
 * exponential, where libm's erff has no vector form. phi_out gets the
 * density phi(x) = e^{-x^2/2} / sqrt(2 pi) for the backward, from the same
 * exponential. */
static inline float gelu_erf_phi(float x, float *phi_out)
{
    float z = (x < 0 ? -x : x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.3275911f * z);
    float e = expf_inline(-z * z);
    float q = 0.5f * t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f +
              t * (-1.453152027f + t * 1.061405429f)))) * e;
    *phi_out = 0.39894228040143268f * e;
    return x < 0 ? q : 1.0f - q;
}

/* Elementwise loops get AVX-512 and AVX2 clones where the compiler and CPU
 * have them, picked once at load time (the GEMMs already dispatch inside
 * OpenBLAS). AVX-512 matters beyond width: on a Sapphire Rapids host the
 * AVX2 clone's compare-and-blend clamps made GELU 7x slower (7.1 against
 * 0.96 ns per element), where AVX-512 uses mask registers. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define ET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ET_CLONES
#endif

ET_CLONES static void act_fwd_range(int kind, float *out, const float *inp, int64_t b, int64_t e)
{
    switch (kind) {
    case ET_ACTIVATION_GELU:
        /* the tanh approximation, written as x * sigmoid(2u): one vectorisable
         * exponential instead of tanhf, which costs several times more */
        for (int64_t i = b; i < e; i++) {
            float x = inp[i];
            float u2 = 2.0f * GELU_K * (x + 0.044715f * x * x * x);
            out[i] = x / (1.0f + expf_inline(-u2));
        }
        break;
    case ET_ACTIVATION_GELU_ERF:
        for (int64_t i = b; i < e; i++) {
            float phi;
            out[i] = inp[i] * gelu_erf_phi(inp[i], &phi);
        }
        break;
    case ET_ACTIVATION_SQUARED_RELU:
        for (int64_t i = b; i < e; i++)
            out[i] = inp[i] > 0 ? inp[i] * inp[i] : 0.0f;
        break;
    default:
        for (int64_t i = b; i < e; i++)
            out[i] = inp[i] > 0 ? inp[i] : 0.0f;
        break;
    }
}

ET_CLONES static void act_bwd_range(int kind, float *dinp, const float *inp, const float *dout, int64_t b,
                          int64_t e)
{
    switch (kind) {
    case ET_ACTIVATION_GELU:
        for (int64_t i = b; i < e; i++) {
            float x = inp[i];
            float u2 = 2.0f * GELU_K * (x + 0.044715f * x * x * x);
            float sg = 1.0f / (1.0f + expf_inline(-u2));
            float du2 = 2.0f * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
            dinp[i] += dout[i] * (sg + x * sg * (1.0f - sg) * du2);
        }
        break;
    case ET_ACTIVATION_GELU_ERF:
        /* d/dx x Phi(x) = Phi(x) + x phi(x) */
        for (int64_t i = b; i < e; i++) {
            float phi, cdf = gelu_erf_phi(inp[i], &phi);
            dinp[i] += dout[i] * (cdf + inp[i] * phi);
        }
        break;
    case ET_ACTIVATION_SQUARED_RELU:
        for (int64_t i = b; i < e; i++)
            dinp[i] += inp[i] > 0 ? 2.0f * inp[i] * dout[i] : 0.0f;
        break;
    default:
        for (int64_t i = b; i < e; i++)
            dinp[i] += inp[i] > 0 ? dout[i] : 0.0f;
        break;
    }
}

typedef struct act_job {
    int kind;
    float *out;
    const float *inp, *dout;
} act_job;

static void act_fwd_job(void *arg, int64_t b, int64_t e, int32_t worker)
{
    const act_job *j = arg;
    (void)worker;
    act_fwd_range(j->kind, j->out, j->inp, b, e);
}

static void act_bwd_job(void *arg, int64_t b, int64_t e, int32_t worker)
{
    const act_job *j = arg;
    (void)worker;
    act_bwd_range(j->kind, j->out, j->inp, j->dout, b, e);
}

void et_activation_forward(int kind, float *out, const float *inp, int64_t count)
{
    act_job j = {kind, out, inp, NULL};
    if (count < PARALLEL_MIN)
        act_fwd_range(kind, out, inp, 0, count);
    else
        et_parallel_for(NULL, count, act_fwd_job, &j);
}

void et_activation_backward(int kind, float *dinp, const float *inp, const float *dout,
                            int64_t count)
{
    act_job j = {kind, dinp, inp, dout};
    if (count < PARALLEL_MIN)
        act_bwd_range(kind, dinp, inp, dout, 0, count);
    else
        et_parallel_for(NULL, count, act_bwd_job, &j);
}

/* Element i is kept when its counter-indexed uniform draw is >= p. */
static void dropout_apply(float *x, int64_t count, float p, uint64_t seed, uint64_t stream)
{
    if (p <= 0.0f)
        return;
    et_rng base = et_rng_from_seed(seed);
    et_rng r = et_rng_split(&base, stream);
    float scale = 1.0f / (1.0f - p);
    uint64_t threshold = (uint64_t)((double)p * 18446744073709551616.0);
    for (int64_t i = 0; i < count; i++) {
        uint64_t u = et_rng_mix64(r.key + (uint64_t)(i + 1) * ET_RNG_GAMMA);
        x[i] = u >= threshold ? x[i] * scale : 0.0f;
    }
}

void et_dropout_forward(float *x, int64_t count, float p, uint64_t seed, uint64_t stream)
{
    dropout_apply(x, count, p, seed, stream);
}

void et_dropout_backward(float *dx, int64_t count, float p, uint64_t seed, uint64_t stream)
{
    dropout_apply(dx, count, p, seed, stream);
}

typedef struct ce_job {
    float *dlogits;
    const float *logits;
    const int32_t *targets;
    int64_t ldl, v;
    float eps, scale;
    double total[64];
    int64_t cnt[64];
} ce_job;

/* Rows [r0, r1): three passes per row (max, then exponentials, then the
 * gradient), so dlogits may alias logits. */
ET_CLONES static void ce_rows(ce_job *j, int64_t r0, int64_t r1, int32_t worker)
{
    double total = 0;
    int64_t cnt = 0, v = j->v;
    float eps = j->eps;
    for (int64_t i = r0; i < r1; i++) {
        const float *z = j->logits + i * j->ldl;
        float *dz = j->dlogits ? j->dlogits + i * j->ldl : NULL;
        int32_t t = j->targets[i];
        if (t < 0) {
            if (dz)
                memset(dz, 0, sizeof(float) * (size_t)v);
            continue;
        }
        float mx = z[0];
        double zsum = 0;
        for (int64_t k = 0; k < v; k++) {
            mx = z[k] > mx ? z[k] : mx;
            zsum += z[k];
        }
        float zt = z[t];
        float sum = 0;
        if (dz) {
            for (int64_t k = 0; k < v; k++) {
                float e = expf_inline(z[k] - mx);
                dz[k] = e;
                sum += e;
            }
        } else {
            for (int64_t k = 0; k < v; k++)
                sum += expf_inline(z[k] - mx);
        }
        double lse = mx + log((double)sum);
        /* -(1-eps) log p_t - eps/V sum_k log p_k */
        total += (1.0 - eps) * (lse - zt) + eps * (lse - zsum / (double)v);
        cnt++;
        if (dz) {
            float inv = 1.0f / sum, smooth = eps / (float)v, sc = j->scale;
            for (int64_t k = 0; k < v; k++)
                dz[k] = (dz[k] * inv - smooth) * sc;
            dz[t] -= (1.0f - eps) * sc;
        }
    }
    j->total[worker] += total;
    j->cnt[worker] += cnt;
}

static void ce_job_fn(void *arg, int64_t r0, int64_t r1, int32_t worker)
{
    ce_rows(arg, r0, r1, worker);
}

double et_cross_entropy(float *dlogits, const float *logits, int64_t ldl, const int32_t *targets,
                        int64_t n, int64_t v, float eps, float scale, int64_t *counted)
{
    ce_job j = {.dlogits = dlogits, .logits = logits, .targets = targets, .ldl = ldl, .v = v,
                .eps = eps, .scale = scale};
    if ((double)n * (double)v < 65536.0)
        ce_rows(&j, 0, n, 0);
    else
        et_parallel_for(NULL, n, ce_job_fn, &j);
    double total = 0;
    int64_t cnt = 0;
    for (int w = 0; w < 64; w++) {
        total += j.total[w];
        cnt += j.cnt[w];
    }
    if (counted)
        *counted = cnt;
    return total;
}

void et_meanpool_forward(float *out, const float *inp, const int32_t *len, int64_t b, int64_t t,
                         int64_t c)
{
    for (int64_t i = 0; i < b; i++) {
        int64_t n = len ? len[i] : t;
        float *o = out + i * c;
        memset(o, 0, sizeof(float) * (size_t)c);
        for (int64_t j = 0; j < n; j++)
            for (int64_t k = 0; k < c; k++)
                o[k] += inp[(i * t + j) * c + k];
        float inv = n > 0 ? 1.0f / (float)n : 0.0f;
        for (int64_t k = 0; k < c; k++)
            o[k] *= inv;
    }
}

void et_meanpool_backward(float *dinp, const float *dout, const int32_t *len, int64_t b,
                          int64_t t, int64_t c)
{
    for (int64_t i = 0; i < b; i++) {
        int64_t n = len ? len[i] : t;
        float inv = n > 0 ? 1.0f / (float)n : 0.0f;
        for (int64_t j = 0; j < n; j++)
            for (int64_t k = 0; k < c; k++)
                dinp[(i * t + j) * c + k] += dout[i * c + k] * inv;
    }
}

void et_dwconv_forward(float *out, const float *inp, int64_t ldx, const float *w, int64_t ldw,
                       const int32_t *len, int64_t b, int64_t t, int64_t c, int32_t k, int causal)
{
    int64_t off = causal ? 0 : k / 2;
    for (int64_t i = 0; i < b; i++) {
        int64_t n = len ? len[i] : t;
        for (int64_t p = 0; p < t; p++) {
            float *o = out + (i * t + p) * ldx;
            for (int64_t ch = 0; ch < c; ch++)
                o[ch] = 0.0f;
            for (int32_t j = 0; j < k; j++) {
                int64_t src = p - j + off;
                if (src < 0 || src >= n)
                    continue;
                const float *x = inp + (i * t + src) * ldx, *wj = w + (int64_t)j * ldw;
                for (int64_t ch = 0; ch < c; ch++)
                    o[ch] += wj[ch] * x[ch];
            }
        }
    }
}

void et_dwconv_backward(float *dinp, float *dw, int64_t lddw, const float *dout,
                        const float *inp, int64_t ldx, const float *w, int64_t ldw,
                        const int32_t *len, int64_t b, int64_t t, int64_t c, int32_t k,
                        int causal)
{
    int64_t off = causal ? 0 : k / 2;
    for (int64_t i = 0; i < b; i++) {
        int64_t n = len ? len[i] : t;
        for (int64_t p = 0; p < t; p++) {
            const float *g = dout + (i * t + p) * ldx;
            for (int32_t j = 0; j < k; j++) {
                int64_t src = p - j + off;
                if (src < 0 || src >= n)
                    continue;
                const float *x = inp + (i * t + src) * ldx, *wj = w + (int64_t)j * ldw;
                float *dx = dinp + (i * t + src) * ldx, *dwj = dw + (int64_t)j * lddw;
                for (int64_t ch = 0; ch < c; ch++) {
                    dwj[ch] += g[ch] * x[ch];
                    dx[ch] += g[ch] * wj[ch];
                }
            }
        }
    }
}
