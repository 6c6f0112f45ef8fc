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
 * `pos` uses t_pos, as the causal forward's row pos does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/attention.h>

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

/* One call's arguments, shared by the workers of a parallel loop. */
typedef struct cosformer_job {
    const cosformer *cf;
    const et_attn_shape *s;
    et_attn_view q, k, v, out, dout, dq, dk, dv;
    float *saved;
    const float *saved_in;
    float *work;
    int64_t worker_floats, saved_per_head;
    /* decode only */
    float *dstate;
    int32_t pos;
    double m_decode;
} cosformer_job;

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
    const et_host *host = cf->host;
    if (s->batch < 1 || s->heads < 1 || s->len_q < 1 || s->len_k < 1 || s->dim_qk < 1 ||
        s->dim_v < 1) {
        if (err)
            *err = host->errorf("cosformer: shape B=%d H=%d L=%d S=%d d=%d dv=%d has an empty "
                                "dimension",
                                (int)s->batch, (int)s->heads, (int)s->len_q, (int)s->len_k,
                                (int)s->dim_qk, (int)s->dim_v);
        return ET_STATUS_ERR_USAGE;
    }
    if (s->mode != ET_ATTN_MODE_BIDIRECTIONAL && s->mode != ET_ATTN_MODE_CAUSAL &&
        s->mode != ET_ATTN_MODE_CROSS) {
        if (err)
            *err = host->errorf("cosformer: unknown attention mode %d", (int)s->mode);
        return ET_STATUS_ERR_USAGE;
    }
    if (s->mode != ET_ATTN_MODE_CROSS && s->len_q != s->len_k) {
        if (err)
            *err = host->errorf("cosformer: %s self-attention needs len_q == len_k (got %d and "
                                "%d); causal cross-attention is not supported",
                                s->mode == ET_ATTN_MODE_CAUSAL ? "causal" : "bidirectional",
                                (int)s->len_q, (int)s->len_k);
        return s->mode == ET_ATTN_MODE_CAUSAL ? ET_STATUS_ERR_UNSUPPORTED : ET_STATUS_ERR_USAGE;
    }
    if (s->mode == ET_ATTN_MODE_CAUSAL && cf->max_positions > 0 &&
        s->len_q > cf->max_positions) {
        if (err)
            *err = host->errorf("cosformer: causal length %d exceeds max_positions = %d; raise "
                                "max_positions to the longest target sequence",
                                (int)s->len_q, (int)cf->max_positions);
        return ET_STATUS_ERR_USAGE;
    }
    if (s->key_len)
        for (int32_t b = 0; b < s->batch; b++)
            if (s->key_len[b] < 0 || s->key_len[b] > s->len_k) {
                if (err)
                    *err = host->errorf("cosformer: key_len[%d] = %d is outside [0, %d]", (int)b,
                                        (int)s->key_len[b], (int)s->len_k);
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

static const float *view_row(et_attn_view x, int32_t b, int32_t h)
{
    return x.data + b * x.sb + h * x.sh;
}

static float *view_row_mut(et_attn_view x, int32_t b, int32_t h)
{
    return x.data + b * x.sb + h * x.sh;
}

static int64_t cosformer_worker_floats(const cosformer *cf, const et_attn_shape *s)
{
    et_kc_shape p = cosformer_kc(cf, s, s->len_k);
    int64_t r = p.r;
    /* forward: phq, phk; backward adds dphq, dphk */
    return 2 * r * ((int64_t)s->len_q + s->len_k) + et_kc_work_floats(&p);
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

static void cosformer_forward_heads(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const cosformer_job *job = arg;
    const et_attn_shape *s = job->s;
    int32_t d = s->dim_qk, r = 2 * d;
    float *phq = job->work + worker * job->worker_floats;
    float *phk = phq + (int64_t)s->len_q * r;
    float *kc_work = phk + (int64_t)s->len_k * r;
    for (int64_t bh = begin; bh < end; bh++) {
        int32_t b = (int32_t)(bh / s->heads), h = (int32_t)(bh % s->heads);
        int32_t key_len = s->key_len ? s->key_len[b] : s->len_k;
        et_kc_shape p = cosformer_kc(job->cf, s, key_len);
        double m = cosformer_period(job->cf, s, b);
        cosformer_map_forward(view_row(job->q, b, h), job->q.st, s->len_q, d, 0, m, phq);
        cosformer_map_forward(view_row(job->k, b, h), job->k.st, key_len, d, 0, m, phk);
        et_kc_forward(&p, phq, r, phk, r, view_row(job->v, b, h), job->v.st,
                      view_row_mut(job->out, b, h), job->out.st,
                      job->saved + bh * job->saved_per_head, kc_work);
    }
}

// q (B,H,L,d), k (B,H,S,d), v (B,H,S,dv) -> out (B,H,L,dv); saved (B,H,L) den
static int cosformer_forward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                             et_attn_view v, et_attn_view out, float *saved, float *work)
{
    const cosformer *cf = state;
    int rc = cosformer_check(cf, s, NULL);
    if (rc)
        return rc;
    cosformer_job job = {.cf = cf, .s = s, .q = q, .k = k, .v = v, .out = out, .saved = saved,
                         .work = work, .worker_floats = cosformer_worker_floats(cf, s),
                         .saved_per_head = cosformer_saved_per_head(cf, s)};
    cf->host->parallel_for(cf->host->ctx, (int64_t)s->batch * s->heads, cosformer_forward_heads,
                           &job);
    return ET_STATUS_OK;
}

static void cosformer_backward_heads(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const cosformer_job *job = arg;
    const et_attn_shape *s = job->s;
    int32_t d = s->dim_qk, r = 2 * d;
    float *phq = job->work + worker * job->worker_floats;
    float *phk = phq + (int64_t)s->len_q * r;
    float *dphq = phk + (int64_t)s->len_k * r;
    float *dphk = dphq + (int64_t)s->len_q * r;
    float *kc_work = dphk + (int64_t)s->len_k * r;
    for (int64_t bh = begin; bh < end; bh++) {
        int32_t b = (int32_t)(bh / s->heads), h = (int32_t)(bh % s->heads);
        int32_t key_len = s->key_len ? s->key_len[b] : s->len_k;
        et_kc_shape p = cosformer_kc(job->cf, s, key_len);
        double m = cosformer_period(job->cf, s, b);
        const float *q = view_row(job->q, b, h), *k = view_row(job->k, b, h);
        cosformer_map_forward(q, job->q.st, s->len_q, d, 0, m, phq);
        cosformer_map_forward(k, job->k.st, key_len, d, 0, m, phk);
        et_kc_backward(&p, phq, r, phk, r, view_row(job->v, b, h), job->v.st,
                       view_row(job->out, b, h), job->out.st, view_row(job->dout, b, h),
                       job->dout.st, job->saved_in + bh * job->saved_per_head, dphq, r, dphk,
                       r, view_row_mut(job->dv, b, h), job->dv.st, kc_work);
        cosformer_map_backward(q, job->q.st, dphq, s->len_q, d, 0, m, view_row_mut(job->dq, b, h),
                               job->dq.st);
        cosformer_map_backward(k, job->k.st, dphk, key_len, d, 0, m, view_row_mut(job->dk, b, h),
                               job->dk.st);
        float *dk = view_row_mut(job->dk, b, h);
        for (int32_t j = key_len; j < s->len_k; j++)
            memset(dk + j * job->dk.st, 0, (size_t)d * sizeof *dk);
    }
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
    cosformer_job job = {.cf = cf, .s = s, .q = q, .k = k, .v = v, .out = out, .dout = dout,
                         .dq = dq, .dk = dk, .dv = dv, .saved_in = saved, .work = work,
                         .worker_floats = cosformer_worker_floats(cf, s),
                         .saved_per_head = cosformer_saved_per_head(cf, s)};
    cf->host->parallel_for(cf->host->ctx, (int64_t)s->batch * s->heads, cosformer_backward_heads,
                           &job);
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

static void cosformer_decode_heads(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const cosformer_job *job = arg;
    const et_attn_shape *s = job->s;
    int32_t d = s->dim_qk, r = 2 * d;
    et_kc_shape p = cosformer_decode_kc(job->cf, s);
    int64_t per = et_kc_decode_floats(&p);
    float *phq = job->work + worker * job->worker_floats;
    float *phk = phq + r;
    for (int64_t bh = begin; bh < end; bh++) {
        int32_t b = (int32_t)(bh / s->heads), h = (int32_t)(bh % s->heads);
        cosformer_map_forward(view_row(job->q, b, h), 0, 1, d, job->pos, job->m_decode, phq);
        cosformer_map_forward(view_row(job->k, b, h), 0, 1, d, job->pos, job->m_decode, phk);
        et_kc_decode_step(&p, job->dstate + bh * per, phq, phk, view_row(job->v, b, h),
                          view_row_mut(job->out, b, h));
    }
}

// q, k (B,H,1,d), v (B,H,1,dv) at position pos -> out (B,H,1,dv)
static int cosformer_decode_step(void *state, const et_attn_shape *s, int32_t max_len,
                                 float *dstate, int32_t pos, et_attn_view q, et_attn_view k,
                                 et_attn_view v, et_attn_view out, float *work)
{
    const cosformer *cf = state;
    if (s->len_q != 1 || s->len_k != 1 || s->batch < 1 || s->heads < 1 || s->dim_qk < 1 ||
        s->dim_v < 1)
        return ET_STATUS_ERR_USAGE;
    int32_t m = cf->max_positions > 0 ? cf->max_positions : max_len;
    int64_t n = (int64_t)s->batch * s->heads;
    et_kc_shape p = cosformer_decode_kc(cf, s);
    float *steps = dstate + n * et_kc_decode_floats(&p);
    if (pos < 0 || pos >= m || pos >= max_len || (float)pos != *steps)
        return ET_STATUS_ERR_USAGE;
    cosformer_job job = {.cf = cf, .s = s, .q = q, .k = k, .v = v, .out = out, .work = work,
                         .worker_floats = cosformer_worker_floats(cf, s), .dstate = dstate,
                         .pos = pos, .m_decode = (double)m};
    cf->host->parallel_for(cf->host->ctx, n, cosformer_decode_heads, &job);
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
