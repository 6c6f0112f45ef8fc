/* meanmix: a token-mixing "attention" that averages the visible values
 * (out_i = mean of v_j over the keys row i may see), the smallest complete
 * attention plugin: forward, backward, incremental decoding and MACs. */
#include <etnas/etnas.h>
#include <stdlib.h>
#include <string.h>

static int mm_create(const et_host *host, const et_option_value *opts, void **state, char **err)
{
    (void)host, (void)opts, (void)err;
    *state = NULL;
    return 0;
}

static void mm_destroy(void *state) { (void)state; }

static int mm_prepare(void *state, const et_attn_shape *max, char **err)
{
    (void)state, (void)max, (void)err;
    return 0;
}

static int64_t mm_none(void *state, const et_attn_shape *s) { (void)state, (void)s; return 0; }

/* keys visible to row i of sequence b */
static int32_t visible(const et_attn_shape *s, int32_t b, int32_t i)
{
    int32_t n = s->key_len ? s->key_len[b] : s->len_k;
    return s->mode == ET_ATTN_MODE_CAUSAL && i + 1 < n ? i + 1 : n;
}

#define AT(view, b, h, t) ((view).data + (b) * (view).sb + (h) * (view).sh + (t) * (view).st)

/* v (B,H,S,dv) -> out (B,H,L,dv) */
static int mm_forward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                      et_attn_view v, et_attn_view out, float *saved, float *work)
{
    (void)state, (void)q, (void)k, (void)saved, (void)work;
    for (int32_t b = 0; b < s->batch; b++)
        for (int32_t h = 0; h < s->heads; h++)
            for (int32_t i = 0; i < s->len_q; i++) {
                float *o = AT(out, b, h, i);
                int32_t n = visible(s, b, i);
                memset(o, 0, sizeof *o * (size_t)s->dim_v);
                for (int32_t j = 0; j < n; j++)
                    for (int32_t c = 0; c < s->dim_v; c++)
                        o[c] += AT(v, b, h, j)[c] / (float)n;
            }
    return 0;
}

/* dout (B,H,L,dv) -> dq = 0, dk = 0, dv (B,H,S,dv) */
static int mm_backward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                       et_attn_view v, et_attn_view out, et_attn_view dout, const float *saved,
                       et_attn_view dq, et_attn_view dk, et_attn_view dv, float *work)
{
    (void)state, (void)q, (void)k, (void)v, (void)out, (void)saved, (void)work;
    for (int32_t b = 0; b < s->batch; b++)
        for (int32_t h = 0; h < s->heads; h++) {
            for (int32_t i = 0; i < s->len_q; i++)
                memset(AT(dq, b, h, i), 0, sizeof(float) * (size_t)s->dim_qk);
            for (int32_t j = 0; j < s->len_k; j++) {
                memset(AT(dk, b, h, j), 0, sizeof(float) * (size_t)s->dim_qk);
                memset(AT(dv, b, h, j), 0, sizeof(float) * (size_t)s->dim_v);
            }
            for (int32_t i = 0; i < s->len_q; i++) {
                int32_t n = visible(s, b, i);
                for (int32_t j = 0; j < n; j++)
                    for (int32_t c = 0; c < s->dim_v; c++)
                        AT(dv, b, h, j)[c] += AT(dout, b, h, i)[c] / (float)n;
            }
        }
    return 0;
}

/* decoding state: the running sum of values per (b, h) */
static int64_t mm_decode_floats(void *state, const et_attn_shape *s, int32_t max_len)
{
    (void)state, (void)max_len;
    return (int64_t)s->batch * s->heads * s->dim_v;
}

static void mm_decode_reset(void *state, const et_attn_shape *s, int32_t max_len, float *d)
{
    memset(d, 0, sizeof *d * (size_t)mm_decode_floats(state, s, max_len));
}

static int mm_decode_step(void *state, const et_attn_shape *s, int32_t max_len, float *d,
                          int32_t pos, et_attn_view q, et_attn_view k, et_attn_view v,
                          et_attn_view out, float *work)
{
    (void)state, (void)max_len, (void)q, (void)k, (void)work;
    for (int32_t b = 0; b < s->batch; b++)
        for (int32_t h = 0; h < s->heads; h++) {
            float *sum = d + ((int64_t)b * s->heads + h) * s->dim_v;
            for (int32_t c = 0; c < s->dim_v; c++) {
                sum[c] += AT(v, b, h, 0)[c];
                AT(out, b, h, 0)[c] = sum[c] / (float)(pos + 1);
            }
        }
    return 0;
}

static double mm_macs(void *state, const et_attn_shape *s)
{
    (void)state;
    return (double)s->batch * s->heads * s->len_q * s->len_k * s->dim_v;
}

static const et_attention_vtable mm_vtable = {
    .create = mm_create,
    .destroy = mm_destroy,
    .prepare = mm_prepare,
    .saved_floats = mm_none,
    .work_floats = mm_none,
    .forward = mm_forward,
    .backward = mm_backward,
    .decode_floats = mm_decode_floats,
    .decode_reset = mm_decode_reset,
    .decode_step = mm_decode_step,
    .macs = mm_macs,
};

static const et_plugin_descriptor mm_descriptor = {
    .abi_version = ET_ABI_VERSION,
    .kind = ET_PLUGIN_KIND_ATTENTION,
    .name = "meanmix",
    .summary = "mean of the visible values (an example plugin)",
    .options = NULL,
    .vtable = &mm_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void) { return &mm_descriptor; }
