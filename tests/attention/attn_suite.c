/* The attention plugins' tests, shared (attn_suite.h): the generic checks
 * of attn_check run as Criterion assertions over tables of rows or over
 * every mode and layout, and the descriptor and refusal checks. */
#include "attn_suite.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *attn_suite_mode_name(int32_t mode)
{
    return mode == ET_ATTN_MODE_BIDIRECTIONAL ? "bidirectional"
           : mode == ET_ATTN_MODE_CAUSAL      ? "causal"
                                              : "cross";
}

static const char *shown(const char *overrides)
{
    return overrides ? overrides : "defaults";
}

attn_check_op attn_suite_open(const et_plugin_descriptor *desc, const char *overrides,
                              int32_t threads)
{
    attn_check_op op;
    char *err = NULL;
    int rc = attn_check_op_open(&op, desc, overrides, threads, &err);
    cr_assert_eq(rc, 0, "open %s (%s): %s", desc->name, shown(overrides), err ? err : "?");
    return op;
}

void attn_suite_descriptor(const et_plugin_descriptor *desc, const char *name,
                           const char *const *keys)
{
    cr_assert_eq(desc->abi_version, ET_ABI_VERSION);
    cr_assert_eq(desc->kind, ET_PLUGIN_KIND_ATTENTION);
    cr_assert_str_eq(desc->name, name);
    /* a fatal mismatch stops the loop before it reads past the list's end */
    size_t i = 0;
    for (; keys[i]; i++) {
        const char *key = desc->options ? desc->options[i].key : NULL;
        cr_assert_str_eq(key ? key : "(end of the options)", keys[i]);
    }
    cr_assert_null(desc->options ? desc->options[i].key : NULL);
    ((const et_attention_vtable *)desc->vtable)->destroy(NULL);
}

void attn_suite_refuses_option(const et_plugin_descriptor *desc, const char *overrides,
                               const char *key)
{
    attn_check_op op;
    char *err = NULL;
    int rc = attn_check_op_open_unranged(&op, desc, overrides, 1, &err);
    cr_expect_eq(rc, ET_STATUS_ERR_USAGE, "%s: %s gave %d", desc->name, overrides, rc);
    cr_assert(err, "%s: %s refused without a message", desc->name, overrides);
    /* the plugin's own message (not the test harness's), naming the key */
    size_t nl = strlen(desc->name);
    cr_expect(!strncmp(err, desc->name, nl) && err[nl] == ':' && strstr(err, key),
              "%s: %s: message: %s", desc->name, overrides, err);
    cr_expect_null(op.state);
    free(err);
    attn_check_op_close(&op);
    ((const et_attention_vtable *)desc->vtable)->destroy(NULL);
}

void attn_suite_refuses_causal_cross(attn_check_op *op, int32_t dim)
{
    et_attn_shape s = {1, 1, 4, 6, dim, dim, ET_ATTN_MODE_CAUSAL, NULL};
    char *err = NULL;
    int rc = op->vt->prepare(op->state, &s, &err);
    cr_expect_eq(rc, ET_STATUS_ERR_UNSUPPORTED, "%s: causal L 4, S 6 gave %d", op->desc->name,
                 rc);
    cr_assert(err, "%s: causal L 4, S 6 refused without a message", op->desc->name);
    cr_expect(strstr(err, "causal cross-attention"), "%s: message: %s", op->desc->name, err);
    free(err);
    err = NULL;
    s.mode = ET_ATTN_MODE_CROSS;
    rc = op->vt->prepare(op->state, &s, &err);
    cr_expect_eq(rc, 0, "%s: cross L 4, S 6 refused: %s", op->desc->name, err ? err : "?");
    free(err);
}

/* --------------------------------------------------------------- checks */

/* One check of c on op (unused by ATTN_SUITE_THREADS, which opens its own
 * from desc and overrides), expected within chk->tol; label names the case. */
static void expect_check(const et_plugin_descriptor *desc, attn_check_op *op,
                         const char *overrides, const attn_suite_check *chk,
                         const attn_check_case *c, void *ctx, const char *label)
{
    double e3[3] = {NAN, NAN, NAN}, e = NAN;
    switch (chk->kind) {
    case ATTN_SUITE_REFERENCE: e = attn_check_reference(op, c, chk->ref, ctx); break;
    case ATTN_SUITE_GRAD:
        e = attn_check_grad(op, c, chk->h, e3);
        cr_log_info("%s grad %s: q %.3g k %.3g v %.3g", desc->name, label, e3[0], e3[1], e3[2]);
        cr_expect_leq(e, chk->tol, "%s %s: dq %g dk %g dv %g > %g", desc->name, label, e3[0],
                      e3[1], e3[2], chk->tol);
        return;
    case ATTN_SUITE_PADDING: e = attn_check_padding(op, c, chk->extra); break;
    case ATTN_SUITE_CAUSALITY: e = attn_check_causality(op, c); break;
    case ATTN_SUITE_DECODE: e = attn_check_decode(op, c); break;
    case ATTN_SUITE_THREADS: e = attn_check_threads(desc, overrides, c, chk->threads); break;
    default: cr_assert_fail("attn_suite: no check of kind %d", (int)chk->kind);
    }
    cr_expect_leq(e, chk->tol, "%s %s: err %g > %g", desc->name, label, e, chk->tol);
}

void attn_suite_rows(const et_plugin_descriptor *desc, const attn_suite_row *rows, size_t n,
                     const attn_suite_check *chk)
{
    for (size_t i = 0; i < n; i++) {
        attn_check_case c = rows[i].c;
        if (chk->kind == ATTN_SUITE_GRAD && chk->adjust)
            c = chk->adjust(c);
        attn_check_op op = {0};
        if (chk->kind != ATTN_SUITE_THREADS)
            op = attn_suite_open(desc, rows[i].overrides, chk->threads);
        char label[256];
        snprintf(label, sizeof label, "case %zu (%s)", i, shown(rows[i].overrides));
        expect_check(desc, &op, rows[i].overrides, chk, &c, rows[i].ctx, label);
        attn_check_op_close(&op);
    }
}

/* ------------------------------------------------ every mode and layout */

attn_check_case attn_suite_case(const attn_suite *s, int32_t mode, int32_t layout,
                                const int32_t *key_len)
{
    int cross = mode == ET_ATTN_MODE_CROSS;
    return (attn_check_case){.batch = 2, .heads = 3, .len_q = cross ? 6 : s->len,
                             .len_k = cross ? 11 : s->len, .dim_qk = 4, .dim_v = cross ? 5 : 4,
                             .mode = mode, .key_len = key_len, .layout = layout, .scale = 1.0,
                             .seed = s->seed + (uint64_t)(mode * 10 + layout)};
}

const int32_t *attn_suite_padded(const attn_suite *s, int32_t mode)
{
    return mode == ET_ATTN_MODE_CROSS ? s->keys_cross : s->keys_self;
}

/* The label of a case of a mode-and-layout check; pad < 0 leaves it out. */
static void mode_label(char *buf, size_t n, const char *overrides, int32_t mode, int32_t layout,
                       int pad)
{
    int k = snprintf(buf, n, "%s %s layout %d", shown(overrides), attn_suite_mode_name(mode),
                     (int)layout);
    if (pad >= 0 && k >= 0 && (size_t)k < n)
        snprintf(buf + k, n - (size_t)k, " pad %d", pad);
}

void attn_suite_reference(const attn_suite *s, const char *overrides, int32_t threads,
                          attn_check_ref_fn ref, void *ctx, double tol)
{
    const attn_suite_check chk = {.kind = ATTN_SUITE_REFERENCE, .threads = threads, .tol = tol,
                                  .ref = ref};
    attn_check_op op = attn_suite_open(s->plugin(), overrides, threads);
    for (int32_t mode = 0; mode < 3; mode++)
        for (int32_t layout = 0; layout < 3; layout++)
            for (int pad = 0; pad < 3; pad++) {
                const int32_t *kl = pad == 0   ? NULL
                                    : pad == 1 ? attn_suite_padded(s, mode)
                                               : s->keys_empty;
                attn_check_case c = attn_suite_case(s, mode, layout, kl);
                char label[256];
                mode_label(label, sizeof label, overrides, mode, layout, pad);
                expect_check(op.desc, &op, overrides, &chk, &c, ctx, label);
            }
    attn_check_op_close(&op);
}

void attn_suite_grad(const attn_suite *s, const char *overrides, int32_t threads, double h,
                     double tol)
{
    const attn_suite_check chk = {.kind = ATTN_SUITE_GRAD, .threads = threads, .tol = tol, .h = h};
    attn_check_op op = attn_suite_open(s->plugin(), overrides, threads);
    for (int32_t mode = 0; mode < 3; mode++)
        for (int32_t layout = ATTN_CHECK_LAYOUT_BTHC; layout <= ATTN_CHECK_LAYOUT_PACKED;
             layout++) {
            attn_check_case c = attn_suite_case(s, mode, layout, attn_suite_padded(s, mode));
            c.heads = 2;
            char label[256];
            mode_label(label, sizeof label, overrides, mode, layout, -1);
            expect_check(op.desc, &op, overrides, &chk, &c, NULL, label);
        }
    attn_check_op_close(&op);
}

void attn_suite_grad_empty(const attn_suite *s, const char *overrides, int32_t threads,
                           double h, double tol)
{
    const attn_suite_check chk = {.kind = ATTN_SUITE_GRAD, .threads = threads, .tol = tol, .h = h};
    attn_check_op op = attn_suite_open(s->plugin(), overrides, threads);
    for (int32_t mode = 0; mode < 3; mode++) {
        attn_check_case c = attn_suite_case(s, mode, ATTN_CHECK_LAYOUT_BHTC, s->keys_empty);
        c.heads = 1;
        char label[256];
        mode_label(label, sizeof label, overrides, mode, c.layout, 2);
        expect_check(op.desc, &op, overrides, &chk, &c, NULL, label);
    }
    attn_check_op_close(&op);
}

void attn_suite_padding(const attn_suite *s, const char *overrides, int32_t threads,
                        int32_t extra, double tol)
{
    const attn_suite_check chk = {.kind = ATTN_SUITE_PADDING, .threads = threads, .tol = tol,
                                  .extra = extra};
    attn_check_op op = attn_suite_open(s->plugin(), overrides, threads);
    for (int32_t mode = 0; mode < 3; mode++)
        for (int32_t layout = 0; layout < 3; layout++) {
            attn_check_case c = attn_suite_case(s, mode, layout, attn_suite_padded(s, mode));
            char label[256];
            mode_label(label, sizeof label, overrides, mode, layout, 1);
            expect_check(op.desc, &op, overrides, &chk, &c, NULL, label);
        }
    attn_check_op_close(&op);
}

void attn_suite_causality(const attn_suite *s, const char *overrides, int32_t threads,
                          double tol)
{
    const attn_suite_check chk = {.kind = ATTN_SUITE_CAUSALITY, .threads = threads, .tol = tol};
    attn_check_op op = attn_suite_open(s->plugin(), overrides, threads);
    for (int32_t layout = 0; layout < 3; layout++)
        for (int pad = 0; pad < 2; pad++) {
            attn_check_case c =
                attn_suite_case(s, ET_ATTN_MODE_CAUSAL, layout, pad ? s->keys_self : NULL);
            char label[256];
            mode_label(label, sizeof label, overrides, c.mode, layout, pad);
            expect_check(op.desc, &op, overrides, &chk, &c, NULL, label);
        }
    attn_check_op_close(&op);
}

void attn_suite_decode(const attn_suite *s, const char *overrides, int32_t threads, int32_t len,
                       double tol)
{
    const attn_suite_check chk = {.kind = ATTN_SUITE_DECODE, .threads = threads, .tol = tol};
    attn_check_op op = attn_suite_open(s->plugin(), overrides, threads);
    for (int32_t layout = 0; layout < 3; layout++) {
        attn_check_case c = attn_suite_case(s, ET_ATTN_MODE_CAUSAL, layout, NULL);
        c.len_q = c.len_k = len;
        char label[256];
        mode_label(label, sizeof label, overrides, c.mode, layout, 0);
        expect_check(op.desc, &op, overrides, &chk, &c, NULL, label);
    }
    attn_check_op_close(&op);
}

void attn_suite_threads(const attn_suite *s, const char *overrides, int32_t threads, double tol)
{
    const attn_suite_check chk = {.kind = ATTN_SUITE_THREADS, .threads = threads, .tol = tol};
    for (int32_t mode = 0; mode < 3; mode++) {
        attn_check_case c =
            attn_suite_case(s, mode, ATTN_CHECK_LAYOUT_BTHC, attn_suite_padded(s, mode));
        c.heads = 5;
        char label[256];
        mode_label(label, sizeof label, overrides, mode, c.layout, 1);
        expect_check(s->plugin(), NULL, overrides, &chk, &c, NULL, label);
    }
}
