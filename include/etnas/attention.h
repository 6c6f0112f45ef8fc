/* The attention operator ABI: a per-head operator on projected Q, K, V for
 * B x H heads. The engine owns projections, memory and the training loop; an
 * operator owns its math (forward, backward, incremental decoding) and its
 * MAC count. Math and required tests: spec/attention.md. */
#ifndef ETNAS_ATTENTION_H
#define ETNAS_ATTENTION_H

#include <stdint.h>

#include <etnas/host.h>
#include <etnas/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum et_attn_mode {
    ET_ATTN_MODE_BIDIRECTIONAL = 0, /* self, len_q == len_k, every query sees every valid key */
    ET_ATTN_MODE_CAUSAL = 1,        /* self, len_q == len_k, query i sees keys j <= i */
    ET_ATTN_MODE_CROSS = 2          /* len_q and len_k independent, no causality */
} et_attn_mode;

typedef struct et_attn_shape {
    int32_t batch;  /* B */
    int32_t heads;  /* H */
    int32_t len_q;  /* L */
    int32_t len_k;  /* S */
    int32_t dim_qk; /* d */
    int32_t dim_v;  /* dv */
    int32_t mode;   /* et_attn_mode */
    /* (B) number of valid keys of each sequence; keys j >= key_len[b] are
     * padding and must not influence any output. NULL: all S keys valid. */
    const int32_t *key_len;
} et_attn_shape;

/* A strided (B, H, T, C) view: element (b, h, t, c) lives at
 * data[b*sb + h*sh + t*st + c]. The engine passes slices of its projection
 * buffers this way, so no operator input is ever copied into place. */
typedef struct et_attn_view {
    float *data;
    int64_t sb, sh, st;
} et_attn_view;

typedef struct et_attention_vtable {
    /* Lifecycle. destroy(NULL) and destroy after a failed create are safe. */
    int (*create)(const et_host *host, const et_option_value *opts, void **state, char **err);
    void (*destroy)(void *state);

    /* Called outside hot loops whenever the largest shape to come changes
     * (an arch is bound); the operator may (re)allocate here and nowhere else.
     * Refuses shapes or modes it does not support (e.g. causal cross). */
    int (*prepare)(void *state, const et_attn_shape *max, char **err);

    /* Floats the engine must keep from forward to backward, and scratch
     * floats for forward, backward and decode_step, for shape s. */
    int64_t (*saved_floats)(void *state, const et_attn_shape *s);
    int64_t (*work_floats)(void *state, const et_attn_shape *s);

    /* q (B,H,L,d), k (B,H,S,d), v (B,H,S,dv) -> out (B,H,L,dv); fills saved. */
    int (*forward)(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                   et_attn_view v, et_attn_view out, float *saved, float *work);
    /* dout (B,H,L,dv) -> dq, dk, dv (overwritten, same shapes as q, k, v). */
    int (*backward)(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                    et_attn_view v, et_attn_view out, et_attn_view dout, const float *saved,
                    et_attn_view dq, et_attn_view dk, et_attn_view dv, float *work);

    /* Incremental decoding of causal self-attention. decode_floats: state per
     * (B, H) batch for up to max_len steps (a KV cache, or a recurrent state).
     * decode_step takes one new position `pos` (0-based) per sequence:
     * s->len_q == s->len_k == 1, q (B,H,1,d), k (B,H,1,d), v (B,H,1,dv) ->
     * out (B,H,1,dv), equal to the causal forward's row `pos`. */
    int64_t (*decode_floats)(void *state, const et_attn_shape *s, int32_t max_len);
    void (*decode_reset)(void *state, const et_attn_shape *s, int32_t max_len, float *dstate);
    int (*decode_step)(void *state, const et_attn_shape *s, int32_t max_len, float *dstate,
                       int32_t pos, et_attn_view q, et_attn_view k, et_attn_view v,
                       et_attn_view out, float *work);

    /* Multiply-adds of one forward for shape s (spec/attention.md, Cost). */
    double (*macs)(void *state, const et_attn_shape *s);

    /* NULL-able: told the training step and whether the model trains, before
     * each forward (Performer redraws its features on it). */
    void (*set_step)(void *state, int training, int64_t step);
} et_attention_vtable;

#ifdef __cplusplus
}
#endif
#endif
