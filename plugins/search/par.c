/* par: differentiable search over attention / feed-forward / identity
 * blocks ("Pay Attention when Required", spec/search.md), on a soft-choice
 * supernet private to the strategy (host soft_* services).
 *
 * Every layer of every stack at the space's maxima mixes its attention-only
 * block, FFN-only block and identity with Gumbel-softmax weights over
 * architecture logits (and, with `ops`, the stack's attention operators
 * inside the attention block). Each step trains the supernet weights on a
 * training batch under freshly sampled mixture weights. After a warm-up
 * with frozen logits, a share of the steps (`arch_share`) also updates the
 * logits on a validation batch: d loss / d weights from the host, plus an
 * optional expected-cost term  cost_coef * sum_layers sum_c w_c cost_c
 * (cost_c: a proxy figure's increase when the layer takes candidate c
 * rather than identity), through the Gumbel-softmax backward, into Adam
 * with L2 weight decay. The temperature anneals geometrically from
 * `temperature_start` to `temperature_end`.
 *
 * The found arch is the argmax per layer (block, and operator with `ops`)
 * at the space's largest dims; it is scored with the soft supernet's
 * weights and handed to [final] like any strategy's best. The logits, their
 * optimizer and the step are saved with every checkpoint of the soft
 * supernet, so a resumed run continues exactly; each step's noise comes
 * from the stream split by its step number. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

#include "gumbel.h"

enum { CAND_ATTN = 0, CAND_FFN = 1, CAND_ID = 2, CANDS = 3 };
static const int32_t cand_block[CANDS] = {ET_BLOCK_ATTENTION_ONLY, ET_BLOCK_FFN_ONLY,
                                          ET_BLOCK_IDENTITY};
static const char *const cand_name[CANDS] = {"attention", "ffn", "identity"};

enum {
    OPT_STEPS, OPT_WARMUP, OPT_ARCH_SHARE, OPT_LR, OPT_WD, OPT_T0, OPT_T1, OPT_OPS, OPT_COST,
    OPT_COST_COEF, OPT_CKPT, OPT_HISTORY
};

static const et_option_decl par_options[] = {
    {"steps", ET_OPTION_TYPE_INT, "1000", 1, 1e12, NULL, "supernet weight updates"},
    {"warmup", ET_OPTION_TYPE_FLOAT, "0.2", 0, 1, NULL,
     "share of the steps, first, with the logits frozen"},
    {"arch_share", ET_OPTION_TYPE_FLOAT, "0.2", 0, 1, NULL,
     "share of the steps after the warm-up that also update the logits (on validation batches)"},
    {"lr", ET_OPTION_TYPE_FLOAT, "1e-2", 0, 10, NULL, "Adam learning rate of the logits"},
    {"weight_decay", ET_OPTION_TYPE_FLOAT, "5e-4", 0, 10, NULL, "L2 weight decay of the logits"},
    {"temperature_start", ET_OPTION_TYPE_FLOAT, "2.0", 1e-3, 100, NULL,
     "Gumbel-softmax temperature at the first step"},
    {"temperature_end", ET_OPTION_TYPE_FLOAT, "0.2", 1e-3, 100, NULL,
     "temperature at the last step (geometric annealing)"},
    {"ops", ET_OPTION_TYPE_BOOL, "false", 0, 0, NULL,
     "also mix the attention operators of each stack's list inside attention blocks"},
    {"cost", ET_OPTION_TYPE_STRING, "", 0, 0, NULL,
     "a proxy figure for the expected-cost term, e.g. flops_g or latency_ms (empty: none)"},
    {"cost_coef", ET_OPTION_TYPE_FLOAT, "0", 0, 1e9, NULL,
     "weight of the expected-cost term in the logits' loss"},
    {"checkpoint_every", ET_OPTION_TYPE_INT, "100", 1, 1e12, NULL,
     "steps between checkpoints of the soft supernet and the logits"},
    {"history_every", ET_OPTION_TYPE_INT, "20", 1, 1e12, NULL,
     "steps between the block probabilities plotted in the report (par-*.svg)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* A layer's logits: CANDS block logits, then n_ops operator logits. */
typedef struct par_layer {
    int32_t stack, layer, n_ops, at; /* at: offset in the flat logits */
} par_layer;

typedef struct par {
    const et_host *host;
    int64_t steps, warmup_steps, ckpt_every;
    double arch_share, lr, wd, t0, t1, cost_coef;
    int32_t ops;
    char cost[64];
    int32_t n_layers, n; /* layers, logits */
    par_layer layer[2 * ET_MAX_LAYERS];
    float *z, *m, *v;    /* logits and their Adam moments */
    float *w, *dw, *dz, *cost_c;
    int64_t step, adam_t;
    /* block probabilities softmax(z) every history_every steps: rows of
     * n_layers * CANDS floats, and the step of each row */
    int64_t history_every, n_hist, cap_hist;
    float *hist;
} par;

/* The saved state: the step, Adam's count, then logits and moments. */
typedef struct par_header {
    uint64_t magic;
    int64_t step, adam_t, n, n_hist;
} par_header;
#define PAR_MAGIC UINT64_C(0x5041525354415445) /* "PARSTATE" */

static void par_destroy(void *state)
{
    par *p = state;
    if (!p)
        return;
    free(p->z);
    free(p->m);
    free(p->v);
    free(p->w);
    free(p->dw);
    free(p->dz);
    free(p->cost_c);
    free(p->hist);
    free(p);
}

static int has_block(const et_int_choices *c, int32_t block)
{
    for (int32_t i = 0; i < c->n; i++)
        if (c->v[i] == block)
            return 1;
    return 0;
}

static int par_create(const et_host *host, const et_option_value *opts, void **state, char **err)
{
    *state = NULL;
    if (!ET_HOST_HAS(host, arch_largest) || !host->space) {
        *err = host->errorf("par: this etnas gives no soft-choice services to search plugins");
        return ET_STATUS_ERR_UNSUPPORTED;
    }
    const et_space *sp = host->space;
    const et_stack_space *st[2] = {&sp->enc, &sp->dec};
    int present[2] = {sp->kind != ET_MODEL_KIND_DECODER, sp->kind != ET_MODEL_KIND_ENCODER};
    for (int i = 0; i < 2; i++)
        for (int c = 0; present[i] && c < CANDS; c++)
            if (!has_block(&st[i]->block, cand_block[c])) {
                *err = host->errorf("par: the %s blocks of [space] must include attention-only, "
                                    "ffn-only and identity (set %s_block = attention-only, "
                                    "ffn-only, identity)",
                                    i ? "decoder" : "encoder", i ? "decoder" : "encoder");
                return ET_STATUS_ERR_USAGE;
            }
    if (opts[OPT_COST].s && strlen(opts[OPT_COST].s) >= sizeof ((par *)0)->cost) {
        *err = host->errorf("par: cost figure name too long");
        return ET_STATUS_ERR_USAGE;
    }
    par *p = calloc(1, sizeof *p);
    if (!p) {
        *err = host->errorf("par: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    p->host = host;
    p->steps = opts[OPT_STEPS].i;
    p->warmup_steps = (int64_t)floor(opts[OPT_WARMUP].f * (double)p->steps);
    p->arch_share = opts[OPT_ARCH_SHARE].f;
    p->lr = opts[OPT_LR].f;
    p->wd = opts[OPT_WD].f;
    p->t0 = opts[OPT_T0].f;
    p->t1 = opts[OPT_T1].f;
    p->ops = opts[OPT_OPS].i != 0;
    snprintf(p->cost, sizeof p->cost, "%s", opts[OPT_COST].s ? opts[OPT_COST].s : "");
    p->cost_coef = opts[OPT_COST_COEF].f;
    p->ckpt_every = opts[OPT_CKPT].i;
    p->history_every = opts[OPT_HISTORY].i;
    for (int i = 0; i < 2; i++) {
        if (!present[i])
            continue;
        int32_t L = 0;
        for (int32_t k = 0; k < st[i]->layers.n; k++)
            L = st[i]->layers.v[k] > L ? st[i]->layers.v[k] : L;
        for (int32_t l = 0; l < L; l++) {
            par_layer *pl = &p->layer[p->n_layers++];
            *pl = (par_layer){i, l, p->ops ? st[i]->attention.n : 0, p->n};
            p->n += CANDS + pl->n_ops;
        }
    }
    if (ET_HOST_HAS(host, soft_weight_count) && host->soft_weight_count(host->ctx, p->ops) != p->n) {
        *err = host->errorf("par: the host lays out %d soft weights, the plugin %d",
                            (int)host->soft_weight_count(host->ctx, p->ops), (int)p->n);
        par_destroy(p);
        return ET_STATUS_ERR_INTERNAL;
    }
    size_t n = (size_t)p->n;
    p->z = calloc(n, sizeof *p->z);
    p->m = calloc(n, sizeof *p->m);
    p->v = calloc(n, sizeof *p->v);
    p->w = calloc(n, sizeof *p->w);
    p->dw = calloc(n, sizeof *p->dw);
    p->dz = calloc(n, sizeof *p->dz);
    p->cost_c = calloc(n, sizeof *p->cost_c);
    if (!p->z || !p->m || !p->v || !p->w || !p->dw || !p->dz || !p->cost_c) {
        par_destroy(p);
        *err = host->errorf("par: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    *state = p;
    return 0;
}

/* Mixture weights from the logits for step `step` (stream `k`: 0 for the
 * weight update, 1 for the logits update). */
static void sample(par *p, int64_t step, int k, double tau)
{
    et_rng base = et_rng_from_seed(p->host->seed);
    et_rng r = et_rng_split(&base, (uint64_t)step * 2 + (uint64_t)k);
    for (int32_t i = 0; i < p->n_layers; i++) {
        const par_layer *pl = &p->layer[i];
        gumbel_softmax(p->z + pl->at, CANDS, tau, &r, NULL, p->w + pl->at);
        if (pl->n_ops)
            gumbel_softmax(p->z + pl->at + CANDS, pl->n_ops, tau, &r, NULL,
                           p->w + pl->at + CANDS);
    }
}

/* The discrete arch of the logits: argmax block (and operator) per layer. */
static void read_out(const par *p, et_arch *a)
{
    p->host->arch_largest(p->host->space, a);
    for (int32_t i = 0; i < p->n_layers; i++) {
        const par_layer *pl = &p->layer[i];
        et_stack_arch *sa = pl->stack ? &a->dec : &a->enc;
        et_layer_arch *g = &sa->layer[pl->layer];
        g->block = cand_block[gumbel_argmax(p->z + pl->at, CANDS)];
        if (pl->n_ops)
            g->attention = gumbel_argmax(p->z + pl->at + CANDS, pl->n_ops);
    }
}

/* cost_c per layer and candidate: the figure's increase over the same arch
 * with that layer as identity (all other layers identity too). */
static int measure_costs(par *p, char **err)
{
    if (!p->cost[0] || p->cost_coef <= 0)
        return 0;
    const et_host *h = p->host;
    et_arch base;
    h->arch_largest(h->space, &base);
    for (int32_t i = 0; i < p->n_layers; i++) {
        const par_layer *pl = &p->layer[i];
        (pl->stack ? &base.dec : &base.enc)->layer[pl->layer].block = ET_BLOCK_IDENTITY;
    }
    double c0;
    int rc = h->cost(h->ctx, &base, p->cost, &c0, err);
    if (rc)
        return rc;
    for (int32_t i = 0; i < p->n_layers; i++) {
        const par_layer *pl = &p->layer[i];
        et_arch a = base;
        et_layer_arch *g = &(pl->stack ? &a.dec : &a.enc)->layer[pl->layer];
        for (int c = 0; c < CANDS; c++) {
            g->block = cand_block[c];
            double v = c0;
            if (c != CAND_ID && (rc = h->cost(h->ctx, &a, p->cost, &v, err)))
                return rc;
            p->cost_c[pl->at + c] = (float)(v - c0);
        }
        g->block = ET_BLOCK_ATTENTION_ONLY;
        for (int32_t o = 0; o < pl->n_ops; o++) {
            g->attention = o;
            double v;
            if ((rc = h->cost(h->ctx, &a, p->cost, &v, err)))
                return rc;
            p->cost_c[pl->at + CANDS + o] = (float)(v - c0);
        }
    }
    return 0;
}

/* Add the expected cost's gradient to dw. With operators, the attention
 * block costs sum_o v_o cost_o; without, its own cost_c. */
static void cost_grad(par *p)
{
    if (!p->cost[0] || p->cost_coef <= 0)
        return;
    float k = (float)p->cost_coef;
    for (int32_t i = 0; i < p->n_layers; i++) {
        const par_layer *pl = &p->layer[i];
        float *w = p->w + pl->at, *dw = p->dw + pl->at;
        const float *c = p->cost_c + pl->at;
        if (!pl->n_ops) {
            for (int j = 0; j < CANDS; j++)
                dw[j] += k * c[j];
            continue;
        }
        float attn = 0;
        for (int32_t o = 0; o < pl->n_ops; o++)
            attn += w[CANDS + o] * c[CANDS + o];
        dw[CAND_ATTN] += k * attn;
        dw[CAND_FFN] += k * c[CAND_FFN];
        for (int32_t o = 0; o < pl->n_ops; o++)
            dw[CANDS + o] += k * w[CAND_ATTN] * c[CANDS + o];
    }
}

/* One Adam step on the logits with L2 weight decay. */
static void adam(par *p)
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    p->adam_t++;
    double c1 = 1 - pow(b1, (double)p->adam_t), c2 = 1 - pow(b2, (double)p->adam_t);
    for (int32_t i = 0; i < p->n; i++) {
        double g = (double)p->dz[i] + p->wd * p->z[i];
        p->m[i] = (float)(b1 * p->m[i] + (1 - b1) * g);
        p->v[i] = (float)(b2 * p->v[i] + (1 - b2) * g * g);
        p->z[i] -= (float)(p->lr * (p->m[i] / c1) / (sqrt(p->v[i] / c2) + eps));
    }
}

static int save(par *p, char **err)
{
    size_t hrow = sizeof(float) * (size_t)p->n_layers * CANDS;
    size_t bytes = sizeof(par_header) + 3 * sizeof(float) * (size_t)p->n + hrow * (size_t)p->n_hist;
    unsigned char *buf = malloc(bytes);
    if (!buf) {
        *err = p->host->errorf("par: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    par_header h = {PAR_MAGIC, p->step, p->adam_t, p->n, p->n_hist};
    memcpy(buf, &h, sizeof h);
    size_t at = sizeof h, row = sizeof(float) * (size_t)p->n;
    memcpy(buf + at, p->z, row);
    memcpy(buf + at + row, p->m, row);
    memcpy(buf + at + 2 * row, p->v, row);
    if (p->n_hist)
        memcpy(buf + at + 3 * row, p->hist, hrow * (size_t)p->n_hist);
    int rc = p->host->soft_checkpoint(p->host->ctx, buf, bytes, err);
    free(buf);
    return rc;
}

static int restore(par *p, char **err)
{
    void *data;
    size_t n;
    int rc = p->host->soft_resume(p->host->ctx, p->ops, &data, &n, err);
    if (rc <= 0)
        return rc;
    par_header h;
    size_t row = sizeof(float) * (size_t)p->n, hrow = sizeof(float) * (size_t)p->n_layers * CANDS;
    if (n < sizeof h || (memcpy(&h, data, sizeof h), h.magic != PAR_MAGIC) || h.n != p->n ||
        h.step < 0 || h.step > p->steps || h.n_hist < 0 ||
        n != sizeof h + 3 * row + hrow * (size_t)h.n_hist) {
        free(data);
        *err = p->host->errorf("par: the saved state does not fit this search (%zu bytes)", n);
        return ET_STATUS_ERR_FORMAT;
    }
    const unsigned char *b = (const unsigned char *)data + sizeof h;
    memcpy(p->z, b, row);
    memcpy(p->m, b + row, row);
    memcpy(p->v, b + 2 * row, row);
    if (h.n_hist) {
        float *nh = malloc(hrow * (size_t)h.n_hist);
        if (!nh) {
            free(data);
            *err = p->host->errorf("par: out of memory");
            return ET_STATUS_ERR_NOMEM;
        }
        memcpy(nh, b + 3 * row, hrow * (size_t)h.n_hist);
        free(p->hist);
        p->hist = nh;
        p->n_hist = p->cap_hist = h.n_hist;
    }
    p->step = h.step;
    p->adam_t = h.adam_t;
    free(data);
    return 1;
}

/* Whether step i (after the warm-up) also updates the logits: the steps
 * where floor(j * share) moves, j counted from the end of the warm-up. */
static int arch_step(const par *p, int64_t i)
{
    if (i < p->warmup_steps || p->arch_share <= 0)
        return 0;
    int64_t j = i - p->warmup_steps;
    return (int64_t)floor((double)(j + 1) * p->arch_share) >
           (int64_t)floor((double)j * p->arch_share);
}

static void log_logits(const par *p, const char *when)
{
    const et_host *h = p->host;
    for (int32_t i = 0; i < p->n_layers; i++) {
        const par_layer *pl = &p->layer[i];
        float w[CANDS];
        gumbel_softmax(p->z + pl->at, CANDS, 1.0, NULL, NULL, w);
        h->log(h->ctx, ET_LOG_LEVEL_INFO,
               "par %s: %s layer %d: attention %.3f, ffn %.3f, identity %.3f (logits %.3f %.3f "
               "%.3f)",
               when, pl->stack ? "decoder" : "encoder", (int)pl->layer, w[0], w[1], w[2],
               p->z[pl->at], p->z[pl->at + 1], p->z[pl->at + 2]);
    }
}

/* Append the block probabilities softmax(z) of every layer. */
static int record(par *p, char **err)
{
    int64_t row = (int64_t)p->n_layers * CANDS;
    if (p->n_hist == p->cap_hist) {
        int64_t cap = p->cap_hist ? 2 * p->cap_hist : 64;
        float *nh = realloc(p->hist, sizeof *nh * (size_t)(cap * row));
        if (!nh) {
            *err = p->host->errorf("par: out of memory");
            return ET_STATUS_ERR_NOMEM;
        }
        p->hist = nh;
        p->cap_hist = cap;
    }
    float *out = p->hist + p->n_hist * row;
    for (int32_t i = 0; i < p->n_layers; i++)
        gumbel_softmax(p->z + p->layer[i].at, CANDS, 1.0, NULL, NULL, out + i * CANDS);
    p->n_hist++;
    return 0;
}

/* Grow a text buffer by a formatted piece. */
static int add(char **buf, size_t *len, size_t *cap, const char *fmt, ...) ET_PRINTF(4, 5);
static int add(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0)
        return -1;
    if (*len + (size_t)k + 1 > *cap) {
        size_t nc = (*cap ? 2 * *cap : 4096) + (size_t)k;
        char *nb = realloc(*buf, nc);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = nc;
    }
    va_start(ap, fmt);
    vsnprintf(*buf + *len, *cap - *len, fmt, ap);
    va_end(ap);
    *len += (size_t)k;
    return 0;
}

/* The report's figure: one panel per candidate (attention, FFN, identity),
 * each layer's probability over the steps as a line. */
static int plot(const par *p, char **err)
{
    const et_host *h = p->host;
    if (p->n_hist < 1 || !ET_HOST_HAS(h, blob_put))
        return 0;
    char *b = NULL;
    size_t len = 0, cap = 0;
    const double W = 640, PH = 150, L = 50, TOP = 30;
    int bad = add(&b, &len, &cap,
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                  "font-family=\"sans-serif\" font-size=\"11\">\n",
                  W + 150, TOP + 3 * (PH + 30));
    bad |= add(&b, &len, &cap, "<text x=\"%.0f\" y=\"18\">PAR: block probabilities over %lld steps"
                               "</text>\n", L, (long long)p->steps);
    int64_t row = (int64_t)p->n_layers * CANDS;
    for (int c = 0; c < CANDS && !bad; c++) {
        double y0 = TOP + c * (PH + 30);
        bad |= add(&b, &len, &cap,
                   "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
                   "stroke=\"#888\"/><text x=\"%.0f\" y=\"%.0f\">%s</text>"
                   "<text x=\"5\" y=\"%.0f\">1</text><text x=\"5\" y=\"%.0f\">0</text>\n",
                   L, y0, W - L, PH, L + 5, y0 + 14, cand_name[c], y0 + 10, y0 + PH);
        for (int32_t i = 0; i < p->n_layers && !bad; i++) {
            double hue = 360.0 * i / p->n_layers;
            bad |= add(&b, &len, &cap, "<polyline fill=\"none\" stroke=\"hsl(%.0f,70%%,40%%)\" "
                                       "points=\"", hue);
            for (int64_t k = 0; k < p->n_hist && !bad; k++) {
                double x = L + (W - L) * (p->n_hist > 1 ? (double)k / (p->n_hist - 1) : 0);
                double y = y0 + PH * (1.0 - p->hist[k * row + i * CANDS + c]);
                bad |= add(&b, &len, &cap, "%.1f,%.1f ", x, y);
            }
            bad |= add(&b, &len, &cap, "\"/>\n");
            if (c == 0)
                bad |= add(&b, &len, &cap,
                           "<text x=\"%.0f\" y=\"%.0f\" fill=\"hsl(%.0f,70%%,40%%)\">%s %d"
                           "</text>\n",
                           W + 10, TOP + 14 * (i + 1), hue,
                           p->layer[i].stack ? "decoder" : "encoder", (int)p->layer[i].layer);
        }
    }
    bad |= add(&b, &len, &cap, "</svg>\n");
    int rc = 0;
    if (bad) {
        *err = h->errorf("par: out of memory");
        rc = ET_STATUS_ERR_NOMEM;
    } else {
        char key[96];
        snprintf(key, sizeof key, "artifact/par-%016llx.svg", (unsigned long long)h->seed);
        rc = h->blob_put(h->ctx, key, b, len, err);
    }
    free(b);
    return rc;
}

/* One arch of the comparison: metric with the soft supernet's weights,
 * FLOPs (when a proxy gives flops_g) and measured latency. */
typedef struct versus {
    et_eval_result res;
    double flops_g, latency_ms;
    int has_flops, has_latency;
} versus;

static int measure_versus(par *p, const et_arch *a, versus *v, char **err)
{
    const et_host *h = p->host;
    memset(v, 0, sizeof *v);
    int rc = h->soft_evaluate(h->ctx, a, &v->res, err);
    if (rc)
        return rc;
    char *e = NULL;
    v->has_flops = h->cost(h->ctx, a, "flops_g", &v->flops_g, &e) == 0;
    free(e);
    e = NULL;
    double sd;
    v->has_latency = h->measure_latency(h->ctx, a, 2, 10, &v->latency_ms, &sd, &e) == 0;
    free(e);
    return 0;
}

/* The all-interleaved baseline of the same depth: attention, FFN,
 * attention, FFN, ... (the attention operator of the found arch's layer). */
static void interleaved(const par *p, const et_arch *found, et_arch *b)
{
    *b = *found;
    for (int32_t i = 0; i < p->n_layers; i++) {
        const par_layer *pl = &p->layer[i];
        et_layer_arch *g = &(pl->stack ? &b->dec : &b->enc)->layer[pl->layer];
        g->block = pl->layer % 2 ? ET_BLOCK_FFN_ONLY : ET_BLOCK_ATTENTION_ONLY;
    }
}

/* The found interleaving and where its attention blocks sit, against the
 * PAR paper's observation (attention in the first two thirds), and the
 * found model against the all-interleaved baseline. */
static int summary(const par *p, const versus *vs, char **err)
{
    const et_host *h = p->host;
    if (!ET_HOST_HAS(h, blob_put))
        return 0;
    char *b = NULL;
    size_t len = 0, cap = 0;
    int bad = add(&b, &len, &cap, "# PAR: the found layers\n\n| stack | layer | choice | "
                                  "attention | ffn | identity |\n|---|---|---|---|---|---|\n");
    for (int st = 0; st < 2; st++) {
        int32_t total = 0, attn = 0, early = 0;
        for (int32_t i = 0; i < p->n_layers; i++)
            total += p->layer[i].stack == st;
        for (int32_t i = 0; i < p->n_layers && !bad; i++) {
            const par_layer *pl = &p->layer[i];
            if (pl->stack != st)
                continue;
            float w[CANDS];
            gumbel_softmax(p->z + pl->at, CANDS, 1.0, NULL, NULL, w);
            int32_t c = gumbel_argmax(p->z + pl->at, CANDS);
            attn += c == CAND_ATTN;
            early += c == CAND_ATTN && 3 * pl->layer < 2 * total;
            bad |= add(&b, &len, &cap, "| %s | %d | %s | %.3f | %.3f | %.3f |\n",
                       st ? "decoder" : "encoder", (int)pl->layer, cand_name[c], w[0], w[1], w[2]);
        }
        if (total)
            bad |= add(&b, &len, &cap,
                       "\n%s: %d attention blocks of %d layers, %d of them in the first two "
                       "thirds.\n\n",
                       st ? "Decoder" : "Encoder", (int)attn, (int)total, (int)early);
    }
    static const char *const who[2] = {"found", "all-interleaved baseline"};
    bad |= add(&b, &len, &cap, "| model | %s (soft supernet weights) | loss | FLOPs (G) | "
                               "measured latency (ms) |\n|---|---|---|---|---|\n",
               h->task && h->task->metric ? h->task->metric : "metric");
    for (int k = 0; k < 2; k++) {
        bad |= add(&b, &len, &cap, "| %s | %.4f | %.4f | ", who[k], vs[k].res.metric,
                   vs[k].res.loss);
        bad |= vs[k].has_flops ? add(&b, &len, &cap, "%.4f | ", vs[k].flops_g)
                               : add(&b, &len, &cap, "- | ");
        bad |= vs[k].has_latency ? add(&b, &len, &cap, "%.3f |\n", vs[k].latency_ms)
                                 : add(&b, &len, &cap, "- |\n");
    }
    int rc = 0;
    if (bad) {
        *err = h->errorf("par: out of memory");
        rc = ET_STATUS_ERR_NOMEM;
    } else {
        char key[96];
        snprintf(key, sizeof key, "artifact/par-%016llx.md", (unsigned long long)h->seed);
        rc = h->blob_put(h->ctx, key, b, len, err);
    }
    free(b);
    return rc;
}

static int par_run(void *state, char **err)
{
    par *p = state;
    const et_host *h = p->host;
    int rc = restore(p, err);
    if (rc < 0)
        return rc;
    if ((rc = measure_costs(p, err)))
        return rc;
    for (; p->step < p->steps; p->step++) {
        int64_t i = p->step;
        double tau = gumbel_temperature(p->t0, p->t1, i, p->steps), loss;
        sample(p, i, 0, tau);
        if ((rc = h->soft_step(h->ctx, p->ops, p->w, 1, &loss, NULL, err)))
            return rc;
        if (arch_step(p, i)) {
            sample(p, i, 1, tau);
            double vloss;
            if ((rc = h->soft_step(h->ctx, p->ops, p->w, 0, &vloss, p->dw, err)))
                return rc;
            cost_grad(p);
            for (int32_t k = 0; k < p->n_layers; k++) {
                const par_layer *pl = &p->layer[k];
                gumbel_softmax_backward(p->w + pl->at, p->dw + pl->at, CANDS, tau,
                                        p->dz + pl->at);
                if (pl->n_ops)
                    gumbel_softmax_backward(p->w + pl->at + CANDS, p->dw + pl->at + CANDS,
                                            pl->n_ops, tau, p->dz + pl->at + CANDS);
            }
            adam(p);
        }
        if (h->progress)
            h->progress(h->ctx, "par", i + 1, p->steps);
        if ((i + 1) % p->history_every == 0 && (rc = record(p, err)))
            return rc;
        if ((i + 1) % p->ckpt_every == 0 || i + 1 == p->steps) {
            p->step = i + 1;
            if ((rc = save(p, err)))
                return rc;
            p->step = i;
        }
    }
    log_logits(p, "final");
    et_arch a, base;
    read_out(p, &a);
    interleaved(p, &a, &base);
    versus vs[2];
    if ((rc = measure_versus(p, &base, &vs[1], err)) || (rc = measure_versus(p, &a, &vs[0], err)))
        return rc;
    /* [final] retrains the found arch, not the baseline scored beside it */
    if (ET_HOST_HAS(h, propose) && h->propose && (rc = h->propose(h->ctx, &a, 1, err)))
        return rc;
    h->log(h->ctx, ET_LOG_LEVEL_INFO,
           "par: found %.4f (loss %.4f) against the all-interleaved baseline %.4f (loss %.4f)",
           vs[0].res.metric, vs[0].res.loss, vs[1].res.metric, vs[1].res.loss);
    if ((rc = plot(p, err)) || (rc = summary(p, vs, err)))
        return rc;
    char text[4096];
    if (h->arch_format(h->space, &a, text, sizeof text) > 0)
        h->log(h->ctx, ET_LOG_LEVEL_INFO, "par: found %s", text);
    for (int32_t i = 0; i < p->n_layers; i++) {
        const par_layer *pl = &p->layer[i];
        int32_t c = gumbel_argmax(p->z + pl->at, CANDS);
        h->log(h->ctx, ET_LOG_LEVEL_DEBUG, "par: %s layer %d -> %s",
               pl->stack ? "decoder" : "encoder", (int)pl->layer, cand_name[c]);
    }
    return 0;
}

static const et_search_vtable par_vtable = {
    .create = par_create,
    .destroy = par_destroy,
    .run = par_run,
};

static const et_plugin_descriptor par_descriptor = {
    ET_ABI_VERSION,
    ET_PLUGIN_KIND_SEARCH,
    "par",
    "PAR: differentiable choice of attention, feed-forward or identity per layer (Gumbel-softmax "
    "over a soft-choice supernet, optional expected-cost term)",
    par_options,
    &par_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &par_descriptor;
}
