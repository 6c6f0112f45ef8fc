/* A naive softmax attention operator for the engine tests (attn_ref.h). */
#include "attn_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int ref_create(const et_host *host, const et_option_value *opts, void **state, char **err)
{
    (void)host, (void)opts, (void)err;
    *state = NULL;
    return 0;
}

static void ref_destroy(void *state)
{
    (void)state;
}

static int ref_prepare(void *state, const et_attn_shape *max, char **err)
{
    (void)state, (void)max, (void)err;
    return 0;
}

/* saved: the attention probabilities (B,H,L,S) */
static int64_t ref_saved(void *state, const et_attn_shape *s)
{
    (void)state;
    return (int64_t)s->batch * s->heads * s->len_q * s->len_k;
}

static int64_t ref_work(void *state, const et_attn_shape *s)
{
    (void)state, (void)s;
    return 0;
}

#define AT(v, b, h, t) ((v).data + (int64_t)(b) * (v).sb + (int64_t)(h) * (v).sh + (int64_t)(t) * (v).st)

static int visible(const et_attn_shape *s, int32_t b, int32_t i, int32_t j)
{
    int32_t n = s->key_len ? s->key_len[b] : s->len_k;
    return j < n && (s->mode != ET_ATTN_MODE_CAUSAL || j <= i);
}

static int ref_forward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                       et_attn_view v, et_attn_view out, float *saved, float *work)
{
    (void)state, (void)work;
    double scale = 1.0 / sqrt((double)s->dim_qk);
    for (int32_t b = 0; b < s->batch; b++)
        for (int32_t h = 0; h < s->heads; h++)
            for (int32_t i = 0; i < s->len_q; i++) {
                float *p = saved + (((int64_t)b * s->heads + h) * s->len_q + i) * s->len_k;
                double mx = -INFINITY, sum = 0;
                for (int32_t j = 0; j < s->len_k; j++) {
                    double z = 0;
                    for (int32_t c = 0; c < s->dim_qk; c++)
                        z += (double)AT(q, b, h, i)[c] * AT(k, b, h, j)[c];
                    p[j] = (float)(z * scale);
                    if (visible(s, b, i, j) && p[j] > mx)
                        mx = p[j];
                }
                for (int32_t j = 0; j < s->len_k; j++) {
                    double e = visible(s, b, i, j) ? exp(p[j] - mx) : 0.0;
                    p[j] = (float)e;
                    sum += e;
                }
                for (int32_t j = 0; j < s->len_k; j++)
                    p[j] = sum > 0 ? (float)(p[j] / sum) : 0.0f;
                for (int32_t c = 0; c < s->dim_v; c++) {
                    double o = 0;
                    for (int32_t j = 0; j < s->len_k; j++)
                        o += (double)p[j] * AT(v, b, h, j)[c];
                    AT(out, b, h, i)[c] = (float)o;
                }
            }
    return 0;
}

static int ref_backward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                        et_attn_view v, et_attn_view out, et_attn_view dout, const float *saved,
                        et_attn_view dq, et_attn_view dk, et_attn_view dv, float *work)
{
    (void)state, (void)out, (void)work;
    double scale = 1.0 / sqrt((double)s->dim_qk);
    for (int32_t b = 0; b < s->batch; b++)
        for (int32_t h = 0; h < s->heads; h++) {
            for (int32_t i = 0; i < s->len_q; i++)
                memset(AT(dq, b, h, i), 0, sizeof(float) * (size_t)s->dim_qk);
            for (int32_t j = 0; j < s->len_k; j++) {
                memset(AT(dk, b, h, j), 0, sizeof(float) * (size_t)s->dim_qk);
                memset(AT(dv, b, h, j), 0, sizeof(float) * (size_t)s->dim_v);
            }
            for (int32_t i = 0; i < s->len_q; i++) {
                const float *p = saved + (((int64_t)b * s->heads + h) * s->len_q + i) * s->len_k;
                const float *g = AT(dout, b, h, i);
                double dp_dot = 0;
                double dpv[4096];
                for (int32_t j = 0; j < s->len_k && j < 4096; j++) {
                    double dpj = 0;
                    for (int32_t c = 0; c < s->dim_v; c++) {
                        dpj += (double)g[c] * AT(v, b, h, j)[c];
                        AT(dv, b, h, j)[c] += (float)(p[j] * g[c]);
                    }
                    dpv[j] = dpj;
                    dp_dot += p[j] * dpj;
                }
                for (int32_t j = 0; j < s->len_k && j < 4096; j++) {
                    double dz = p[j] * (dpv[j] - dp_dot) * scale;
                    for (int32_t c = 0; c < s->dim_qk; c++) {
                        AT(dq, b, h, i)[c] += (float)(dz * AT(k, b, h, j)[c]);
                        AT(dk, b, h, j)[c] += (float)(dz * AT(q, b, h, i)[c]);
                    }
                }
            }
        }
    return 0;
}

static double ref_macs(void *state, const et_attn_shape *s)
{
    (void)state;
    return (double)s->batch * s->heads * s->len_q * s->len_k * (s->dim_qk + s->dim_v);
}

const et_attention_vtable attn_ref_vtable = {
    .create = ref_create,
    .destroy = ref_destroy,
    .prepare = ref_prepare,
    .saved_floats = ref_saved,
    .work_floats = ref_work,
    .forward = ref_forward,
    .backward = ref_backward,
    .macs = ref_macs,
};
