/* The `params` cost proxy: trainable parameters of an architecture, in
 * millions (spec/costs.md). Figures: params_m (everything counted) and
 * params_embed_m (the part of it in embedding, position, class-token and
 * output tables).
 *
 * Per layer, with e the stack's embed dim, q the q/k/v width (the space's
 * heads rule), f the FFN dim, parts kept by the block type:
 *   attention   LN 2e + QKV 3q*e + 3q + proj e*q + e
 *   cross       LN 2e + Q qx*e + qx + KV 2qx*e_enc + 2qx + out e*qx + e
 *   FFN         LN 2e + FC1 f*e + f + FC2 e*f + e
 * plus a final LN 2e per stack with pre-norm. These are HAT's per-layer
 * formulas too (its QKV bias is the full 3q: q is fixed, not sliced by e),
 * so the two conventions differ only in the tables:
 *
 * etnas: the tables of the bound subnet as the engine allocates them.
 *   Encoder classifiers (exactly src/model.c): patch embedding e*input_dim
 *   + e (token inputs: a src_vocab*e table instead), class token e when it
 *   has one, learned positions (max_src_len + class token)*e, head C*e + C.
 *   Seq2seq and decoder-only models are not built by the engine yet; this
 *   assumes their likely shape: token tables src_vocab*e_enc and
 *   tgt_vocab*e_dec, learned positions max_src_len*e_enc and
 *   max_tgt_len*e_dec (decoder-only: one input table, max_src_len
 *   positions), and an output projection tgt_vocab*e_dec without bias.
 *   share_embeddings = decoder ties the output projection to the decoder's
 *   input table; all also ties the source table to it (one vocabulary, and
 *   e_enc != e_dec slices share one table of max(e_enc, e_dec) columns).
 *   positions = sinusoidal drops the position tables.
 * hat: no tables at all, so only the architecture is needed. */
#include <stdlib.h>

#include <etnas/proxy.h>

#include "geometry.h"

enum { OPT_CONVENTION, OPT_POOLING, OPT_SHARE, OPT_POSITIONS };
enum { SHARE_NONE = 0, SHARE_DECODER = 1, SHARE_ALL = 2 };
enum { POSITIONS_LEARNED = 0, POSITIONS_SINUSOIDAL = 1 };

static const et_option_decl params_options[] = {
    GEOM_OPTION_CONVENTION,
    GEOM_OPTION_POOLING,
    {"share_embeddings", ET_OPTION_TYPE_CHOICE, "none", 0, -1, "none|decoder|all",
     "tied tables (seq2seq, decoder-only): decoder input = output projection; all: the source "
     "table too"},
    {"positions", ET_OPTION_TYPE_CHOICE, "learned", 0, -1, "learned|sinusoidal",
     "position encoding: learned tables (the engine's) or sinusoidal (no parameters)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

typedef struct params_state {
    const et_host *host;
    int hat;
    int64_t pooling;
    int64_t share;
    int learned_positions;
} params_state;

static int params_create(const et_host *host, const et_option_value *opts, void **state,
                         char **err)
{
    *state = NULL;
    int rc = geom_check_space(host, "params", opts[OPT_POOLING].i, err);
    if (rc)
        return rc;
    if (opts[OPT_SHARE].i != SHARE_NONE && host->space->kind == ET_MODEL_KIND_ENCODER) {
        *err = host->errorf("params: share_embeddings = %s needs a decoder, and the space is an "
                            "encoder classifier; remove the key",
                            opts[OPT_SHARE].s);
        return ET_STATUS_ERR_USAGE;
    }
    params_state *p = calloc(1, sizeof *p);
    if (!p) {
        *err = host->errorf("params: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    p->host = host;
    p->hat = opts[OPT_CONVENTION].i == GEOM_CONVENTION_HAT;
    p->pooling = opts[OPT_POOLING].i;
    p->share = opts[OPT_SHARE].i;
    p->learned_positions = opts[OPT_POSITIONS].i == POSITIONS_LEARNED;
    *state = p;
    return 0;
}

static void params_destroy(void *state)
{
    free(state);
}

/* The layers of one stack and its final LN; e_enc feeds cross-attention. */
static int64_t stack_params(const et_space *space, const et_arch *arch, int stack)
{
    const et_stack_arch *sa = stack == GEOM_STACK_ENC ? &arch->enc : &arch->dec;
    int64_t e = sa->embed_dim, e_enc = arch->enc.embed_dim, n = 0;
    for (int32_t l = 0; l < sa->layers; l++) {
        geom_layer g;
        geom_layer_get(space, arch, stack, l, &g);
        if (g.attn)
            n += 2 * e + 3 * g.q * e + 3 * g.q + e * g.q + e +
                 (space->primer_dconv ? 3 * 3 * g.q : 0); /* Primer: 3 taps per channel */
        if (g.cross)
            n += 2 * e + g.qx * e + g.qx + 2 * g.qx * e_enc + 2 * g.qx + e * g.qx + e;
        if (g.conv) /* LN, GLU input 2e x e + 2e, depthwise k x e, output e x e + e */
            n += 2 * e + 2 * e * e + 2 * e + g.kernel * e + e * e + e;
        if (g.ffn)
            n += 2 * e + g.ffn_dim * e + g.ffn_dim + e * g.ffn_dim + e;
    }
    if (space->norm == ET_NORM_PRE)
        n += 2 * e;
    return n;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* Embedding, position, class-token and output tables (etnas convention). */
static int table_params(const params_state *p, const et_arch *arch, int64_t *out, char **err)
{
    const et_host *host = p->host;
    const et_space *space = host->space;
    const et_task_info *t = geom_task(host);
    int64_t pos = p->learned_positions;
    if (space->kind == ET_MODEL_KIND_ENCODER) {
        int64_t e = arch->enc.embed_dim, cls = geom_has_cls(space, p->pooling);
        int64_t in = geom_encoder_tokens(space, t) ? t->src_vocab * e : e * t->input_dim + e;
        *out = in + cls * e + pos * (t->max_src_len + cls) * e + (int64_t)t->num_classes * e +
               t->num_classes;
        return 0;
    }
    if (space->kind == ET_MODEL_KIND_DECODER) {
        int64_t e = arch->dec.embed_dim;
        int64_t vin = t->src_vocab ? t->src_vocab : t->tgt_vocab;
        int64_t vout = t->tgt_vocab ? t->tgt_vocab : t->src_vocab;
        if (p->share != SHARE_NONE && vin != vout) {
            *err = host->errorf("params: share_embeddings = %s ties the input table (%lld tokens) "
                                "to the output projection (%lld tokens); the vocabularies differ",
                                p->share == SHARE_ALL ? "all" : "decoder", (long long)vin,
                                (long long)vout);
            return ET_STATUS_ERR_USAGE;
        }
        *out = vin * e + pos * t->max_src_len * e + (p->share == SHARE_NONE ? vout * e : 0);
        return 0;
    }
    int64_t ee = arch->enc.embed_dim, ed = arch->dec.embed_dim;
    int64_t positions = pos * (t->max_src_len * ee + t->max_tgt_len * ed);
    switch (p->share) {
    case SHARE_NONE:
        *out = t->src_vocab * ee + 2 * (int64_t)t->tgt_vocab * ed + positions;
        return 0;
    case SHARE_DECODER:
        *out = t->src_vocab * ee + (int64_t)t->tgt_vocab * ed + positions;
        return 0;
    default:
        if (t->src_vocab != t->tgt_vocab) {
            *err = host->errorf("params: share_embeddings = all needs one vocabulary, and the "
                                "task has %d source and %d target tokens; use decoder or none",
                                t->src_vocab, t->tgt_vocab);
            return ET_STATUS_ERR_USAGE;
        }
        *out = t->tgt_vocab * max64(ee, ed) + positions;
        return 0;
    }
}

static int params_measure(void *state, const et_arch *arch, double *values, char **err)
{
    const params_state *p = state;
    const et_space *space = p->host->space;
    int rc = geom_check_arch(p->host, "params", arch, err);
    if (rc)
        return rc;
    int64_t body = 0, tables = 0;
    if (space->enc.present)
        body += stack_params(space, arch, GEOM_STACK_ENC);
    if (space->dec.present)
        body += stack_params(space, arch, GEOM_STACK_DEC);
    if (!p->hat) {
        if ((rc = geom_check_task(p->host, "params", "its embedding and output tables", err)) ||
            (rc = table_params(p, arch, &tables, err)))
            return rc;
    }
    values[0] = (double)(body + tables) / 1e6;
    values[1] = (double)tables / 1e6;
    return 0;
}

static const char *const params_figures[] = {"params_m", "params_embed_m", NULL};

static const et_proxy_vtable params_vtable = {
    .create = params_create,
    .destroy = params_destroy,
    .figures = params_figures,
    .measure = params_measure,
};

static const et_plugin_descriptor params_descriptor = {
    .abi_version = ET_ABI_VERSION,
    .kind = ET_PLUGIN_KIND_PROXY,
    .name = "params",
    .summary = "trainable parameters in millions (params_m) and the embedding/output share of "
               "them (params_embed_m), etnas or HAT convention",
    .options = params_options,
    .vtable = &params_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &params_descriptor;
}
