/* The attention plugins' tests, shared: the generic checks of attn_check.h
 * run as Criterion assertions, over a table of (options, case) rows or over
 * every mode and layout of a plugin's standard problem, and the checks of
 * descriptors and refusals every plugin needs. A test states what to run
 * and the tolerance; the loops, the instance's lifetime and the messages
 * live here.
 *
 * Errors above a tolerance (NaN included) fail the test through
 * cr_expect, so every failing row or mode is reported; a failure to set
 * up (an instance that cannot be created) stops it through cr_assert. */
#ifndef ETNAS_TESTS_ATTN_SUITE_H
#define ETNAS_TESTS_ATTN_SUITE_H

#include <stddef.h>
#include <stdint.h>

#include "attn_check.h"

/* "bidirectional", "causal" or "cross". */
const char *attn_suite_mode_name(int32_t mode);

/* An instance with overrides (attn_check_op_open), asserting that it opened. */
attn_check_op attn_suite_open(const et_plugin_descriptor *desc, const char *overrides,
                              int32_t threads);

/* The descriptor is an attention plugin of this ABI called name, declaring
 * exactly the options keys (NULL-terminated) in that order; its destroy
 * takes NULL. */
void attn_suite_descriptor(const et_plugin_descriptor *desc, const char *name,
                           const char *const *keys);

/* The plugin's create itself refuses overrides (e.g. "eps=0") that are out
 * of its declared range (passed without the range check a host does first,
 * attn_check_op_open_unranged) with ET_STATUS_ERR_USAGE and a message naming
 * key, leaving no state; closing after it is safe and destroy takes NULL. */
void attn_suite_refuses_option(const et_plugin_descriptor *desc, const char *overrides,
                               const char *key);

/* prepare refuses a causal shape with len_q != len_k (ET_STATUS_ERR_UNSUPPORTED,
 * a message naming causal cross-attention) and takes the same shape in cross
 * mode: B 1, H 1, L 4, S 6, d = dv = dim. */
void attn_suite_refuses_causal_cross(attn_check_op *op, int32_t dim);

/* ------------------------------------------------------------ tables */

typedef enum attn_suite_kind {
    ATTN_SUITE_REFERENCE = 0, /* attn_check_reference with each row's ctx */
    ATTN_SUITE_GRAD = 1,      /* attn_check_grad */
    ATTN_SUITE_PADDING = 2,   /* attn_check_padding */
    ATTN_SUITE_CAUSALITY = 3, /* attn_check_causality */
    ATTN_SUITE_DECODE = 4,    /* attn_check_decode */
    ATTN_SUITE_THREADS = 5    /* attn_check_threads: no instance of the row's own */
} attn_suite_kind;

/* Which check a table runs and how. */
typedef struct attn_suite_check {
    int32_t kind;          /* attn_suite_kind */
    int32_t threads;       /* the instance's workers; ATTN_SUITE_THREADS: those compared with 1 */
    double tol;            /* the largest error that passes */
    double h;              /* ATTN_SUITE_GRAD: step */
    int32_t extra;         /* ATTN_SUITE_PADDING: positions appended */
    attn_check_ref_fn ref; /* ATTN_SUITE_REFERENCE */
    /* ATTN_SUITE_GRAD, NULL-able: the case actually checked, from the row's */
    attn_check_case (*adjust)(attn_check_case c);
} attn_suite_check;

/* One row: a fresh instance with overrides, one case. */
typedef struct attn_suite_row {
    const char *overrides; /* NULL: the defaults */
    attn_check_case c;
    void *ctx; /* ATTN_SUITE_REFERENCE: the reference's context */
} attn_suite_row;

/* Runs chk on every row, each on an instance of its own opened and closed
 * around it; messages name the row by its index and overrides. */
void attn_suite_rows(const et_plugin_descriptor *desc, const attn_suite_row *rows, size_t n,
                     const attn_suite_check *chk);

/* ---------------------------------------------- every mode and layout */

/* A plugin's standard problem: B 2, H 3, d 4; self-attention L = S = len
 * and dv 4, cross-attention L 6, S 11 and dv 5; scale 1; the case of mode m
 * and layout l seeded seed + 10 m + l. Key lengths (B) for padding in
 * self-attention (keys_self), in cross-attention (keys_cross), and with a
 * sequence that has no valid key (keys_empty). */
typedef struct attn_suite {
    const et_plugin_descriptor *(*plugin)(void);
    int32_t len;
    uint64_t seed;
    const int32_t *keys_self, *keys_cross, *keys_empty;
} attn_suite;

attn_check_case attn_suite_case(const attn_suite *s, int32_t mode, int32_t layout,
                                const int32_t *key_len);

/* keys_cross for cross-attention, keys_self otherwise. */
const int32_t *attn_suite_padded(const attn_suite *s, int32_t mode);

/* Each of these checks its cases in order, mode outermost, on one instance
 * with overrides (attn_suite_threads: on the two attn_check_threads opens). */

/* Against ref: every mode, layout and padding (none, padded, an empty sequence). */
void attn_suite_reference(const attn_suite *s, const char *overrides, int32_t threads,
                          attn_check_ref_fn ref, void *ctx, double tol);
/* Gradients: every mode on the strided layouts, padded keys, H 2. */
void attn_suite_grad(const attn_suite *s, const char *overrides, int32_t threads, double h,
                     double tol);
/* Gradients with a sequence that has no valid key: every mode, contiguous, H 1. */
void attn_suite_grad_empty(const attn_suite *s, const char *overrides, int32_t threads,
                           double h, double tol);
/* Padding invariance: every mode and layout, extra positions appended. */
void attn_suite_padding(const attn_suite *s, const char *overrides, int32_t threads,
                        int32_t extra, double tol);
/* Causality: every layout, without and with padding. */
void attn_suite_causality(const attn_suite *s, const char *overrides, int32_t threads,
                          double tol);
/* Decoding = teacher forcing: every layout, no padding, L = S = len. */
void attn_suite_decode(const attn_suite *s, const char *overrides, int32_t threads, int32_t len,
                       double tol);
/* threads workers = 1 worker: every mode, interleaved layout, padded keys, H 5. */
void attn_suite_threads(const attn_suite *s, const char *overrides, int32_t threads, double tol);

#endif
