/* Generic checks that run any attention plugin through its vtable, for the
 * tests of spec/attention.md: finite-difference gradients, padding
 * invariance, causality, incremental decoding = teacher forcing, and a
 * comparison with a caller's double reference, on contiguous and strided
 * (interleaved, packed q|k|v) layouts.
 *
 * Every check returns a measured error (or INFINITY when the plugin refused
 * a call; the reason goes to stderr) that the test asserts against a
 * tolerance it states. Errors are "scaled": max|a - b| / max(1, max|ref|),
 * absolute for O(1) outputs and relative for large ones, except the
 * gradient check (see attn_check_grad).
 *
 * Buffers are allocated at their exact size (so AddressSanitizer sees
 * overruns); work and saved buffers are filled with NaN before every call and
 * the gaps of strided layouts hold NaN, so reading what was never written
 * shows up in the outputs; output gaps are checked to be left untouched. */
#ifndef ETNAS_TESTS_ATTN_CHECK_H
#define ETNAS_TESTS_ATTN_CHECK_H

#include <stdint.h>

#include <etnas/attention.h>

#define ATTN_CHECK_MAX_OPTIONS 32

/* How the (B,H,T,C) tensors are laid out in memory. */
typedef enum attn_check_layout {
    ATTN_CHECK_LAYOUT_BHTC = 0,   /* contiguous (B,H,T,C) */
    ATTN_CHECK_LAYOUT_BTHC = 1,   /* interleaved (B,T,H,C), with a gap after each row */
    ATTN_CHECK_LAYOUT_PACKED = 2  /* the engine's: q|k|v rows in one (B,T,3,H,C) buffer
                                   * (needs L == S and d == dv; else falls back to BTHC) */
} attn_check_layout;

/* A test host: serial (threads 1) or a pthread parallel_for splitting [0,n)
 * into `threads` contiguous ranges; errorf via vsnprintf + malloc; log to
 * stderr (ERROR and WARN only, unless ETNAS_TEST_VERBOSE is set). */
void attn_check_host_init(et_host *host, int32_t threads, uint64_t seed);

/* A plugin instance under test. */
typedef struct attn_check_op {
    const et_plugin_descriptor *desc;
    const et_attention_vtable *vt;
    et_host *host; /* malloc'd, so the op may be copied: the plugin keeps the pointer */
    et_option_value opts[ATTN_CHECK_MAX_OPTIONS];
    char *text; /* owns the option strings */
    void *state;
} attn_check_op;

/* Options are the declared defaults with `overrides` applied: NULL or
 * "key=value,key=value". Creates the instance (no prepare yet). Returns 0,
 * or a negative code with *err set (malloc'd). */
int attn_check_op_open(attn_check_op *op, const et_plugin_descriptor *desc,
                       const char *overrides, int32_t threads, char **err);

/* attn_check_op_open without the declared ranges: an out-of-range override
 * (which a host refuses before create) reaches the plugin's create, so a
 * test can see the plugin refuse it itself. */
int attn_check_op_open_unranged(attn_check_op *op, const et_plugin_descriptor *desc,
                                const char *overrides, int32_t threads, char **err);
void attn_check_op_close(attn_check_op *op);

/* One problem: shape, key lengths, layout, inputs drawn N(0, scale^2) from seed. */
typedef struct attn_check_case {
    int32_t batch, heads, len_q, len_k, dim_qk, dim_v;
    int32_t mode;                   /* et_attn_mode */
    const int32_t *key_len;         /* (B) or NULL */
    int32_t layout;                 /* attn_check_layout */
    double scale;                   /* 0 means 1 */
    uint64_t seed;
} attn_check_case;

/* The inputs of a case, contiguous (B,H,T,C), as every check draws them:
 * q (B,H,L,d), k (B,H,S,d), v (B,H,S,dv); each malloc'd, free() them. */
void attn_check_inputs(const attn_check_case *c, float **q, float **k, float **v);

/* Runs prepare + forward on contiguous (B,H,T,C) inputs, laid out as the case
 * says, into out (B,H,L,dv) contiguous. Returns 0 or the plugin's code. */
int attn_check_forward(attn_check_op *op, const attn_check_case *c, const float *q,
                       const float *k, const float *v, float *out);

/* A double reference: contiguous (B,H,T,C) inputs -> out (B,H,L,dv). */
typedef void (*attn_check_ref_fn)(void *ctx, const et_attn_shape *s, const float *q,
                                  const float *k, const float *v, double *out);

/* max|a - ref| / max(1, max|ref|) over n values; NaN anywhere gives INFINITY. */
double attn_check_scaled_error(const float *a, const float *ref, int64_t n);

/* Plugin forward vs reference on the case's inputs: scaled error. */
double attn_check_reference(attn_check_op *op, const attn_check_case *c, attn_check_ref_fn ref,
                            void *ctx);

/* Analytic backward vs central differences (step h relative to the input
 * scale; 0 means 1e-2) of loss = sum_i w_i out_i (w fixed random, summed in
 * double) for every entry of q, k and v. Per tensor the error is
 *   max_i |g_i - fd_i| / (max_i |fd_i| + 1e-6)
 * and the result is the largest of the three; err3 (NULL-able) gets each.
 * Gradients of padded keys must be 0, and central differences see that. */
double attn_check_grad(attn_check_op *op, const attn_check_case *c, double h, double err3[3]);

/* Padding invariance. c->key_len must pad something. Runs the case, then the
 * same case with the padded key rows redrawn (5x larger) and `extra` more
 * padded positions appended (to keys, and to queries in self-attention);
 * returns the scaled error over the original output rows. */
double attn_check_padding(attn_check_op *op, const attn_check_case *c, int32_t extra);

/* Causality (c->mode causal): for every t, redraws rows > t of q, k and v and
 * returns the largest scaled change of any output row <= t. */
double attn_check_causality(attn_check_op *op, const attn_check_case *c);

/* Incremental decoding (c->mode causal, key_len ignored): decode_step for
 * positions 0..L-1 against the causal forward's rows; scaled error. Also
 * checks that decode_reset makes a second pass repeat the first. */
double attn_check_decode(attn_check_op *op, const attn_check_case *c);

/* Forward with `threads` workers vs 1 worker (bitwise expected for
 * head-parallel plugins): scaled error. Catches shared per-worker scratch. */
double attn_check_threads(const et_plugin_descriptor *desc, const char *overrides,
                          const attn_check_case *c, int32_t threads);

#endif
