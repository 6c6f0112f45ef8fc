/* The canonical text of an architecture, its parser, hash and validation.
 *
 * Form (active layers only, every gene spelled out):
 *   enc(E=128,L=2)[ffn=256,heads=4,attn=softmax,block=standard,act=gelu][...]
 *   ;dec(E=512,L=1)[ffn=..,heads=..,attn=..,block=..,act=..,xheads=..,xattn=..,connect=1]
 * Stacks appear in that order, joined by ';'; the xheads/xattn/connect genes
 * only in the decoder of a seq2seq space. */
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "space.h"
#include "util.h"

static const char *const block_text[] = {"standard", "attention-only", "ffn-only", "identity",
                                          "conv"};
static const char *const act_text[] = {"relu", "gelu", "squared_relu", "gelu_erf"};
#define N_ACT ((int)(sizeof act_text / sizeof act_text[0]))

typedef struct out_buf {
    char *p;
    size_t n, o;
} out_buf;

static void put(out_buf *b, const char *fmt, ...) ET_PRINTF(2, 3);
static void put(out_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->o < b->n ? b->p + b->o : NULL, b->o < b->n ? b->n - b->o : 0, fmt, ap);
    va_end(ap);
    if (k > 0)
        b->o += (size_t)k;
}

static void format_stack(out_buf *b, const et_stack_space *ss, const et_stack_arch *sa,
                         const char *tag, int cross)
{
    put(b, "%s(E=%d,L=%d)", tag, sa->embed_dim, sa->layers);
    for (int32_t l = 0; l < sa->layers && l < ET_MAX_LAYERS; l++) {
        const et_layer_arch *g = &sa->layer[l];
        int ai = g->attention >= 0 && g->attention < ss->attention.n;
        put(b, "[ffn=%d,heads=%d,attn=%s,block=%s,act=%s", g->ffn_dim, g->heads,
            ai ? ss->attention.v[g->attention] : "?",
            g->block >= 0 && g->block < 5 ? block_text[g->block] : "?",
            g->activation >= 0 && g->activation < N_ACT ? act_text[g->activation] : "?");
        if (g->block == ET_BLOCK_CONV)
            put(b, ",kernel=%d", g->conv_kernel);
        if (cross) {
            int xi = g->cross_attention >= 0 && g->cross_attention < ss->cross_attention.n;
            put(b, ",xheads=%d,xattn=%s,connect=%d", g->cross_heads,
                xi ? ss->cross_attention.v[g->cross_attention] : "?", g->connect);
        }
        put(b, "]");
    }
}

int et_arch_format(const et_space *space, const et_arch *arch, char *buf, size_t n)
{
    out_buf b = {buf, n, 0};
    if (n)
        buf[0] = 0;
    if (space->enc.present)
        format_stack(&b, &space->enc, &arch->enc, "enc", 0);
    if (space->dec.present) {
        if (space->enc.present)
            put(&b, ";");
        format_stack(&b, &space->dec, &arch->dec, "dec", space->kind == ET_MODEL_KIND_SEQ2SEQ);
    }
    if (b.o >= n)
        return ET_STATUS_ERR_USAGE;
    return (int)b.o;
}

uint64_t et_arch_hash(const et_space *space, const et_arch *arch)
{
    char buf[16384];
    int len = et_arch_format(space, arch, buf, sizeof buf);
    uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a 64 */
    for (int i = 0; i < len; i++) {
        h ^= (unsigned char)buf[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

/* ---------------------------------------------------------------- parsing */

typedef struct parser {
    const char *text, *p;
    char **err;
} parser;

static int perr(parser *ps, const char *what)
{
    return et_fail(ps->err, ET_STATUS_ERR_USAGE, "arch text, offset %td: %s (near '%.20s')",
                   ps->p - ps->text, what, ps->p);
}

static int lit(parser *ps, const char *s)
{
    size_t n = strlen(s);
    if (strncmp(ps->p, s, n))
        return -1;
    ps->p += n;
    return 0;
}

static int expect(parser *ps, const char *s)
{
    if (lit(ps, s) == 0)
        return 0;
    char msg[64];
    snprintf(msg, sizeof msg, "expected '%s'", s);
    return perr(ps, msg);
}

static int num(parser *ps, int32_t *out)
{
    if (!isdigit((unsigned char)*ps->p))
        return perr(ps, "expected a number");
    char *end;
    errno = 0;
    long v = strtol(ps->p, &end, 10);
    if (errno || v > 1000000)
        return perr(ps, "number out of range");
    ps->p = end;
    *out = (int32_t)v;
    return 0;
}

/* The longest text choice that matches here (choices may prefix each other). */
static int text_choice(parser *ps, const et_text_choices *ch, int32_t *out)
{
    int32_t best = -1;
    size_t best_len = 0;
    for (int32_t i = 0; i < ch->n; i++) {
        size_t l = strlen(ch->v[i]);
        if (l > best_len && strncmp(ps->p, ch->v[i], l) == 0 && (ps->p[l] == ',' || ps->p[l] == ']')) {
            best = i;
            best_len = l;
        }
    }
    if (best < 0)
        return perr(ps, "not an attention operator of this space");
    ps->p += best_len;
    *out = best;
    return 0;
}

static int name_choice(parser *ps, const char *const *names, int32_t count, int32_t *out)
{
    for (int32_t i = 0; i < count; i++) {
        size_t l = strlen(names[i]);
        if (strncmp(ps->p, names[i], l) == 0 && (ps->p[l] == ',' || ps->p[l] == ']')) {
            ps->p += l;
            *out = i;
            return 0;
        }
    }
    return perr(ps, "unknown name");
}

static int parse_stack(parser *ps, const et_stack_space *ss, et_stack_arch *sa, const char *tag,
                       int cross)
{
    int rc;
    if ((rc = expect(ps, tag)) || (rc = expect(ps, "(E=")) || (rc = num(ps, &sa->embed_dim)) ||
        (rc = expect(ps, ",L=")) || (rc = num(ps, &sa->layers)) || (rc = expect(ps, ")")))
        return rc;
    if (sa->layers > ET_MAX_LAYERS)
        return perr(ps, "too many layers");
    for (int32_t l = 0; l < sa->layers; l++) {
        et_layer_arch *g = &sa->layer[l];
        if ((rc = expect(ps, "[ffn=")) || (rc = num(ps, &g->ffn_dim)) ||
            (rc = expect(ps, ",heads=")) || (rc = num(ps, &g->heads)) ||
            (rc = expect(ps, ",attn=")) || (rc = text_choice(ps, &ss->attention, &g->attention)) ||
            (rc = expect(ps, ",block=")) || (rc = name_choice(ps, block_text, 5, &g->block)) ||
            (rc = expect(ps, ",act=")) || (rc = name_choice(ps, act_text, N_ACT, &g->activation)))
            return rc;
        if (g->block == ET_BLOCK_CONV &&
            ((rc = expect(ps, ",kernel=")) || (rc = num(ps, &g->conv_kernel))))
            return rc;
        if (cross && ((rc = expect(ps, ",xheads=")) || (rc = num(ps, &g->cross_heads)) ||
                      (rc = expect(ps, ",xattn=")) ||
                      (rc = text_choice(ps, &ss->cross_attention, &g->cross_attention)) ||
                      (rc = expect(ps, ",connect=")) || (rc = num(ps, &g->connect))))
            return rc;
        if ((rc = expect(ps, "]")))
            return rc;
    }
    return 0;
}

/* Inactive layers take the first choice of every gene, as HAT pads them. */
static void pad_inactive(const et_stack_space *ss, et_stack_arch *sa, int cross)
{
    for (int32_t l = sa->layers; l < ET_MAX_LAYERS; l++) {
        et_layer_arch *g = &sa->layer[l];
        memset(g, 0, sizeof *g);
        if (!ss->present || l >= et_stack_max_layers(ss))
            continue;
        g->ffn_dim = ss->ffn_dim.v[0];
        g->heads = ss->heads.v[0];
        g->block = ss->block.v[0];
        g->activation = ss->activation.v[0];
        g->conv_kernel = ss->conv_kernel.n ? ss->conv_kernel.v[0] : 0;
        if (cross) {
            g->cross_heads = ss->cross_heads.v[0];
            g->connect = ss->connect.v[0];
        }
    }
}

int et_arch_parse(const et_space *space, const char *text, et_arch *out, char **err)
{
    parser ps = {text, text, err};
    int rc;
    memset(out, 0, sizeof *out);
    int cross = space->kind == ET_MODEL_KIND_SEQ2SEQ;
    if (space->enc.present && (rc = parse_stack(&ps, &space->enc, &out->enc, "enc", 0)))
        return rc;
    if (space->dec.present) {
        if (space->enc.present && (rc = expect(&ps, ";")))
            return rc;
        if ((rc = parse_stack(&ps, &space->dec, &out->dec, "dec", cross)))
            return rc;
    }
    if (*ps.p)
        return perr(&ps, "unexpected text after the architecture");
    pad_inactive(&space->enc, &out->enc, 0);
    pad_inactive(&space->dec, &out->dec, cross);
    return et_arch_validate(space, out, err);
}

/* ---------------------------------------------------------------- validation */

static int in_list(const et_int_choices *ch, int32_t v)
{
    for (int32_t i = 0; i < ch->n; i++)
        if (ch->v[i] == v)
            return 1;
    return 0;
}

static void list_text(const et_int_choices *ch, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = 0;
    for (int32_t i = 0; i < ch->n && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%d", i ? ", " : "", ch->v[i]);
}

static int gene_bad(char **err, const char *stack, int32_t layer, const char *gene, int32_t v,
                    const et_int_choices *ch)
{
    char list[512];
    list_text(ch, list, sizeof list);
    if (layer < 0)
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s %s %d is not one of the space's choices (%s)",
                       stack, gene, v, list);
    return et_fail(err, ET_STATUS_ERR_USAGE,
                   "%s layer %d: %s %d is not one of the space's choices (%s)", stack, layer, gene,
                   v, list);
}

static int validate_stack(const et_stack_space *ss, const et_stack_arch *sa, const char *stack,
                          int cross, int32_t enc_layers, char **err)
{
    if (!in_list(&ss->embed_dim, sa->embed_dim))
        return gene_bad(err, stack, -1, "embed_dim", sa->embed_dim, &ss->embed_dim);
    if (!in_list(&ss->layers, sa->layers))
        return gene_bad(err, stack, -1, "layers", sa->layers, &ss->layers);
    for (int32_t l = 0; l < sa->layers; l++) {
        const et_layer_arch *g = &sa->layer[l];
        if (!in_list(&ss->ffn_dim, g->ffn_dim))
            return gene_bad(err, stack, l, "ffn_dim", g->ffn_dim, &ss->ffn_dim);
        if (!in_list(&ss->heads, g->heads))
            return gene_bad(err, stack, l, "heads", g->heads, &ss->heads);
        if (g->attention < 0 || g->attention >= ss->attention.n)
            return et_fail(err, ET_STATUS_ERR_USAGE, "%s layer %d: attention index %d out of range",
                           stack, l, g->attention);
        if (!in_list(&ss->block, g->block))
            return et_fail(err, ET_STATUS_ERR_USAGE, "%s layer %d: block type %s is not allowed",
                           stack, l, g->block >= 0 && g->block < 5 ? block_text[g->block] : "?");
        if (g->block == ET_BLOCK_CONV && !in_list(&ss->conv_kernel, g->conv_kernel))
            return gene_bad(err, stack, l, "kernel", g->conv_kernel, &ss->conv_kernel);
        if (!in_list(&ss->activation, g->activation))
            return et_fail(err, ET_STATUS_ERR_USAGE, "%s layer %d: activation %s is not allowed",
                           stack, l,
                           g->activation >= 0 && g->activation < N_ACT ? act_text[g->activation] : "?");
        if (!cross)
            continue;
        if (!in_list(&ss->cross_heads, g->cross_heads))
            return gene_bad(err, stack, l, "xheads", g->cross_heads, &ss->cross_heads);
        if (g->cross_attention < 0 || g->cross_attention >= ss->cross_attention.n)
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "%s layer %d: cross attention index %d out of range", stack, l,
                           g->cross_attention);
        if (!in_list(&ss->connect, g->connect))
            return gene_bad(err, stack, l, "connect", g->connect, &ss->connect);
        if (g->connect > enc_layers)
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "%s layer %d: connect %d attends to more encoder layers than the %d "
                           "there are",
                           stack, l, g->connect, enc_layers);
    }
    return 0;
}

int et_arch_validate(const et_space *space, const et_arch *arch, char **err)
{
    int rc;
    if (space->enc.present &&
        (rc = validate_stack(&space->enc, &arch->enc, "encoder", 0, 0, err)))
        return rc;
    if (space->dec.present &&
        (rc = validate_stack(&space->dec, &arch->dec, "decoder",
                             space->kind == ET_MODEL_KIND_SEQ2SEQ, arch->enc.layers, err)))
        return rc;
    return 0;
}
