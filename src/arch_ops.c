/* Operations on architectures as fixed-length genomes (HAT): sampling,
 * mutation, crossover, feature vectors, and the largest/smallest points.
 *
 * Genome order: encoder E, encoder L, decoder E, decoder L, then for every
 * layer slot up to the space's deepest choice: ffn, heads, attention, block,
 * activation (+ xheads, xattn, connect in seq2seq decoders). Every gene draws
 * from the stream whether or not it changes, so decisions replay exactly. */
#include <stdio.h>
#include <string.h>

#include "space.h"

typedef struct gene_ref {
    int32_t *v;
    const et_int_choices *vals; /* value gene: one of vals */
    int32_t n_index;            /* index gene: [0, n_index) when vals is NULL */
    int32_t connect;            /* the En-De Connect gene (repaired after changes) */
} gene_ref;

#define MAX_GENES (4 + 2 * ET_MAX_LAYERS * 9)

int32_t et_stack_max_layers(const et_stack_space *ss)
{
    int32_t m = 0;
    for (int32_t i = 0; ss->present && i < ss->layers.n; i++)
        if (ss->layers.v[i] > m)
            m = ss->layers.v[i];
    return m;
}

static int stack_genes(const et_stack_space *ss, et_stack_arch *sa, int cross, gene_ref *g, int n)
{
    if (!ss->present)
        return n;
    for (int32_t l = 0; l < et_stack_max_layers(ss); l++) {
        et_layer_arch *la = &sa->layer[l];
        g[n++] = (gene_ref){&la->ffn_dim, &ss->ffn_dim, 0, 0};
        g[n++] = (gene_ref){&la->heads, &ss->heads, 0, 0};
        g[n++] = (gene_ref){&la->attention, NULL, ss->attention.n, 0};
        g[n++] = (gene_ref){&la->block, &ss->block, 0, 0};
        g[n++] = (gene_ref){&la->activation, &ss->activation, 0, 0};
        if (ss->conv_kernel.n) /* spaces with conv blocks */
            g[n++] = (gene_ref){&la->conv_kernel, &ss->conv_kernel, 0, 0};
        if (cross) {
            g[n++] = (gene_ref){&la->cross_heads, &ss->cross_heads, 0, 0};
            g[n++] = (gene_ref){&la->cross_attention, NULL, ss->cross_attention.n, 0};
            g[n++] = (gene_ref){&la->connect, &ss->connect, 0, 1};
        }
    }
    return n;
}

static int genes(const et_space *s, et_arch *a, gene_ref *g)
{
    int n = 0;
    if (s->enc.present) {
        g[n++] = (gene_ref){&a->enc.embed_dim, &s->enc.embed_dim, 0, 0};
        g[n++] = (gene_ref){&a->enc.layers, &s->enc.layers, 0, 0};
    }
    if (s->dec.present) {
        g[n++] = (gene_ref){&a->dec.embed_dim, &s->dec.embed_dim, 0, 0};
        g[n++] = (gene_ref){&a->dec.layers, &s->dec.layers, 0, 0};
    }
    n = stack_genes(&s->enc, &a->enc, 0, g, n);
    return stack_genes(&s->dec, &a->dec, s->kind == ET_MODEL_KIND_SEQ2SEQ, g, n);
}

static void draw(const gene_ref *g, et_rng *rng)
{
    if (g->vals)
        *g->v = g->vals->v[et_rng_below(rng, (uint64_t)g->vals->n)];
    else
        *g->v = (int32_t)et_rng_below(rng, (uint64_t)g->n_index);
}

/* En-De Connect must not exceed the encoder's depth: redraw among the
 * choices that fit. The space guarantees at least one does. */
static void repair(const et_space *s, et_rng *rng, et_arch *a)
{
    if (s->kind != ET_MODEL_KIND_SEQ2SEQ)
        return;
    const et_int_choices *c = &s->dec.connect;
    for (int32_t l = 0; l < et_stack_max_layers(&s->dec); l++) {
        int32_t *v = &a->dec.layer[l].connect;
        if (*v <= a->enc.layers)
            continue;
        int32_t ok[ET_MAX_CHOICES], n = 0;
        for (int32_t i = 0; i < c->n; i++)
            if (c->v[i] <= a->enc.layers)
                ok[n++] = c->v[i];
        *v = n ? ok[et_rng_below(rng, (uint64_t)n)] : c->v[0];
    }
}

void et_arch_sample(const et_space *space, et_rng *rng, et_arch *out)
{
    gene_ref g[MAX_GENES];
    memset(out, 0, sizeof *out);
    int n = genes(space, out, g);
    for (int i = 0; i < n; i++)
        draw(&g[i], rng);
    repair(space, rng, out);
}

void et_arch_mutate(const et_space *space, et_rng *rng, const et_arch *parent, double p,
                    et_arch *out)
{
    gene_ref g[MAX_GENES];
    *out = *parent;
    int n = genes(space, out, g);
    for (int i = 0; i < n; i++)
        if (et_rng_uniform(rng) < p)
            draw(&g[i], rng);
    repair(space, rng, out);
}

void et_arch_crossover(const et_space *space, et_rng *rng, const et_arch *a, const et_arch *b,
                       double p, et_arch *out)
{
    gene_ref ga[MAX_GENES], gb[MAX_GENES], go[MAX_GENES];
    et_arch ca = *a, cb = *b;
    memset(out, 0, sizeof *out);
    int n = genes(space, &ca, ga);
    genes(space, &cb, gb);
    genes(space, out, go);
    for (int i = 0; i < n; i++)
        *go[i].v = et_rng_uniform(rng) < p ? *ga[i].v : *gb[i].v;
    repair(space, rng, out);
}

static void extreme(const et_space *space, et_arch *out, int largest)
{
    gene_ref g[MAX_GENES];
    memset(out, 0, sizeof *out);
    int n = genes(space, out, g);
    for (int i = 0; i < n; i++) {
        if (!g[i].vals) {
            *g[i].v = 0;
            continue;
        }
        int32_t best = g[i].vals->v[0];
        for (int32_t k = 1; k < g[i].vals->n; k++) {
            int32_t v = g[i].vals->v[k];
            best = largest ? (v > best ? v : best) : (v < best ? v : best);
        }
        /* block/activation are categorical: keep the first (listed) choice */
        if (g[i].vals == &space->enc.block || g[i].vals == &space->dec.block ||
            g[i].vals == &space->enc.activation || g[i].vals == &space->dec.activation)
            best = g[i].vals->v[0];
        *g[i].v = best;
    }
    et_rng none = et_rng_from_seed(0);
    repair(space, &none, out);
}

void et_arch_largest(const et_space *space, et_arch *out)
{
    extreme(space, out, 1);
}

void et_arch_smallest(const et_space *space, et_arch *out)
{
    extreme(space, out, 0);
}

/* ---------------------------------------------------------------- features */

static int32_t max_val(const et_int_choices *c)
{
    int32_t m = 1;
    for (int32_t i = 0; i < c->n; i++)
        if (c->v[i] > m)
            m = c->v[i];
    return m;
}

static int32_t summary_count(const et_space *s)
{
    return s->kind == ET_MODEL_KIND_SEQ2SEQ ? 10 : 5;
}

static int32_t per_layer_count(const et_space *s)
{
    return s->kind == ET_MODEL_KIND_SEQ2SEQ ? 8 : 5;
}

int32_t et_arch_feature_count(const et_space *s)
{
    int32_t n = summary_count(s);
    n += 5 * et_stack_max_layers(&s->enc);
    n += (s->dec.present ? per_layer_count(s) : 0) * et_stack_max_layers(&s->dec);
    return n;
}

static float frac_index(int32_t idx, int32_t n)
{
    return (float)(idx + 1) / (float)(n > 0 ? n : 1);
}

static float frac_value(const et_int_choices *c, int32_t v)
{
    /* categorical value genes: position in the list, 1/n .. 1 */
    for (int32_t i = 0; i < c->n; i++)
        if (c->v[i] == v)
            return frac_index(i, c->n);
    return 0.0f;
}

/* E, L, mean FFN, mean heads (each over its max), then `extra`. */
static float *stack_summary(const et_stack_space *ss, const et_stack_arch *sa, float *o)
{
    double ffn = 0, heads = 0;
    for (int32_t l = 0; l < sa->layers; l++) {
        ffn += sa->layer[l].ffn_dim;
        heads += sa->layer[l].heads;
    }
    double L = sa->layers > 0 ? sa->layers : 1;
    *o++ = (float)sa->embed_dim / (float)max_val(&ss->embed_dim);
    *o++ = (float)sa->layers / (float)max_val(&ss->layers);
    *o++ = (float)(ffn / L / max_val(&ss->ffn_dim));
    *o++ = (float)(heads / L / max_val(&ss->heads));
    return o;
}

static float mean_attention(const et_stack_space *ss, const et_stack_arch *sa)
{
    double s = 0;
    for (int32_t l = 0; l < sa->layers; l++)
        s += ss->attention.n > 1 ? (double)sa->layer[l].attention / (ss->attention.n - 1) : 0.0;
    return sa->layers ? (float)(s / sa->layers) : 0.0f;
}

void et_arch_features(const et_space *s, const et_arch *a, float *out)
{
    float *o = out;
    if (s->kind == ET_MODEL_KIND_SEQ2SEQ) {
        /* HAT's ten: encoder E, L, FFN, heads; decoder E, L, FFN, heads,
         * en-de heads, En-De Connect */
        o = stack_summary(&s->enc, &a->enc, o);
        o = stack_summary(&s->dec, &a->dec, o);
        double xh = 0, con = 0;
        for (int32_t l = 0; l < a->dec.layers; l++) {
            xh += a->dec.layer[l].cross_heads;
            con += a->dec.layer[l].connect;
        }
        double L = a->dec.layers > 0 ? a->dec.layers : 1;
        *o++ = (float)(xh / L / max_val(&s->dec.cross_heads));
        *o++ = (float)(con / L / max_val(&s->dec.connect));
    } else {
        const et_stack_space *ss = s->enc.present ? &s->enc : &s->dec;
        const et_stack_arch *sa = s->enc.present ? &a->enc : &a->dec;
        o = stack_summary(ss, sa, o);
        *o++ = mean_attention(ss, sa);
    }
    for (int st = 0; st < 2; st++) {
        const et_stack_space *ss = st ? &s->dec : &s->enc;
        const et_stack_arch *sa = st ? &a->dec : &a->enc;
        int cross = st && s->kind == ET_MODEL_KIND_SEQ2SEQ;
        for (int32_t l = 0; l < et_stack_max_layers(ss); l++) {
            const et_layer_arch *g = &sa->layer[l];
            int on = l < sa->layers;
            *o++ = on ? (float)g->ffn_dim / (float)max_val(&ss->ffn_dim) : 0.0f;
            *o++ = on ? (float)g->heads / (float)max_val(&ss->heads) : 0.0f;
            *o++ = on ? frac_index(g->attention, ss->attention.n) : 0.0f;
            *o++ = on ? frac_value(&ss->block, g->block) : 0.0f;
            *o++ = on ? frac_value(&ss->activation, g->activation) : 0.0f;
            if (cross) {
                *o++ = on ? (float)g->cross_heads / (float)max_val(&ss->cross_heads) : 0.0f;
                *o++ = on ? frac_index(g->cross_attention, ss->cross_attention.n) : 0.0f;
                *o++ = on ? (float)g->connect / (float)max_val(&ss->connect) : 0.0f;
            }
        }
    }
}

const char *et_arch_feature_name(const et_space *s, int32_t i)
{
    static char name[64];
    static const char *const hat[] = {"enc_embed", "enc_layers", "enc_ffn_mean", "enc_heads_mean",
                                      "dec_embed", "dec_layers", "dec_ffn_mean", "dec_heads_mean",
                                      "dec_xheads_mean", "dec_connect_mean"};
    static const char *const one[] = {"embed", "layers", "ffn_mean", "heads_mean", "attn_mean"};
    static const char *const gene[] = {"ffn", "heads", "attn", "block", "act",
                                       "xheads", "xattn", "connect"};
    const char *tag = s->enc.present ? "enc" : "dec";
    int32_t ns = summary_count(s);
    if (i < 0 || i >= et_arch_feature_count(s))
        return NULL;
    if (i < ns) {
        if (s->kind == ET_MODEL_KIND_SEQ2SEQ)
            return hat[i];
        snprintf(name, sizeof name, "%s_%s", tag, one[i]);
        return name;
    }
    i -= ns;
    int32_t enc_genes = 5 * et_stack_max_layers(&s->enc);
    if (i < enc_genes) {
        snprintf(name, sizeof name, "enc%d_%s", i / 5, gene[i % 5]);
        return name;
    }
    i -= enc_genes;
    int32_t per = per_layer_count(s);
    snprintf(name, sizeof name, "dec%d_%s", i / per, gene[i % per]);
    return name;
}
