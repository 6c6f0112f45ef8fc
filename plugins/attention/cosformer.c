/* cosFormer attention (Qin et al., ICLR 2022) as an etnas attention plugin:
 * ReLU features re-weighted by position,
 *   phi(x_i) = [relu(x_i) sin t_i ; relu(x_i) cos t_i],  t_i = (pi/2)(i+1)/M,
 * so phi(q_i).phi(k_j) = relu(q_i).relu(k_j) cos((pi/2)(i-j)/M), a locality
 * bias on the shared kernel-attention core (kernel_core.h). No 1/sqrt(d)
 * scaling; the denominator guard is max(den, eps).
 *
 * M, the period of the bias:
 * - bidirectional and cross, m_mode = max_len: M = max(L, S), the padded
 *   lengths, as in the authors' reference. Outputs then depend on how much
 *   padding the batch carries.
 * - bidirectional and cross, m_mode = per_sample: M = max(valid queries,
 *   valid keys) of each sequence, which padding does not change. The ABI
 *   carries key lengths only, so self-attention takes key_len[b] valid
 *   queries and cross-attention counts all L query rows as valid.
 * - causal: M has to be known before the sequence ends, so m_mode does not
 *   apply. M = max_positions when it is > 0, in training and in decoding
 *   alike (longer sequences are refused); otherwise M is the padded length
 *   L in training and max_len in decoding, which agree when they are equal.
 * Positions past M (padding queries under per_sample) use t = pi/2, which
 * keeps every weight >= 0. In decoding the position keeps counting: step
 * `pos` uses t_pos, as the causal forward's row pos does.
 *
 * Features are made COSFORMER_CHUNK rows at a time inside the core's chunk
 * loops (et_kc_mapped_forward, et_kc_mapped_backward) and dropped after
 * use, never kept for a whole sequence: 2d floats a row for queries and
 * keys would be most of the scratch and fall out of cache as the length
 * grows. Backward makes them again from q and k, which costs elementwise
 * work against the core's products. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/attention.h>

#include "attn_common.h"
#include "kernel_core.h"

#define COSFORMER_CHUNK 64

enum { OPT_EPS, OPT_M_MODE, OPT_MAX_POSITIONS };

static const et_option_decl cosformer_options[] = {
    {"eps", ET_OPTION_TYPE_FLOAT, "1e-6", 1e-30, 1.0, NULL,
     "denominator guard: out = num / max(den, eps)"},
    {"m_mode", ET_OPTION_TYPE_CHOICE, "max_len", 1.0, 0.0, "max_len|per_sample",
     "M of bidirectional and cross attention: padded max(L, S) (reference) or per sequence"},
    {"max_positions", ET_OPTION_TYPE_INT, "0", 0.0, 16777216.0, NULL,
     "fixed M of causal self-attention in training and decoding (0: the padded length)"},
    {NULL, 0, NULL, 0.0, 0.0, NULL, NULL}};

typedef struct cosformer {
    const et_host *host;
    float eps;
    int per_sample;
    int32_t max_positions;
} cosformer;

static int cosformer_create(const et_host *host, const et_option_value *opts, void **state,
                            char **err)
{
    *state = NULL;
    cosformer *cf = calloc(1, sizeof *cf);
    if (!cf) {
        *err = host->errorf("cosformer: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    cf->host = host;
    cf->eps = (float)opts[OPT_EPS].f;
    cf->per_sample = opts[OPT_M_MODE].i == 1;
    cf->max_positions = (int32_t)opts[OPT_MAX_POSITIONS].i;
    if (!(cf->eps > 0.0f)) {
        *err = host->errorf("cosformer: eps = %g is not a positive float; use e.g. 1e-6",
                            opts[OPT_EPS].f);
        free(cf);
        return ET_STATUS_ERR_USAGE;
    }
    *state = cf;
    return ET_STATUS_OK;
}

static void cosformer_destroy(void *state)
{
    free(state);
}

/* Shape checks shared by prepare and forward; err may be NULL. */
static int cosformer_check(const cosformer *cf, const et_attn_shape *s, char **err)
{
    int rc = attn_shape_check(cf->host, "cosformer", s, ATTN_SHAPE_STRICT, err);
    if (rc)
        return rc;
    if (s->mode == ET_ATTN_MODE_CAUSAL && cf->max_positions > 0 &&
        s->len_q > cf->max_positions) {
        if (err)
            *err = cf->host->errorf("cosformer: causal length %d exceeds max_positions = %d; "
                                    "raise max_positions to the longest target sequence",
                                    (int)s->len_q, (int)cf->max_positions);
        return ET_STATUS_ERR_USAGE;
    }
    return ET_STATUS_OK;
}

static int cosformer_prepare(void *state, const et_attn_shape *max, char **err)
{
    return cosformer_check(state, max, err);
}

static et_kc_shape cosformer_kc(const cosformer *cf, const et_attn_shape *s, int32_t key_len)
{
    return (et_kc_shape){.len_q = s->len_q,
                         .len_k = s->len_k,
                         .key_len = key_len,
                         .r = 2 * s->dim_qk,
                         .dim_v = s->dim_v,
                         .causal = s->mode == ET_ATTN_MODE_CAUSAL,
                         .chunk = COSFORMER_CHUNK,
                         .guard = ET_KC_GUARD_MAX,
                         .eps = cf->eps};
}

/* M of sequence b (see the top of the file). */
static double cosformer_period(const cosformer *cf, const et_attn_shape *s, int32_t b)
{
    int32_t m;
    if (s->mode == ET_ATTN_MODE_CAUSAL)
        m = cf->max_positions > 0 ? cf->max_positions : s->len_q;
    else if (!cf->per_sample)
        m = s->len_q > s->len_k ? s->len_q : s->len_k;
    else {
        int32_t valid_k = s->key_len ? s->key_len[b] : s->len_k;
        int32_t valid_q = s->mode == ET_ATTN_MODE_CROSS ? s->len_q : valid_k;
        m = valid_q > valid_k ? valid_q : valid_k;
    }
    return m > 0 ? (double)m : 1.0;
}

static double cosformer_angle(int64_t pos, double m)
{
    double i = (double)(pos + 1);
    return 1.5707963267948966 * (i < m ? i : m) / m;
}

// x (T,d) rows st apart, positions pos0.. -> phi (T,2d), sine half first
static void cosformer_map_forward(const float *x, int64_t st, int32_t t_rows, int32_t d,
                                  int64_t pos0, double m, float *phi)
{
    for (int32_t t = 0; t < t_rows; t++) {
        double a = cosformer_angle(pos0 + t, m);
        float sn = (float)sin(a), cs = (float)cos(a);
        const float *xt = x + t * st;
        float *pt = phi + (int64_t)t * 2 * d;
        for (int32_t c = 0; c < d; c++) {
            float rx = xt[c] > 0.0f ? xt[c] : 0.0f;
            pt[c] = rx * sn;
            pt[d + c] = rx * cs;
        }
    }
}

// dphi (T,2d), x (T,d) -> dx (T,d) rows dst apart; theta gets no gradient
static void cosformer_map_backward(const float *x, int64_t st, const float *dphi, int32_t t_rows,
                                   int32_t d, int64_t pos0, double m, float *dx, int64_t dst)
{
    for (int32_t t = 0; t < t_rows; t++) {
        double a = cosformer_angle(pos0 + t, m);
        float sn = (float)sin(a), cs = (float)cos(a);
        const float *xt = x + t * st;
        const float *gt = dphi + (int64_t)t * 2 * d;
        float *dt = dx + t * dst;
        for (int32_t c = 0; c < d; c++)
            dt[c] = xt[c] > 0.0f ? gt[c] * sn + gt[d + c] * cs : 0.0f;
    }
}

/* Scratch of one worker: the core's mapped driver, whose feature blocks
 * are a chunk of rows, so it does not grow with the length. */
static int64_t cosformer_worker_floats(const cosformer *cf, const et_attn_shape *s)
{
    et_kc_shape p = cosformer_kc(cf, s, s->len_k);
    return et_kc_mapped_work_floats(&p);
}

/* The core's saved floats of one head; the same for every key_len. */
static int64_t cosformer_saved_per_head(const cosformer *cf, const et_attn_shape *s)
{
    et_kc_shape p = cosformer_kc(cf, s, s->len_k);
    return et_kc_saved_floats(&p);
}

static int64_t cosformer_saved_floats(void *state, const et_attn_shape *s)
{
    return (int64_t)s->batch * s->heads * cosformer_saved_per_head(state, s);
}

static int64_t cosformer_work_floats(void *state, const et_attn_shape *s)
{
    const cosformer *cf = state;
    return (int64_t)cf->host->threads * cosformer_worker_floats(cf, s);
}

/* One head as the core's feature map sees it: its rows and gradients in
 * the call's views, and its period M. */
typedef struct cosformer_head {
    const attn_call *call;
    const attn_head *hd;
    double m;
} cosformer_head;

// rows i0.. (n,d) of q or k -> phi (n,2d)
static void cosformer_features(void *ctx, et_kc_side side, int64_t i0, int64_t n, float *phi)
{
    const cosformer_head *f = ctx;
    const attn_call *call = f->call;
    int key = side == ET_KC_SIDE_KEY;
    int64_t st = key ? call->k.st : call->q.st;
    const float *x = (key ? f->hd->k : f->hd->q) + i0 * st;
    cosformer_map_forward(x, st, (int32_t)n, call->s->dim_qk, i0, f->m, phi);
}

// dphi (n,2d) of rows i0.. of q or k -> dq or dk rows i0.. (n,d); phi is not needed
static void cosformer_features_backward(void *ctx, et_kc_side side, int64_t i0, int64_t n,
                                        const float *phi, float *dphi)
{
    const cosformer_head *f = ctx;
    const attn_call *call = f->call;
    int key = side == ET_KC_SIDE_KEY;
    int64_t st = key ? call->k.st : call->q.st, dst = key ? call->dk.st : call->dq.st;
    const float *x = (key ? f->hd->k : f->hd->q) + i0 * st;
    float *dx = (key ? f->hd->dk : f->hd->dq) + i0 * dst;
    (void)phi;
    cosformer_map_backward(x, st, dphi, (int32_t)n, call->s->dim_qk, i0, f->m, dx, dst);
}

// one head: q (L,d), k (S,d), v (S,dv) -> out (L,dv); saved (L) den
static void cosformer_forward_head(const attn_call *call, const attn_head *hd)
{
    cosformer_head f = {.call = call, .hd = hd, .m = cosformer_period(call->op, call->s, hd->b)};
    et_kc_map map = {.features = cosformer_features, .ctx = &f};
    et_kc_shape p = cosformer_kc(call->op, call->s, hd->key_len);
    et_kc_mapped_forward(&p, &map, hd->v, call->v.st, hd->out, call->out.st, hd->saved,
                         hd->work);
}

// q (B,H,L,d), k (B,H,S,d), v (B,H,S,dv) -> out (B,H,L,dv); saved (B,H,L) den
static int cosformer_forward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                             et_attn_view v, et_attn_view out, float *saved, float *work)
{
    const cosformer *cf = state;
    int rc = cosformer_check(cf, s, NULL);
    if (rc)
        return rc;
    attn_call call = {.s = s, .op = cf, .fn = cosformer_forward_head, .q = q, .k = k, .v = v,
                      .out = out, .saved = saved,
                      .saved_per_head = cosformer_saved_per_head(cf, s), .work = work,
                      .worker_floats = cosformer_worker_floats(cf, s)};
    attn_heads_run(cf->host, &call);
    return ET_STATUS_OK;
}

// one head: dout (L,dv) -> dq (L,d), dk (S,d), dv (S,dv); features remade, never saved
static void cosformer_backward_head(const attn_call *call, const attn_head *hd)
{
    const et_attn_shape *s = call->s;
    cosformer_head f = {.call = call, .hd = hd, .m = cosformer_period(call->op, s, hd->b)};
    et_kc_map map = {
        .features = cosformer_features, .backward = cosformer_features_backward, .ctx = &f};
    et_kc_shape p = cosformer_kc(call->op, s, hd->key_len);
    et_kc_mapped_backward(&p, &map, hd->v, call->v.st, hd->out, call->out.st, hd->dout,
                          call->dout.st, hd->saved_in, hd->dv, call->dv.st, hd->work);
    for (int32_t j = hd->key_len; j < s->len_k; j++)
        memset(hd->dk + j * call->dk.st, 0, (size_t)s->dim_qk * sizeof(float));
}

// dout (B,H,L,dv) -> dq (B,H,L,d), dk (B,H,S,d), dv (B,H,S,dv)
static int cosformer_backward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                              et_attn_view v, et_attn_view out, et_attn_view dout,
                              const float *saved, et_attn_view dq, et_attn_view dk,
                              et_attn_view dv, float *work)
{
    const cosformer *cf = state;
    int rc = cosformer_check(cf, s, NULL);
    if (rc)
        return rc;
    attn_call call = {.s = s, .op = cf, .fn = cosformer_backward_head, .q = q, .k = k, .v = v,
                      .out = out, .dout = dout, .dq = dq, .dk = dk, .dv = dv, .saved_in = saved,
                      .saved_per_head = cosformer_saved_per_head(cf, s), .work = work,
                      .worker_floats = cosformer_worker_floats(cf, s)};
    attn_heads_run(cf->host, &call);
    return ET_STATUS_OK;
}

/* Decode state: per (b, h) the core's H (r,dv) and z (r), then one float
 * counting the steps taken, so a skipped or repeated position is refused
 * instead of silently using the wrong angle. */
static et_kc_shape cosformer_decode_kc(const cosformer *cf, const et_attn_shape *s)
{
    et_attn_shape one = *s;
    one.len_q = one.len_k = 1;
    one.mode = ET_ATTN_MODE_CAUSAL;
    return cosformer_kc(cf, &one, 1);
}

static int64_t cosformer_decode_floats(void *state, const et_attn_shape *s, int32_t max_len)
{
    (void)max_len;
    et_kc_shape p = cosformer_decode_kc(state, s);
    return (int64_t)s->batch * s->heads * et_kc_decode_floats(&p) + 1;
}

static void cosformer_decode_reset(void *state, const et_attn_shape *s, int32_t max_len,
                                   float *dstate)
{
    (void)max_len;
    et_kc_shape p = cosformer_decode_kc(state, s);
    int64_t n = (int64_t)s->batch * s->heads, per = et_kc_decode_floats(&p);
    for (int64_t bh = 0; bh < n; bh++)
        et_kc_decode_reset(&p, dstate + bh * per);
    dstate[n * per] = 0.0f;
}

/* M of decoding: max_positions, or else max_len (see the top of the file). */
static int32_t cosformer_decode_period(const cosformer *cf, int32_t max_len)
{
    return cf->max_positions > 0 ? cf->max_positions : max_len;
}

// one head at position call->pos: q, k (1,d), v (1,dv) -> out (1,dv)
static void cosformer_decode_head(const attn_call *call, const attn_head *hd)
{
    const cosformer *cf = call->op;
    int32_t d = call->s->dim_qk;
    double m = (double)cosformer_decode_period(cf, call->max_len);
    et_kc_shape p = cosformer_decode_kc(cf, call->s);
    float *phq = hd->work, *phk = phq + 2 * d;
    cosformer_map_forward(hd->q, 0, 1, d, call->pos, m, phq);
    cosformer_map_forward(hd->k, 0, 1, d, call->pos, m, phk);
    et_kc_decode_step(&p, hd->dstate, phq, phk, hd->v, hd->out);
}

// q, k (B,H,1,d), v (B,H,1,dv) at position pos -> out (B,H,1,dv)
static int cosformer_decode_step(void *state, const et_attn_shape *s, int32_t max_len,
                                 float *dstate, int32_t pos, et_attn_view q, et_attn_view k,
                                 et_attn_view v, et_attn_view out, float *work)
{
    const cosformer *cf = state;
    if (attn_decode_check(s, max_len, pos) || pos >= cosformer_decode_period(cf, max_len))
        return ET_STATUS_ERR_USAGE;
    et_kc_shape p = cosformer_decode_kc(cf, s);
    int64_t per = et_kc_decode_floats(&p);
    float *steps = dstate + (int64_t)s->batch * s->heads * per;
    if ((float)pos != *steps)
        return ET_STATUS_ERR_USAGE;
    attn_call call = {.s = s, .op = cf, .fn = cosformer_decode_head, .q = q, .k = k, .v = v,
                      .out = out, .dstate = dstate, .dstate_per_head = per, .pos = pos,
                      .max_len = max_len, .work = work,
                      .worker_floats = cosformer_worker_floats(cf, s)};
    attn_heads_run(cf->host, &call);
    *steps = (float)(pos + 1);
    return ET_STATUS_OK;
}

/* Map 2d(L+S) plus the core with r = 2d, per head. */
static double cosformer_macs(void *state, const et_attn_shape *s)
{
    et_kc_shape p = cosformer_kc(state, s, s->len_k);
    double per_head = 2.0 * s->dim_qk * ((double)s->len_q + s->len_k) + et_kc_macs(&p);
    return (double)s->batch * s->heads * per_head;
}

static const et_attention_vtable cosformer_vtable = {
    .create = cosformer_create,
    .destroy = cosformer_destroy,
    .prepare = cosformer_prepare,
    .saved_floats = cosformer_saved_floats,
    .work_floats = cosformer_work_floats,
    .forward = cosformer_forward,
    .backward = cosformer_backward,
    .decode_floats = cosformer_decode_floats,
    .decode_reset = cosformer_decode_reset,
    .decode_step = cosformer_decode_step,
    .macs = cosformer_macs,
    .set_step = NULL,
};

static const et_plugin_descriptor cosformer_descriptor = {
    .abi_version = ET_ABI_VERSION,
    .kind = ET_PLUGIN_KIND_ATTENTION,
    .name = "cosformer",
    .summary = "cosFormer: ReLU kernel attention with a cos-based locality re-weighting, linear in "
               "length",
    .options = cosformer_options,
    .vtable = &cosformer_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &cosformer_descriptor;
}
