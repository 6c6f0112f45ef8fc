/* The params and flops proxies, loaded from the build tree as the runner
 * loads them: the published HAT rows (Transformer-Base and -Big) and a HAT
 * sub-transformer against spec/costs.md's formulas; encoder-classifier
 * parameters against the engine's own bound tensors; etnas FLOPs and
 * seq2seq / decoder-only parameters against hand counts of tiny models;
 * option and host errors. Counts are integers, so every comparison is exact
 * (figures are rounded back from millions and billions). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/proxy.h>

#include "attn_ref.h"
#include "hostimpl.h"
#include "inifile.h"
#include "model.h"
#include "options.h"
#include "plugin.h"
#include "space.h"
#include "testutil.h"


static et_arch arch_of(const et_space *s, const char *text)
{
    et_arch a;
    char *err = NULL;
    cr_assert_eq(et_arch_parse(s, text, &a, &err), 0, "%s: %s", text, err);
    return a;
}

/* ---------------------------------------------------------------- proxies */

typedef struct proxy {
    et_registry reg;
    et_config cfg; /* the option text, which CHOICE/STRING values point into */
    const et_proxy_vtable *vt;
    void *state;
    et_option_value vals[8];
} proxy;

/* Load plugin `name`, bind `options` ("key = value" lines) and create it.
 * Returns the first failure (binding or create) with its message in *err. */
static int proxy_open(proxy *p, const char *name, const et_host *host, const char *options,
                      char **err)
{
    memset(p, 0, sizeof *p);
    char path[4096], text[1024];
    const char *b = getenv("ET_BUILDDIR");
    snprintf(path, sizeof path, "%s/plugins/proxies/.libs/%s.so", b ? b : ".", name);
    char *lerr = NULL;
    cr_assert_eq(et_registry_load(&p->reg, path, &lerr), 0, "%s", lerr);
    const et_plugin *pl = et_registry_find(&p->reg, ET_PLUGIN_KIND_PROXY, name);
    cr_assert_not_null(pl);
    cr_assert_leq(et_options_count(pl->desc->options), 8);
    snprintf(text, sizeof text, "[proxy t]\n%s", options);
    cr_assert_eq(et_config_parse(text, "p.ini", &p->cfg, &lerr), 0, "%s", lerr);
    int rc = et_options_bind(pl->desc->options, &p->cfg.sections[0], NULL, 0, p->vals, err);
    if (rc)
        return rc;
    p->vt = pl->desc->vtable;
    return p->vt->create(host, p->vals, &p->state, err);
}

static void proxy_close(proxy *p)
{
    if (p->vt)
        p->vt->destroy(p->state);
    et_config_free(&p->cfg);
    et_registry_free(&p->reg);
}

/* Open, measure, close; asserts success. values gets every figure. */
static void measure(const char *name, const et_host *host, const char *options, const et_arch *a,
                    double *values)
{
    proxy p;
    char *err = NULL;
    cr_assert_eq(proxy_open(&p, name, host, options, &err), 0, "%s: %s", name, err);
    cr_assert_eq(p.vt->measure(p.state, a, values, &err), 0, "%s: %s", name, err);
    proxy_close(&p);
}

/* Open and measure, expecting a failure whose message contains `needle`. */
static void measure_fails(const char *name, const et_host *host, const char *options,
                          const et_arch *a, const char *needle)
{
    proxy p;
    char *err = NULL;
    double values[4];
    int rc = proxy_open(&p, name, host, options, &err);
    if (!rc)
        rc = p.vt->measure(p.state, a, values, &err);
    cr_assert_lt(rc, 0, "%s with '%s' should fail", name, options);
    cr_assert_not_null(err);
    cr_assert(strstr(err, needle), "'%s' does not mention '%s'", err, needle);
    free(err);
    proxy_close(&p);
}

static long long params_of(const et_host *host, const char *options, const et_arch *a,
                           long long *embed)
{
    double v[2];
    measure("params", host, options, a, v);
    if (embed)
        *embed = llround(v[1] * 1e6);
    return llround(v[0] * 1e6);
}

/* MACs (flops_g / 2) and other ops, as exact counts. */
static long long macs_of(const et_host *host, const char *options, const et_arch *a,
                         long long *other)
{
    double v[2];
    measure("flops", host, options, a, v);
    if (other)
        *other = llround(v[1] * 1e9);
    return llround(v[0] * 1e9 / 2);
}

/* A stand-in for the operators' own counts: a known number per stack and
 * choice, and every call remembered so shapes can be checked. */
typedef struct macs_call {
    int32_t stack, choice;
    et_attn_shape s;
} macs_call;

static macs_call calls[64];
static int n_calls;

static double fake_macs(void *ctx, int32_t stack, int32_t choice, const et_attn_shape *s)
{
    (void)ctx;
    if (n_calls < 64)
        calls[n_calls++] = (macs_call){stack, choice, *s};
    return 1000.0 * (stack + 1) + 100.0 * choice;
}

static void expect_call(int i, int32_t stack, int32_t choice, int32_t heads, int32_t lq,
                        int32_t lk, int32_t d, int32_t mode)
{
    cr_assert_lt(i, n_calls, "attention_macs was called %d times", n_calls);
    const macs_call *c = &calls[i];
    cr_expect_eq(c->stack, stack, "call %d: stack %d", i, c->stack);
    cr_expect_eq(c->choice, choice, "call %d: choice %d", i, c->choice);
    cr_expect_eq(c->s.batch, 1, "call %d", i);
    cr_expect_eq(c->s.heads, heads, "call %d: heads %d", i, c->s.heads);
    cr_expect_eq(c->s.len_q, lq, "call %d: len_q %d", i, c->s.len_q);
    cr_expect_eq(c->s.len_k, lk, "call %d: len_k %d", i, c->s.len_k);
    cr_expect_eq(c->s.dim_qk, d, "call %d: dim_qk %d", i, c->s.dim_qk);
    cr_expect_eq(c->s.dim_v, d, "call %d: dim_v %d", i, c->s.dim_v);
    cr_expect_eq(c->s.mode, mode, "call %d: mode %d", i, c->s.mode);
}

/* ---------------------------------------------------------------- HAT */

typedef struct hat_stack {
    int e, layers;
    int ffn[ET_MAX_LAYERS], heads[ET_MAX_LAYERS], xheads[ET_MAX_LAYERS], connect[ET_MAX_LAYERS];
} hat_stack;

/* Arch text of a seq2seq model with relu FFNs and softmax everywhere. */
static void s2s_text(char *buf, size_t n, const hat_stack *enc, const hat_stack *dec)
{
    size_t o = (size_t)snprintf(buf, n, "enc(E=%d,L=%d)", enc->e, enc->layers);
    for (int l = 0; l < enc->layers; l++)
        o += (size_t)snprintf(buf + o, n - o,
                              "[ffn=%d,heads=%d,attn=softmax,block=standard,act=relu]",
                              enc->ffn[l], enc->heads[l]);
    o += (size_t)snprintf(buf + o, n - o, ";dec(E=%d,L=%d)", dec->e, dec->layers);
    for (int l = 0; l < dec->layers; l++)
        o += (size_t)snprintf(buf + o, n - o,
                              "[ffn=%d,heads=%d,attn=softmax,block=standard,act=relu,xheads=%d,"
                              "xattn=softmax,connect=%d]",
                              dec->ffn[l], dec->heads[l], dec->xheads[l], dec->connect[l]);
    cr_assert_lt(o, n);
}

static hat_stack uniform(int e, int layers, int ffn, int heads)
{
    hat_stack s = {.e = e, .layers = layers};
    for (int l = 0; l < layers; l++) {
        s.ffn[l] = ffn;
        s.heads[l] = s.xheads[l] = heads;
        s.connect[l] = 1;
    }
    return s;
}

typedef struct hat_row {
    const char *name;
    int e, f, heads;
    long long params, macs;
    const char *params_text, *flops_text;
} hat_row;

/* The integer counts are spec/costs.md's formulas evaluated by hand:
 * Base: 6 x 3152384 + 6 x 4204032 params; 6 x 95339520 + 6 x 127749120
 * + 30720 MACs. Big: 6 x 12596224 + 6 x 16796672; 6 x 379422720 +
 * 6 x 507156480 + 61440. */
static const hat_row hat_rows[] = {
    {"Transformer-Base", 512, 2048, 8, 44138496LL, 1338562560LL, "44.14", "2.677"},
    {"Transformer-Big", 1024, 4096, 16, 176357376LL, 5319536640LL, "176.36", "10.639"},
};

Test(hat, published_rows_to_the_printed_digits)
{
    for (size_t i = 0; i < sizeof hat_rows / sizeof hat_rows[0]; i++) {
        const hat_row *r = &hat_rows[i];
        char space_text[1024], text[8192];
        snprintf(space_text, sizeof space_text,
                 "encoder_embed_dim = %d\nencoder_layers = 6\nencoder_ffn_dim = %d\n"
                 "encoder_heads = %d\nencoder_activation = relu\n"
                 "decoder_embed_dim = %d\ndecoder_layers = 6\ndecoder_ffn_dim = %d\n"
                 "decoder_heads = %d\ndecoder_activation = relu\nqkv_dim = %d\nnorm = post\n",
                 r->e, r->f, r->heads, r->e, r->f, r->heads, r->e);
        et_space s = tu_space(space_text);
        hat_stack enc = uniform(r->e, 6, r->f, r->heads), dec = uniform(r->e, 6, r->f, r->heads);
        s2s_text(text, sizeof text, &enc, &dec);
        et_arch a = arch_of(&s, text);
        et_host host;
        et_host_init(&host, 1, 1, &s); /* no task, no attention service: HAT needs neither */
        double v[2];
        measure("params", &host, "convention = hat", &a, v);
        char printed[32];
        snprintf(printed, sizeof printed, "%.2f", v[0]);
        cr_expect_str_eq(printed, r->params_text, "%s params %s", r->name, printed);
        cr_expect_eq(llround(v[0] * 1e6), r->params, "%s params %.0f", r->name, v[0] * 1e6);
        cr_expect_eq(v[1], 0.0, "%s: HAT counts no embedding tables", r->name);
        measure("flops", &host, "convention = hat", &a, v);
        snprintf(printed, sizeof printed, "%.3f", v[0]);
        cr_expect_str_eq(printed, r->flops_text, "%s FLOPs %s", r->name, printed);
        cr_expect_eq(llround(v[0] * 1e9 / 2), r->macs, "%s MACs %.0f", r->name, v[0] * 1e9 / 2);

        /* a translation task changes nothing: 30/30 tokens, tables left out */
        et_task_info task = {.model_kind = ET_MODEL_KIND_SEQ2SEQ, .src_vocab = 32768,
                             .tgt_vocab = 32768, .max_src_len = 256, .max_tgt_len = 256};
        host.task = &task;
        cr_expect_eq(params_of(&host, "convention = hat", &a, NULL), r->params);
        cr_expect_eq(macs_of(&host, "convention = hat", &a, NULL), r->macs);
        /* etnas adds the one shared table (sinusoidal positions: no others) */
        long long embed;
        cr_expect_eq(params_of(&host, "share_embeddings = all\npositions = sinusoidal", &a,
                               &embed),
                     r->params + 32768LL * r->e, "%s", r->name);
        cr_expect_eq(embed, 32768LL * r->e);
    }
}

/* spec/costs.md 2, per layer, as printed there (L = 30, S = 30 x connect). */
static long long hat_enc_params(long long q, long long E, long long F)
{
    return 4 * q * E + 3 * q + E + 2 * E * F + F + E + 4 * E;
}

static long long hat_dec_params(long long q, long long Ed, long long Ee, long long F)
{
    return (4 * q * Ed + 3 * q + Ed) + (2 * q * Ed + 2 * q * Ee + 3 * q + Ed) +
           (2 * Ed * F + F + Ed) + 6 * Ed;
}

static long long hat_enc_macs(long long q, long long E, long long F)
{
    const long long L = 30;
    return L * (4 * q * E + 2 * E * F) + 2 * L * L * q + L * q + 2 * L * E;
}

static long long hat_dec_macs(long long q, long long Ed, long long Ee, long long F,
                              long long connect)
{
    const long long L = 30, S = 30 * connect;
    return 4 * L * q * Ed + 2 * L * L * q + L * q + 2 * L * q * Ed + 2 * S * q * Ee +
           2 * L * S * q + L * q + 2 * L * Ed * F + 3 * L * Ed;
}

#define HAT_SPACE                                                                             \
    "encoder_embed_dim = 640, 512\nencoder_layers = 6\nencoder_ffn_dim = 3072, 2048, 1024\n"  \
    "encoder_heads = 8, 4\nencoder_activation = relu\n"                                       \
    "decoder_embed_dim = 640, 512\ndecoder_layers = 1..6\n"                                   \
    "decoder_ffn_dim = 3072, 2048, 1024\ndecoder_heads = 8, 4\ndecoder_cross_heads = 8, 4\n" \
    "decoder_connect = 1, 2, 3\ndecoder_activation = relu\nqkv_dim = 512\nnorm = post\n"

Test(hat, sub_transformer_against_the_formulas)
{
    et_space s = tu_space(HAT_SPACE);
    hat_stack enc = {640, 6, {3072, 2048, 1024, 3072, 1024, 2048}, {8, 4, 8, 4, 8, 4}, {0}, {0}};
    hat_stack dec = {512, 3, {1024, 3072, 2048}, {4, 8, 4}, {8, 4, 4}, {1, 2, 3}};
    char text[8192];
    s2s_text(text, sizeof text, &enc, &dec);
    et_arch a = arch_of(&s, text);
    long long params = 0, macs = 30 * 640 + 30 * 512; /* the embedding scales */
    for (int l = 0; l < enc.layers; l++) {
        params += hat_enc_params(512, 640, enc.ffn[l]);
        macs += hat_enc_macs(512, 640, enc.ffn[l]);
    }
    for (int l = 0; l < dec.layers; l++) {
        params += hat_dec_params(512, 512, 640, dec.ffn[l]);
        macs += hat_dec_macs(512, 512, 640, dec.ffn[l], dec.connect[l]);
    }
    et_host host;
    et_host_init(&host, 1, 1, &s);
    cr_expect_eq(params_of(&host, "convention = hat", &a, NULL), params);
    cr_expect_eq(macs_of(&host, "convention = hat", &a, NULL), macs);

    /* heads only re-partition the fixed qkv width: the counts stay */
    for (int l = 0; l < enc.layers; l++)
        enc.heads[l] = 12 - enc.heads[l];
    for (int l = 0; l < dec.layers; l++) {
        dec.heads[l] = 12 - dec.heads[l];
        dec.xheads[l] = 12 - dec.xheads[l];
    }
    s2s_text(text, sizeof text, &enc, &dec);
    et_arch b = arch_of(&s, text);
    cr_expect_eq(params_of(&host, "convention = hat", &b, NULL), params);
    cr_expect_eq(macs_of(&host, "convention = hat", &b, NULL), macs);

    /* connect moves FLOPs (S grows) but not parameters */
    dec.connect[0] = 3;
    s2s_text(text, sizeof text, &enc, &dec);
    et_arch c = arch_of(&s, text);
    cr_expect_eq(params_of(&host, "convention = hat", &c, NULL), params);
    cr_expect_eq(macs_of(&host, "convention = hat", &c, NULL),
                 macs - hat_dec_macs(512, 512, 640, 1024, 1) +
                     hat_dec_macs(512, 512, 640, 1024, 3));
}

/* ---------------------------------------------------------------- engine */

enum { IN = 6, LEN = 4, C = 3 };

static const et_attn_impl ref_impl[1] = {{&attn_ref_vtable, NULL}};

/* Floats of the engine's bound slices: all of them, and the tables'. */
static void engine_params(const et_space *s, const et_arch *a, long long *all, long long *tables)
{
    et_host host;
    et_host_init(&host, 5, 1, s);
    et_model_config cfg = {.input_dim = IN, .max_len = LEN, .num_classes = C, .max_batch = 1,
                           .enc_attention = ref_impl};
    et_model *m;
    char *err = NULL;
    cr_assert_eq(et_model_create(s, &cfg, &host, &m, &err), 0, "%s", err);
    cr_assert_eq(et_model_bind(m, a, 1, LEN, &err), 0, "%s", err);
    int32_t n;
    const et_tensor *t = et_model_tensors(m, &n);
    *all = *tables = 0;
    for (int32_t i = 0; i < n; i++) {
        long long k = (long long)t[i].bound_rows * t[i].bound_cols;
        *all += k;
        if (!strncmp(t[i].name, "embed.", 6) || !strcmp(t[i].name, "cls") ||
            !strcmp(t[i].name, "pos") || !strncmp(t[i].name, "head.", 5))
            *tables += k;
    }
    et_model_destroy(m);
}

#define ENC_SPACE(rule, norm, pooling)                                                     \
    "encoder_embed_dim = 8, 12\nencoder_layers = 1..5\nencoder_ffn_dim = 10, 16\n"         \
    "encoder_heads = 1, 2\nencoder_block = standard, attention-only, ffn-only, identity\n" \
    rule "\nnorm = " norm "\npooling = " pooling "\n"

#define ENC_LAYER(ffn, heads, block) \
    "[ffn=" #ffn ",heads=" #heads ",attn=softmax,block=" block ",act=gelu]"

Test(params, encoder_classifier_equals_the_engine)
{
    static const char *const rules[] = {"head_dim = 4", "qkv_dim = 8"};
    static const char *const norms[] = {"pre", "post"};
    static const char *const poolings[] = {"cls", "mean"};
    et_task_info task = {.model_kind = ET_MODEL_KIND_ENCODER, .num_classes = C, .input_dim = IN,
                         .max_src_len = LEN};
    int compared = 0;
    for (int r = 0; r < 2; r++)
        for (int nm = 0; nm < 2; nm++) {
            long long by_pooling[2];
            for (int pl = 0; pl < 2; pl++) {
                char text[1024], other[1024], opt[64];
                snprintf(text, sizeof text, ENC_SPACE("%s", "%s", "%s"), rules[r], norms[nm],
                         poolings[pl]);
                snprintf(other, sizeof other, ENC_SPACE("%s", "%s", "%s"), rules[r], norms[nm],
                         poolings[1 - pl]);
                et_space s = tu_space(text), s_other = tu_space(other);
                snprintf(opt, sizeof opt, "pooling = %s", poolings[pl]);
                /* every block type, a slice of the widths; then random archs */
                et_arch archs[9];
                archs[0] = arch_of(&s, "enc(E=8,L=5)" ENC_LAYER(10, 2, "standard")
                                       ENC_LAYER(16, 1, "attention-only")
                                       ENC_LAYER(10, 2, "ffn-only") ENC_LAYER(16, 1, "identity")
                                       ENC_LAYER(16, 1, "standard"));
                et_rng rng = et_rng_from_seed(100 + (uint64_t)(4 * r + 2 * nm + pl));
                for (int k = 1; k < 9; k++)
                    et_arch_sample(&s, &rng, &archs[k]);
                for (int k = 0; k < 9; k++) {
                    long long all, tables, embed;
                    engine_params(&s, &archs[k], &all, &tables);
                    et_host host;
                    et_host_init(&host, 1, 1, &s);
                    host.task = &task;
                    cr_expect_eq(params_of(&host, "", &archs[k], &embed), all,
                                 "%s, %s, %s, arch %d", rules[r], norms[nm], poolings[pl], k);
                    cr_expect_eq(embed, tables, "%s, %s, %s, arch %d", rules[r], norms[nm],
                                 poolings[pl], k);
                    /* the option overrides a space of the other pooling */
                    et_host_init(&host, 1, 1, &s_other);
                    host.task = &task;
                    cr_expect_eq(params_of(&host, opt, &archs[k], NULL), all);
                    if (k == 0)
                        by_pooling[pl] = all;
                    compared++;
                }
            }
            /* a class token is one vector and one more position row */
            cr_expect_eq(by_pooling[0] - by_pooling[1], 2 * 8);
        }
    cr_expect_eq(compared, 72);
}

Test(params, primer_dconv_equals_the_engine)
{
    et_space s = tu_space(ENC_SPACE("head_dim = 4\nprimer_dconv = true", "pre", "cls"));
    et_space plain = tu_space(ENC_SPACE("head_dim = 4", "pre", "cls"));
    et_task_info task = {.model_kind = ET_MODEL_KIND_ENCODER, .num_classes = C, .input_dim = IN,
                         .max_src_len = LEN};
    et_rng rng = et_rng_from_seed(5);
    for (int k = 0; k < 6; k++) {
        et_arch a;
        et_arch_sample(&s, &rng, &a);
        long long all, tables, embed, all_plain, tables_plain;
        engine_params(&s, &a, &all, &tables);
        engine_params(&plain, &a, &all_plain, &tables_plain);
        cr_assert_gt(all, all_plain, "arch %d: the convolution adds parameters", k);
        et_host host;
        et_host_init(&host, 1, 1, &s);
        host.task = &task;
        cr_expect_eq(params_of(&host, "", &a, &embed), all, "arch %d", k);
    }
}

Test(params, conv_blocks_equal_the_engine)
{
    et_space s = tu_space("encoder_embed_dim = 8, 12\nencoder_layers = 1..4\n"
                          "encoder_ffn_dim = 10, 16\nencoder_heads = 1, 2\n"
                          "encoder_block = standard, conv, ffn-only\nencoder_conv_kernel = 3, 7\n"
                          "head_dim = 4\nnorm = pre\npooling = cls\n");
    et_task_info task = {.model_kind = ET_MODEL_KIND_ENCODER, .num_classes = C, .input_dim = IN,
                         .max_src_len = LEN};
    et_rng rng = et_rng_from_seed(9);
    int convs = 0;
    for (int k = 0; k < 12; k++) {
        et_arch a;
        et_arch_sample(&s, &rng, &a);
        for (int32_t l = 0; l < a.enc.layers; l++)
            convs += a.enc.layer[l].block == ET_BLOCK_CONV;
        long long all, tables, embed;
        engine_params(&s, &a, &all, &tables);
        et_host host;
        et_host_init(&host, 1, 1, &s);
        host.task = &task;
        cr_expect_eq(params_of(&host, "", &a, &embed), all, "arch %d", k);
    }
    cr_assert_gt(convs, 3, "the samples hold conv layers");
}

/* ---------------------------------------------------------------- by hand */

/* Encoder classifier: input_dim 3, 2 inputs (+ class token: T = 3), 5
 * classes; e = 4, q = 4 (2 heads of head_dim 2), f = 6, pre-norm. */
#define TINY_ENC                                                                              \
    "encoder_embed_dim = 4\nencoder_layers = 4\nencoder_ffn_dim = 6\nencoder_heads = 2\n"     \
    "encoder_attention = softmax, cosformer\n"                                                \
    "encoder_block = standard, attention-only, ffn-only, identity\nhead_dim = 2\nnorm = pre\n"
#define TINY_ENC_ARCH                                                              \
    "enc(E=4,L=4)[ffn=6,heads=2,attn=cosformer,block=standard,act=gelu]"           \
    "[ffn=6,heads=2,attn=softmax,block=attention-only,act=gelu]"                   \
    "[ffn=6,heads=2,attn=softmax,block=ffn-only,act=gelu]"                         \
    "[ffn=6,heads=2,attn=cosformer,block=identity,act=gelu]"

Test(flops, encoder_classifier_by_hand)
{
    et_space s = tu_space(TINY_ENC);
    et_arch a = arch_of(&s, TINY_ENC_ARCH);
    et_task_info task = {.model_kind = ET_MODEL_KIND_ENCODER, .num_classes = 5, .input_dim = 3,
                         .max_src_len = 2};
    et_host host;
    et_host_init(&host, 1, 1, &s);
    host.task = &task;
    host.attention_macs = fake_macs;
    long long other;
    n_calls = 0;
    /* patch 2*3*4 = 24
     * layer 0: LN 3*4 + QKV 3*4*12 + proj 3*4*4 + LN 12 + FC1 3*4*6 + FC2 72 = 360
     * layer 1: 12 + 144 + 48 = 204;  layer 2: 12 + 72 + 72 = 156;  layer 3: 0
     * final LN 12, head 4*5 = 20;  operators: cosformer 1100 + softmax 1000 */
    cr_expect_eq(macs_of(&host, "", &a, &other), 24 + 360 + 204 + 156 + 12 + 20 + 1100 + 1000);
    /* patch bias 8, positions 12;
     * layer 0: LN 4*12 + QKV bias 36 + proj bias 12 + residual 12 + LN 48 + FC1 bias 18
     *          + activation 18 + FC2 bias 12 + residual 12 = 216
     * layer 1: 48 + 36 + 12 + 12 = 108;  layer 2: 48 + 18 + 18 + 12 + 12 = 108
     * final LN 48, head bias 5 */
    cr_expect_eq(other, 8 + 12 + 216 + 108 + 108 + 48 + 5);
    cr_expect_eq(n_calls, 2);
    expect_call(0, 0, 1, 2, 3, 3, 2, ET_ATTN_MODE_BIDIRECTIONAL);
    expect_call(1, 0, 0, 2, 3, 3, 2, ET_ATTN_MODE_BIDIRECTIONAL);

    /* mean pooling: T = 2.  patch 24; layer 0: 8 + 96 + 32 + 8 + 48 + 48 = 240;
     * layer 1: 8 + 96 + 32 = 136; layer 2: 8 + 48 + 48 = 104; final LN 8; head 20 */
    n_calls = 0;
    cr_expect_eq(macs_of(&host, "pooling = mean", &a, &other),
                 24 + 240 + 136 + 104 + 8 + 20 + 1100 + 1000);
    /* patch bias 8, positions 8; layer 0: 32 + 24 + 8 + 8 + 32 + 12 + 12 + 8 + 8 = 144;
     * layer 1: 72; layer 2: 32 + 12 + 12 + 8 + 8 = 72; final LN 32;
     * pooling 2*4 adds + 4 scalings; head bias 5 */
    cr_expect_eq(other, 8 + 8 + 144 + 72 + 72 + 32 + 12 + 5);
    expect_call(0, 0, 1, 2, 2, 2, 2, ET_ATTN_MODE_BIDIRECTIONAL);

    /* src_len: fewer inputs than the task's maximum */
    n_calls = 0;
    macs_of(&host, "src_len = 1", &a, NULL);
    expect_call(0, 0, 1, 2, 2, 2, 2, ET_ATTN_MODE_BIDIRECTIONAL);
}

/* Seq2seq: e_enc 4 (2 layers, 2 heads: q 4, f 8), e_dec 6 (1 layer, 1 self
 * head: q 2; 2 cross heads: qx 4; f 5), head_dim 2, post-norm, connect 2;
 * vocabularies 11 / 13, at most 9 positions each. */
#define TINY_S2S                                                                              \
    "encoder_embed_dim = 4\nencoder_layers = 2\nencoder_ffn_dim = 8\nencoder_heads = 2\n"     \
    "decoder_embed_dim = 6\ndecoder_layers = 1\ndecoder_ffn_dim = 5\ndecoder_heads = 1\n"     \
    "decoder_cross_heads = 2\ndecoder_connect = 2\nhead_dim = 2\nnorm = post\n"
#define TINY_S2S_ARCH                                                                     \
    "enc(E=4,L=2)[ffn=8,heads=2,attn=softmax,block=standard,act=gelu]"                    \
    "[ffn=8,heads=2,attn=softmax,block=standard,act=gelu];"                               \
    "dec(E=6,L=1)[ffn=5,heads=1,attn=softmax,block=standard,act=gelu,xheads=2,xattn=softmax," \
    "connect=2]"

Test(flops, seq2seq_by_hand)
{
    et_space s = tu_space(TINY_S2S);
    et_arch a = arch_of(&s, TINY_S2S_ARCH);
    et_task_info task = {.model_kind = ET_MODEL_KIND_SEQ2SEQ, .src_vocab = 11, .tgt_vocab = 13,
                         .max_src_len = 9, .max_tgt_len = 9};
    et_host host;
    et_host_init(&host, 1, 1, &s);
    host.task = &task;
    host.attention_macs = fake_macs;
    long long other;
    n_calls = 0;
    /* 5 source, 4 target tokens; S = 2 * 5 = 10.
     * encoder: scale 5*4 = 20; per layer QKV 5*4*12 + proj 5*4*4 + LN 20 + FC1 5*4*8
     *          + FC2 160 + LN 20 = 680, two layers
     * decoder: scale 4*6 = 24; self QKV 4*6*6 + proj 4*2*6 + LN 24 = 216;
     *          cross Q 4*6*4 + KV 2*10*4*4 + out 4*4*6 + LN 24 = 536; FFN 2*4*6*5 + LN 24 = 264
     * output projection 4*6*13 = 312; operators 2 x 1000 + 2000 + 3000 */
    cr_expect_eq(macs_of(&host, "src_len = 5\ntgt_len = 4", &a, &other),
                 20 + 2 * 680 + 24 + 216 + 536 + 264 + 312 + 2 * 1000 + 2000 + 3000);
    /* encoder: positions 20; per layer LN 80 + QKV bias 60 + proj bias and residual 40
     *          + LN 80 + FC1 bias 40 + activation 40 + FC2 bias and residual 40 = 380
     * decoder: positions 24; self 96 + 24 + 48 = 168; cross 96 + 16 + 80 + 48 = 240;
     *          FFN 96 + 20 + 20 + 48 = 184 */
    cr_expect_eq(other, 20 + 2 * 380 + 24 + 168 + 240 + 184);
    cr_expect_eq(n_calls, 4);
    expect_call(0, 0, 0, 2, 5, 5, 2, ET_ATTN_MODE_BIDIRECTIONAL);
    expect_call(1, 0, 0, 2, 5, 5, 2, ET_ATTN_MODE_BIDIRECTIONAL);
    expect_call(2, 1, 0, 1, 4, 4, 2, ET_ATTN_MODE_CAUSAL);
    expect_call(3, 2, 0, 2, 4, 10, 2, ET_ATTN_MODE_CROSS);

    /* default lengths: 30/30, or the task's maxima when shorter */
    n_calls = 0;
    macs_of(&host, "", &a, NULL);
    expect_call(0, 0, 0, 2, 9, 9, 2, ET_ATTN_MODE_BIDIRECTIONAL);
    expect_call(3, 2, 0, 2, 9, 18, 2, ET_ATTN_MODE_CROSS);
    task.max_src_len = task.max_tgt_len = 256;
    n_calls = 0;
    macs_of(&host, "", &a, NULL);
    expect_call(0, 0, 0, 2, 30, 30, 2, ET_ATTN_MODE_BIDIRECTIONAL);
    expect_call(2, 1, 0, 1, 30, 30, 2, ET_ATTN_MODE_CAUSAL);
    expect_call(3, 2, 0, 2, 30, 60, 2, ET_ATTN_MODE_CROSS);
}

Test(params, seq2seq_by_hand)
{
    et_space s = tu_space(TINY_S2S);
    et_arch a = arch_of(&s, TINY_S2S_ARCH);
    et_task_info task = {.model_kind = ET_MODEL_KIND_SEQ2SEQ, .src_vocab = 11, .tgt_vocab = 13,
                         .max_src_len = 9, .max_tgt_len = 9};
    et_host host;
    et_host_init(&host, 1, 1, &s);
    host.task = &task;
    /* encoder layer: LN 8 + QKV 48 + 12 + proj 16 + 4 + LN 8 + FC1 32 + 8 + FC2 32 + 4 = 172
     * decoder layer: self 12 + 36 + 6 + 12 + 6 = 72; cross 12 + 24 + 4 + 32 + 8 + 24 + 6
     *                = 110; FFN 12 + 30 + 5 + 30 + 6 = 83
     * tables: source 11*4 + positions 9*4 + target 13*6 + positions 9*6 + output 13*6 */
    const long long body = 2 * 172 + 72 + 110 + 83, tables = 44 + 36 + 78 + 54 + 78;
    long long embed;
    cr_expect_eq(params_of(&host, "", &a, &embed), body + tables);
    cr_expect_eq(embed, tables);
    cr_expect_eq(params_of(&host, "share_embeddings = decoder", &a, &embed), body + tables - 78);
    cr_expect_eq(embed, tables - 78);
    cr_expect_eq(params_of(&host, "positions = sinusoidal", &a, &embed), body + tables - 90);
    cr_expect_eq(embed, tables - 90);
    cr_expect_eq(params_of(&host, "convention = hat", &a, &embed), body);
    cr_expect_eq(embed, 0);
    measure_fails("params", &host, "share_embeddings = all", &a, "one vocabulary");
    /* one vocabulary of 13: a single table of max(4, 6) columns */
    task.src_vocab = 13;
    cr_expect_eq(params_of(&host, "share_embeddings = all", &a, &embed), body + 78 + 36 + 54);
    cr_expect_eq(embed, 78 + 36 + 54);
}

/* Decoder-only: e 4, q 4 (2 heads), f 8, pre-norm, 10 tokens, 6 positions. */
Test(proxies, decoder_only_by_hand)
{
    et_space s = tu_space("decoder_embed_dim = 4\ndecoder_layers = 1\ndecoder_ffn_dim = 8\n"
                      "decoder_heads = 2\nhead_dim = 2\nnorm = pre\n");
    et_arch a = arch_of(&s, "dec(E=4,L=1)[ffn=8,heads=2,attn=softmax,block=standard,act=gelu]");
    et_task_info task = {.model_kind = ET_MODEL_KIND_DECODER, .src_vocab = 10, .tgt_vocab = 10,
                         .max_src_len = 6};
    et_host host;
    et_host_init(&host, 1, 1, &s);
    host.task = &task;
    host.attention_macs = fake_macs;
    /* layer 172 (as the seq2seq encoder layer), final LN 8;
     * tables: input 40, positions 24, output 40 */
    long long embed;
    cr_expect_eq(params_of(&host, "", &a, &embed), 172 + 8 + 40 + 24 + 40);
    cr_expect_eq(embed, 104);
    cr_expect_eq(params_of(&host, "share_embeddings = decoder", &a, &embed), 172 + 8 + 24 + 40);
    cr_expect_eq(embed, 64);
    /* scale 6*4 + LN 24 + QKV 6*4*12 + proj 6*4*4 + LN 24 + FC1 6*4*8 + FC2 192
     * + final LN 24 + output 6*4*10 + operator 2000 */
    n_calls = 0;
    cr_expect_eq(macs_of(&host, "", &a, NULL),
                 24 + 24 + 288 + 96 + 24 + 192 + 192 + 24 + 240 + 2000);
    expect_call(0, 1, 0, 2, 6, 6, 2, ET_ATTN_MODE_CAUSAL);
    /* hat: the layer, final LN and scale, no table or output projection */
    host.task = NULL;
    cr_expect_eq(params_of(&host, "convention = hat", &a, NULL), 172 + 8);
    cr_expect_eq(macs_of(&host, "convention = hat\nsrc_len = 6", &a, NULL),
                 (4 * 6 * 4 * 4 + 2 * 36 * 4 + 6 * 4 + 24) + (2 * 6 * 4 * 8 + 24) + 24 + 24);
}

/* ---------------------------------------------------------------- errors */

Test(proxies, descriptors)
{
    static const char *const names[] = {"params", "flops"};
    static const char *const figures[2][3] = {{"params_m", "params_embed_m", NULL},
                                              {"flops_g", "other_ops_g", NULL}};
    for (int i = 0; i < 2; i++) {
        et_space s = tu_space(TINY_ENC);
        et_host host;
        et_host_init(&host, 1, 1, &s);
        proxy p;
        char *err = NULL;
        cr_assert_eq(proxy_open(&p, names[i], &host, "", &err), 0, "%s", err);
        const et_plugin *pl = et_registry_find(&p.reg, ET_PLUGIN_KIND_PROXY, names[i]);
        cr_expect_eq(pl->desc->abi_version, ET_ABI_VERSION);
        for (int k = 0; k < 3; k++) {
            if (!figures[i][k]) {
                cr_expect_null(p.vt->figures[k]);
                break;
            }
            cr_expect_str_eq(p.vt->figures[k], figures[i][k]);
        }
        proxy_close(&p);
    }
}

Test(proxies, option_and_host_errors)
{
    et_space enc = tu_space(TINY_ENC), s2s = tu_space(TINY_S2S);
    et_arch a = arch_of(&enc, TINY_ENC_ARCH), b = arch_of(&s2s, TINY_S2S_ARCH);
    et_task_info task = {.model_kind = ET_MODEL_KIND_ENCODER, .num_classes = 5, .input_dim = 3,
                         .max_src_len = 2};
    et_host host;
    et_host_init(&host, 1, 1, &enc);
    /* declared choices and ranges are the host's to check */
    measure_fails("params", &host, "convention = torchprofile", &a, "etnas|hat");
    measure_fails("flops", &host, "src_len = -1", &a, "src_len");
    /* etnas needs a task; hat does not, except for a classifier's length */
    measure_fails("params", &host, "", &a, "task");
    measure_fails("flops", &host, "", &a, "task");
    measure_fails("flops", &host, "convention = hat", &a, "src_len");
    double v[2];
    measure("flops", &host, "convention = hat\nsrc_len = 2", &a, v);
    cr_expect_gt(v[0], 0);
    /* etnas FLOPs need the operators' counts */
    host.task = &task;
    measure_fails("flops", &host, "", &a, "attention_macs");
    host.attention_macs = fake_macs;
    measure_fails("flops", &host, "src_len = 3", &a, "longer than the task");
    measure_fails("flops", &host, "tgt_len = 3", &a, "encoder-decoder");
    measure_fails("params", &host, "share_embeddings = all", &a, "needs a decoder");
    /* the task must describe the space's kind of model */
    task.model_kind = ET_MODEL_KIND_SEQ2SEQ;
    measure_fails("params", &host, "", &a, "encoder classifier");
    task.model_kind = ET_MODEL_KIND_ENCODER;
    task.num_classes = 0;
    measure_fails("flops", &host, "", &a, "num_classes");
    task.num_classes = 5;
    /* an arch of another space */
    measure_fails("params", &host, "", &b, "params:");
    /* pooling is for classifiers */
    et_host_init(&host, 1, 1, &s2s);
    measure_fails("flops", &host, "pooling = mean\nconvention = hat", &b, "pooling");
    measure_fails("params", &host, "pooling = cls", &b, "pooling");
    /* no space at all */
    et_host_init(&host, 1, 1, NULL);
    measure_fails("params", &host, "convention = hat", &a, "space");
}
