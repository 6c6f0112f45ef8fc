/* Performer FAVOR+ attention (Choromanski et al., ICLR 2021) as an etnas
 * attention plugin: positive orthogonal random features that estimate the
 * softmax kernel exp(q.k/sqrt(d)), on the shared kernel-attention core
 * (kernel_core.h).
 *
 *   xh = d^(-1/4) x,  u = W xh,  h = |xh|^2 / 2,
 *   phi(x)_r = m^(-1/2) (exp(u_r - h - c) + eps),  r = 0..m-1.
 *
 * W (m x d) is draw number k of the instance's random stream,
 * et_rng_split(et_rng_from_seed(host->seed), k), consumed block by block:
 * for each of the ceil(m/d) blocks, d*d normals (row-major) orthonormalised
 * row by row (Gram-Schmidt in double), of which the first min(d, m - m0)
 * rows are kept; then, for ortho_scaling = 0, each kept row is scaled by
 * the norm of d further normals (a chi_d sample), in row order, or, for
 * ortho_scaling = 1, by sqrt(d). k = 0 at the start; in training, with
 * redraw_interval = n > 0, set_step moves to draw k = step / n; evaluation
 * keeps the last W. W depends on (seed, k, m, d) only, so a resumed run
 * draws the same features. prepare allocates for the largest d and draws;
 * a call with a smaller d (narrower heads elsewhere in the model) redraws
 * draw k for that d in place before its parallel loop, which repeats
 * exactly, so a backward always sees its forward's W.
 *
 * The stabiliser c keeps exp in range; it cancels in out = num / den except
 * through eps, and backward treats it as a constant, as the reference does
 * (the exact derivative differs by terms of relative size eps / exp):
 * - queries: each row's own max_r u_r;
 * - keys, bidirectional and cross: one max of u over r and the valid keys
 *   of the (b, h), so padded keys do not move it;
 * - keys, causal: a max over all keys would let later keys move earlier
 *   outputs (through eps). The max of the first key's u is used instead
 *   (every row sees key 0; decoding stores it at position 0), floored at
 *   B - 60 with B = max_r |w_r|^2 / 2 >= u - h, so exp stays below e^60
 *   whatever later keys hold. The data-independent bound c = B (exp <= 1)
 *   would also be causal, but at d >= 32 it pushes every exp far below eps:
 *   the features become the constant eps and the output the plain average
 *   of the visible values.
 *
 * Denominator guard: D = max(den, eps^2 / 2). Every feature is at least
 * m^(-1/2) eps, so each visible key adds at least eps^2 to den: the guard
 * acts only on rows that see no key (out = 0) and never distorts a ratio.
 *
 * Features are made PERFORMER_CHUNK rows at a time and fed to the core's
 * chunk steps, never kept for a whole sequence: m floats a row would
 * outweigh everything else and fall out of cache as the length grows, so
 * scratch is a few chunks whatever the length. The bidirectional key max is
 * a running one: each chunk of keys is mapped under the max so far, and a
 * chunk that raises it first rescales what is summed (favor_rescale), which
 * equals mapping every key under the final max. Forward saves that max (or
 * the causal one) after den; backward makes the features again from it,
 * the keys twice (bidirectional) or both sides once per sweep (causal). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/attention.h>
#include <etnas/rng.h>

#include "attn_common.h"
#include "kernel_core.h"

#define PERFORMER_CHUNK 64
/* exp(u - h - c) <= exp(B - c) <= e^60 under the causal key floor: room
 * for sums of 1e12 keys before float overflow. */
#define PERFORMER_EXP_HEADROOM 60.0

enum { OPT_FEATURES, OPT_REDRAW_INTERVAL, OPT_ORTHO_SCALING, OPT_EPS };

static const et_option_decl performer_options[] = {
    {"features", ET_OPTION_TYPE_INT, "256", 1.0, 65536.0, NULL,
     "m, the number of random features"},
    {"redraw_interval", ET_OPTION_TYPE_INT, "0", 0.0, 1e15, NULL,
     "redraw the features every this many training steps (0: never)"},
    {"ortho_scaling", ET_OPTION_TYPE_INT, "0", 0.0, 1.0, NULL,
     "row norms of W: 0 = independent chi_d samples, 1 = sqrt(d)"},
    {"eps", ET_OPTION_TYPE_FLOAT, "1e-6", 1e-12, 1.0, NULL,
     "added to every feature so that denominators stay positive"},
    {NULL, 0, NULL, 0.0, 0.0, NULL, NULL}};

typedef struct performer {
    const et_host *host;
    int32_t m;
    int64_t redraw_interval;
    int ortho_scaling;
    float eps;
    int64_t draw;  /* k of the current W */
    int32_t d;     /* columns of the current W; 0 before the first prepare */
    int32_t d_cap; /* largest d that w and gram have room for */
    float *w;      /* (m,d) */
    double *gram;  /* (d,d) scratch of the draw */
    double bound;  /* max_r |w_r|^2 / 2 of the float W */
} performer;

/* Draw k of W for the current d (see the top of the file). */
static void performer_draw(performer *pf)
{
    int32_t m = pf->m, d = pf->d;
    double *g = pf->gram;
    et_rng root = et_rng_from_seed(pf->host->seed);
    et_rng rng = et_rng_split(&root, (uint64_t)pf->draw);
    double bound = 0.0;
    for (int32_t m0 = 0; m0 < m; m0 += d) {
        for (int64_t i = 0; i < (int64_t)d * d; i++)
            g[i] = et_rng_normal(&rng);
        /* Modified Gram-Schmidt, twice per row: the second pass removes what
         * rounding left of the first, so rows are orthogonal to ~1e-15. */
        for (int32_t i = 0; i < d; i++) {
            double *gi = g + (int64_t)i * d;
            for (int pass = 0; pass < 2; pass++)
                for (int32_t j = 0; j < i; j++) {
                    const double *gj = g + (int64_t)j * d;
                    double dot = 0.0;
                    for (int32_t c = 0; c < d; c++)
                        dot += gi[c] * gj[c];
                    for (int32_t c = 0; c < d; c++)
                        gi[c] -= dot * gj[c];
                }
            double nrm = 0.0;
            for (int32_t c = 0; c < d; c++)
                nrm += gi[c] * gi[c];
            nrm = 1.0 / sqrt(nrm);
            for (int32_t c = 0; c < d; c++)
                gi[c] *= nrm;
        }
        int32_t kept = m - m0 < d ? m - m0 : d;
        for (int32_t i = 0; i < kept; i++) {
            double scale = sqrt((double)d);
            if (pf->ortho_scaling == 0) {
                double sq = 0.0;
                for (int32_t c = 0; c < d; c++) {
                    double z = et_rng_normal(&rng);
                    sq += z * z;
                }
                scale = sqrt(sq);
            }
            float *wr = pf->w + (int64_t)(m0 + i) * d;
            double norm2 = 0.0;
            for (int32_t c = 0; c < d; c++) {
                wr[c] = (float)(scale * g[(int64_t)i * d + c]);
                norm2 += (double)wr[c] * wr[c];
            }
            if (norm2 / 2.0 > bound)
                bound = norm2 / 2.0;
        }
    }
    pf->bound = bound;
}

static void performer_destroy(void *state)
{
    performer *pf = state;
    if (!pf)
        return;
    free(pf->w);
    free(pf->gram);
    free(pf);
}

static int performer_create(const et_host *host, const et_option_value *opts, void **state,
                            char **err)
{
    *state = NULL;
    performer *pf = calloc(1, sizeof *pf);
    if (!pf) {
        *err = host->errorf("performer: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    pf->host = host;
    pf->m = (int32_t)opts[OPT_FEATURES].i;
    pf->redraw_interval = opts[OPT_REDRAW_INTERVAL].i;
    pf->ortho_scaling = (int)opts[OPT_ORTHO_SCALING].i;
    pf->eps = (float)opts[OPT_EPS].f;
    if (pf->m < 1 || pf->redraw_interval < 0 || pf->ortho_scaling < 0 || pf->ortho_scaling > 1 ||
        !(pf->eps >= 1e-12f)) {
        *err = host->errorf("performer: options out of range (features %lld >= 1, "
                            "redraw_interval %lld >= 0, ortho_scaling %lld in {0, 1}, eps %g >= "
                            "1e-12)",
                            (long long)opts[OPT_FEATURES].i,
                            (long long)opts[OPT_REDRAW_INTERVAL].i,
                            (long long)opts[OPT_ORTHO_SCALING].i, opts[OPT_EPS].f);
        performer_destroy(pf);
        return ET_STATUS_ERR_USAGE;
    }
    *state = pf;
    return ET_STATUS_OK;
}

/* Shape checks shared by prepare and forward; err may be NULL. */
static int performer_check(const performer *pf, const et_attn_shape *s, char **err)
{
    return attn_shape_check(pf->host, "performer", s, ATTN_SHAPE_STRICT, err);
}


/* Makes W the draw for d, within the room prepare made. */
static int performer_use_dim(performer *pf, int32_t d)
{
    if (d < 1 || d > pf->d_cap)
        return ET_STATUS_ERR_USAGE;
    if (d != pf->d) {
        pf->d = d;
        performer_draw(pf);
    }
    return ET_STATUS_OK;
}

/* Checks shared by forward, backward and decoding, which may redraw W. */
static int performer_check_run(performer *pf, const et_attn_shape *s)
{
    int rc = performer_check(pf, s, NULL);
    return rc ? rc : performer_use_dim(pf, s->dim_qk);
}

static int performer_prepare(void *state, const et_attn_shape *max, char **err)
{
    performer *pf = state;
    int rc = performer_check(pf, max, err);
    if (rc)
        return rc;
    int32_t d = max->dim_qk;
    if (d > pf->d_cap) {
        float *w = malloc((size_t)pf->m * (size_t)d * sizeof *w);
        double *g = malloc((size_t)d * (size_t)d * sizeof *g);
        if (!w || !g) {
            free(w);
            free(g);
            *err = pf->host->errorf("performer: out of memory for %d x %d random features",
                                    (int)pf->m, (int)d);
            return ET_STATUS_ERR_NOMEM;
        }
        free(pf->w);
        free(pf->gram);
        pf->w = w;
        pf->gram = g;
        pf->d_cap = d;
        pf->d = 0;
    }
    return performer_use_dim(pf, d);
}

static void performer_set_step(void *state, int training, int64_t step)
{
    performer *pf = state;
    if (!training || pf->redraw_interval <= 0)
        return;
    int64_t k = (step > 0 ? step : 0) / pf->redraw_interval;
    if (k == pf->draw)
        return;
    pf->draw = k;
    if (pf->d > 0)
        performer_draw(pf);
}

static et_kc_shape performer_kc(const performer *pf, const et_attn_shape *s, int32_t key_len)
{
    return (et_kc_shape){.len_q = s->len_q,
                         .len_k = s->len_k,
                         .key_len = key_len,
                         .r = pf->m,
                         .dim_v = s->dim_v,
                         .causal = s->mode == ET_ATTN_MODE_CAUSAL,
                         .chunk = PERFORMER_CHUNK,
                         .guard = ET_KC_GUARD_MAX,
                         .eps = 0.5f * pf->eps * pf->eps};
}

// x (n,d) rows st apart -> u (n,m) = d^(-1/4) x W^T
static void favor_project(const performer *pf, const float *x, int64_t st, int32_t n, float *u)
{
    /* A single row may come with any stride; BLAS wants lda >= d. */
    int lda = n == 1 ? pf->d : (int)st;
    if (n > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, pf->m, pf->d,
                    (float)pow((double)pf->d, -0.25), x, lda, pf->w, pf->d, 0.0f, u, pf->m);
}

/* max of u (count); in 8 lanes, which the compiler vectorises, rather than
 * one chain of dependent compares */
static float favor_max(const float *u, int64_t count)
{
    float lane[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                     -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int64_t i = 0;
    for (; i + 8 <= count; i += 8)
        for (int j = 0; j < 8; j++)
            lane[j] = u[i + j] > lane[j] ? u[i + j] : lane[j];
    float c = -INFINITY;
    for (; i < count; i++)
        c = u[i] > c ? u[i] : c;
    for (int j = 0; j < 8; j++)
        c = lane[j] > c ? lane[j] : c;
    return c;
}

/* The causal key stabiliser from the first key's u (m values). */
static float favor_causal_c(const performer *pf, const float *u0)
{
    double c = favor_max(u0, pf->m), lowest = pf->bound - PERFORMER_EXP_HEADROOM;
    return (float)(c > lowest ? c : lowest);
}

/* e^x for x <= 88 in a form the compiler vectorises (expf is a call per
 * element, and the features' exponentials are most of the map's cost):
 * x = k ln2 + f with |f| <= ln2/2 (k rounded by the 1.5 * 2^23 trick, ln2
 * in two parts), e^f by its degree-6 Taylor polynomial, 2^k put in the
 * exponent bits. Relative error below 3e-7 (about 2 ulp) on [-87, 88];
 * inputs below -87 give e^-87, which vanishes beside eps in every feature. */
static inline float favor_exp(float x)
{
    x = x > -87.0f ? x : -87.0f;
    float t = x * 1.4426950408889634f + 12582912.0f;
    float k = t - 12582912.0f;
    float f = x - k * 0.693145751953125f - k * 1.4286068203094172e-06f;
    float e = 1.0f + f * (1.0f + f * (0.5f + f * (0.16666667f + f * (0.041666668f +
              f * (0.008333334f + f * 0.0013888889f)))));
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4B400000 + 127) << 23;
    float two_k;
    memcpy(&two_k, &bits, sizeof two_k);
    return e * two_k;
}

// u (n,m) -> phi (n,m) in place; x (n,d) rows st apart gives h; c: shared, or NULL for each
// row's own max
static void favor_features(const performer *pf, const float *x, int64_t st, int32_t n,
                           const float *c_shared, float *u)
{
    int32_t m = pf->m, d = pf->d;
    double half_scale2 = 0.5 / sqrt((double)d); /* (d^(-1/4))^2 / 2 */
    float ratio = (float)(1.0 / sqrt((double)m)), eps = pf->eps;
    for (int32_t t = 0; t < n; t++) {
        const float *xt = x + t * st;
        float *ut = u + (int64_t)t * m;
        double sq = 0.0;
        for (int32_t c = 0; c < d; c++)
            sq += (double)xt[c] * xt[c];
        float shift = (float)(half_scale2 * sq) + (c_shared ? *c_shared : favor_max(ut, m));
        for (int32_t r = 0; r < m; r++)
            ut[r] = ratio * (favor_exp(ut[r] - shift) + eps);
    }
}

// x (n,d) rows st apart, phi (n,m), dphi (n,m) (clobbered) -> dx (n,d) rows dst apart
static void favor_backward(const performer *pf, const float *x, int64_t st, int32_t n,
                           const float *phi, float *dphi, float *dx, int64_t dst)
{
    int32_t m = pf->m, d = pf->d;
    float scale = (float)pow((double)d, -0.25), scale2 = scale * scale;
    float eps_part = (float)(1.0 / sqrt((double)m)) * pf->eps;
    for (int32_t t = 0; t < n; t++) {
        const float *pt = phi + (int64_t)t * m;
        float *gt = dphi + (int64_t)t * m;
        double dh = 0.0;
        for (int32_t r = 0; r < m; r++) {
            gt[r] *= pt[r] - eps_part; /* du_r = dphi_r e_r */
            dh -= gt[r];
        }
        /* dx = d^(-1/4) (W^T du + dh xh): the dh term first, W^T du added below */
        const float *xt = x + t * st;
        float *dt = dx + t * dst;
        for (int32_t c = 0; c < d; c++)
            dt[c] = (float)(dh * scale2) * xt[c];
    }
    if (n > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, m, scale, dphi, m, pf->w, d,
                    1.0f, dx, n == 1 ? d : (int)dst);
}

/* x (n,d) rows st apart -> phi (n,m), with the stabiliser c_shared, or NULL
 * for each row's own max */
static void favor_rows(const performer *pf, const float *x, int64_t st, int32_t n,
                       const float *c_shared, float *phi)
{
    favor_project(pf, x, st, n, phi);
    favor_features(pf, x, st, n, c_shared, phi);
}

/* Keys summed into state (the core's KV, z) under the stabiliser c_old
 * become what c_new > c_old gives them. Each feature is m^(-1/2) (e + eps)
 * and e scales by s = exp(c_old - c_new), so with vsum (dv) the sum of
 * their values and count their number:
 *   KV -> s KV + (1 - s) m^(-1/2) eps 1 vsum^T,  z -> s z + (1 - s) m^(-1/2) eps count. */
static void favor_rescale(const performer *pf, int32_t dv, float *state, const float *vsum,
                          int64_t count, float c_old, float c_new)
{
    int32_t m = pf->m;
    float s = expf(c_old - c_new), tail = (1.0f - s) * (float)(1.0 / sqrt((double)m)) * pf->eps;
    float *kv = state, *z = state + (int64_t)m * dv;
    for (int32_t r = 0; r < m; r++) {
        for (int32_t c = 0; c < dv; c++)
            kv[(int64_t)r * dv + c] = s * kv[(int64_t)r * dv + c] + tail * vsum[c];
        z[r] = s * z[r] + tail * (float)count;
    }
}

/* Scratch of one worker: the core's states (KV, z and dKV, dz; or H, z,
 * then U, w) and chunk-step scratch, then phi(q), phi(k) and a gradient of
 * one chunk (C,m) each, and the value sum of the keys so far (dv). Nothing
 * grows with the length: features are made a chunk at a time and dropped. */
typedef struct favor_scratch {
    float *state, *dstate, *step, *phq, *phk, *dphi, *vsum;
} favor_scratch;

static int64_t performer_worker_floats(const performer *pf, const et_attn_shape *s)
{
    et_kc_shape p = performer_kc(pf, s, s->len_k);
    return 2 * et_kc_state_floats(&p) + et_kc_step_floats(&p) +
           3 * (int64_t)p.chunk * pf->m + s->dim_v;
}

static favor_scratch favor_scratch_of(const performer *pf, const et_kc_shape *p, float *work)
{
    favor_scratch w;
    w.state = work;
    w.dstate = w.state + et_kc_state_floats(p);
    w.step = w.dstate + et_kc_state_floats(p);
    w.phq = w.step + et_kc_step_floats(p);
    w.phk = w.phq + (int64_t)p->chunk * pf->m;
    w.dphi = w.phk + (int64_t)p->chunk * pf->m;
    w.vsum = w.dphi + (int64_t)p->chunk * pf->m;
    return w;
}

/* Saved per head: the core's den (L), then the key stabiliser. */
static int64_t performer_saved_per_head(const performer *pf, const et_attn_shape *s)
{
    et_kc_shape p = performer_kc(pf, s, s->len_k);
    return et_kc_saved_floats(&p) + 1;
}

static int64_t performer_saved_floats(void *state, const et_attn_shape *s)
{
    return (int64_t)s->batch * s->heads * performer_saved_per_head(state, s);
}

static int64_t performer_work_floats(void *state, const et_attn_shape *s)
{
    const performer *pf = state;
    return (int64_t)pf->host->threads * performer_worker_floats(pf, s);
}

/* Rows of the chunk at i0 of `total` rows, and the valid keys of causal
 * chunk c0 of n rows. */
static int32_t chunk_len(const et_kc_shape *p, int32_t total, int32_t i0)
{
    return total - i0 < p->chunk ? total - i0 : p->chunk;
}

static int32_t chunk_keys(const et_kc_shape *p, int32_t c0, int32_t n)
{
    int32_t kv = p->key_len - c0;
    return kv < 0 ? 0 : (kv < n ? kv : n);
}

/* Causal: phi(q) (n,m) and phi(k) (kv,m) of the chunk at c0 under the key
 * stabiliser *c, which forward (set_c) takes from key 0 in the first chunk. */
static void causal_chunk_features(const performer *pf, const attn_call *call,
                                  const attn_head *hd, int32_t c0, int32_t n, int32_t kv,
                                  float *c, int set_c, const favor_scratch *w)
{
    const float *k = hd->k + c0 * call->k.st;
    favor_rows(pf, hd->q + c0 * call->q.st, call->q.st, n, NULL, w->phq);
    favor_project(pf, k, call->k.st, kv, w->phk);
    if (set_c && c0 == 0 && kv > 0)
        *c = favor_causal_c(pf, w->phk);
    favor_features(pf, k, call->k.st, kv, c, w->phk);
}

/* Bidirectional and cross: KV, z of the valid keys into w->state, a chunk
 * at a time, under the max of u over all of them, which goes to *c. A
 * chunk is mapped with the max so far; one that raises it first rescales
 * what is summed (favor_rescale). */
static void favor_key_state(const performer *pf, const et_kc_shape *p, const attn_call *call,
                            const attn_head *hd, const favor_scratch *w, float *c)
{
    int64_t ks = call->k.st, vs = call->v.st;
    float cmax = -INFINITY;
    memset(w->vsum, 0, (size_t)p->dim_v * sizeof *w->vsum);
    for (int32_t j0 = 0; j0 < hd->key_len; j0 += p->chunk) {
        int32_t n = chunk_len(p, hd->key_len, j0);
        const float *k = hd->k + j0 * ks, *v = hd->v + j0 * vs;
        favor_project(pf, k, ks, n, w->phk);
        float cb = favor_max(w->phk, (int64_t)n * pf->m);
        if (cb > cmax) {
            if (j0 > 0)
                favor_rescale(pf, p->dim_v, w->state, w->vsum, j0, cmax, cb);
            cmax = cb;
        }
        favor_features(pf, k, ks, n, &cmax, w->phk);
        et_kc_keys_add(p, w->state, n, w->phk, pf->m, v, vs);
        for (int32_t j = 0; j < n; j++)
            for (int32_t t = 0; t < p->dim_v; t++)
                w->vsum[t] += v[j * vs + t];
    }
    *c = hd->key_len > 0 ? cmax : 0.0f;
}

// one head: q (L,d), k (S,d), v (S,dv) -> out (L,dv); saved (L+1) den, key stabiliser
static void performer_forward_head(const attn_call *call, const attn_head *hd)
{
    const performer *pf = call->op;
    et_kc_shape p = performer_kc(pf, call->s, hd->key_len);
    favor_scratch w = favor_scratch_of(pf, &p, hd->work);
    int32_t L = p.len_q, m = pf->m;
    float *den = hd->saved, *c = hd->saved + L;
    int64_t ldo = call->out.st;
    et_kc_state_reset(&p, w.state);
    if (!p.causal) {
        favor_key_state(pf, &p, call, hd, &w, c);
        for (int32_t i0 = 0; i0 < L; i0 += p.chunk) {
            int32_t n = chunk_len(&p, L, i0);
            favor_rows(pf, hd->q + i0 * call->q.st, call->q.st, n, NULL, w.phq);
            et_kc_queries_forward(&p, w.state, n, w.phq, m, hd->out + i0 * ldo, ldo, den + i0);
        }
        return;
    }
    *c = 0.0f;
    for (int32_t c0 = 0; c0 < L; c0 += p.chunk) {
        int32_t n = chunk_len(&p, L, c0), kv = chunk_keys(&p, c0, n);
        causal_chunk_features(pf, call, hd, c0, n, kv, c, 1, &w);
        et_kc_causal_forward_step(&p, w.state, c0 < hd->key_len ? c0 : hd->key_len, n, kv, w.phq,
                                  m, w.phk, m, hd->v + c0 * call->v.st, call->v.st,
                                  hd->out + c0 * ldo, ldo, den + c0, w.step);
    }
}

// q (B,H,L,d), k (B,H,S,d), v (B,H,S,dv) -> out (B,H,L,dv); saved (B,H,L+1) den, key stabiliser
static int performer_forward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                             et_attn_view v, et_attn_view out, float *saved, float *work)
{
    performer *pf = state;
    int rc = performer_check_run(pf, s);
    if (rc)
        return rc;
    attn_call call = {.s = s, .op = pf, .fn = performer_forward_head, .q = q, .k = k, .v = v,
                      .out = out, .saved = saved,
                      .saved_per_head = performer_saved_per_head(pf, s), .work = work,
                      .worker_floats = performer_worker_floats(pf, s)};
    attn_heads_run(pf->host, &call);
    return ET_STATUS_OK;
}

/* Bidirectional and cross backward of one head: KV, z again from the keys
 * under forward's stabiliser, then the queries (dq, and dKV, dz), then the
 * keys (dk, dv): the key features are made twice rather than kept. */
static void backward_head_bidirectional(const performer *pf, const et_kc_shape *p,
                                        const attn_call *call, const attn_head *hd,
                                        const favor_scratch *w)
{
    int32_t L = p->len_q, m = pf->m;
    int64_t ks = call->k.st, vs = call->v.st, ldo = call->out.st, lddo = call->dout.st;
    const float *den = hd->saved_in, *c = hd->saved_in + L;
    et_kc_state_reset(p, w->state);
    et_kc_state_reset(p, w->dstate);
    for (int32_t j0 = 0; j0 < hd->key_len; j0 += p->chunk) {
        int32_t n = chunk_len(p, hd->key_len, j0);
        favor_rows(pf, hd->k + j0 * ks, ks, n, c, w->phk);
        et_kc_keys_add(p, w->state, n, w->phk, m, hd->v + j0 * vs, vs);
    }
    for (int32_t i0 = 0; i0 < L; i0 += p->chunk) {
        int32_t n = chunk_len(p, L, i0);
        favor_rows(pf, hd->q + i0 * call->q.st, call->q.st, n, NULL, w->phq);
        et_kc_queries_backward(p, w->state, w->dstate, n, w->phq, m, hd->out + i0 * ldo, ldo,
                               hd->dout + i0 * lddo, lddo, den + i0, w->dphi, m, w->step);
        favor_backward(pf, hd->q + i0 * call->q.st, call->q.st, n, w->phq, w->dphi,
                       hd->dq + i0 * call->dq.st, call->dq.st);
    }
    for (int32_t j0 = 0; j0 < hd->key_len; j0 += p->chunk) {
        int32_t n = chunk_len(p, hd->key_len, j0);
        favor_rows(pf, hd->k + j0 * ks, ks, n, c, w->phk);
        et_kc_keys_backward(p, w->dstate, n, w->phk, m, hd->v + j0 * vs, vs, w->dphi, m,
                            hd->dv + j0 * call->dv.st, call->dv.st);
        favor_backward(pf, hd->k + j0 * ks, ks, n, w->phk, w->dphi, hd->dk + j0 * call->dk.st,
                       call->dk.st);
    }
    for (int32_t j = hd->key_len; j < p->len_k; j++)
        memset(hd->dv + j * call->dv.st, 0, (size_t)p->dim_v * sizeof(float));
}

/* Causal backward of one head: a sweep in order with the prefix state (dq),
 * then one in reverse with the suffix sums (dk, dv), each making the
 * features of its chunks. */
static void backward_head_causal(const performer *pf, const et_kc_shape *p,
                                 const attn_call *call, const attn_head *hd,
                                 const favor_scratch *w)
{
    int32_t L = p->len_q, m = pf->m, last = (L - 1) / p->chunk * p->chunk;
    int64_t vs = call->v.st, ldo = call->out.st, lddo = call->dout.st;
    const float *den = hd->saved_in;
    float c = hd->saved_in[L];
    et_kc_state_reset(p, w->state);
    for (int32_t c0 = 0; c0 < L; c0 += p->chunk) {
        int32_t n = chunk_len(p, L, c0), kv = chunk_keys(p, c0, n);
        causal_chunk_features(pf, call, hd, c0, n, kv, &c, 0, w);
        et_kc_causal_backward_queries(p, w->state, c0 < hd->key_len ? c0 : hd->key_len, n, kv,
                                      w->phk, m, hd->v + c0 * vs, vs, hd->out + c0 * ldo, ldo,
                                      hd->dout + c0 * lddo, lddo, den + c0, w->dphi, m, w->step);
        favor_backward(pf, hd->q + c0 * call->q.st, call->q.st, n, w->phq, w->dphi,
                       hd->dq + c0 * call->dq.st, call->dq.st);
    }
    et_kc_state_reset(p, w->state);
    for (int32_t c0 = last; c0 >= 0; c0 -= p->chunk) {
        int32_t n = chunk_len(p, L, c0), kv = chunk_keys(p, c0, n);
        causal_chunk_features(pf, call, hd, c0, n, kv, &c, 0, w);
        et_kc_causal_backward_keys(p, w->state, L - c0 - n, n, kv, w->phq, m, w->phk, m,
                                   hd->v + c0 * vs, vs, hd->out + c0 * ldo, ldo,
                                   hd->dout + c0 * lddo, lddo, den + c0, w->dphi, m,
                                   hd->dv + c0 * call->dv.st, call->dv.st, w->step);
        favor_backward(pf, hd->k + c0 * call->k.st, call->k.st, kv, w->phk, w->dphi,
                       hd->dk + c0 * call->dk.st, call->dk.st);
    }
}

// one head: dout (L,dv) -> dq (L,d), dk (S,d), dv (S,dv); features remade, never saved
static void performer_backward_head(const attn_call *call, const attn_head *hd)
{
    const performer *pf = call->op;
    et_kc_shape p = performer_kc(pf, call->s, hd->key_len);
    favor_scratch w = favor_scratch_of(pf, &p, hd->work);
    if (p.causal)
        backward_head_causal(pf, &p, call, hd, &w);
    else
        backward_head_bidirectional(pf, &p, call, hd, &w);
    for (int32_t j = hd->key_len; j < p.len_k; j++)
        memset(hd->dk + j * call->dk.st, 0, (size_t)pf->d * sizeof(float));
}

// dout (B,H,L,dv) -> dq (B,H,L,d), dk (B,H,S,d), dv (B,H,S,dv)
static int performer_backward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                              et_attn_view v, et_attn_view out, et_attn_view dout,
                              const float *saved, et_attn_view dq, et_attn_view dk,
                              et_attn_view dv, float *work)
{
    performer *pf = state;
    int rc = performer_check_run(pf, s);
    if (rc)
        return rc;
    attn_call call = {.s = s, .op = pf, .fn = performer_backward_head, .q = q, .k = k, .v = v,
                      .out = out, .dout = dout, .dq = dq, .dk = dk, .dv = dv, .saved_in = saved,
                      .saved_per_head = performer_saved_per_head(pf, s), .work = work,
                      .worker_floats = performer_worker_floats(pf, s)};
    attn_heads_run(pf->host, &call);
    return ET_STATUS_OK;
}

/* Decode state: per (b, h) the core's H (m,dv) and z (m), then that head's
 * key stabiliser (set at position 0); at the end one float counting the
 * steps taken, so a skipped or repeated position is refused. */
static et_kc_shape performer_decode_kc(const performer *pf, const et_attn_shape *s)
{
    et_attn_shape one = *s;
    one.len_q = one.len_k = 1;
    one.mode = ET_ATTN_MODE_CAUSAL;
    return performer_kc(pf, &one, 1);
}

static int64_t performer_decode_per_head(const performer *pf, const et_attn_shape *s)
{
    et_kc_shape p = performer_decode_kc(pf, s);
    return et_kc_decode_floats(&p) + 1;
}

static int64_t performer_decode_floats(void *state, const et_attn_shape *s, int32_t max_len)
{
    (void)max_len;
    return (int64_t)s->batch * s->heads * performer_decode_per_head(state, s) + 1;
}

static void performer_decode_reset(void *state, const et_attn_shape *s, int32_t max_len,
                                   float *dstate)
{
    (void)max_len;
    et_kc_shape p = performer_decode_kc(state, s);
    int64_t n = (int64_t)s->batch * s->heads, per = performer_decode_per_head(state, s);
    for (int64_t bh = 0; bh < n; bh++) {
        et_kc_decode_reset(&p, dstate + bh * per);
        dstate[bh * per + per - 1] = 0.0f;
    }
    dstate[n * per] = 0.0f;
}

// one head at position call->pos: q, k (1,d), v (1,dv) -> out (1,dv)
static void performer_decode_head(const attn_call *call, const attn_head *hd)
{
    const performer *pf = call->op;
    et_kc_shape p = performer_decode_kc(pf, call->s);
    float *phq = hd->work, *phk = phq + pf->m, *c = hd->dstate + call->dstate_per_head - 1;
    favor_rows(pf, hd->q, 0, 1, NULL, phq);
    favor_project(pf, hd->k, 0, 1, phk);
    if (call->pos == 0)
        *c = favor_causal_c(pf, phk);
    favor_features(pf, hd->k, 0, 1, c, phk);
    et_kc_decode_step(&p, hd->dstate, phq, phk, hd->v, hd->out);
}

// q, k (B,H,1,d), v (B,H,1,dv) at position pos -> out (B,H,1,dv)
static int performer_decode_step(void *state, const et_attn_shape *s, int32_t max_len,
                                 float *dstate, int32_t pos, et_attn_view q, et_attn_view k,
                                 et_attn_view v, et_attn_view out, float *work)
{
    performer *pf = state;
    if (attn_decode_check(s, max_len, pos) || performer_use_dim(pf, s->dim_qk))
        return ET_STATUS_ERR_USAGE;
    int64_t per = performer_decode_per_head(pf, s);
    float *steps = dstate + (int64_t)s->batch * s->heads * per;
    if ((float)pos != *steps)
        return ET_STATUS_ERR_USAGE;
    /* a worker needs phi(q) and phi(k) of one position: 2m floats, well
     * within what work_floats gives any shape */
    attn_call call = {.s = s, .op = pf, .fn = performer_decode_head, .q = q, .k = k, .v = v,
                      .out = out, .dstate = dstate, .dstate_per_head = per, .pos = pos,
                      .max_len = max_len, .work = work, .worker_floats = 2 * (int64_t)pf->m};
    attn_heads_run(pf->host, &call);
    *steps = (float)(pos + 1);
    return ET_STATUS_OK;
}

/* Map (L+S)(m d + d) plus the core with r = m, per head. */
static double performer_macs(void *state, const et_attn_shape *s)
{
    const performer *pf = state;
    et_kc_shape p = performer_kc(pf, s, s->len_k);
    double rows = (double)s->len_q + s->len_k;
    double per_head = rows * ((double)pf->m * s->dim_qk + s->dim_qk) + et_kc_macs(&p);
    return (double)s->batch * s->heads * per_head;
}

static const et_attention_vtable performer_vtable = {
    .create = performer_create,
    .destroy = performer_destroy,
    .prepare = performer_prepare,
    .saved_floats = performer_saved_floats,
    .work_floats = performer_work_floats,
    .forward = performer_forward,
    .backward = performer_backward,
    .decode_floats = performer_decode_floats,
    .decode_reset = performer_decode_reset,
    .decode_step = performer_decode_step,
    .macs = performer_macs,
    .set_step = performer_set_step,
};

static const et_plugin_descriptor performer_descriptor = {
    .abi_version = ET_ABI_VERSION,
    .kind = ET_PLUGIN_KIND_ATTENTION,
    .name = "performer",
    .summary = "Performer FAVOR+: positive orthogonal random features estimating softmax "
               "attention, linear in length",
    .options = performer_options,
    .vtable = &performer_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &performer_descriptor;
}