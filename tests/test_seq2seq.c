/* The supernet engine's token models: encoder-decoder (cross-attention to
 * the last 1..3 encoder layers, padded sources and targets, tied and shared
 * embeddings) and decoder-only. Whole-model gradients by finite differences
 * (L2 error <= 3e-2 relative to max(|g_fd|, 0.05) per tensor, float
 * kernels, h = 1e-3, losses summed in double: below 0.05 the check is
 * absolute, where float rounding of the summed token loss dominates); incremental decoding with the real attention plugins
 * equal to the teacher-forced forward at every step (1e-4 absolute on
 * log-probabilities), also with several beams and a reorder. Soft choices
 * (block and operator mixtures): parameter gradients as above and weight
 * gradients by finite differences (2e-2 relative, h = 1e-3); one-hot
 * weights give the discrete arch's loss (1e-4 relative). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_ref.h"
#include "fdcheck.h"
#include "hostimpl.h"
#include "inifile.h"
#include "model.h"
#include "options.h"
#include "plugin.h"
#include "space.h"
#include "testutil.h"

static const et_attn_impl ref_impl[2] = {{&attn_ref_vtable, NULL}, {&attn_ref_vtable, NULL}};

enum { B = 3, S = 5, T = 4, V = 9 };
#ifndef FD_H
#define FD_H 1e-3f
#endif

#define S2S_SPACE(norm)                                                                         \
    "encoder_embed_dim = 8, 6\nencoder_layers = 3, 2\nencoder_ffn_dim = 10, 6\n"              \
    "encoder_heads = 2, 1\nencoder_attention = a, b\n"                                          \
    "encoder_block = standard, attention-only, ffn-only, identity\n"                           \
    "decoder_embed_dim = 8, 4\ndecoder_layers = 3, 2\ndecoder_ffn_dim = 12, 4\n"                \
    "decoder_heads = 2, 1\ndecoder_attention = a, b\ndecoder_cross_heads = 2, 1\n"              \
    "decoder_cross_attention = a, b\ndecoder_connect = 1, 2, 3\n"                               \
    "decoder_block = standard, attention-only, ffn-only, identity\n"                           \
    "decoder_activation = relu, gelu, squared_relu\nhead_dim = 4\nnorm = " norm "\n"

/* conv blocks beside attention in both stacks */
#define S2S_CONV_SPACE(norm)                                                                    \
    "encoder_embed_dim = 8, 6\nencoder_layers = 3, 2\nencoder_ffn_dim = 10, 6\n"              \
    "encoder_heads = 2, 1\nencoder_attention = a, b\nencoder_block = standard, conv\n"         \
    "encoder_conv_kernel = 3, 5\n"                                                              \
    "decoder_embed_dim = 8, 4\ndecoder_layers = 3, 2\ndecoder_ffn_dim = 12, 4\n"                \
    "decoder_heads = 2, 1\ndecoder_attention = a, b\ndecoder_cross_heads = 2, 1\n"              \
    "decoder_cross_attention = a, b\ndecoder_connect = 1, 2\ndecoder_block = conv, standard\n" \
    "decoder_conv_kernel = 3, 7\nhead_dim = 4\nnorm = " norm "\n"

#define LM_SPACE                                                                               \
    "decoder_embed_dim = 8, 4\ndecoder_layers = 3\ndecoder_ffn_dim = 12, 4\n"                   \
    "decoder_heads = 2, 1\ndecoder_attention = a, b\nhead_dim = 4\nnorm = pre\n"

typedef struct fixture {
    et_model *m;
    et_batch batch;
    int32_t src[B * S], in[B * T], out[B * T], src_lens[B], tgt_lens[B];
} fixture;

static et_host host;

static et_model *make(const et_space *s, int share, int positions, const et_attn_impl *impl,
                      float dropout, uint64_t seed)
{
    et_host_init(&host, seed, 1, s);
    et_model_config cfg = {0};
    cfg.max_len = S;
    cfg.max_batch = B;
    cfg.dropout = dropout;
    cfg.activation_dropout = dropout;
    cfg.label_smoothing = 0.1f;
    cfg.enc_attention = impl;
    cfg.dec_attention = impl;
    cfg.cross_attention = impl;
    cfg.src_vocab = V;
    cfg.tgt_vocab = V;
    cfg.max_tgt_len = T;
    cfg.positions = positions;
    cfg.share_embeddings = share;
    et_model *m;
    char *err = NULL;
    cr_assert_eq(et_model_create(s, &cfg, &host, &m, &err), 0, "%s", err);
    et_model_init(m, seed);
    return m;
}

static void fill_batch(fixture *f, uint64_t seed, int padded)
{
    et_rng r = et_rng_from_seed(seed);
    for (int i = 0; i < B; i++) {
        f->src_lens[i] = padded ? S - i : S;
        f->tgt_lens[i] = padded ? T - i : T;
        for (int t = 0; t < S; t++)
            f->src[i * S + t] = t < f->src_lens[i] ? 4 + (int32_t)et_rng_below(&r, V - 4) : 1;
        for (int t = 0; t < T; t++) {
            f->out[i * T + t] = t < f->tgt_lens[i] ? 4 + (int32_t)et_rng_below(&r, V - 4) : 1;
            f->in[i * T + t] = t == 0 ? 0 : f->out[i * T + t - 1];
        }
    }
    memset(&f->batch, 0, sizeof f->batch);
    f->batch.size = B;
    f->batch.src_len = S;
    f->batch.tgt_len = T;
    f->batch.src_tok = f->src;
    f->batch.src_lens = f->src_lens;
    f->batch.tgt_in = f->in;
    f->batch.tgt_out = f->out;
    f->batch.tgt_lens = f->tgt_lens;
}

static double loss_of(void *p)
{
    fixture *f = p;
    double loss;
    char *err = NULL;
    cr_assert_eq(et_model_forward(f->m, &f->batch, 1, 7, 0, &loss, NULL, &err), 0, "%s", err);
    return loss;
}

/* Every bound tensor's gradient against central differences. */
static void check_gradients(fixture *f, const et_arch *a, const char *what)
{
    char *err = NULL;
    cr_assert_eq(et_model_bind_lengths(f->m, a, B, S, T, &err), 0, "%s", err);
    int64_t n;
    float *p = et_model_params(f->m, &n);
    et_rng r = et_rng_from_seed(13);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(0.4 * et_rng_normal(&r));
    memset(et_model_grads(f->m, NULL), 0, sizeof(float) * (size_t)n);
    loss_of(f);
    cr_assert_eq(et_model_backward(f->m, 1.0f, &err), 0, "%s", err);
    float *g = et_model_grads(f->m, NULL);
    int32_t nt;
    const et_tensor *t = et_model_tensors(f->m, &nt);
    int checked = 0;
    for (int32_t i = 0; i < nt; i++) {
        if (!t[i].bound_rows)
            continue;
        int64_t cnt = (int64_t)t[i].bound_rows * t[i].bound_cols;
        int64_t stride = cnt > 16 ? cnt / 16 : 1;
        double num = 0, den = 0;
        for (int64_t j = 0; j < cnt; j += stride) {
            int64_t off = t[i].offset + (j / t[i].bound_cols) * t[i].cols + j % t[i].bound_cols;
            float keep = p[off];
            p[off] = keep + FD_H;
            double lp = loss_of(f);
            p[off] = keep - FD_H;
            double lm = loss_of(f);
            p[off] = keep;
            double fd = (lp - lm) / (2.0 * FD_H);
            num += (fd - g[off]) * (fd - g[off]);
            den += fd * fd;
        }
        double rel = sqrt(num) / fmax(sqrt(den), 0.05);
        if (getenv("FD_VERBOSE"))
            fprintf(stderr, "%g %s\n", rel, t[i].name);
        cr_assert_lt(rel, 3e-2, "%s: tensor %s relative error %g (|g| %g)", what, t[i].name, rel,
                     sqrt(den));
        checked++;
    }
    cr_assert_gt(checked, 6, "%s", what);
    for (int32_t i = 0; i < nt; i++)
        for (int32_t rr = 0; rr < t[i].rows; rr++)
            for (int32_t cc = 0; cc < t[i].cols; cc++)
                if (rr >= t[i].bound_rows || cc >= t[i].bound_cols)
                    cr_assert_eq(g[t[i].offset + (int64_t)rr * t[i].cols + cc], 0.0f,
                                 "%s: gradient outside the bound slice of %s", what, t[i].name);
}

static void gradients_over_samples(const char *space_text, int share, int positions)
{
    et_space s = tu_space(space_text);
    fixture f;
    f.m = make(&s, share, positions, ref_impl, 0.1f, 21);
    fill_batch(&f, 5, 1);
    et_arch a;
    et_arch_largest(&s, &a);
    check_gradients(&f, &a, "largest");
    et_rng r = et_rng_from_seed(3);
    int connects[4] = {0};
    for (int k = 0; k < 6; k++) {
        et_arch_sample(&s, &r, &a);
        char text[1024], what[1100];
        et_arch_format(&s, &a, text, sizeof text);
        snprintf(what, sizeof what, "sample %d: %s", k, text);
        for (int32_t l = 0; l < a.dec.layers; l++)
            connects[a.dec.layer[l].connect]++;
        check_gradients(&f, &a, what);
    }
    et_model_destroy(f.m);
}

Test(seq2seq, gradients_pre_norm_sinusoidal_tied)
{
    gradients_over_samples(S2S_SPACE("pre"), 0, ET_POSITIONS_SINUSOIDAL);
}

Test(seq2seq, gradients_post_norm_learned_shared)
{
    gradients_over_samples(S2S_SPACE("post"), 1, ET_POSITIONS_LEARNED);
}

Test(seq2seq, gradients_with_connect_three_everywhere)
{
    et_space s = tu_space(S2S_SPACE("pre"));
    fixture f;
    f.m = make(&s, 1, ET_POSITIONS_SINUSOIDAL, ref_impl, 0.0f, 4);
    fill_batch(&f, 9, 1);
    et_arch a;
    et_arch_largest(&s, &a);
    for (int32_t l = 0; l < a.dec.layers; l++) {
        a.dec.layer[l].connect = 3 - l % 3;
        a.dec.layer[l].cross_attention = l % 2;
    }
    a.enc.layer[1].block = ET_BLOCK_IDENTITY;
    check_gradients(&f, &a, "connect 3, 2, 1 with an identity encoder layer");
    et_model_destroy(f.m);
}

Test(seq2seq, decoder_only_gradients)
{
    et_space s = tu_space(LM_SPACE);
    cr_assert_eq(s.kind, ET_MODEL_KIND_DECODER);
    fixture f;
    f.m = make(&s, 0, ET_POSITIONS_SINUSOIDAL, ref_impl, 0.1f, 8);
    fill_batch(&f, 2, 1);
    f.batch.src_tok = NULL;
    f.batch.src_lens = NULL;
    f.batch.src_len = 0;
    et_arch a;
    et_rng r = et_rng_from_seed(1);
    for (int k = 0; k < 3; k++) {
        et_arch_sample(&s, &r, &a);
        check_gradients(&f, &a, "decoder-only sample");
    }
    et_model_destroy(f.m);
}

Test(seq2seq, padding_does_not_leak)
{
    /* changing padded source tokens and padded targets changes nothing */
    et_space s = tu_space(S2S_SPACE("pre"));
    fixture f;
    f.m = make(&s, 0, ET_POSITIONS_SINUSOIDAL, ref_impl, 0.0f, 6);
    fill_batch(&f, 3, 1);
    et_arch a;
    et_arch_largest(&s, &a);
    char *err = NULL;
    cr_assert_eq(et_model_bind_lengths(f.m, &a, B, S, T, &err), 0, "%s", err);
    double l1, l2;
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &l1, NULL, &err), 0, "%s", err);
    cr_assert_eq(et_model_units(f.m), T + (T - 1) + (T - 2));
    for (int i = 0; i < B; i++) {
        for (int t = f.src_lens[i]; t < S; t++)
            f.src[i * S + t] = 7;
        for (int t = f.tgt_lens[i]; t < T; t++)
            f.in[i * T + t] = f.out[i * T + t] = 5;
    }
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &l2, NULL, &err), 0, "%s", err);
    cr_assert_float_eq(l1, l2, 1e-9 * fabs(l1));
    et_model_destroy(f.m);
}

/* ---------------------------------------------------------------- decoding */

typedef struct plugins {
    et_registry reg;
    et_attn_impl impl[4];
} plugins;

static void load_plugins(plugins *p, const char *const *names, int n)
{
    memset(p, 0, sizeof *p);
    const char *b = getenv("ET_BUILDDIR");
    for (int i = 0; i < n; i++) {
        char path[4096];
        char *err = NULL;
        snprintf(path, sizeof path, "%s/plugins/attention/.libs/%s.so", b ? b : ".", names[i]);
        cr_assert_eq(et_registry_load(&p->reg, path, &err), 0, "%s", err);
        const et_plugin *pl = et_registry_find(&p->reg, ET_PLUGIN_KIND_ATTENTION, names[i]);
        cr_assert_not_null(pl);
        p->impl[i].vt = pl->desc->vtable;
        p->impl[i].opts = NULL;
    }
}

/* Options at their declared defaults, for plugins created outside an INI. */
static et_option_value *default_options(const et_plugin_descriptor *d)
{
    static et_option_value vals[4][16];
    static int used;
    et_option_value *v = vals[used++ % 4];
    et_config cfg;
    char *err = NULL;
    cr_assert_eq(et_config_parse("[x]\n", "x.ini", &cfg, &err), 0, "%s", err);
    cr_assert_eq(et_options_bind(d->options, &cfg.sections[0], NULL, 0, v, &err), 0, "%s", err);
    et_config_free(&cfg);
    return v;
}

static void decode_matches_teacher_forcing(const char *norm, int beams, const char *extra)
{
    static const char *const names[2] = {"softmax", "linear"};
    plugins pl;
    load_plugins(&pl, names, 2);
    for (int i = 0; i < 2; i++) {
        const et_plugin *p = et_registry_find(&pl.reg, ET_PLUGIN_KIND_ATTENTION, names[i]);
        pl.impl[i].opts = default_options(p->desc);
    }
    char text[2048];
    snprintf(text, sizeof text, S2S_SPACE("%s") "%s", norm, extra);
    et_space s = tu_space(text);
    fixture f;
    f.m = make(&s, 1, ET_POSITIONS_SINUSOIDAL, pl.impl, 0.0f, 17);
    fill_batch(&f, 4, 1);
    et_arch a;
    et_arch_largest(&s, &a);
    for (int32_t l = 0; l < a.dec.layers; l++) {
        a.dec.layer[l].attention = l % 2;
        a.dec.layer[l].cross_attention = (l + 1) % 2;
        a.dec.layer[l].connect = 1 + l % 3;
    }
    a.dec.layer[1].block = ET_BLOCK_FFN_ONLY;
    int64_t n;
    float *p = et_model_params(f.m, &n);
    et_rng r = et_rng_from_seed(2);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(0.3 * et_rng_normal(&r));
    char *err = NULL;
    cr_assert_eq(et_model_bind_lengths(f.m, &a, B, S, T, &err), 0, "%s", err);
    double loss;
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &loss, NULL, &err), 0, "%s", err);
    static float ref[B * T * V];
    memcpy(ref, et_model_logits(f.m), sizeof ref);
    for (int i = 0; i < B * T; i++) {
        float *row = ref + i * V, mx = row[0];
        for (int k = 1; k < V; k++)
            mx = row[k] > mx ? row[k] : mx;
        double sum = 0;
        for (int k = 0; k < V; k++)
            sum += exp(row[k] - mx);
        for (int k = 0; k < V; k++)
            row[k] -= mx + (float)log(sum);
    }
    cr_assert_eq(et_model_decode_begin(f.m, &f.batch, beams, T, &err), 0, "%s", err);
    int32_t tok[B * 4], from[B * 4];
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < B; i++)
            for (int k = 0; k < beams; k++)
                tok[i * beams + k] = f.in[i * T + t];
        const float *lp;
        cr_assert_eq(et_model_decode_step(f.m, tok, t, &lp, &err), 0, "%s", err);
        for (int i = 0; i < B; i++) {
            if (t >= f.tgt_lens[i])
                continue;
            for (int k = 0; k < beams; k++)
                for (int v = 0; v < V; v++)
                    cr_assert_float_eq(lp[(i * beams + k) * V + v], ref[(i * T + t) * V + v],
                                       1e-4, "norm %s, beams %d, example %d step %d beam %d", norm,
                                       beams, i, t, k);
        }
        /* beams of one sentence are interchangeable here: rotate them */
        for (int i = 0; i < B; i++)
            for (int k = 0; k < beams; k++)
                from[i * beams + k] = i * beams + (k + 1) % beams;
        et_model_decode_reorder(f.m, from);
    }
    et_model_destroy(f.m);
    et_registry_free(&pl.reg);
}

Test(seq2seq, decode_equals_teacher_forcing_pre_norm)
{
    decode_matches_teacher_forcing("pre", 1, "");
}

Test(seq2seq, gradients_with_conv_blocks)
{
    gradients_over_samples(S2S_CONV_SPACE("pre"), 0, ET_POSITIONS_SINUSOIDAL);
    gradients_over_samples(S2S_CONV_SPACE("post"), 1, ET_POSITIONS_LEARNED);
}

Test(seq2seq, conv_blocks_decode_and_keep_padding_out)
{
    static const char *const names[2] = {"softmax", "linear"};
    plugins pl;
    load_plugins(&pl, names, 2);
    for (int i = 0; i < 2; i++) {
        const et_plugin *p = et_registry_find(&pl.reg, ET_PLUGIN_KIND_ATTENTION, names[i]);
        pl.impl[i].opts = default_options(p->desc);
    }
    et_space s = tu_space(S2S_CONV_SPACE("pre"));
    fixture f;
    f.m = make(&s, 1, ET_POSITIONS_SINUSOIDAL, pl.impl, 0.0f, 19);
    fill_batch(&f, 5, 1);
    et_arch a;
    et_arch_largest(&s, &a);
    a.enc.layer[0].block = a.enc.layer[2].block = ET_BLOCK_CONV;
    a.enc.layer[0].conv_kernel = 5;
    a.enc.layer[2].conv_kernel = 3;
    a.dec.layer[0].block = a.dec.layer[1].block = ET_BLOCK_CONV;
    a.dec.layer[0].conv_kernel = 7;
    a.dec.layer[1].conv_kernel = 3;
    a.dec.layer[2].block = ET_BLOCK_STANDARD;
    int64_t n;
    float *p = et_model_params(f.m, &n);
    et_rng r = et_rng_from_seed(12);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(0.3 * et_rng_normal(&r));
    char *err = NULL;
    cr_assert_eq(et_model_bind_lengths(f.m, &a, B, S, T, &err), 0, "%s", err);
    double loss, l2;
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &loss, NULL, &err), 0, "%s", err);
    static float ref[B * T * V];
    memcpy(ref, et_model_logits(f.m), sizeof ref);
    /* padded source tokens change nothing */
    for (int i = 0; i < B; i++)
        for (int t = f.src_lens[i]; t < S; t++)
            f.src[i * S + t] = 8;
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &l2, NULL, &err), 0, "%s", err);
    cr_assert_float_eq(loss, l2, 1e-9 * fabs(loss));
    for (int i = 0; i < B * T; i++) {
        float *row = ref + i * V, mx = row[0];
        for (int k = 1; k < V; k++)
            mx = row[k] > mx ? row[k] : mx;
        double sum = 0;
        for (int k = 0; k < V; k++)
            sum += exp(row[k] - mx);
        for (int k = 0; k < V; k++)
            row[k] -= mx + (float)log(sum);
    }
    int beams = 2;
    cr_assert_eq(et_model_decode_begin(f.m, &f.batch, beams, T, &err), 0, "%s", err);
    int32_t tok[B * 2], from[B * 2];
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < B * beams; i++)
            tok[i] = f.in[(i / beams) * T + t];
        const float *lp;
        cr_assert_eq(et_model_decode_step(f.m, tok, t, &lp, &err), 0, "%s", err);
        for (int i = 0; i < B; i++)
            for (int k = 0; t < f.tgt_lens[i] && k < beams; k++)
                for (int v = 0; v < V; v++)
                    cr_assert_float_eq(lp[(i * beams + k) * V + v], ref[(i * T + t) * V + v], 1e-4,
                                       "conv decode: example %d step %d", i, t);
        for (int i = 0; i < B * beams; i++)
            from[i] = (i / beams) * beams + (i % beams + 1) % beams;
        et_model_decode_reorder(f.m, from);
    }
    et_model_destroy(f.m);
    et_registry_free(&pl.reg);
}

Test(seq2seq, decode_equals_teacher_forcing_with_primer_dconv)
{
    decode_matches_teacher_forcing("pre", 2, "primer_dconv = true\n");
}

Test(seq2seq, gradients_with_primer_dconv)
{
    /* random taps: the identity initialisation would hide a wrong tap */
    gradients_over_samples(S2S_SPACE("pre") "primer_dconv = true\n", 0, ET_POSITIONS_SINUSOIDAL);
}

Test(seq2seq, primer_dconv_lets_no_padding_in)
{
    et_space s = tu_space(S2S_SPACE("post") "primer_dconv = true\n");
    fixture f;
    f.m = make(&s, 0, ET_POSITIONS_SINUSOIDAL, ref_impl, 0.0f, 6);
    fill_batch(&f, 3, 1);
    et_arch a;
    et_arch_largest(&s, &a);
    int64_t n;
    float *p = et_model_params(f.m, &n);
    et_rng r = et_rng_from_seed(2);
    for (int64_t i = 0; i < n; i++)
        p[i] += (float)(0.1 * et_rng_normal(&r));
    char *err = NULL;
    cr_assert_eq(et_model_bind_lengths(f.m, &a, B, S, T, &err), 0, "%s", err);
    double l1, l2;
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &l1, NULL, &err), 0, "%s", err);
    for (int i = 0; i < B; i++)
        for (int t = f.src_lens[i]; t < S; t++)
            f.src[i * S + t] = 8;
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &l2, NULL, &err), 0, "%s", err);
    cr_assert_float_eq(l1, l2, 1e-9 * fabs(l1));
    et_model_destroy(f.m);
}

Test(seq2seq, decode_equals_teacher_forcing_post_norm_with_beams)
{
    decode_matches_teacher_forcing("post", 3, "");
}

Test(seq2seq, bad_batches_and_decode_calls_are_refused)
{
    et_space s = tu_space(S2S_SPACE("pre"));
    fixture f;
    f.m = make(&s, 0, ET_POSITIONS_LEARNED, ref_impl, 0.0f, 1);
    fill_batch(&f, 1, 0);
    et_arch a;
    et_arch_largest(&s, &a);
    char *err = NULL;
    cr_assert_eq(et_model_bind_lengths(f.m, &a, B, S, T + 1, &err), ET_STATUS_ERR_USAGE);
    free(err);
    err = NULL;
    cr_assert_eq(et_model_bind_lengths(f.m, &a, B, S, T, &err), 0, "%s", err);
    double loss;
    f.in[3] = V;
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &loss, NULL, &err), ET_STATUS_ERR_USAGE);
    cr_assert_not_null(strstr(err, "target token"), "%s", err);
    free(err);
    err = NULL;
    f.in[3] = 4;
    const float *lp;
    int32_t tok[B] = {0, 0, 0};
    cr_assert_eq(et_model_decode_step(f.m, tok, 0, &lp, &err), ET_STATUS_ERR_USAGE);
    free(err);
    err = NULL;
    cr_assert_eq(et_model_decode_begin(f.m, &f.batch, 1, T + 1, &err), ET_STATUS_ERR_USAGE);
    cr_assert_not_null(strstr(err, "learned decoder positions"), "%s", err);
    free(err);
    et_model_destroy(f.m);
}

/* ---------------------------------------------------------------- soft choices */

typedef struct soft_fixture {
    fixture f;
    int32_t stack, blocks; /* 3, or 4 with the standard candidate */
    float bw[2][8 * 4], ow[2][8 * 2];
    int ops;
} soft_fixture;

static double soft_loss(void *p)
{
    soft_fixture *sf = p;
    char *err = NULL;
    for (int32_t st = 0; st < 2; st++)
        if (sf->stack < 0 || sf->stack == st)
            cr_assert_eq(et_model_set_soft_blocks(sf->f.m, st, sf->blocks, sf->bw[st],
                                                  sf->ops ? sf->ow[st] : NULL, &err),
                         0, "%s", err);
    return loss_of(&sf->f);
}

/* d loss / d weight against central differences over every weight. */
static void check_soft_weights(soft_fixture *sf, int32_t st, int32_t layers, int32_t n_ops)
{
    char *err = NULL;
    et_model_zero_grads(sf->f.m);
    soft_loss(sf);
    cr_assert_eq(et_model_backward(sf->f.m, 1.0f, &err), 0, "%s", err);
    const float *og;
    const float *bg = et_model_soft_grads(sf->f.m, st, &og);
    float gb[8 * 4], go[8 * 2];
    for (int32_t l = 0; l < layers; l++)
        for (int k = 0; k < sf->blocks; k++)
            gb[l * sf->blocks + k] = bg[l * 4 + k];
    for (int32_t l = 0; l < layers; l++)
        for (int32_t o = 0; o < n_ops; o++)
            go[l * n_ops + o] = og[l * ET_MAX_CHOICES + o];
    double e = fd_check(soft_loss, sf, sf->bw[st], gb, layers * sf->blocks, 64, 1e-3f);
    cr_assert_lt(e, 2e-2, "stack %d block weights: relative error %g", st, e);
    if (sf->ops) {
        e = fd_check(soft_loss, sf, sf->ow[st], go, layers * n_ops, 64, 1e-3f);
        cr_assert_lt(e, 2e-2, "stack %d operator weights: relative error %g", st, e);
    }
}

static void soft_case(const char *norm, int ops, int blocks)
{
    static const char *const names[2] = {"softmax", "linear"};
    plugins pl;
    load_plugins(&pl, names, 2);
    for (int i = 0; i < 2; i++) {
        const et_plugin *p = et_registry_find(&pl.reg, ET_PLUGIN_KIND_ATTENTION, names[i]);
        pl.impl[i].opts = default_options(p->desc);
    }
    char text[2048];
    snprintf(text, sizeof text, S2S_SPACE("%s"), norm);
    et_space s = tu_space(text);
    soft_fixture sf;
    memset(&sf, 0, sizeof sf);
    sf.f.m = make(&s, 1, ET_POSITIONS_SINUSOIDAL, pl.impl, 0.0f, 23);
    fill_batch(&sf.f, 6, 1);
    sf.stack = -1;
    sf.ops = ops;
    sf.blocks = blocks;
    et_rng r = et_rng_from_seed(31);
    for (int st = 0; st < 2; st++) {
        for (int i = 0; i < 8 * 4; i++)
            sf.bw[st][i] = (float)(0.2 + 0.6 * et_rng_uniform(&r));
        for (int i = 0; i < 8 * 2; i++)
            sf.ow[st][i] = (float)(0.2 + 0.6 * et_rng_uniform(&r));
    }
    char *err = NULL;
    for (int32_t st = 0; st < 2; st++) /* soft mode before binding: it sizes the arena */
        if (sf.stack < 0 || sf.stack == st)
            cr_assert_eq(et_model_set_soft_blocks(sf.f.m, st, blocks, sf.bw[st],
                                                  ops ? sf.ow[st] : NULL, &err),
                         0, "%s", err);
    et_arch a;
    et_arch_largest(&s, &a);
    check_gradients(&sf.f, &a, ops ? "soft blocks and operators" : "soft blocks");
    check_soft_weights(&sf, 0, a.enc.layers, 2);
    check_soft_weights(&sf, 1, a.dec.layers, 2);
    et_model_destroy(sf.f.m);
    et_registry_free(&pl.reg);
}

Test(seq2seq, soft_choices_gradients_pre_norm)
{
    soft_case("pre", 1, 3);
}

Test(seq2seq, soft_choices_with_the_standard_candidate)
{
    soft_case("pre", 1, 4);
    soft_case("post", 0, 4);
}

Test(seq2seq, soft_choices_gradients_post_norm_blocks_only)
{
    soft_case("post", 0, 3);
}

Test(seq2seq, one_hot_soft_choices_equal_the_discrete_arch)
{
    static const char *const names[2] = {"softmax", "linear"};
    plugins pl;
    load_plugins(&pl, names, 2);
    for (int i = 0; i < 2; i++) {
        const et_plugin *p = et_registry_find(&pl.reg, ET_PLUGIN_KIND_ATTENTION, names[i]);
        pl.impl[i].opts = default_options(p->desc);
    }
    et_space s = tu_space(S2S_SPACE("pre"));
    fixture f;
    f.m = make(&s, 1, ET_POSITIONS_SINUSOIDAL, pl.impl, 0.0f, 29);
    fill_batch(&f, 8, 1);
    /* discrete: encoder attention-only(linear), ffn-only, identity; decoder
     * attention-only(softmax), ffn-only, attention-only(linear) */
    et_arch a;
    et_arch_largest(&s, &a);
    static const int32_t enc_block[3] = {ET_BLOCK_ATTENTION_ONLY, ET_BLOCK_FFN_ONLY,
                                         ET_BLOCK_IDENTITY};
    static const int32_t dec_block[3] = {ET_BLOCK_ATTENTION_ONLY, ET_BLOCK_FFN_ONLY,
                                         ET_BLOCK_ATTENTION_ONLY};
    static const int32_t enc_op[3] = {1, 0, 0}, dec_op[3] = {0, 0, 1};
    float bw[2][3 * 3] = {{0}}, ow[2][3 * 2] = {{0}};
    for (int l = 0; l < 3; l++) {
        a.enc.layer[l].block = enc_block[l];
        a.enc.layer[l].attention = enc_op[l];
        a.dec.layer[l].block = dec_block[l];
        a.dec.layer[l].attention = dec_op[l];
        bw[0][l * 3 + (enc_block[l] == ET_BLOCK_ATTENTION_ONLY ? 0
                       : enc_block[l] == ET_BLOCK_FFN_ONLY     ? 1
                                                               : 2)] = 1.0f;
        bw[1][l * 3 + (dec_block[l] == ET_BLOCK_ATTENTION_ONLY ? 0 : 1)] = 1.0f;
        ow[0][l * 2 + enc_op[l]] = 1.0f;
        ow[1][l * 2 + dec_op[l]] = 1.0f;
    }
    char *err = NULL;
    cr_assert_eq(et_model_bind_lengths(f.m, &a, B, S, T, &err), 0, "%s", err);
    double hard, soft;
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &hard, NULL, &err), 0, "%s", err);
    for (int st = 0; st < 2; st++)
        cr_assert_eq(et_model_set_soft(f.m, st, bw[st], ow[st], &err), 0, "%s", err);
    et_arch b;
    et_arch_largest(&s, &b); /* the genes no longer matter */
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &soft, NULL, &err), ET_STATUS_ERR_USAGE,
                 "forward must refuse until the soft arena is bound");
    free(err);
    err = NULL;
    cr_assert_eq(et_model_bind_lengths(f.m, &b, B, S, T, &err), 0, "%s", err);
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &soft, NULL, &err), 0, "%s", err);
    cr_assert_float_eq(soft, hard, 1e-4 * fabs(hard), "soft %g against discrete %g", soft, hard);
    cr_assert_eq(et_model_decode_begin(f.m, &f.batch, 1, T, &err), ET_STATUS_ERR_UNSUPPORTED);
    free(err);
    et_model_destroy(f.m);
    et_registry_free(&pl.reg);
}

Test(seq2seq, one_hot_standard_candidate_equals_standard_blocks)
{
    et_space s = tu_space(S2S_SPACE("post"));
    fixture f;
    f.m = make(&s, 1, ET_POSITIONS_SINUSOIDAL, ref_impl, 0.0f, 37);
    fill_batch(&f, 2, 1);
    et_arch a;
    et_arch_largest(&s, &a); /* standard blocks everywhere (the first listed) */
    char *err = NULL;
    cr_assert_eq(et_model_bind_lengths(f.m, &a, B, S, T, &err), 0, "%s", err);
    double hard, soft;
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &hard, NULL, &err), 0, "%s", err);
    float bw[3 * 4] = {0};
    for (int l = 0; l < 3; l++)
        bw[l * 4 + 3] = 1.0f;
    for (int st = 0; st < 2; st++)
        cr_assert_eq(et_model_set_soft_blocks(f.m, st, 4, bw, NULL, &err), 0, "%s", err);
    cr_assert_eq(et_model_bind_lengths(f.m, &a, B, S, T, &err), 0, "%s", err);
    cr_assert_eq(et_model_forward(f.m, &f.batch, 0, 0, 0, &soft, NULL, &err), 0, "%s", err);
    cr_assert_float_eq(soft, hard, 1e-4 * fabs(hard), "soft %g against discrete %g", soft, hard);
    et_model_destroy(f.m);
}

/* A seq2seq model of space s under init scheme, initialised from seed. */
static et_model *initialised(const et_space *s, int32_t scheme, uint64_t seed)
{
    et_host_init(&host, seed, 1, s);
    et_model_config cfg = {.max_len = S, .max_batch = B, .enc_attention = ref_impl,
                           .dec_attention = ref_impl, .cross_attention = ref_impl,
                           .src_vocab = V, .tgt_vocab = V, .max_tgt_len = T,
                           .positions = ET_POSITIONS_LEARNED, .init = scheme};
    et_model *m;
    char *err = NULL;
    cr_assert_eq(et_model_create(s, &cfg, &host, &m, &err), 0, "%s", err);
    et_model_init(m, seed);
    return m;
}

/* Largest |w| and mean square of tensor x's values. */
static void tensor_stats(const float *params, const et_tensor *x, double *maxabs, double *ms)
{
    const float *w = params + x->offset;
    int64_t n = (int64_t)x->rows * x->cols;
    *maxabs = 0;
    *ms = 0;
    for (int64_t i = 0; i < n; i++) {
        *maxabs = fmax(*maxabs, fabs(w[i]));
        *ms += (double)w[i] * w[i] / (double)n;
    }
}

/* init = xavier: every matrix within its Xavier bound a = sqrt(6 / (rows +
 * cols)) and spread over it (max |w| > a / 2, mean square a^2 / 3), token
 * tables N(0, 1/E) (mean square 1/E); depthwise kernels, biases and norms as
 * under init = normal; init = normal: every matrix and table inside
 * 2 * 0.02. Mean squares of n values are held to 4 standard errors of the
 * estimate: relative sqrt(0.8 / n) for uniform, sqrt(2 / n) for normal. */
Test(seq2seq, init_schemes)
{
    et_space s = tu_space(S2S_CONV_SPACE("pre"));
    for (int32_t scheme = ET_INIT_NORMAL; scheme <= ET_INIT_XAVIER; scheme++) {
        et_model *m = initialised(&s, scheme, 3);
        int32_t nt, matrices = 0, tables = 0;
        const et_tensor *ts = et_model_tensors(m, &nt);
        const float *p = et_model_params(m, NULL);
        for (int32_t t = 0; t < nt; t++) {
            const et_tensor *x = &ts[t];
            int64_t n = (int64_t)x->rows * x->cols;
            const char *kind = strrchr(x->name, '.') ? strrchr(x->name, '.') + 1 : x->name;
            double maxabs, ms;
            tensor_stats(p, x, &maxabs, &ms);
            if (!strcmp(kind, "gamma") || !strcmp(kind, "beta") || !strcmp(kind, "bias") ||
                strstr(x->name, "dconv") || strstr(x->name, "conv_dw")) {
                if (!strcmp(kind, "gamma"))
                    cr_expect(fabs(ms - 1.0) < 1e-9, "%s", x->name);
                else if (!strstr(x->name, "conv_dw"))
                    cr_expect_eq(maxabs, 0.0, "%s", x->name);
                else
                    cr_expect_leq(maxabs, 0.04 + 1e-7, "%s", x->name);
                continue;
            }
            if (scheme == ET_INIT_NORMAL) {
                cr_expect_leq(maxabs, 0.04 + 1e-7, "%s", x->name);
                cr_expect_gt(maxabs, 0.0, "%s", x->name);
            } else if (!strcmp(kind, "weight")) {
                double a = sqrt(6.0 / (x->rows + x->cols));
                cr_expect_leq(maxabs, a + 1e-7, "%s", x->name);
                cr_expect_gt(maxabs, a / 2, "%s", x->name);
                cr_expect(fabs(ms / (a * a / 3) - 1) < 4 * sqrt(0.8 / (double)n),
                          "%s: mean square %g, a^2/3 %g", x->name, ms, a * a / 3);
                matrices++;
            } else if (!strcmp(kind, "tok")) {
                cr_expect(fabs(ms * x->cols - 1) < 4 * sqrt(2.0 / (double)n),
                          "%s: mean square %g, 1/E %g", x->name, ms, 1.0 / x->cols);
                tables++;
            } else {
                cr_expect_leq(maxabs, 0.04 + 1e-7, "%s", x->name); /* positions */
            }
        }
        if (scheme == ET_INIT_XAVIER) {
            cr_expect_geq(matrices, 10);
            cr_expect_eq(tables, 2);
        }
        et_model_destroy(m);
    }
}

/* init = torch, a seq2seq model's tensors beyond the encoder's: cross-attention
 * q (QC, E) and k, v (2 QC, E_enc) Xavier-uniform as nn.MultiheadAttention
 * draws them: one packed (3E, E) bound sqrt(6 / 4E) when QC = E = E_enc,
 * each (QC, E_in) block on its own shape otherwise; token tables N(0, 1) as
 * nn.Embedding, uncut (some |w| > 2); learned positions N(0, 0.02^2), uncut.
 * Bounds exact; mean squares within 4 standard errors as above. */
Test(seq2seq, init_torch_cross_attention_and_tables)
{
    static const char *const spaces[2] = {
        S2S_SPACE("pre"), /* QC = E_dec = E_enc = 8: packed */
        "encoder_embed_dim = 12\nencoder_layers = 1\nencoder_ffn_dim = 6\nencoder_heads = 2\n"
        "decoder_embed_dim = 8\ndecoder_layers = 1\ndecoder_ffn_dim = 6\ndecoder_heads = 2\n"
        "decoder_cross_heads = 1\nhead_dim = 4\nnorm = pre\n"}; /* QC 4, E 8, E_enc 12 */
    const double want[2][2] = {{sqrt(6.0 / 32), sqrt(6.0 / 32)},
                               {sqrt(6.0 / (4 + 8)), sqrt(6.0 / (4 + 12))}}; /* cq, ckv */
    for (int k = 0; k < 2; k++) {
        et_space s = tu_space(spaces[k]);
        et_model *m = initialised(&s, ET_INIT_TORCH, 4);
        int32_t nt, cross = 0, tables = 0, positions = 0;
        const et_tensor *ts = et_model_tensors(m, &nt);
        const float *p = et_model_params(m, NULL);
        double tok_max = 0;
        for (int32_t t = 0; t < nt; t++) {
            const et_tensor *x = &ts[t];
            int64_t n = (int64_t)x->rows * x->cols;
            const char *kind = strrchr(x->name, '.') ? strrchr(x->name, '.') + 1 : x->name;
            double maxabs, ms;
            tensor_stats(p, x, &maxabs, &ms);
            int q = strstr(x->name, "cq.weight") != NULL, kv = strstr(x->name, "ckv.weight") != NULL;
            if (q || kv) {
                double a = want[k][kv];
                cr_expect_leq(maxabs, a + 1e-7, "%s: max %g above %g", x->name, maxabs, a);
                cr_expect_gt(maxabs, a / 2, "%s", x->name);
                cr_expect(fabs(ms / (a * a / 3) - 1) < 4 * sqrt(0.8 / (double)n),
                          "%s: mean square %g, a^2/3 %g", x->name, ms, a * a / 3);
                cross++;
            } else if (!strcmp(kind, "tok")) {
                cr_expect(fabs(ms - 1) < 4 * sqrt(2.0 / (double)n), "%s: mean square %g", x->name, ms);
                tok_max = fmax(tok_max, maxabs);
                tables++;
            } else if (!strcmp(kind, "pos")) {
                cr_expect(fabs(ms / 4e-4 - 1) < 4 * sqrt(2.0 / (double)n), "%s: mean square %g",
                          x->name, ms);
                positions++;
            }
        }
        cr_expect_gt(tok_max, 2.0, "token tables uncut: max %g", tok_max);
        cr_expect_geq(cross, 2, "cross-attention q and kv: %d", cross);
        cr_expect_geq(tables, 1);
        cr_expect_geq(positions, 1);
        et_model_destroy(m);
    }
}
