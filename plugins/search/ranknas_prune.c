/* RankNAS's stop rule, feature-to-gene map and pruning (ranknas_prune.h). */
#include "ranknas_prune.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void stop_state_init(stop_state *s)
{
    s->best_tau = -INFINITY;
    s->since_best = 0;
}

int stop_update(stop_state *s, const stop_rule *rule, double tau)
{
    if (tau > rule->threshold)
        return 1;
    if (tau > s->best_tau) {
        s->best_tau = tau;
        s->since_best = 0;
        return 0;
    }
    return ++s->since_best >= rule->patience;
}

static int32_t max_layers(const et_stack_space *ss)
{
    int32_t m = 0;
    for (int32_t i = 0; ss->present && i < ss->layers.n; i++)
        if (ss->layers.v[i] > m)
            m = ss->layers.v[i];
    return m;
}

int32_t prune_summary_count(const et_space *s)
{
    return s->kind == ET_MODEL_KIND_SEQ2SEQ ? 10 : 5;
}

static int32_t dec_genes(const et_space *s)
{
    return s->kind == ET_MODEL_KIND_SEQ2SEQ ? 8 : 5;
}

int32_t prune_feature_count(const et_space *s)
{
    return prune_summary_count(s) + 5 * max_layers(&s->enc) + dec_genes(s) * max_layers(&s->dec);
}

static const char *const gene_name[GENE_KINDS] = {"ffn",   "heads",  "attn",  "block",
                                                  "act",   "xheads", "xattn", "connect"};

/* Feature i past the summary: its stack, layer and gene kind. */
static void per_layer(const et_space *s, int32_t i, int *st, int32_t *layer, int *kind)
{
    i -= prune_summary_count(s);
    int32_t enc = 5 * max_layers(&s->enc);
    if (i < enc) {
        *st = 0;
        *layer = i / 5;
        *kind = i % 5;
    } else {
        i -= enc;
        *st = 1;
        *layer = i / dec_genes(s);
        *kind = i % dec_genes(s);
    }
}

void prune_feature_name(const et_space *s, int32_t i, char *buf, size_t n)
{
    static const char *const hat[] = {"enc_embed",      "enc_layers",      "enc_ffn_mean",
                                      "enc_heads_mean", "dec_embed",       "dec_layers",
                                      "dec_ffn_mean",   "dec_heads_mean",  "dec_xheads_mean",
                                      "dec_connect_mean"};
    static const char *const one[] = {"embed", "layers", "ffn_mean", "heads_mean", "attn_mean"};
    if (i < prune_summary_count(s)) {
        if (s->kind == ET_MODEL_KIND_SEQ2SEQ)
            snprintf(buf, n, "%s", hat[i]);
        else
            snprintf(buf, n, "%s_%s", s->enc.present ? "enc" : "dec", one[i]);
        return;
    }
    int st, kind;
    int32_t layer;
    per_layer(s, i, &st, &layer, &kind);
    snprintf(buf, n, "%s%d_%s", st ? "dec" : "enc", layer, gene_name[kind]);
}

static void all_layers(gene_mask *m, int st, int kind)
{
    for (int32_t l = 0; l < ET_MAX_LAYERS; l++)
        m->layer[st][l][kind] = 1;
}

void prune_feature_genes(const et_space *s, int32_t i, gene_mask *m)
{
    if (i >= prune_summary_count(s)) {
        int st, kind;
        int32_t layer;
        per_layer(s, i, &st, &layer, &kind);
        m->layer[st][layer][kind] = 1;
        m->layers[st] = 1; /* the feature is 0 while the layer is inactive */
        return;
    }
    int st = 0;
    if (s->kind == ET_MODEL_KIND_SEQ2SEQ) {
        static const int kinds[] = {GENE_XHEADS, GENE_CONNECT};
        if (i >= 8) {
            all_layers(m, 1, kinds[i - 8]);
            return;
        }
        st = i >= 4;
        i %= 4;
    } else {
        st = !s->enc.present;
    }
    switch (i) {
    case 0: m->embed[st] = 1; break;
    case 1: m->layers[st] = 1; break;
    case 2: all_layers(m, st, GENE_FFN); break;
    case 3: all_layers(m, st, GENE_HEADS); break;
    default: all_layers(m, st, GENE_ATTN); break;
    }
}

static void copy_gene(et_layer_arch *to, const et_layer_arch *from, int kind)
{
    switch (kind) {
    case GENE_FFN: to->ffn_dim = from->ffn_dim; break;
    case GENE_HEADS: to->heads = from->heads; break;
    case GENE_ATTN: to->attention = from->attention; break;
    case GENE_BLOCK: to->block = from->block; break;
    case GENE_ACT: to->activation = from->activation; break;
    case GENE_XHEADS: to->cross_heads = from->cross_heads; break;
    case GENE_XATTN: to->cross_attention = from->cross_attention; break;
    default: to->connect = from->connect; break;
    }
}

void prune_apply(const gene_mask *searched, const et_arch *ref, et_arch *arch)
{
    for (int st = 0; st < 2; st++) {
        et_stack_arch *to = st ? &arch->dec : &arch->enc;
        const et_stack_arch *from = st ? &ref->dec : &ref->enc;
        if (!searched->embed[st])
            to->embed_dim = from->embed_dim;
        if (!searched->layers[st])
            to->layers = from->layers;
        for (int32_t l = 0; l < ET_MAX_LAYERS; l++)
            for (int k = 0; k < GENE_KINDS; k++)
                if (!searched->layer[st][l][k])
                    copy_gene(&to->layer[l], &from->layer[l], k);
    }
}
