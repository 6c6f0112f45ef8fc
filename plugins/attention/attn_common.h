/* What the attention plugins share around their math: the shape checks of
 * the ABI's modes (include/etnas/attention.h) and the loop over the B x H
 * heads of a call. The loop runs on host->parallel_for and hands each head
 * its rows in every view of the call, its valid keys, its saved floats,
 * its decode state and its worker's scratch, so a plugin writes the math of
 * one head and nothing else. Each plugin compiles this file in; nothing
 * here is exported. */
#ifndef ETNAS_PLUGINS_ATTN_COMMON_H
#define ETNAS_PLUGINS_ATTN_COMMON_H

#include <stdint.h>

#include <etnas/attention.h>

/* attn_shape_check with ATTN_SHAPE_STRICT refuses lengths < 1 and key
 * lengths outside [0, S], and calls bidirectional L != S a bad shape
 * (usage). Without it lengths may be 0, key lengths are the operator's to
 * clamp, and any self-attention with L != S is unsupported. Causal
 * cross-attention is unsupported either way. */
enum { ATTN_SHAPE_STRICT = 1 };

/* 0 when s is a shape of the ABI's modes, else a negative status and, when
 * err is not NULL, a message that starts with the plugin's name. */
int attn_shape_check(const et_host *host, const char *name, const et_attn_shape *s, int flags,
                     char **err);

/* 0 when a decode step may run: one position (len_q == len_k == 1) of
 * B, H >= 1 heads of nonempty dims, 0 <= pos < max_len; else
 * ET_STATUS_ERR_USAGE. */
int attn_decode_check(const et_attn_shape *s, int32_t max_len, int32_t pos);

/* One (b, h) of a call. Row pointers point at row 0 of the head in each
 * view (the views' st is the row stride); a view the call was not given
 * gives NULL. */
typedef struct attn_head {
    int64_t bh;      /* b * H + h */
    int32_t b, h;
    int32_t key_len; /* valid keys: key_len[b] clamped to [0, S], or S */
    float *q, *k, *v, *out, *dout, *dq, *dk, *dv;
    float *saved;          /* forward: this head's saved_per_head floats */
    const float *saved_in; /* backward: the same floats, read */
    float *dstate;         /* decoding: this head's dstate_per_head floats */
    float *work;           /* the worker's worker_floats floats */
} attn_head;

typedef struct attn_call attn_call;
typedef void (*attn_head_fn)(const attn_call *call, const attn_head *hd);

/* One call of the vtable, spread over its heads. Members a call does not
 * use stay zero. */
struct attn_call {
    const et_attn_shape *s;
    const void *op;   /* the plugin's instance, for fn */
    attn_head_fn fn;
    et_attn_view q, k, v, out, dout, dq, dk, dv;
    float *saved;
    const float *saved_in;
    int64_t saved_per_head;
    float *dstate;
    int64_t dstate_per_head;
    int32_t pos, max_len; /* decoding */
    float *work;
    int64_t worker_floats;
};

/* Runs call->fn on every head, heads split over the host's workers. */
void attn_heads_run(const et_host *host, attn_call *call);

#endif
