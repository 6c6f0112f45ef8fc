/* Shape checks and the per-head loop shared by the attention plugins
 * (attn_common.h). */
#include "attn_common.h"

#include <stddef.h>

int attn_shape_check(const et_host *host, const char *name, const et_attn_shape *s, int flags,
                     char **err)
{
    int strict = flags & ATTN_SHAPE_STRICT;
    int32_t min_len = strict ? 1 : 0;
    if (s->batch < 1 || s->heads < 1 || s->len_q < min_len || s->len_k < min_len ||
        s->dim_qk < 1 || s->dim_v < 1) {
        if (err)
            *err = host->errorf("%s: shape B=%d H=%d L=%d S=%d d=%d dv=%d has an empty dimension",
                                name, (int)s->batch, (int)s->heads, (int)s->len_q, (int)s->len_k,
                                (int)s->dim_qk, (int)s->dim_v);
        return ET_STATUS_ERR_USAGE;
    }
    if (s->mode != ET_ATTN_MODE_BIDIRECTIONAL && s->mode != ET_ATTN_MODE_CAUSAL &&
        s->mode != ET_ATTN_MODE_CROSS) {
        if (err)
            *err = host->errorf("%s: unknown attention mode %d", name, (int)s->mode);
        return ET_STATUS_ERR_USAGE;
    }
    if (s->mode != ET_ATTN_MODE_CROSS && s->len_q != s->len_k) {
        if (err)
            *err = host->errorf("%s: %s self-attention needs len_q == len_k (got %d and %d); use "
                                "mode cross for different lengths (causal cross-attention is not "
                                "supported)",
                                name, s->mode == ET_ATTN_MODE_CAUSAL ? "causal" : "bidirectional",
                                (int)s->len_q, (int)s->len_k);
        return s->mode == ET_ATTN_MODE_CAUSAL || !strict ? ET_STATUS_ERR_UNSUPPORTED
                                                         : ET_STATUS_ERR_USAGE;
    }
    if (strict && s->key_len)
        for (int32_t b = 0; b < s->batch; b++)
            if (s->key_len[b] < 0 || s->key_len[b] > s->len_k) {
                if (err)
                    *err = host->errorf("%s: key_len[%d] = %d is outside [0, %d]", name, (int)b,
                                        (int)s->key_len[b], (int)s->len_k);
                return ET_STATUS_ERR_USAGE;
            }
    return ET_STATUS_OK;
}

int attn_decode_check(const et_attn_shape *s, int32_t max_len, int32_t pos)
{
    if (s->batch < 1 || s->heads < 1 || s->len_q != 1 || s->len_k != 1 || s->dim_qk < 1 ||
        s->dim_v < 1 || pos < 0 || pos >= max_len)
        return ET_STATUS_ERR_USAGE;
    return ET_STATUS_OK;
}

/* Row 0 of head (b, h) of a view, or NULL for a view not given. */
static float *head_rows(et_attn_view x, int32_t b, int32_t h)
{
    return x.data ? x.data + b * x.sb + h * x.sh : NULL;
}

static void heads_range(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const attn_call *call = arg;
    const et_attn_shape *s = call->s;
    float *work = call->work ? call->work + worker * call->worker_floats : NULL;
    for (int64_t bh = begin; bh < end; bh++) {
        int32_t b = (int32_t)(bh / s->heads), h = (int32_t)(bh % s->heads);
        int32_t key_len = s->key_len ? s->key_len[b] : s->len_k;
        attn_head hd = {
            .bh = bh,
            .b = b,
            .h = h,
            .key_len = key_len < 0 ? 0 : (key_len > s->len_k ? s->len_k : key_len),
            .q = head_rows(call->q, b, h),
            .k = head_rows(call->k, b, h),
            .v = head_rows(call->v, b, h),
            .out = head_rows(call->out, b, h),
            .dout = head_rows(call->dout, b, h),
            .dq = head_rows(call->dq, b, h),
            .dk = head_rows(call->dk, b, h),
            .dv = head_rows(call->dv, b, h),
            .saved = call->saved ? call->saved + bh * call->saved_per_head : NULL,
            .saved_in = call->saved_in ? call->saved_in + bh * call->saved_per_head : NULL,
            .dstate = call->dstate ? call->dstate + bh * call->dstate_per_head : NULL,
            .work = work,
        };
        call->fn(call, &hd);
    }
}

void attn_heads_run(const et_host *host, attn_call *call)
{
    host->parallel_for(host->ctx, (int64_t)call->s->batch * call->s->heads, heads_range, call);
}
