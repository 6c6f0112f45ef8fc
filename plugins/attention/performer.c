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
 * acts only on rows that see no key (out = 0) and never distorts a ratio. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/attention.h>
#include <etnas/rng.h>

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

typedef struct performer_job {
    const performer *pf;
    const et_attn_shape *s;
    et_attn_view q, k, v, out, dout, dq, dk, dv;
    float *saved;
    const float *saved_in;
    float *work;
    int64_t worker_floats, saved_per_head;
    /* decode only */
    float *dstate;
    int32_t pos;
} performer_job;

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
    const et_host *host = pf->host;
    if (s->batch < 1 || s->heads < 1 || s->len_q < 1 || s->len_k < 1 || s->dim_qk < 1 ||
        s->dim_v < 1) {
        if (err)
            *err = host->errorf("performer: shape B=%d H=%d L=%d S=%d d=%d dv=%d has an empty "
                                "dimension",
                                (int)s->batch, (int)s->heads, (int)s->len_q, (int)s->len_k,
                                (int)s->dim_qk, (int)s->dim_v);
        return ET_STATUS_ERR_USAGE;
    }
    if (s->mode != ET_ATTN_MODE_BIDIRECTIONAL && s->mode != ET_ATTN_MODE_CAUSAL &&
        s->mode != ET_ATTN_MODE_CROSS) {
        if (err)
            *err = host->errorf("performer: unknown attention mode %d", (int)s->mode);
        return ET_STATUS_ERR_USAGE;
    }
    if (s->mode != ET_ATTN_MODE_CROSS && s->len_q != s->len_k) {
        if (err)
            *err = host->errorf("performer: %s self-attention needs len_q == len_k (got %d and "
                                "%d); causal cross-attention is not supported",
                                s->mode == ET_ATTN_MODE_CAUSAL ? "causal" : "bidirectional",
                                (int)s->len_q, (int)s->len_k);
        return s->mode == ET_ATTN_MODE_CAUSAL ? ET_STATUS_ERR_UNSUPPORTED : ET_STATUS_ERR_USAGE;
    }
    if (s->key_len)
        for (int32_t b = 0; b < s->batch; b++)
            if (s->key_len[b] < 0 || s->key_len[b] > s->len_k) {
                if (err)
                    *err = host->errorf("performer: key_len[%d] = %d is outside [0, %d]", (int)b,
                                        (int)s->key_len[b], (int)s->len_k);
                return ET_STATUS_ERR_USAGE;
            }
    return ET_STATUS_OK;
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

static float favor_max(const float *u, int64_t count)
{
    float c = -INFINITY;
    for (int64_t i = 0; i < count; i++)
        c = u[i] > c ? u[i] : c;
    return c;
}

/* The causal key stabiliser from the first key's u (m values). */
static float favor_causal_c(const performer *pf, const float *u0)
{
    double c = favor_max(u0, pf->m), lowest = pf->bound - PERFORMER_EXP_HEADROOM;
    return (float)(c > lowest ? c : lowest);
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
            ut[r] = ratio * (expf(ut[r] - shift) + eps);
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

static const float *view_row(et_attn_view x, int32_t b, int32_t h)
{
    return x.data + b * x.sb + h * x.sh;
}

static float *view_row_mut(et_attn_view x, int32_t b, int32_t h)
{
    return x.data + b * x.sb + h * x.sh;
}

/* Features of one (b, h): phq (L,m), phk (key_len,m). */
static void performer_head_features(const performer_job *job, int32_t b, int32_t h,
                                    int32_t key_len, float *phq, float *phk)
{
    const performer *pf = job->pf;
    const et_attn_shape *s = job->s;
    const float *q = view_row(job->q, b, h), *k = view_row(job->k, b, h);
    favor_project(pf, q, job->q.st, s->len_q, phq);
    favor_features(pf, q, job->q.st, s->len_q, NULL, phq);
    if (key_len == 0)
        return;
    favor_project(pf, k, job->k.st, key_len, phk);
    float c = s->mode == ET_ATTN_MODE_CAUSAL ? favor_causal_c(pf, phk)
                                             : favor_max(phk, (int64_t)key_len * pf->m);
    favor_features(pf, k, job->k.st, key_len, &c, phk);
}

static int64_t performer_worker_floats(const performer *pf, const et_attn_shape *s)
{
    et_kc_shape p = performer_kc(pf, s, s->len_k);
    /* forward: phq, phk; backward adds dphq, dphk */
    return 2 * (int64_t)pf->m * ((int64_t)s->len_q + s->len_k) + et_kc_work_floats(&p);
}

/* The core's saved floats of one head; the same for every key_len. */
static int64_t performer_saved_per_head(const performer *pf, const et_attn_shape *s)
{
    et_kc_shape p = performer_kc(pf, s, s->len_k);
    return et_kc_saved_floats(&p);
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

static void performer_forward_heads(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const performer_job *job = arg;
    const et_attn_shape *s = job->s;
    int32_t m = job->pf->m;
    float *phq = job->work + worker * job->worker_floats;
    float *phk = phq + (int64_t)s->len_q * m;
    float *kc_work = phk + (int64_t)s->len_k * m;
    for (int64_t bh = begin; bh < end; bh++) {
        int32_t b = (int32_t)(bh / s->heads), h = (int32_t)(bh % s->heads);
        int32_t key_len = s->key_len ? s->key_len[b] : s->len_k;
        et_kc_shape p = performer_kc(job->pf, s, key_len);
        performer_head_features(job, b, h, key_len, phq, phk);
        et_kc_forward(&p, phq, m, phk, m, view_row(job->v, b, h), job->v.st,
                      view_row_mut(job->out, b, h), job->out.st,
                      job->saved + bh * job->saved_per_head, kc_work);
    }
}

// q (B,H,L,d), k (B,H,S,d), v (B,H,S,dv) -> out (B,H,L,dv); saved (B,H,L) den
static int performer_forward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                             et_attn_view v, et_attn_view out, float *saved, float *work)
{
    performer *pf = state;
    int rc = performer_check_run(pf, s);
    if (rc)
        return rc;
    performer_job job = {.pf = pf, .s = s, .q = q, .k = k, .v = v, .out = out, .saved = saved,
                         .work = work, .worker_floats = performer_worker_floats(pf, s),
                         .saved_per_head = performer_saved_per_head(pf, s)};
    pf->host->parallel_for(pf->host->ctx, (int64_t)s->batch * s->heads, performer_forward_heads,
                           &job);
    return ET_STATUS_OK;
}

/* The features are recomputed rather than saved: L + S rows of m floats per
 * head would outweigh everything else the engine keeps for backward. */
static void performer_backward_heads(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const performer_job *job = arg;
    const et_attn_shape *s = job->s;
    int32_t m = job->pf->m, d = s->dim_qk;
    float *phq = job->work + worker * job->worker_floats;
    float *phk = phq + (int64_t)s->len_q * m;
    float *dphq = phk + (int64_t)s->len_k * m;
    float *dphk = dphq + (int64_t)s->len_q * m;
    float *kc_work = dphk + (int64_t)s->len_k * m;
    for (int64_t bh = begin; bh < end; bh++) {
        int32_t b = (int32_t)(bh / s->heads), h = (int32_t)(bh % s->heads);
        int32_t key_len = s->key_len ? s->key_len[b] : s->len_k;
        et_kc_shape p = performer_kc(job->pf, s, key_len);
        performer_head_features(job, b, h, key_len, phq, phk);
        et_kc_backward(&p, phq, m, phk, m, view_row(job->v, b, h), job->v.st,
                       view_row(job->out, b, h), job->out.st, view_row(job->dout, b, h),
                       job->dout.st, job->saved_in + bh * job->saved_per_head, dphq, m, dphk,
                       m, view_row_mut(job->dv, b, h), job->dv.st, kc_work);
        float *dk = view_row_mut(job->dk, b, h);
        favor_backward(job->pf, view_row(job->q, b, h), job->q.st, s->len_q, phq, dphq,
                       view_row_mut(job->dq, b, h), job->dq.st);
        favor_backward(job->pf, view_row(job->k, b, h), job->k.st, key_len, phk, dphk, dk,
                       job->dk.st);
        for (int32_t j = key_len; j < s->len_k; j++)
            memset(dk + j * job->dk.st, 0, (size_t)d * sizeof *dk);
    }
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
    performer_job job = {.pf = pf, .s = s, .q = q, .k = k, .v = v, .out = out, .dout = dout,
                         .dq = dq, .dk = dk, .dv = dv, .saved_in = saved, .work = work,
                         .worker_floats = performer_worker_floats(pf, s),
                         .saved_per_head = performer_saved_per_head(pf, s)};
    pf->host->parallel_for(pf->host->ctx, (int64_t)s->batch * s->heads, performer_backward_heads,
                           &job);
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

static int64_t performer_decode_floats(void *state, const et_attn_shape *s, int32_t max_len)
{
    (void)max_len;
    et_kc_shape p = performer_decode_kc(state, s);
    return (int64_t)s->batch * s->heads * (et_kc_decode_floats(&p) + 1) + 1;
}

static void performer_decode_reset(void *state, const et_attn_shape *s, int32_t max_len,
                                   float *dstate)
{
    (void)max_len;
    et_kc_shape p = performer_decode_kc(state, s);
    int64_t n = (int64_t)s->batch * s->heads, per = et_kc_decode_floats(&p) + 1;
    for (int64_t bh = 0; bh < n; bh++) {
        et_kc_decode_reset(&p, dstate + bh * per);
        dstate[bh * per + per - 1] = 0.0f;
    }
    dstate[n * per] = 0.0f;
}

static void performer_decode_heads(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const performer_job *job = arg;
    const performer *pf = job->pf;
    const et_attn_shape *s = job->s;
    et_kc_shape p = performer_decode_kc(pf, s);
    int64_t per = et_kc_decode_floats(&p) + 1;
    float *phq = job->work + worker * job->worker_floats;
    float *phk = phq + pf->m;
    for (int64_t bh = begin; bh < end; bh++) {
        int32_t b = (int32_t)(bh / s->heads), h = (int32_t)(bh % s->heads);
        const float *q = view_row(job->q, b, h), *k = view_row(job->k, b, h);
        float *head = job->dstate + bh * per, *c = head + per - 1;
        favor_project(pf, q, 0, 1, phq);
        favor_features(pf, q, 0, 1, NULL, phq);
        favor_project(pf, k, 0, 1, phk);
        if (job->pos == 0)
            *c = favor_causal_c(pf, phk);
        favor_features(pf, k, 0, 1, c, phk);
        et_kc_decode_step(&p, head, phq, phk, view_row(job->v, b, h),
                          view_row_mut(job->out, b, h));
    }
}

// q, k (B,H,1,d), v (B,H,1,dv) at position pos -> out (B,H,1,dv)
static int performer_decode_step(void *state, const et_attn_shape *s, int32_t max_len,
                                 float *dstate, int32_t pos, et_attn_view q, et_attn_view k,
                                 et_attn_view v, et_attn_view out, float *work)
{
    performer *pf = state;
    if (s->len_q != 1 || s->len_k != 1 || s->batch < 1 || s->heads < 1 || s->dim_v < 1 ||
        performer_use_dim(pf, s->dim_qk))
        return ET_STATUS_ERR_USAGE;
    int64_t n = (int64_t)s->batch * s->heads;
    et_kc_shape p = performer_decode_kc(pf, s);
    float *steps = dstate + n * (et_kc_decode_floats(&p) + 1);
    if (pos < 0 || pos >= max_len || (float)pos != *steps)
        return ET_STATUS_ERR_USAGE;
    performer_job job = {.pf = pf, .s = s, .q = q, .k = k, .v = v, .out = out, .work = work,
                         .worker_floats = performer_worker_floats(pf, s), .dstate = dstate,
                         .pos = pos};
    pf->host->parallel_for(pf->host->ctx, n, performer_decode_heads, &job);
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
