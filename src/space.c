/* Search spaces from [space] keys: value lists ("64, 96, 128"), integer
 * ranges ("2..6"), attention operators with options ("performer(features=64)"),
 * and the checks that make every point of the space buildable. */
#include "space.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bignum.h"
#include "options.h"
#include "util.h"

#define LIST(help) ET_OPTION_TYPE_STRING, "", 1, 0, NULL, help

/* head_dim, qkv_dim, norm, pooling, positions, share_embeddings and primer_dconv stay the last seven: et_space_from_section
 * reads them by position. */
const et_option_decl et_space_options[] = {
    {"encoder_embed_dim", LIST("encoder embedding dims, e.g. '64, 96, 128' (sets up the encoder)")},
    {"encoder_layers", LIST("encoder layer counts, e.g. '2..6'")},
    {"encoder_ffn_dim", LIST("FFN dims per encoder layer")},
    {"encoder_heads", LIST("attention heads per encoder layer")},
    {"encoder_attention", LIST("attention operators per encoder layer (default softmax)")},
    {"encoder_block", LIST("block types: standard, attention-only, ffn-only, identity, conv (default standard)")},
    {"encoder_activation", LIST("FFN activations: relu, gelu (tanh approximation), squared_relu, gelu_erf (exact) (default gelu)")},
    {"encoder_conv_kernel", LIST("kernel sizes of conv blocks, odd (default 3; with conv in encoder_block)")},
    {"decoder_embed_dim", LIST("decoder embedding dims (sets up the decoder)")},
    {"decoder_layers", LIST("decoder layer counts")},
    {"decoder_ffn_dim", LIST("FFN dims per decoder layer")},
    {"decoder_heads", LIST("self-attention heads per decoder layer")},
    {"decoder_attention", LIST("self-attention operators per decoder layer (default softmax)")},
    {"decoder_block", LIST("decoder block types (default standard)")},
    {"decoder_activation", LIST("decoder FFN activations (default gelu)")},
    {"decoder_conv_kernel", LIST("kernel sizes of decoder conv blocks (causal; default 3)")},
    {"decoder_cross_heads", LIST("encoder-decoder attention heads (default: decoder_heads)")},
    {"decoder_cross_attention", LIST("encoder-decoder attention operators (default softmax)")},
    {"decoder_connect", LIST("En-De Connect: attend to the last 1..3 encoder layers (default 1)")},
    {"head_dim", ET_OPTION_TYPE_INT, "0", 0, 4096, NULL,
     "fixed head dim: q/k/v width = head_dim x heads (default 64 unless qkv_dim is set)"},
    {"qkv_dim", ET_OPTION_TYPE_INT, "0", 0, 65536, NULL,
     "fixed q/k/v width (HAT): head dim = qkv_dim / heads"},
    {"norm", ET_OPTION_TYPE_CHOICE, "pre", 0, -1, "pre|post", "LayerNorm placement"},
    {"pooling", ET_OPTION_TYPE_CHOICE, "cls", 0, -1, "cls|mean",
     "encoder classifiers: class token or mean of the positions"},
    {"positions", ET_OPTION_TYPE_CHOICE, "sinusoidal", 0, -1, "sinusoidal|learned",
     "token models: fixed sinusoidal or learned positions (classifiers always learn theirs)"},
    {"share_embeddings", ET_OPTION_TYPE_BOOL, "true", 0, 0, NULL,
     "seq2seq: one token table for source and target (needs a joint vocabulary); the output "
     "projection is always the target table"},
    {"primer_dconv", ET_OPTION_TYPE_BOOL, "false", 0, 0, NULL,
     "Primer's multi-dconv-head: a depthwise convolution of width 3 along time after the Q, K "
     "and V projections (causal in decoders, centred in encoders)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const char *const block_names[] = {"standard", "attention-only", "ffn-only", "identity",
                                          "conv", NULL};
static const char *const act_names[] = {"relu", "gelu", "squared_relu", "gelu_erf", NULL};

typedef struct ctx {
    const et_config_section *sec;
    char **err;
} ctx;

static int bad(ctx *c, const char *key, const char *fmt, const char *detail)
{
    const et_config_entry *e = et_config_entry_find(c->sec, key);
    char where[512], msg[ET_MAX_CHOICES * ET_MAX_CHOICE_TEXT + 512];
    if (e)
        et_where(e, where, sizeof where);
    else
        et_section_where(c->sec, where, sizeof where);
    snprintf(msg, sizeof msg, fmt, detail);
    return et_fail(c->err, ET_STATUS_ERR_USAGE, "%s: [space] %s: %s", where, key, msg);
}

static const char *value_of(ctx *c, const char *key)
{
    const et_config_entry *e = et_config_entry_find(c->sec, key);
    return e && *e->value ? e->value : NULL;
}

/* Split on commas outside parentheses; calls fn(item) for each trimmed item. */
static int split_items(ctx *c, const char *key, const char *text, char items[][ET_MAX_CHOICE_TEXT],
                       int32_t *n)
{
    *n = 0;
    int depth = 0;
    char buf[ET_MAX_CHOICE_TEXT * 2];
    size_t o = 0;
    for (const char *s = text;; s++) {
        if (*s == '(')
            depth++;
        if (*s == ')')
            depth--;
        if (depth < 0)
            return bad(c, key, "%s", "unbalanced ')'");
        if (*s == 0 || (*s == ',' && depth == 0)) {
            buf[o] = 0;
            char *item = et_trim(buf);
            if (!*item)
                return bad(c, key, "%s", "empty item in the list");
            if (*n == ET_MAX_CHOICES)
                return bad(c, key, "more than %s choices", "32");
            if (strlen(item) >= ET_MAX_CHOICE_TEXT)
                return bad(c, key, "choice '%s' is too long (255 characters at most)", item);
            strcpy(items[(*n)++], item);
            o = 0;
            if (*s == 0)
                break;
            continue;
        }
        if (o + 1 >= sizeof buf)
            return bad(c, key, "%s", "an item is too long");
        buf[o++] = *s;
    }
    if (depth != 0)
        return bad(c, key, "%s", "unbalanced '('");
    return 0;
}

static int parse_int(const char *s, int32_t *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < 1 || v > 1000000)
        return -1;
    *out = (int32_t)v;
    return 0;
}

static int add_int(ctx *c, const char *key, et_int_choices *ch, int32_t v)
{
    for (int32_t i = 0; i < ch->n; i++)
        if (ch->v[i] == v) {
            char d[32];
            snprintf(d, sizeof d, "%d", v);
            return bad(c, key, "value %s is listed twice", d);
        }
    if (ch->n == ET_MAX_CHOICES)
        return bad(c, key, "more than %s choices", "32");
    ch->v[ch->n++] = v;
    return 0;
}

static int int_list(ctx *c, const char *key, const char *dflt, et_int_choices *ch)
{
    const char *text = value_of(c, key);
    memset(ch, 0, sizeof *ch);
    if (!text)
        text = dflt;
    if (!text)
        return 0;
    char items[ET_MAX_CHOICES][ET_MAX_CHOICE_TEXT];
    int32_t n;
    int rc = split_items(c, key, text, items, &n);
    if (rc)
        return rc;
    for (int32_t i = 0; i < n; i++) {
        char *dots = strstr(items[i], "..");
        int32_t lo, hi;
        if (dots) {
            *dots = 0;
            if (parse_int(et_trim(items[i]), &lo) || parse_int(et_trim(dots + 2), &hi) || lo > hi)
                return bad(c, key, "'%s..' is not a range of positive integers LO..HI", items[i]);
            if (hi - lo >= ET_MAX_CHOICES)
                return bad(c, key, "range starting at %s has more than 32 values", items[i]);
            for (int32_t v = lo; v <= hi; v++)
                if ((rc = add_int(c, key, ch, v)))
                    return rc;
        } else {
            if (parse_int(items[i], &lo))
                return bad(c, key, "'%s' is not a positive integer", items[i]);
            if ((rc = add_int(c, key, ch, lo)))
                return rc;
        }
    }
    return 0;
}

static int name_list(ctx *c, const char *key, const char *dflt, const char *const *names,
                     et_int_choices *ch)
{
    const char *text = value_of(c, key);
    memset(ch, 0, sizeof *ch);
    char items[ET_MAX_CHOICES][ET_MAX_CHOICE_TEXT];
    int32_t n;
    int rc = split_items(c, key, text ? text : dflt, items, &n);
    if (rc)
        return rc;
    for (int32_t i = 0; i < n; i++) {
        int32_t found = -1;
        for (int32_t k = 0; names[k]; k++)
            if (strcmp(names[k], items[i]) == 0)
                found = k;
        if (found < 0) {
            char msg[256];
            size_t o = 0;
            for (int32_t k = 0; names[k]; k++)
                o += (size_t)snprintf(msg + o, sizeof msg - o, "%s%s", k ? ", " : "", names[k]);
            char full[512];
            snprintf(full, sizeof full, "'%.96s' is not one of %.256s", items[i], msg);
            return bad(c, key, "%s", full);
        }
        if ((rc = add_int(c, key, ch, found)))
            return rc;
    }
    return 0;
}

/* "name" or "name(key=value,...)": whitespace dropped, name [a-z0-9_-]+. */
static int text_list(ctx *c, const char *key, const char *dflt, et_text_choices *ch)
{
    const char *text = value_of(c, key);
    memset(ch, 0, sizeof *ch);
    char items[ET_MAX_CHOICES][ET_MAX_CHOICE_TEXT];
    int32_t n;
    int rc = split_items(c, key, text ? text : dflt, items, &n);
    if (rc)
        return rc;
    for (int32_t i = 0; i < n; i++) {
        char *o = items[i];
        for (const char *s = items[i]; *s; s++)
            if (!isspace((unsigned char)*s))
                *o++ = *s;
        *o = 0;
        const char *s = items[i];
        size_t nl = 0;
        while (islower((unsigned char)s[nl]) || isdigit((unsigned char)s[nl]) || s[nl] == '_' ||
               s[nl] == '-')
            nl++;
        if (nl == 0 || (s[nl] && s[nl] != '('))
            return bad(c, key, "'%s' is not an operator name or name(key=value,...)", s);
        if (s[nl] == '(' && (s[strlen(s) - 1] != ')' || strpbrk(s, "[];|")))
            return bad(c, key, "'%s': options go in one (...) at the end, without [ ] ; |", s);
        for (int32_t k = 0; k < ch->n; k++)
            if (strcmp(ch->v[k], s) == 0)
                return bad(c, key, "'%s' is listed twice", s);
        strcpy(ch->v[ch->n++], s);
    }
    return 0;
}

static int32_t max_of(const et_int_choices *ch)
{
    int32_t m = 0;
    for (int32_t i = 0; i < ch->n; i++)
        if (ch->v[i] > m)
            m = ch->v[i];
    return m;
}

static int32_t min_of(const et_int_choices *ch)
{
    int32_t m = ch->n ? ch->v[0] : 0;
    for (int32_t i = 1; i < ch->n; i++)
        if (ch->v[i] < m)
            m = ch->v[i];
    return m;
}

static int parse_stack(ctx *c, const char *prefix, et_stack_space *st, int cross)
{
    char key[64];
#define KEY(suffix) (snprintf(key, sizeof key, "%s_%s", prefix, suffix), key)
    int rc;
    if ((rc = int_list(c, KEY("embed_dim"), NULL, &st->embed_dim)))
        return rc;
    st->present = st->embed_dim.n > 0;
    static const char *const all[] = {"layers",      "ffn_dim",         "heads",   "attention",
                                      "block",       "activation",      "conv_kernel", "cross_heads",
                                      "cross_attention", "connect", NULL};
    if (!st->present) {
        for (int i = 0; all[i]; i++)
            if (value_of(c, KEY(all[i])))
                return bad(c, key, "%s", "given without the stack's embed_dim");
        return 0;
    }
    static const char *const required[] = {"layers", "ffn_dim", "heads", NULL};
    for (int i = 0; required[i]; i++)
        if (!value_of(c, KEY(required[i])))
            return bad(c, key, "%s", "is required when the stack has an embed_dim");
    if ((rc = int_list(c, KEY("layers"), NULL, &st->layers)) ||
        (rc = int_list(c, KEY("ffn_dim"), NULL, &st->ffn_dim)) ||
        (rc = int_list(c, KEY("heads"), NULL, &st->heads)) ||
        (rc = text_list(c, KEY("attention"), "softmax", &st->attention)) ||
        (rc = name_list(c, KEY("block"), "standard", block_names, &st->block)) ||
        (rc = name_list(c, KEY("activation"), "gelu", act_names, &st->activation)))
        return rc;
    if (max_of(&st->layers) > ET_MAX_LAYERS)
        return bad(c, KEY("layers"), "at most %s layers", "32");
    int conv = 0;
    for (int32_t i = 0; i < st->block.n; i++)
        conv |= st->block.v[i] == ET_BLOCK_CONV;
    if (!conv && value_of(c, KEY("conv_kernel")))
        return bad(c, key, "%s", "is given, but no conv in the block choices");
    if (conv) {
        if ((rc = int_list(c, KEY("conv_kernel"), "3", &st->conv_kernel)))
            return rc;
        for (int32_t i = 0; i < st->conv_kernel.n; i++)
            if (st->conv_kernel.v[i] % 2 == 0 || st->conv_kernel.v[i] > 63)
                return bad(c, key, "%s", "kernel sizes are odd, 1..63");
    }
    if (!cross) {
        if (value_of(c, KEY("cross_heads")) || value_of(c, KEY("cross_attention")) ||
            value_of(c, KEY("connect"))) {
            if (!value_of(c, KEY("cross_heads")) && !value_of(c, KEY("cross_attention")))
                KEY("connect");
            else if (!value_of(c, KEY("cross_heads")))
                KEY("cross_attention");
            else
                KEY("cross_heads");
            return bad(c, key, "%s", "needs an encoder (set encoder_embed_dim)");
        }
        return 0;
    }
    const char *heads_text = value_of(c, KEY("heads"));
    if ((rc = int_list(c, KEY("cross_heads"), heads_text, &st->cross_heads)) ||
        (rc = text_list(c, KEY("cross_attention"), "softmax", &st->cross_attention)) ||
        (rc = int_list(c, KEY("connect"), "1", &st->connect)))
        return rc;
    if (max_of(&st->connect) > 3)
        return bad(c, KEY("connect"), "En-De Connect is %s (the last 1, 2 or 3 encoder layers)",
                   "1, 2 or 3");
    return 0;
#undef KEY
}

static int check_heads(ctx *c, const et_space *s, const char *key, const et_int_choices *heads)
{
    if (s->heads_rule != ET_HEADS_RULE_QKV_DIM)
        return 0;
    for (int32_t i = 0; i < heads->n; i++)
        if (s->qkv_dim % heads->v[i]) {
            char d[96];
            snprintf(d, sizeof d, "qkv_dim %d is not divisible by %d heads", s->qkv_dim,
                     heads->v[i]);
            return bad(c, key, "%s", d);
        }
    return 0;
}

int et_space_from_section(const et_config_section *sec, et_space *out, char **err)
{
    ctx c = {sec, err};
    et_option_value vals[sizeof et_space_options / sizeof et_space_options[0]];
    memset(out, 0, sizeof *out);
    int rc = et_options_bind(et_space_options, sec, NULL, 0, vals, err);
    if (rc)
        return rc;
    int has_enc = value_of(&c, "encoder_embed_dim") != NULL;
    int has_dec = value_of(&c, "decoder_embed_dim") != NULL;
    if ((rc = parse_stack(&c, "encoder", &out->enc, 0)) ||
        (rc = parse_stack(&c, "decoder", &out->dec, has_enc)))
        return rc;
    if (!has_enc && !has_dec) {
        char where[512];
        et_section_where(sec, where, sizeof where);
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "%s: [space] has neither encoder_embed_dim nor decoder_embed_dim", where);
    }
    out->kind = has_enc && has_dec ? ET_MODEL_KIND_SEQ2SEQ
                                   : has_enc ? ET_MODEL_KIND_ENCODER : ET_MODEL_KIND_DECODER;
    size_t n_opts = et_options_count(et_space_options);
    int64_t head_dim = vals[n_opts - 7].i, qkv_dim = vals[n_opts - 6].i;
    if (head_dim && qkv_dim)
        return bad(&c, "qkv_dim", "%s", "set head_dim or qkv_dim, not both");
    if (qkv_dim) {
        out->heads_rule = ET_HEADS_RULE_QKV_DIM;
        out->qkv_dim = (int32_t)qkv_dim;
    } else {
        out->heads_rule = ET_HEADS_RULE_HEAD_DIM;
        out->head_dim = head_dim ? (int32_t)head_dim : 64;
    }
    out->norm = (int32_t)vals[n_opts - 5].i;
    out->pooling = (int32_t)vals[n_opts - 4].i;
    out->positions = (int32_t)vals[n_opts - 3].i;
    out->share_embeddings = (int32_t)vals[n_opts - 2].i;
    out->primer_dconv = (int32_t)vals[n_opts - 1].i;
    if ((rc = check_heads(&c, out, "encoder_heads", &out->enc.heads)) ||
        (rc = check_heads(&c, out, "decoder_heads", &out->dec.heads)) ||
        (rc = check_heads(&c, out, "decoder_cross_heads", &out->dec.cross_heads)))
        return rc;
    if (out->kind == ET_MODEL_KIND_SEQ2SEQ && min_of(&out->dec.connect) > min_of(&out->enc.layers))
        return bad(&c, "decoder_connect", "%s",
                   "its smallest choice exceeds the smallest encoder depth");
    return 0;
}

int et_space_load(const char *path, et_space *out, char **err)
{
    et_config cfg;
    int rc = et_config_load(path, &cfg, err);
    if (rc)
        return rc;
    const et_config_section *sec = et_config_find(&cfg, "space");
    if (!sec)
        rc = et_fail(err, ET_STATUS_ERR_USAGE, "%s: no [space] section", path);
    else
        rc = et_space_from_section(sec, out, err);
    et_config_free(&cfg);
    return rc;
}

/* Choices per layer of a stack, as small factors; for seq2seq decoders,
 * connect counts only the choices that fit enc_layers. Returns the count. */
static int layer_factors(const et_stack_space *st, int cross, int32_t enc_layers, uint32_t *f)
{
    int n = 0;
    f[n++] = (uint32_t)st->ffn_dim.n;
    f[n++] = (uint32_t)st->heads.n;
    f[n++] = (uint32_t)st->attention.n;
    /* a conv block counts once per kernel size */
    uint32_t blocks = 0;
    for (int32_t i = 0; i < st->block.n; i++)
        blocks += st->block.v[i] == ET_BLOCK_CONV ? (uint32_t)st->conv_kernel.n : 1;
    f[n++] = blocks;
    f[n++] = (uint32_t)st->activation.n;
    if (cross) {
        uint32_t ok = 0;
        for (int32_t i = 0; i < st->connect.n; i++)
            ok += st->connect.v[i] <= enc_layers;
        f[n++] = (uint32_t)st->cross_heads.n;
        f[n++] = (uint32_t)st->cross_attention.n;
        f[n++] = ok;
    }
    return n;
}

/* acc *= (stack choices)^layers */
static void mul_stack(et_bignum *acc, const et_stack_space *st, int cross, int32_t enc_layers,
                      int32_t layers)
{
    uint32_t f[8];
    int n = layer_factors(st, cross, enc_layers, f);
    et_bignum_mul(acc, (uint32_t)st->embed_dim.n);
    for (int32_t l = 0; l < layers; l++)
        for (int k = 0; k < n; k++)
            et_bignum_mul(acc, f[k]);
}

int et_space_count(const et_space *s, char *buf, size_t n)
{
    et_bignum total;
    et_bignum_set(&total, 0);
    int32_t enc_n = s->enc.present ? s->enc.layers.n : 1;
    int32_t dec_n = s->dec.present ? s->dec.layers.n : 1;
    for (int32_t i = 0; i < enc_n; i++) {
        for (int32_t j = 0; j < dec_n; j++) {
            et_bignum term;
            et_bignum_set(&term, 1);
            int32_t enc_l = s->enc.present ? s->enc.layers.v[i] : 0;
            if (s->enc.present)
                mul_stack(&term, &s->enc, 0, 0, enc_l);
            if (s->dec.present)
                mul_stack(&term, &s->dec, s->kind == ET_MODEL_KIND_SEQ2SEQ, enc_l,
                          s->dec.layers.v[j]);
            et_bignum_add(&total, &term);
        }
    }
    return et_bignum_format(&total, buf, n);
}

static void fmt_ints(char *buf, size_t n, size_t *o, const char *key, const et_int_choices *c,
                     const char *const *names)
{
    if (!c->n)
        return;
    *o += (size_t)snprintf(buf + (*o < n ? *o : n), *o < n ? n - *o : 0, "%s =", key);
    for (int32_t i = 0; i < c->n; i++) {
        if (names)
            *o += (size_t)snprintf(buf + (*o < n ? *o : n), *o < n ? n - *o : 0, "%s %s",
                                   i ? "," : "", names[c->v[i]]);
        else
            *o += (size_t)snprintf(buf + (*o < n ? *o : n), *o < n ? n - *o : 0, "%s %d",
                                   i ? "," : "", c->v[i]);
    }
    *o += (size_t)snprintf(buf + (*o < n ? *o : n), *o < n ? n - *o : 0, "\n");
}

static void fmt_texts(char *buf, size_t n, size_t *o, const char *key, const et_text_choices *c)
{
    if (!c->n)
        return;
    *o += (size_t)snprintf(buf + (*o < n ? *o : n), *o < n ? n - *o : 0, "%s =", key);
    for (int32_t i = 0; i < c->n; i++)
        *o += (size_t)snprintf(buf + (*o < n ? *o : n), *o < n ? n - *o : 0, "%s %s",
                               i ? "," : "", c->v[i]);
    *o += (size_t)snprintf(buf + (*o < n ? *o : n), *o < n ? n - *o : 0, "\n");
}

int et_space_format(const et_space *s, char *buf, size_t n)
{
    size_t o = 0;
    if (n)
        buf[0] = 0;
    for (int st = 0; st < 2; st++) {
        const et_stack_space *ss = st ? &s->dec : &s->enc;
        const char *p = st ? "decoder" : "encoder";
        char key[64];
#define K(x) (snprintf(key, sizeof key, "%s_%s", p, x), key)
        fmt_ints(buf, n, &o, K("embed_dim"), &ss->embed_dim, NULL);
        fmt_ints(buf, n, &o, K("layers"), &ss->layers, NULL);
        fmt_ints(buf, n, &o, K("ffn_dim"), &ss->ffn_dim, NULL);
        fmt_ints(buf, n, &o, K("heads"), &ss->heads, NULL);
        fmt_texts(buf, n, &o, K("attention"), &ss->attention);
        fmt_ints(buf, n, &o, K("block"), &ss->block, block_names);
        fmt_ints(buf, n, &o, K("activation"), &ss->activation, act_names);
        fmt_ints(buf, n, &o, K("conv_kernel"), &ss->conv_kernel, NULL);
        fmt_ints(buf, n, &o, K("cross_heads"), &ss->cross_heads, NULL);
        fmt_texts(buf, n, &o, K("cross_attention"), &ss->cross_attention);
        fmt_ints(buf, n, &o, K("connect"), &ss->connect, NULL);
#undef K
    }
    if (s->heads_rule == ET_HEADS_RULE_QKV_DIM)
        o += (size_t)snprintf(buf + (o < n ? o : n), o < n ? n - o : 0, "qkv_dim = %d\n", s->qkv_dim);
    else
        o += (size_t)snprintf(buf + (o < n ? o : n), o < n ? n - o : 0, "head_dim = %d\n", s->head_dim);
    o += (size_t)snprintf(buf + (o < n ? o : n), o < n ? n - o : 0, "norm = %s\npooling = %s\n",
                          s->norm == ET_NORM_PRE ? "pre" : "post",
                          s->pooling == ET_POOLING_CLS ? "cls" : "mean");
    if (s->primer_dconv)
        o += (size_t)snprintf(buf + (o < n ? o : n), o < n ? n - o : 0, "primer_dconv = true\n");
    if (s->kind != ET_MODEL_KIND_ENCODER)
        o += (size_t)snprintf(buf + (o < n ? o : n), o < n ? n - o : 0,
                              "positions = %s\nshare_embeddings = %s\n",
                              s->positions ? "learned" : "sinusoidal",
                              s->share_embeddings ? "true" : "false");
    return o < n ? (int)o : ET_STATUS_ERR_USAGE;
}
