/* The `flops` cost proxy: FLOPs of one forward pass of an architecture,
 * batch 1, teacher-forced, as 2 x MACs in units of 1e9 (spec/costs.md).
 * Figures: flops_g, and other_ops_g (elementwise operations, one per
 * element, outside flops_g; etnas convention only, 0 under hat).
 *
 * Lengths: src_len / tgt_len, or by default the task's: an encoder
 * classifier's max_src_len input positions (one more with a class token), a
 * decoder-only model's max_src_len, and for seq2seq 30 source and 30 target
 * tokens (the WMT reference of spec/costs.md; the task's maxima when those
 * are shorter). A decoder layer attending to the last c encoder layers
 * reads S = c * src_len encoder rows.
 *
 * etnas, per part of a layer with T rows, embed dim e, q/k/v width q,
 * d = q / heads, FFN dim f (the space's heads rule gives q):
 *   attention  LN T*e + QKV T*e*3q + the operator's own count
 *              (host->attention_macs) + proj T*q*e (+ 3 taps x T*3q with
 *              Primer's depthwise convolution)
 *   cross      LN T*e + Q T*e*qx + KV 2*S*e_enc*qx + operator + out T*qx*e
 *   conv       LN T*e + GLU input T*e*2e + depthwise T*k*e + output T*e*e
 *   FFN        LN T*e + FC1 T*e*f + FC2 T*f*e
 * a LayerNorm's affine being one MAC per element; plus a final LN T*e per
 * stack with pre-norm, and the embeddings and output:
 *   encoder classifiers (the engine): patch embedding src_len*input_dim*e
 *   (token inputs: the sqrt(e) scale, src_len*e), head e*C;
 *   seq2seq and decoder-only (assumed, like the params proxy): the sqrt(e)
 *   scale of each token embedding, T*e, and the output projection
 *   T*e*tgt_vocab. Lookups are free.
 * other_ops_g counts bias adds, residual adds, the position add, LayerNorm
 * normalisation (4 per element: mean sum, centring, variance sum, scaling),
 * activations (1 per element whatever the function) and mean pooling. The
 * operators' own elementwise work (softmax exp, feature maps) is theirs:
 * attention_macs reports MACs only, so it is not in other_ops_g.
 *
 * hat: spec/costs.md 2 exactly, per part (L rows, S encoder rows):
 *   attention  4Lqe + 2L^2 q + Lq + Le
 *   cross      2Lqe + 2Sq e_enc + 2LSq + Lq + Le
 *   FFN        2Lef + Le
 * the same for every attention operator (the formulas count softmax's two
 * matrix products), plus Le per final LN with pre-norm and Le per token
 * embedding scale; no patch embedding, head or output projection. */
#include <stdlib.h>

#include <etnas/attention.h>
#include <etnas/proxy.h>

#include "geometry.h"

/* The reference lengths of translation in spec/costs.md. */
#define FLOPS_SEQ2SEQ_LEN 30

enum { OPT_CONVENTION, OPT_SRC_LEN, OPT_TGT_LEN, OPT_POOLING };

static const et_option_decl flops_options[] = {
    GEOM_OPTION_CONVENTION,
    {"src_len", ET_OPTION_TYPE_INT, "0", 0, 1000000, NULL,
     "input positions (class token not counted); 0: the task's (30 for seq2seq)"},
    {"tgt_len", ET_OPTION_TYPE_INT, "0", 0, 1000000, NULL,
     "seq2seq target positions; 0: 30 (the task's maximum when shorter)"},
    GEOM_OPTION_POOLING,
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

typedef struct flops_state {
    const et_host *host;
    int hat;
    int64_t src_len, tgt_len, pooling;
} flops_state;

typedef struct tally {
    double macs, other;
} tally;

static int flops_create(const et_host *host, const et_option_value *opts, void **state,
                        char **err)
{
    *state = NULL;
    int rc = geom_check_space(host, "flops", opts[OPT_POOLING].i, err);
    if (rc)
        return rc;
    if (opts[OPT_TGT_LEN].i && host->space->kind != ET_MODEL_KIND_SEQ2SEQ) {
        *err = host->errorf("flops: tgt_len applies to encoder-decoder spaces only; use src_len "
                            "for the sequence length");
        return ET_STATUS_ERR_USAGE;
    }
    flops_state *f = calloc(1, sizeof *f);
    if (!f) {
        *err = host->errorf("flops: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    f->host = host;
    f->hat = opts[OPT_CONVENTION].i == GEOM_CONVENTION_HAT;
    f->src_len = opts[OPT_SRC_LEN].i;
    f->tgt_len = opts[OPT_TGT_LEN].i;
    f->pooling = opts[OPT_POOLING].i;
    *state = f;
    return 0;
}

static void flops_destroy(void *state)
{
    free(state);
}

/* One length: the option, else the default; never past the task's maximum. */
static int length(const flops_state *f, const char *key, int64_t option, int64_t fallback,
                  int32_t task_max, int64_t *out, char **err)
{
    const et_task_info *t = geom_task(f->host);
    if (option) {
        if (t && option > task_max) {
            *err = f->host->errorf("flops: %s = %lld is longer than the task's %d positions",
                                   key, (long long)option, task_max);
            return ET_STATUS_ERR_USAGE;
        }
        *out = option;
        return 0;
    }
    if (fallback) {
        *out = t && task_max < fallback ? task_max : fallback;
        return 0;
    }
    if (!t) {
        *err = f->host->errorf("flops: without a task the sequence length is unknown; set "
                               "src_len");
        return ET_STATUS_ERR_USAGE;
    }
    *out = task_max;
    return 0;
}

static int lengths(const flops_state *f, int64_t *ls, int64_t *lt, char **err)
{
    const et_task_info *t = geom_task(f->host);
    int s2s = f->host->space->kind == ET_MODEL_KIND_SEQ2SEQ;
    int64_t dflt = s2s ? FLOPS_SEQ2SEQ_LEN : 0;
    int rc = length(f, "src_len", f->src_len, dflt, t ? t->max_src_len : 0, ls, err);
    *lt = 0;
    if (!rc && s2s)
        rc = length(f, "tgt_len", f->tgt_len, dflt, t ? t->max_tgt_len : 0, lt, err);
    return rc;
}

static int attention(const flops_state *f, int stack, int64_t choice, int64_t heads, int64_t len_q,
                     int64_t len_k, int64_t d, int32_t mode, double *macs, char **err)
{
    const et_host *host = f->host;
    et_attn_shape s = {1, (int32_t)heads, (int32_t)len_q, (int32_t)len_k, (int32_t)d, (int32_t)d,
                       mode, NULL};
    *macs = host->attention_macs(host->ctx, stack, (int32_t)choice, &s);
    if (!(*macs >= 0)) {
        *err = host->errorf("flops: the attention operator (stack %d, choice %lld) reported %g "
                            "MACs",
                            stack, (long long)choice, *macs);
        return ET_STATUS_ERR_NUMERIC;
    }
    return 0;
}

/* A LayerNorm over T rows of e: affine MACs, normalisation ops. */
static void layernorm(tally *c, int hat, double T, double e)
{
    c->macs += T * e;
    if (!hat)
        c->other += 4 * T * e;
}

/* The layers and final LN of one stack over T rows; ls is the source length
 * that cross-attention multiplies by En-De Connect. */
static int stack_flops(const flops_state *f, const et_arch *arch, int stack, double T, double ls,
                       tally *c, char **err)
{
    const et_space *space = f->host->space;
    const et_stack_arch *sa = stack == GEOM_STACK_ENC ? &arch->enc : &arch->dec;
    double e = sa->embed_dim, e_enc = arch->enc.embed_dim;
    int32_t mode = stack == GEOM_STACK_ENC ? ET_ATTN_MODE_BIDIRECTIONAL : ET_ATTN_MODE_CAUSAL;
    int hat = f->hat, rc;
    for (int32_t l = 0; l < sa->layers; l++) {
        geom_layer g;
        geom_layer_get(space, arch, stack, l, &g);
        double q = (double)g.q, qx = (double)g.qx, F = (double)g.ffn_dim;
        double S = ls * (double)g.connect;
        if (g.attn) {
            layernorm(c, hat, T, e);
            if (hat) {
                c->macs += 4 * T * q * e + 2 * T * T * q + T * q;
            } else {
                double core;
                if ((rc = attention(f, stack, g.choice, g.heads, (int64_t)T, (int64_t)T, g.d, mode,
                                    &core, err)))
                    return rc;
                c->macs += T * e * 3 * q + core + T * q * e;
                if (space->primer_dconv) /* 3 taps per q/k/v channel */
                    c->macs += 3 * T * 3 * q;
                c->other += T * 3 * q + 2 * T * e;
            }
        }
        if (g.cross) {
            layernorm(c, hat, T, e);
            if (hat) {
                c->macs += 2 * T * qx * e + 2 * S * qx * e_enc + 2 * T * S * qx + T * qx;
            } else {
                double core;
                if ((rc = attention(f, GEOM_STACK_CROSS, g.xchoice, g.xheads, (int64_t)T,
                                    (int64_t)S, g.dx, ET_ATTN_MODE_CROSS, &core, err)))
                    return rc;
                c->macs += T * e * qx + 2 * S * e_enc * qx + core + T * qx * e;
                c->other += T * qx + 2 * S * qx + 2 * T * e;
            }
        }
        if (g.conv) {
            /* GLU input T*e*2e, depthwise T*k*e, output T*e*e; GLU (sigmoid and
             * product) and biases, residual in other */
            layernorm(c, hat, T, e);
            c->macs += 2 * T * e * e + T * (double)g.kernel * e + T * e * e;
            if (!hat)
                c->other += 2 * T * e + 2 * T * e + 2 * T * e;
        }
        if (g.ffn) {
            layernorm(c, hat, T, e);
            c->macs += 2 * T * e * F;
            if (!hat)
                c->other += 2 * T * F + 2 * T * e;
        }
    }
    if (space->norm == ET_NORM_PRE)
        layernorm(c, hat, T, e);
    return 0;
}

/* Embeddings in, head or output projection out (positions: one add). */
static void ends_flops(const flops_state *f, const et_arch *arch, double ls, double lt, tally *c)
{
    const et_space *space = f->host->space;
    const et_task_info *t = geom_task(f->host);
    int hat = f->hat;
    if (space->kind == ET_MODEL_KIND_ENCODER) {
        int cls = geom_has_cls(space, f->pooling);
        double e = arch->enc.embed_dim, T = ls + cls;
        if (geom_encoder_tokens(space, t)) {
            c->macs += ls * e;
        } else if (!hat) {
            c->macs += ls * t->input_dim * e;
            c->other += ls * e;
        }
        if (hat)
            return;
        c->other += T * e;
        if (!cls)
            c->other += ls * e + e;
        c->macs += e * t->num_classes;
        c->other += t->num_classes;
        return;
    }
    double e_in = space->kind == ET_MODEL_KIND_SEQ2SEQ ? arch->enc.embed_dim : arch->dec.embed_dim;
    double e_out = arch->dec.embed_dim, l_out = space->kind == ET_MODEL_KIND_SEQ2SEQ ? lt : ls;
    c->macs += ls * e_in;
    if (space->kind == ET_MODEL_KIND_SEQ2SEQ)
        c->macs += lt * e_out;
    if (hat)
        return;
    c->other += ls * e_in + (space->kind == ET_MODEL_KIND_SEQ2SEQ ? lt * e_out : 0);
    double vout = t->tgt_vocab ? t->tgt_vocab : t->src_vocab;
    c->macs += l_out * e_out * vout;
}

static int flops_measure(void *state, const et_arch *arch, double *values, char **err)
{
    const flops_state *f = state;
    const et_host *host = f->host;
    const et_space *space = host->space;
    int rc = geom_check_arch(host, "flops", arch, err);
    if (rc)
        return rc;
    if (!f->hat) {
        if ((rc = geom_check_task(host, "flops", "its lengths, inputs and outputs", err)))
            return rc;
        if (!ET_HOST_HAS(host, attention_macs) || !host->attention_macs) {
            *err = host->errorf("flops: the host has no attention_macs service to count the "
                                "attention operators; use convention = hat or a newer etnas");
            return ET_STATUS_ERR_UNSUPPORTED;
        }
    }
    int64_t ls, lt;
    if ((rc = lengths(f, &ls, &lt, err)))
        return rc;
    tally c = {0, 0};
    if (space->kind == ET_MODEL_KIND_ENCODER) {
        double T = (double)ls + geom_has_cls(space, f->pooling);
        rc = stack_flops(f, arch, GEOM_STACK_ENC, T, 0, &c, err);
    } else if (space->kind == ET_MODEL_KIND_SEQ2SEQ) {
        rc = stack_flops(f, arch, GEOM_STACK_ENC, (double)ls, 0, &c, err);
        if (!rc)
            rc = stack_flops(f, arch, GEOM_STACK_DEC, (double)lt, (double)ls, &c, err);
    } else {
        rc = stack_flops(f, arch, GEOM_STACK_DEC, (double)ls, 0, &c, err);
    }
    if (rc)
        return rc;
    ends_flops(f, arch, (double)ls, (double)lt, &c);
    values[0] = 2 * c.macs / 1e9;
    values[1] = c.other / 1e9;
    return 0;
}

static const char *const flops_figures[] = {"flops_g", "other_ops_g", NULL};

static const et_proxy_vtable flops_vtable = {
    .create = flops_create,
    .destroy = flops_destroy,
    .figures = flops_figures,
    .measure = flops_measure,
};

static const et_plugin_descriptor flops_descriptor = {
    .abi_version = ET_ABI_VERSION,
    .kind = ET_PLUGIN_KIND_PROXY,
    .name = "flops",
    .summary = "GFLOPs of one forward (flops_g = 2 x MACs / 1e9, attention operators by their "
               "own count) and other elementwise ops (other_ops_g), etnas or HAT convention",
    .options = flops_options,
    .vtable = &flops_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &flops_descriptor;
}
