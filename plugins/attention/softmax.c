/* Exact scaled dot-product attention (spec/attention.md, "Softmax"): the
 * reference operator. Forward is blockwise with a running max (online
 * softmax), so scratch is O(block^2) per worker and the saved state is one
 * log-sum-exp per query row; backward recomputes the probabilities block by
 * block from it (flash-attention style). Padded keys and keys after the query
 * (causal) are skipped; a row with no visible key outputs 0. Incremental
 * decoding keeps a KV cache. Heads run in parallel over host->parallel_for.
 *
 * Attention dropout (option `dropout`, training only): each probability
 * p_ij is kept with probability 1 - p and scaled by 1/(1 - p), the mask a
 * hash of (host seed, training step, b, h, i, j), so backward regenerates
 * it exactly; the normaliser and the saved log-sum-exp are the undropped
 * ones (dropout after the softmax, as in the Transformer).
 *
 * Per head: q (L,d), k (S,d), v (S,dv) rows of the strided views. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/attention.h>
#include <etnas/rng.h>

#include "attn_common.h"

typedef struct softmax_state {
    const et_host *host;
    int64_t block; /* query rows and key columns per block */
    float dropout; /* attention dropout probability */
    int training;  /* set_step: dropout applies */
    uint64_t step_seed;
} softmax_state;

static const et_option_decl softmax_options[] = {
    {"block", ET_OPTION_TYPE_INT, "64", 1, 4096, NULL,
     "query rows and keys per block of the online softmax (scratch is 2 block^2 floats per thread)"},
    {"dropout", ET_OPTION_TYPE_FLOAT, "0", 0, 0.95, NULL,
     "attention dropout: probability of dropping each attention weight in training"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int softmax_create(const et_host *host, const et_option_value *opts, void **state,
                          char **err)
{
    *state = NULL;
    if (opts[0].i < 1) {
        *err = host->errorf("softmax: block must be >= 1 (got %lld)", (long long)opts[0].i);
        return ET_STATUS_ERR_USAGE;
    }
    softmax_state *st = calloc(1, sizeof *st);
    if (!st) {
        *err = host->errorf("softmax: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    st->host = host;
    st->block = opts[0].i;
    st->dropout = opts[1].f >= 0 && opts[1].f < 0.95 ? (float)opts[1].f : 0.0f;
    *state = st;
    return 0;
}

static void softmax_set_step(void *state, int training, int64_t step)
{
    softmax_state *st = state;
    st->training = training;
    st->step_seed = et_rng_mix64(st->host->seed ^ et_rng_mix64((uint64_t)step + 1));
}

/* Dropout scale of weight (i, j) of head bh: 0 or 1 / (1 - p). */
static float keep_scale(const softmax_state *st, int64_t bh, int64_t i, int64_t j)
{
    uint64_t h = et_rng_mix64(st->step_seed ^ et_rng_mix64(((uint64_t)bh << 40) ^
                                                           ((uint64_t)i << 20) ^ (uint64_t)j));
    double u = (double)(h >> 11) * (1.0 / 9007199254740992.0);
    return u < st->dropout ? 0.0f : 1.0f / (1.0f - st->dropout);
}

static int dropping(const softmax_state *st)
{
    return st->training && st->dropout > 0.0f;
}

static void softmax_destroy(void *state)
{
    free(state);
}

/* 0 when the shape is one this operator computes; lengths may be 0 and key
 * lengths are clamped to [0, S]. err may be NULL. */
static int softmax_check(const softmax_state *st, const et_attn_shape *s, char **err)
{
    return attn_shape_check(st->host, "softmax", s, 0, err);
}

static int softmax_prepare(void *state, const et_attn_shape *max, char **err)
{
    return softmax_check(state, max, err);
}

static int64_t softmax_saved_floats(void *state, const et_attn_shape *s)
{
    (void)state;
    return (int64_t)s->batch * s->heads * s->len_q;
}

static int64_t block_of(const softmax_state *st, int64_t n)
{
    n = n > 0 ? n : 1;
    return st->block < n ? st->block : n;
}

/* per worker: P and dP (bq,bk), then m, l or D (bq) each */
static int64_t worker_floats(const softmax_state *st, const et_attn_shape *s)
{
    int64_t bq = block_of(st, s->len_q), bk = block_of(st, s->len_k);
    return 2 * bq * bk + 2 * bq;
}

static int64_t softmax_work_floats(void *state, const et_attn_shape *s)
{
    softmax_state *st = state;
    return st->host->threads * worker_floats(st, s);
}

/* Scores of a (n,m) block, scaled; in causal mode key j0+j > query i0+i gets
 * -inf. Blocks stop at key_limit, so padded keys never get here. */
static void block_scores(const et_attn_shape *s, const float *q, int64_t ldq, const float *k,
                         int64_t ldk, int64_t i0, int64_t n, int64_t j0, int64_t m, float scale,
                         float *p)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)m, s->dim_qk, scale, q,
                (int)ldq, k, (int)ldk, 0.0f, p, (int)m);
    if (s->mode != ET_ATTN_MODE_CAUSAL || j0 + m <= i0 + 1)
        return;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i0 + i + 1 - j0 > 0 ? i0 + i + 1 - j0 : 0; j < m; j++)
            p[i * m + j] = -INFINITY;
}

/* Keys a query block [i0, i0+n) can see at all: the valid ones, and in
 * causal mode none after its last row. */
static int64_t key_limit(const et_attn_shape *s, int64_t nk, int64_t i0, int64_t n)
{
    if (s->mode == ET_ATTN_MODE_CAUSAL && i0 + n < nk)
        return i0 + n;
    return nk;
}

// one head: q (L,d), k (S,d), v (S,dv) -> out (L,dv); saved (L) log-sum-exp
static void forward_head(const attn_call *call, const attn_head *hd)
{
    const et_attn_shape *s = call->s;
    const softmax_state *st = call->op;
    int64_t L = s->len_q, dv = s->dim_v, nk = hd->key_len;
    int64_t bq = block_of(st, s->len_q), bk = block_of(st, s->len_k);
    float *p = hd->work, *m = p + 2 * bq * bk, *l = m + bq;
    float scale = 1.0f / sqrtf((float)s->dim_qk);
    float *lse = hd->saved;
    const float *q = hd->q, *k = hd->k, *v = hd->v;
    float *o = hd->out;
    int64_t ldq = call->q.st, ldk = call->k.st, ldv = call->v.st, ldo = call->out.st;
    for (int64_t i0 = 0; i0 < L; i0 += bq) {
        int64_t n = L - i0 < bq ? L - i0 : bq, lim = key_limit(s, nk, i0, n);
        for (int64_t i = 0; i < n; i++) {
            m[i] = -INFINITY;
            l[i] = 0.0f;
            memset(o + (i0 + i) * ldo, 0, (size_t)dv * sizeof(float));
        }
        for (int64_t j0 = 0; j0 < lim; j0 += bk) {
            int64_t mk = lim - j0 < bk ? lim - j0 : bk;
            block_scores(s, q + i0 * ldq, ldq, k + j0 * ldk, ldk, i0, n, j0, mk, scale, p);
            for (int64_t i = 0; i < n; i++) {
                float *pr = p + i * mk, mx = m[i];
                for (int64_t j = 0; j < mk; j++)
                    mx = pr[j] > mx ? pr[j] : mx;
                if (mx == -INFINITY) { /* nothing visible yet in this row */
                    memset(pr, 0, (size_t)mk * sizeof(float));
                    continue;
                }
                float alpha = expf(m[i] - mx), sum = 0.0f;
                for (int64_t j = 0; j < mk; j++) {
                    pr[j] = expf(pr[j] - mx);
                    sum += pr[j];
                }
                l[i] = l[i] * alpha + sum;
                m[i] = mx;
                if (alpha != 1.0f) {
                    float *orow = o + (i0 + i) * ldo;
                    for (int64_t c = 0; c < dv; c++)
                        orow[c] *= alpha;
                }
                if (dropping(st)) /* after the normaliser took the undropped sum */
                    for (int64_t j = 0; j < mk; j++)
                        pr[j] *= keep_scale(st, hd->bh, i0 + i, j0 + j);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)dv, (int)mk, 1.0f,
                        p, (int)mk, v + j0 * ldv, (int)ldv, 1.0f, o + i0 * ldo, (int)ldo);
        }
        for (int64_t i = 0; i < n; i++) {
            if (l[i] > 0.0f) {
                float inv = 1.0f / l[i], *orow = o + (i0 + i) * ldo;
                for (int64_t c = 0; c < dv; c++)
                    orow[c] *= inv;
                lse[i0 + i] = m[i] + logf(l[i]);
            } else {
                lse[i0 + i] = -INFINITY;
            }
        }
    }
}

// q (B,H,L,d), k (B,H,S,d), v (B,H,S,dv) -> out (B,H,L,dv); saved (B,H,L) log-sum-exp
static int softmax_forward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                           et_attn_view v, et_attn_view out, float *saved, float *work)
{
    softmax_state *st = state;
    int rc = softmax_check(st, s, NULL);
    if (rc)
        return rc;
    attn_call call = {.s = s, .op = st, .fn = forward_head, .q = q, .k = k, .v = v, .out = out,
                      .saved = saved, .saved_per_head = s->len_q, .work = work,
                      .worker_floats = worker_floats(st, s)};
    attn_heads_run(st->host, &call);
    return 0;
}

static void zero_rows(float *x, int64_t st, int64_t rows, int64_t cols)
{
    for (int64_t t = 0; t < rows; t++)
        memset(x + t * st, 0, (size_t)cols * sizeof(float));
}

/* dS = P o (dP - D) with P = exp(S - lse), dP = dout V^T, D_i = dout_i . out_i:
 * dq += scale dS K, dk += scale dS^T Q, dv += P^T dout. */
static void backward_head(const attn_call *call, const attn_head *hd)
{
    const et_attn_shape *s = call->s;
    const softmax_state *st = call->op;
    int64_t L = s->len_q, S = s->len_k, d = s->dim_qk, dv = s->dim_v, nk = hd->key_len;
    int64_t bq = block_of(st, s->len_q), bk = block_of(st, s->len_k);
    float *p = hd->work, *dp = p + bq * bk, *dd = dp + bq * bk;
    float scale = 1.0f / sqrtf((float)d);
    const float *lse = hd->saved_in;
    const float *q = hd->q, *k = hd->k, *v = hd->v, *o = hd->out, *g = hd->dout;
    float *dq = hd->dq, *dk = hd->dk, *dvv = hd->dv;
    int64_t ldq = call->q.st, ldk = call->k.st, ldv = call->v.st, ldo = call->out.st,
            ldg = call->dout.st, lddq = call->dq.st, lddk = call->dk.st, lddv = call->dv.st;
    zero_rows(dq, lddq, L, d);
    zero_rows(dk, lddk, S, d);
    zero_rows(dvv, lddv, S, dv);
    for (int64_t i0 = 0; i0 < L; i0 += bq) {
        int64_t n = L - i0 < bq ? L - i0 : bq, lim = key_limit(s, nk, i0, n);
        for (int64_t i = 0; i < n; i++) {
            const float *gr = g + (i0 + i) * ldg, *orow = o + (i0 + i) * ldo;
            float acc = 0.0f;
            for (int64_t c = 0; c < dv; c++)
                acc += gr[c] * orow[c];
            dd[i] = acc;
        }
        for (int64_t j0 = 0; j0 < lim; j0 += bk) {
            int64_t mk = lim - j0 < bk ? lim - j0 : bk;
            block_scores(s, q + i0 * ldq, ldq, k + j0 * ldk, ldk, i0, n, j0, mk, scale, p);
            for (int64_t i = 0; i < n; i++) {
                float li = lse[i0 + i], *pr = p + i * mk;
                for (int64_t j = 0; j < mk; j++)
                    pr[j] = li == -INFINITY ? 0.0f : expf(pr[j] - li);
            }
            int drop = dropping(st);
            if (drop) /* dv uses the dropped weights: P o M' in dp for now */
                for (int64_t i = 0; i < n; i++)
                    for (int64_t j = 0; j < mk; j++)
                        dp[i * mk + j] = p[i * mk + j] * keep_scale(st, hd->bh, i0 + i, j0 + j);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)mk, (int)dv, (int)n, 1.0f,
                        drop ? dp : p, (int)mk, g + i0 * ldg, (int)ldg, 1.0f, dvv + j0 * lddv,
                        (int)lddv);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)mk, (int)dv, 1.0f,
                        g + i0 * ldg, (int)ldg, v + j0 * ldv, (int)ldv, 0.0f, dp, (int)mk);
            /* dS = P o (dP' o M' - D), D_i = dout_i . out_i (out includes the dropout) */
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < mk; j++) {
                    float dpv = dp[i * mk + j];
                    if (drop)
                        dpv *= keep_scale(st, hd->bh, i0 + i, j0 + j);
                    dp[i * mk + j] = p[i * mk + j] * (dpv - dd[i]);
                }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)mk, scale,
                        dp, (int)mk, k + j0 * ldk, (int)ldk, 1.0f, dq + i0 * lddq, (int)lddq);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)mk, (int)d, (int)n, scale,
                        dp, (int)mk, q + i0 * ldq, (int)ldq, 1.0f, dk + j0 * lddk, (int)lddk);
        }
    }
}

// dout (B,H,L,dv) -> dq (B,H,L,d), dk (B,H,S,d), dv (B,H,S,dv)
static int softmax_backward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                            et_attn_view v, et_attn_view out, et_attn_view dout, const float *saved,
                            et_attn_view dq, et_attn_view dk, et_attn_view dv, float *work)
{
    softmax_state *st = state;
    int rc = softmax_check(st, s, NULL);
    if (rc)
        return rc;
    attn_call call = {.s = s, .op = st, .fn = backward_head, .q = q, .k = k, .v = v, .out = out,
                      .dout = dout, .dq = dq, .dk = dk, .dv = dv, .saved_in = saved,
                      .saved_per_head = s->len_q, .work = work,
                      .worker_floats = worker_floats(st, s)};
    attn_heads_run(st->host, &call);
    return 0;
}

/* Decode state per head: K cache (max_len,d), V cache (max_len,dv) and a
 * score row (max_len); the scores live here rather than in `work` because
 * work_floats is not told max_len. */
static int64_t head_cache_floats(const et_attn_shape *s, int32_t max_len)
{
    return (int64_t)max_len * (s->dim_qk + s->dim_v + 1);
}

static int64_t softmax_decode_floats(void *state, const et_attn_shape *s, int32_t max_len)
{
    (void)state;
    return (int64_t)s->batch * s->heads * head_cache_floats(s, max_len);
}

static void softmax_decode_reset(void *state, const et_attn_shape *s, int32_t max_len,
                                 float *dstate)
{
    /* positions are written before they are read, so only the count matters,
     * and that is the caller's `pos` */
    (void)state, (void)s, (void)max_len, (void)dstate;
}

// one head at position call->pos: q, k (1,d), v (1,dv) -> out (1,dv)
static void decode_head(const attn_call *call, const attn_head *hd)
{
    const et_attn_shape *s = call->s;
    int64_t d = s->dim_qk, dv = s->dim_v, n = (int64_t)call->pos + 1;
    float scale = 1.0f / sqrtf((float)d);
    float *kc = hd->dstate, *vc = kc + (int64_t)call->max_len * d,
          *sc = vc + (int64_t)call->max_len * dv;
    memcpy(kc + call->pos * d, hd->k, (size_t)d * sizeof(float));
    memcpy(vc + call->pos * dv, hd->v, (size_t)dv * sizeof(float));
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, scale, kc, (int)d, hd->q, 1, 0.0f,
                sc, 1);
    float mx = -INFINITY, sum = 0.0f;
    for (int64_t j = 0; j < n; j++)
        mx = sc[j] > mx ? sc[j] : mx;
    for (int64_t j = 0; j < n; j++) {
        sc[j] = expf(sc[j] - mx);
        sum += sc[j];
    }
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, (int)dv, 1.0f / sum, vc, (int)dv, sc, 1, 0.0f,
                hd->out, 1);
}

// q (B,H,1,d), k (B,H,1,d), v (B,H,1,dv) at position pos -> out (B,H,1,dv)
static int softmax_decode_step(void *state, const et_attn_shape *s, int32_t max_len,
                               float *dstate, int32_t pos, et_attn_view q, et_attn_view k,
                               et_attn_view v, et_attn_view out, float *work)
{
    softmax_state *st = state;
    (void)work;
    if (pos < 0 || pos >= max_len || s->batch < 1 || s->heads < 1 || s->dim_qk < 1 ||
        s->dim_v < 1)
        return ET_STATUS_ERR_USAGE;
    attn_call call = {.s = s, .op = st, .fn = decode_head, .q = q, .k = k, .v = v, .out = out,
                      .dstate = dstate, .dstate_per_head = head_cache_floats(s, max_len),
                      .pos = pos, .max_len = max_len};
    attn_heads_run(st->host, &call);
    return 0;
}

/* L.S.(d+dv) per head, or N(N+1)/2.(d+dv) causal; the L.S exps are not MACs.
 * Key padding is not subtracted: this is the cost of the shape. */
static double softmax_macs(void *state, const et_attn_shape *s)
{
    (void)state;
    double L = s->len_q, S = s->len_k, pairs = s->mode == ET_ATTN_MODE_CAUSAL ? L * (L + 1) / 2
                                                                              : L * S;
    return (double)s->batch * s->heads * pairs * (s->dim_qk + s->dim_v);
}

static const et_attention_vtable softmax_vtable = {
    .create = softmax_create,
    .destroy = softmax_destroy,
    .prepare = softmax_prepare,
    .saved_floats = softmax_saved_floats,
    .work_floats = softmax_work_floats,
    .forward = softmax_forward,
    .backward = softmax_backward,
    .decode_floats = softmax_decode_floats,
    .decode_reset = softmax_decode_reset,
    .decode_step = softmax_decode_step,
    .macs = softmax_macs,
    .set_step = softmax_set_step,
};

static const et_plugin_descriptor softmax_descriptor = {
    ET_ABI_VERSION,
    ET_PLUGIN_KIND_ATTENTION,
    "softmax",
    "exact scaled dot-product attention (blockwise online softmax, KV-cache decoding)",
    softmax_options,
    &softmax_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &softmax_descriptor;
}
