/* Beam search over the engine's incremental decoding: greedy (beam 1)
 * equals step-by-step argmax decoding; a tiny encoder-decoder trained on a
 * memorisable copy task drives its loss toward zero and then decodes every
 * training source exactly, greedy and with beams; length limits hold.
 * Attention is the softmax plugin (the engine tests' reference operator has
 * no incremental decoding). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "beam.h"
#include "hostimpl.h"
#include "inifile.h"
#include "model.h"
#include "optim.h"
#include "options.h"
#include "plugin.h"
#include "space.h"
#include "testutil.h"

/* The softmax plugin of the build tree (decoding needs a KV cache), with
 * its options at their defaults. */
static et_registry reg;
static et_config opt_cfg;
static et_option_value opt_vals[16];
static et_attn_impl ref_impl[1];

static void load_softmax(void)
{
    const char *b = getenv("ET_BUILDDIR");
    char path[4096];
    char *err = NULL;
    snprintf(path, sizeof path, "%s/plugins/attention/.libs/softmax.so", b ? b : ".");
    cr_assert_eq(et_registry_load(&reg, path, &err), 0, "%s", err);
    const et_plugin *p = et_registry_find(&reg, ET_PLUGIN_KIND_ATTENTION, "softmax");
    cr_assert_not_null(p);
    cr_assert_eq(et_config_parse("[x]\n", "x.ini", &opt_cfg, &err), 0, "%s", err);
    cr_assert_eq(et_options_bind(p->desc->options, &opt_cfg.sections[0], NULL, 0, opt_vals, &err),
                 0, "%s", err);
    ref_impl[0] = (et_attn_impl){p->desc->vtable, opt_vals};
}

static void unload(void)
{
    et_config_free(&opt_cfg);
    et_registry_free(&reg);
}

TestSuite(beam, .init = load_softmax, .fini = unload);

enum { B = 4, S = 5, V = 10, BOS = 0, PAD = 1, EOS = 2 };

#define SPACE                                                                                  \
    "encoder_embed_dim = 32\nencoder_layers = 2\nencoder_ffn_dim = 64\nencoder_heads = 2\n"     \
    "decoder_embed_dim = 32\ndecoder_layers = 2\ndecoder_ffn_dim = 64\ndecoder_heads = 2\n"     \
    "decoder_cross_heads = 2\nhead_dim = 16\nnorm = pre\n"

typedef struct copy_task {
    int32_t src[B * S], in[B * (S + 1)], out[B * (S + 1)], src_lens[B], tgt_lens[B];
    et_batch b;
} copy_task;

/* Example i: a source of S - i % 2 tokens in 3..V-1; the target copies it. */
static void make_task(copy_task *c, uint64_t seed)
{
    et_rng r = et_rng_from_seed(seed);
    int T = S + 1;
    for (int i = 0; i < B; i++) {
        int n = S - i % 2;
        c->src_lens[i] = n;
        c->tgt_lens[i] = n + 1;
        for (int t = 0; t < S; t++)
            c->src[i * S + t] = t < n ? 3 + (int32_t)et_rng_below(&r, V - 3) : PAD;
        for (int t = 0; t < T; t++) {
            c->out[i * T + t] = t < n ? c->src[i * S + t] : t == n ? EOS : PAD;
            c->in[i * T + t] = t == 0 ? BOS : t <= n ? c->src[i * S + t - 1] : PAD;
        }
    }
    memset(&c->b, 0, sizeof c->b);
    c->b = (et_batch){.size = B, .src_len = S, .tgt_len = T, .src_tok = c->src,
                      .src_lens = c->src_lens, .tgt_in = c->in, .tgt_out = c->out,
                      .tgt_lens = c->tgt_lens};
}

static et_space space;

static et_model *make_model(uint64_t seed, et_arch *a)
{
    static et_host host;
    space = tu_space(SPACE);
    et_space s = space;
    et_host_init(&host, seed, 1, &space);
    et_model_config cfg = {.max_len = S, .max_batch = B, .label_smoothing = 0.0f,
                           .enc_attention = ref_impl, .dec_attention = ref_impl,
                           .cross_attention = ref_impl, .src_vocab = V, .tgt_vocab = V,
                           .max_tgt_len = S + 1, .share_embeddings = 1};
    et_model *m;
    char *err = NULL;
    cr_assert_eq(et_model_create(&s, &cfg, &host, &m, &err), 0, "%s", err);
    et_model_init(m, seed);
    et_arch_largest(&s, a);
    cr_assert_eq(et_model_bind_lengths(m, a, B, S, S + 1, &err), 0, "%s", err);
    return m;
}

static et_beam_config beam_config(int32_t beam)
{
    return (et_beam_config){.beam = beam, .lenpen = 1.0f, .max_len_a = 1.0f, .max_len_b = 1,
                            .max_len = S + 1, .bos = BOS, .eos = EOS, .vocab = V};
}

Test(beam, greedy_is_stepwise_argmax)
{
    copy_task c;
    make_task(&c, 1);
    et_arch a;
    et_model *m = make_model(3, &a);
    int64_t n;
    float *p = et_model_params(m, &n);
    et_rng r = et_rng_from_seed(4);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(0.5 * et_rng_normal(&r));
    et_beam bs = {0};
    et_beam_config bc = beam_config(1);
    bc.max_len_a = 0.0f;
    bc.max_len_b = S + 1;
    int32_t out[B * (S + 1)], len[B];
    char *err = NULL;
    cr_assert_eq(et_beam_search(&bs, m, &c.b, &bc, out, S + 1, len, &err), 0, "%s", err);
    /* the same by hand */
    cr_assert_eq(et_model_decode_begin(m, &c.b, 1, S + 1, &err), 0, "%s", err);
    int32_t tok[B], done[B] = {0}, got[B][S + 1], got_len[B] = {0};
    for (int i = 0; i < B; i++)
        tok[i] = BOS;
    for (int t = 0; t < S + 1; t++) {
        const float *lp;
        cr_assert_eq(et_model_decode_step(m, tok, t, &lp, &err), 0, "%s", err);
        for (int i = 0; i < B; i++) {
            int best = 0;
            for (int v = 1; v < V; v++)
                best = lp[i * V + v] > lp[i * V + best] ? v : best;
            if (!done[i]) {
                if (best == EOS)
                    done[i] = 1;
                else
                    got[i][got_len[i]++] = best;
            }
            tok[i] = best;
        }
    }
    for (int i = 0; i < B; i++) {
        cr_assert_eq(len[i], got_len[i], "example %d: %d tokens against %d", i, len[i],
                     got_len[i]);
        for (int t = 0; t < len[i]; t++)
            cr_assert_eq(out[i * (S + 1) + t], got[i][t]);
    }
    et_beam_free(&bs);
    et_model_destroy(m);
}

Test(beam, trained_copy_model_decodes_exactly)
{
    copy_task c;
    make_task(&c, 2);
    et_arch a;
    et_model *m = make_model(5, &a);
    et_optim o;
    et_optim_config oc = {.lr = 3e-3, .warmup_steps = 20, .total_steps = 400,
                          .schedule = ET_SCHEDULE_CONSTANT, .beta1 = 0.9, .beta2 = 0.98,
                          .eps = 1e-8, .clip_norm = 1.0};
    int64_t n;
    et_model_params(m, &n);
    char *err = NULL;
    cr_assert_eq(et_optim_create(&o, &oc, n, &err), 0, "%s", err);
    double first = 0, loss = 0;
    for (int step = 0; step < 400; step++) {
        et_model_zero_grads(m);
        cr_assert_eq(et_model_forward(m, &c.b, 1, 1, step, &loss, NULL, &err), 0, "%s", err);
        loss /= (double)et_model_units(m);
        if (step == 0)
            first = loss;
        cr_assert_eq(et_model_backward(m, 1.0f / (float)et_model_units(m), &err), 0, "%s", err);
        et_optim_step(&o, m);
    }
    cr_assert_lt(loss, 0.02, "loss per token %g (from %g)", loss, first);
    for (int beam = 1; beam <= 3; beam += 2) {
        et_beam bs = {0};
        et_beam_config bc = beam_config(beam);
        int32_t out[B * (S + 1)], len[B];
        cr_assert_eq(et_beam_search(&bs, m, &c.b, &bc, out, S + 1, len, &err), 0, "%s", err);
        for (int i = 0; i < B; i++) {
            cr_assert_eq(len[i], c.src_lens[i], "beam %d example %d: length %d", beam, i, len[i]);
            for (int t = 0; t < len[i]; t++)
                cr_assert_eq(out[i * (S + 1) + t], c.src[i * S + t], "beam %d example %d", beam,
                             i);
        }
        et_beam_free(&bs);
    }
    et_optim_destroy(&o);
    et_model_destroy(m);
}

Test(beam, length_limit_holds)
{
    copy_task c;
    make_task(&c, 3);
    et_arch a;
    et_model *m = make_model(7, &a);
    /* random weights: whatever the model prefers, no hypothesis passes the limit */
    int64_t n;
    float *p = et_model_params(m, &n);
    et_rng r = et_rng_from_seed(8);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(0.5 * et_rng_normal(&r));
    et_beam bs = {0};
    et_beam_config bc = beam_config(2);
    bc.max_len_a = 0.0f;
    bc.max_len_b = 3;
    int32_t out[B * (S + 1)], len[B];
    char *err = NULL;
    cr_assert_eq(et_beam_search(&bs, m, &c.b, &bc, out, S + 1, len, &err), 0, "%s", err);
    for (int i = 0; i < B; i++)
        cr_assert_leq(len[i], 3);
    bc.beam = 0;
    cr_assert_eq(et_beam_search(&bs, m, &c.b, &bc, out, S + 1, len, &err), ET_STATUS_ERR_USAGE);
    free(err);
    et_beam_free(&bs);
    et_model_destroy(m);
}
