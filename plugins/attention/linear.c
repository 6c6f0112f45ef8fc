/* The linear Transformer's attention (Katharopoulos et al. 2020;
 * spec/attention.md): feature map phi(x) = elu(x) + 1 (r = d), guard
 * den + eps, on the shared kernel core (kernel_core.h). Causal attention is
 * chunked with one r x dv running state; decoding keeps that state per head.
 * Heads run in parallel over host->parallel_for; each worker's scratch comes
 * from `work`. Features are made `chunk` rows at a time inside the core's
 * chunk loops (et_kc_mapped_forward, et_kc_mapped_backward) and dropped
 * after use, so scratch does not grow with the length; backward makes them
 * again from q and k.
 *
 * Per head: q (L,d), k (S,d), v (S,dv) rows of the strided views. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/attention.h>

#include "attn_common.h"
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
     "rows per chunk of the causal scan and of the feature blocks (any value gives the same "
     "result)"},
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

/* Lengths may be 0 and key lengths are clamped (the core never reads past S). */
static int linear_check(const linear_state *st, const et_attn_shape *s, char **err)
{
    return attn_shape_check(st->host, "linear", s, 0, err);
}

static int linear_prepare(void *state, const et_attn_shape *max, char **err)
{
    return linear_check(state, max, err);
}

/* The core's problem for a sequence of shape s with key_len valid keys. */
static et_kc_shape core_shape(const linear_state *st, const et_attn_shape *s, int32_t key_len)
{
    return (et_kc_shape){s->len_q, s->len_k, key_len, s->dim_qk, s->dim_v,
                         s->mode == ET_ATTN_MODE_CAUSAL, st->chunk, ET_KC_GUARD_ADD, st->eps};
}

static int64_t linear_saved_floats(void *state, const et_attn_shape *s)
{
    (void)state;
    return (int64_t)s->batch * s->heads * s->len_q;
}

/* Per worker: the core's mapped driver, whose feature blocks are a chunk
 * of rows, so it does not grow with the length. */
static int64_t worker_floats(const linear_state *st, const et_attn_shape *s)
{
    et_kc_shape p = core_shape(st, s, s->len_k);
    return et_kc_mapped_work_floats(&p);
}

static int64_t linear_work_floats(void *state, const et_attn_shape *s)
{
    linear_state *st = state;
    return st->host->threads * worker_floats(st, s);
}

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

/* dx (n,d) row stride lddx = dphi (n,d) * phi'(x): 1 for x > 0, else
 * e^x, which is phi (n,d) there */
static void feature_map_backward(float *dx, int64_t lddx, const float *x, int64_t ldx,
                                 const float *phi, const float *dphi, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < d; c++)
            dx[i * lddx + c] =
                x[i * ldx + c] > 0.0f ? dphi[i * d + c] : dphi[i * d + c] * phi[i * d + c];
}

/* One head as the core's feature map sees it: its rows and gradients in
 * the call's views. */
typedef struct head_map {
    const attn_call *call;
    const attn_head *hd;
} head_map;

// rows i0.. (n,d) of q or k -> phi (n,d)
static void map_features(void *ctx, et_kc_side side, int64_t i0, int64_t n, float *phi)
{
    const head_map *f = ctx;
    int key = side == ET_KC_SIDE_KEY;
    int64_t st = key ? f->call->k.st : f->call->q.st;
    feature_map(phi, (key ? f->hd->k : f->hd->q) + i0 * st, st, n, f->call->s->dim_qk);
}

// phi, dphi (n,d) of rows i0.. of q or k -> dq or dk rows i0.. (n,d)
static void map_backward(void *ctx, et_kc_side side, int64_t i0, int64_t n, const float *phi,
                         float *dphi)
{
    const head_map *f = ctx;
    const attn_call *call = f->call;
    int key = side == ET_KC_SIDE_KEY;
    int64_t st = key ? call->k.st : call->q.st, dst = key ? call->dk.st : call->dq.st;
    feature_map_backward((key ? f->hd->dk : f->hd->dq) + i0 * dst, dst,
                         (key ? f->hd->k : f->hd->q) + i0 * st, st, phi, dphi, n,
                         call->s->dim_qk);
}

// one head: q (L,d), k (S,d), v (S,dv) -> out (L,dv); saved (L) denominators
static void forward_head(const attn_call *call, const attn_head *hd)
{
    head_map f = {.call = call, .hd = hd};
    et_kc_map map = {.features = map_features, .ctx = &f};
    et_kc_shape p = core_shape(call->op, call->s, hd->key_len);
    et_kc_mapped_forward(&p, &map, hd->v, call->v.st, hd->out, call->out.st, hd->saved,
                         hd->work);
}

// q (B,H,L,d), k (B,H,S,d), v (B,H,S,dv) -> out (B,H,L,dv); saved (B,H,L) denominators
static int linear_forward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                          et_attn_view v, et_attn_view out, float *saved, float *work)
{
    linear_state *st = state;
    int rc = linear_check(st, s, NULL);
    if (rc)
        return rc;
    attn_call call = {.s = s, .op = st, .fn = forward_head, .q = q, .k = k, .v = v, .out = out,
                      .saved = saved, .saved_per_head = s->len_q, .work = work,
                      .worker_floats = worker_floats(st, s)};
    attn_heads_run(st->host, &call);
    return 0;
}

// one head: dout (L,dv) -> dq (L,d), dk (S,d), dv (S,dv); features remade, never saved
static void backward_head(const attn_call *call, const attn_head *hd)
{
    const et_attn_shape *s = call->s;
    head_map f = {.call = call, .hd = hd};
    et_kc_map map = {.features = map_features, .backward = map_backward, .ctx = &f};
    et_kc_shape p = core_shape(call->op, s, hd->key_len);
    et_kc_mapped_backward(&p, &map, hd->v, call->v.st, hd->out, call->out.st, hd->dout,
                          call->dout.st, hd->saved_in, hd->dv, call->dv.st, hd->work);
    for (int32_t j = hd->key_len; j < s->len_k; j++)
        memset(hd->dk + j * call->dk.st, 0, (size_t)s->dim_qk * sizeof(float));
}

// dout (B,H,L,dv) -> dq (B,H,L,d), dk (B,H,S,d), dv (B,H,S,dv)
static int linear_backward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                           et_attn_view v, et_attn_view out, et_attn_view dout, const float *saved,
                           et_attn_view dq, et_attn_view dk, et_attn_view dv, float *work)
{
    linear_state *st = state;
    int rc = linear_check(st, s, NULL);
    if (rc)
        return rc;
    attn_call call = {.s = s, .op = st, .fn = backward_head, .q = q, .k = k, .v = v, .out = out,
                      .dout = dout, .dq = dq, .dk = dk, .dv = dv, .saved_in = saved,
                      .saved_per_head = s->len_q, .work = work,
                      .worker_floats = worker_floats(st, s)};
    attn_heads_run(st->host, &call);
    return 0;
}

/* Decode state per head: the core's H (d,dv) and z (d), whatever max_len. */
static int64_t linear_decode_floats(void *state, const et_attn_shape *s, int32_t max_len)
{
    et_kc_shape p = core_shape(state, s, s->len_k);
    (void)max_len;
    return (int64_t)s->batch * s->heads * et_kc_decode_floats(&p);
}

static void linear_decode_reset(void *state, const et_attn_shape *s, int32_t max_len,
                                float *dstate)
{
    memset(dstate, 0, (size_t)linear_decode_floats(state, s, max_len) * sizeof(float));
}

// one head: q, k (1,d), v (1,dv) -> out (1,dv)
static void decode_head(const attn_call *call, const attn_head *hd)
{
    const et_attn_shape *s = call->s;
    int64_t d = s->dim_qk;
    et_kc_shape p = core_shape(call->op, s, s->len_k);
    float *phq = hd->work, *phk = phq + d;
    feature_map(phq, hd->q, d, 1, d);
    feature_map(phk, hd->k, d, 1, d);
    et_kc_decode_step(&p, hd->dstate, phq, phk, hd->v, hd->out);
}

// q (B,H,1,d), k (B,H,1,d), v (B,H,1,dv) at position pos -> out (B,H,1,dv)
static int linear_decode_step(void *state, const et_attn_shape *s, int32_t max_len,
                              float *dstate, int32_t pos, et_attn_view q, et_attn_view k,
                              et_attn_view v, et_attn_view out, float *work)
{
    linear_state *st = state;
    if (attn_decode_check(s, max_len, pos))
        return ET_STATUS_ERR_USAGE;
    et_kc_shape p = core_shape(st, s, s->len_k);
    attn_call call = {.s = s, .op = st, .fn = decode_head, .q = q, .k = k, .v = v, .out = out,
                      .dstate = dstate, .dstate_per_head = et_kc_decode_floats(&p), .pos = pos,
                      .max_len = max_len, .work = work, .worker_floats = worker_floats(st, s)};
    attn_heads_run(st->host, &call);
    return 0;
}

/* The kernel core's count with r = d; the elementwise map is not a MAC. */
static double linear_macs(void *state, const et_attn_shape *s)
{
    et_kc_shape p = core_shape(state, s, s->len_k);
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
