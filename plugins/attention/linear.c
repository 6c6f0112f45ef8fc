/* The linear Transformer's attention (Katharopoulos et al. 2020;
 * spec/attention.md): feature map phi(x) = elu(x) + 1 (r = d), guard
 * den + eps, on the shared kernel core (kernel_core.h). Causal attention is
 * chunked with one r x dv running state; decoding keeps that state per head.
 * Heads run in parallel over host->parallel_for; each worker's phi(q) and
 * phi(k) rows and core scratch come from `work`.
 *
 * Per head: q (L,d), k (S,d), v (S,dv) rows of the strided views. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/attention.h>

#include "kernel_core.h"

typedef struct linear_state {
    const et_host *host;
    float eps;
    int32_t chunk;
} linear_state;

static const et_option_decl linear_options[] = {
    {"eps", ET_OPTION_TYPE_FLOAT, "1e-6", 1e-12, 1.0, NULL,
     "denominator guard: out = num / (den + eps)"},
    {"chunk", ET_OPTION_TYPE_INT, "64", 1, 4096, NULL,
     "rows per chunk of the causal scan (any value gives the same result)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int linear_create(const et_host *host, const et_option_value *opts, void **state,
                         char **err)
{
    *state = NULL;
    if (!(opts[0].f > 0.0) || opts[1].i < 1) {
        *err = host->errorf("linear: eps must be > 0 and chunk >= 1 (got %g and %lld)",
                            opts[0].f, (long long)opts[1].i);
        return ET_STATUS_ERR_USAGE;
    }
    linear_state *st = calloc(1, sizeof *st);
    if (!st) {
        *err = host->errorf("linear: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    st->host = host;
    st->eps = (float)opts[0].f;
    st->chunk = (int32_t)opts[1].i;
    *state = st;
    return 0;
}

static void linear_destroy(void *state)
{
    free(state);
}

static int shape_ok(const et_attn_shape *s)
{
    if (s->batch < 1 || s->heads < 1 || s->len_q < 0 || s->len_k < 0 || s->dim_qk < 1 ||
        s->dim_v < 1)
        return ET_STATUS_ERR_USAGE;
    if (s->mode == ET_ATTN_MODE_CROSS)
        return 0;
    if (s->mode != ET_ATTN_MODE_BIDIRECTIONAL && s->mode != ET_ATTN_MODE_CAUSAL)
        return ET_STATUS_ERR_USAGE;
    return s->len_q == s->len_k ? 0 : ET_STATUS_ERR_UNSUPPORTED;
}

static int linear_prepare(void *state, const et_attn_shape *max, char **err)
{
    linear_state *st = state;
    int rc = shape_ok(max);
    if (rc == ET_STATUS_ERR_UNSUPPORTED)
        *err = st->host->errorf("linear: %s attention needs len_q == len_k (got %d and %d); "
                                "use mode cross for different lengths (causal cross-attention "
                                "is not defined)",
                                max->mode == ET_ATTN_MODE_CAUSAL ? "causal" : "self",
                                max->len_q, max->len_k);
    else if (rc)
        *err = st->host->errorf("linear: bad shape B=%d H=%d L=%d S=%d d=%d dv=%d mode=%d",
                                max->batch, max->heads, max->len_q, max->len_k, max->dim_qk,
                                max->dim_v, max->mode);
    return rc;
}

/* The core's problem for sequence b of shape s. */
static et_kc_shape core_shape(const linear_state *st, const et_attn_shape *s, int64_t b)
{
    int32_t nk = s->key_len ? s->key_len[b] : s->len_k;
    return (et_kc_shape){s->len_q, s->len_k, nk, s->dim_qk, s->dim_v,
                         s->mode == ET_ATTN_MODE_CAUSAL, st->chunk, ET_KC_GUARD_ADD, st->eps};
}

static int64_t linear_saved_floats(void *state, const et_attn_shape *s)
{
    (void)state;
    return (int64_t)s->batch * s->heads * s->len_q;
}

/* per worker: phi(q) (L,d), phi(k) (S,d), then the core's scratch */
static int64_t worker_floats(const linear_state *st, const et_attn_shape *s)
{
    et_kc_shape p = core_shape(st, s, 0);
    return ((int64_t)s->len_q + s->len_k) * s->dim_qk + et_kc_work_floats(&p);
}

static int64_t linear_work_floats(void *state, const et_attn_shape *s)
{
    linear_state *st = state;
    return st->host->threads * worker_floats(st, s);
}

#define ROW(view, b, h, t) ((view).data + (int64_t)(b) * (view).sb + (int64_t)(h) * (view).sh + \
                            (int64_t)(t) * (view).st)

static float elu1(float x)
{
    return x > 0.0f ? x + 1.0f : expf(x);
}

/* phi (n,d) contiguous from x (n,d) with row stride ldx */
static void feature_map(float *phi, const float *x, int64_t ldx, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < d; c++)
            phi[i * d + c] = elu1(x[i * ldx + c]);
}

/* dx = dphi * phi'(x) in place, phi'(x) = 1 for x > 0, else e^x */
static void feature_map_backward(float *dx, int64_t lddx, const float *x, int64_t ldx, int64_t n,
                                 int64_t d)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < d; c++) {
            float xi = x[i * ldx + c];
            if (xi <= 0.0f)
                dx[i * lddx + c] *= expf(xi);
        }
}

typedef struct heads_job {
    const linear_state *st;
    const et_attn_shape *s;
    et_attn_view q, k, v, out, dout, dq, dk, dv;
    float *saved;
    const float *csaved;
    float *work;
    int32_t max_len;
    float *dstate;
} heads_job;

static void forward_range(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const heads_job *jb = arg;
    const et_attn_shape *s = jb->s;
    int64_t L = s->len_q, S = s->len_k, d = s->dim_qk;
    float *phq = jb->work + worker * worker_floats(jb->st, s), *phk = phq + L * d,
          *core = phk + S * d;
    for (int64_t idx = begin; idx < end; idx++) {
        int64_t b = idx / s->heads, h = idx % s->heads;
        et_kc_shape p = core_shape(jb->st, s, b);
        int64_t nk = p.key_len < 0 ? 0 : (p.key_len < S ? p.key_len : S);
        feature_map(phq, ROW(jb->q, b, h, 0), jb->q.st, L, d);
        feature_map(phk, ROW(jb->k, b, h, 0), jb->k.st, nk, d);
        et_kc_forward(&p, phq, d, phk, d, ROW(jb->v, b, h, 0), jb->v.st, ROW(jb->out, b, h, 0),
                      jb->out.st, jb->saved + idx * L, core);
    }
}

static void run_heads(const linear_state *st, const et_attn_shape *s, et_parallel_fn fn,
                      heads_job *jb)
{
    st->host->parallel_for(st->host->ctx, (int64_t)s->batch * s->heads, fn, jb);
}

// q (B,H,L,d), k (B,H,S,d), v (B,H,S,dv) -> out (B,H,L,dv); saved (B,H,L) denominators
static int linear_forward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                          et_attn_view v, et_attn_view out, float *saved, float *work)
{
    linear_state *st = state;
    int rc = shape_ok(s);
    if (rc)
        return rc;
    heads_job jb = {.st = st, .s = s, .q = q, .k = k, .v = v, .out = out, .saved = saved,
                    .work = work};
    run_heads(st, s, forward_range, &jb);
    return 0;
}

static void backward_range(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const heads_job *jb = arg;
    const et_attn_shape *s = jb->s;
    int64_t L = s->len_q, S = s->len_k, d = s->dim_qk;
    float *phq = jb->work + worker * worker_floats(jb->st, s), *phk = phq + L * d,
          *core = phk + S * d;
    for (int64_t idx = begin; idx < end; idx++) {
        int64_t b = idx / s->heads, h = idx % s->heads;
        et_kc_shape p = core_shape(jb->st, s, b);
        int64_t nk = p.key_len < 0 ? 0 : (p.key_len < S ? p.key_len : S);
        const float *q = ROW(jb->q, b, h, 0), *k = ROW(jb->k, b, h, 0);
        float *dq = ROW(jb->dq, b, h, 0), *dk = ROW(jb->dk, b, h, 0);
        feature_map(phq, q, jb->q.st, L, d);
        feature_map(phk, k, jb->k.st, nk, d);
        /* the core writes dphi(q), dphi(k) into dq, dk; the map's slope finishes them */
        et_kc_backward(&p, phq, d, phk, d, ROW(jb->v, b, h, 0), jb->v.st, ROW(jb->out, b, h, 0),
                       jb->out.st, ROW(jb->dout, b, h, 0), jb->dout.st, jb->csaved + idx * L, dq,
                       jb->dq.st, dk, jb->dk.st, ROW(jb->dv, b, h, 0), jb->dv.st, core);
        feature_map_backward(dq, jb->dq.st, q, jb->q.st, L, d);
        feature_map_backward(dk, jb->dk.st, k, jb->k.st, nk, d);
    }
}

// dout (B,H,L,dv) -> dq (B,H,L,d), dk (B,H,S,d), dv (B,H,S,dv)
static int linear_backward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                           et_attn_view v, et_attn_view out, et_attn_view dout, const float *saved,
                           et_attn_view dq, et_attn_view dk, et_attn_view dv, float *work)
{
    linear_state *st = state;
    int rc = shape_ok(s);
    if (rc)
        return rc;
    heads_job jb = {.st = st, .s = s, .q = q, .k = k, .v = v, .out = out, .dout = dout,
                    .dq = dq, .dk = dk, .dv = dv, .csaved = saved, .work = work};
    run_heads(st, s, backward_range, &jb);
    return 0;
}

/* Decode state per head: the core's H (d,dv) and z (d), whatever max_len. */
static int64_t linear_decode_floats(void *state, const et_attn_shape *s, int32_t max_len)
{
    et_kc_shape p = core_shape(state, s, 0);
    (void)max_len;
    return (int64_t)s->batch * s->heads * et_kc_decode_floats(&p);
}

static void linear_decode_reset(void *state, const et_attn_shape *s, int32_t max_len,
                                float *dstate)
{
    memset(dstate, 0, (size_t)linear_decode_floats(state, s, max_len) * sizeof(float));
}

static void decode_range(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const heads_job *jb = arg;
    const et_attn_shape *s = jb->s;
    int64_t d = s->dim_qk;
    et_kc_shape p = core_shape(jb->st, s, 0);
    float *phq = jb->work + worker * worker_floats(jb->st, s), *phk = phq + d;
    for (int64_t idx = begin; idx < end; idx++) {
        int64_t b = idx / s->heads, h = idx % s->heads;
        feature_map(phq, ROW(jb->q, b, h, 0), d, 1, d);
        feature_map(phk, ROW(jb->k, b, h, 0), d, 1, d);
        et_kc_decode_step(&p, jb->dstate + idx * et_kc_decode_floats(&p), phq, phk,
                          ROW(jb->v, b, h, 0), ROW(jb->out, b, h, 0));
    }
}

// q (B,H,1,d), k (B,H,1,d), v (B,H,1,dv) at position pos -> out (B,H,1,dv)
static int linear_decode_step(void *state, const et_attn_shape *s, int32_t max_len,
                              float *dstate, int32_t pos, et_attn_view q, et_attn_view k,
                              et_attn_view v, et_attn_view out, float *work)
{
    linear_state *st = state;
    if (pos < 0 || pos >= max_len || s->batch < 1 || s->heads < 1 || s->dim_qk < 1 ||
        s->dim_v < 1 || s->len_q != 1 || s->len_k != 1)
        return ET_STATUS_ERR_USAGE;
    heads_job jb = {.st = st, .s = s, .q = q, .k = k, .v = v, .out = out, .work = work,
                    .max_len = max_len, .dstate = dstate};
    run_heads(st, s, decode_range, &jb);
    return 0;
}

/* The kernel core's count with r = d; the elementwise map is not a MAC. */
static double linear_macs(void *state, const et_attn_shape *s)
{
    et_kc_shape p = core_shape(state, s, 0);
    return (double)s->batch * s->heads * et_kc_macs(&p);
}

static const et_attention_vtable linear_vtable = {
    .create = linear_create,
    .destroy = linear_destroy,
    .prepare = linear_prepare,
    .saved_floats = linear_saved_floats,
    .work_floats = linear_work_floats,
    .forward = linear_forward,
    .backward = linear_backward,
    .decode_floats = linear_decode_floats,
    .decode_reset = linear_decode_reset,
    .decode_step = linear_decode_step,
    .macs = linear_macs,
    .set_step = NULL,
};

static const et_plugin_descriptor linear_descriptor = {
    ET_ABI_VERSION,
    ET_PLUGIN_KIND_ATTENTION,
    "linear",
    "linear Transformer attention: elu(x)+1 features on the shared kernel core (O(N) time and memory)",
    linear_options,
    &linear_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &linear_descriptor;
}
