/* The elastic Transformer supernet (model.h): parameter arena at the space's
 * maxima, binding of an architecture to top-left slices, and the forward and
 * backward passes of encoder classifiers, encoder-decoder and decoder-only
 * token models. Incremental decoding is in model_decode.c.
 *
 * A layer is up to three residual parts, self-attention, cross-attention
 * (seq2seq decoders) and FFN, each wrapped the same way:
 *   pre-norm  out = in + drop(sub(LN(in)))
 *   post-norm out = LN(in + drop(sub(in)))
 * Block types drop parts: attention-only keeps both attentions, ffn-only the
 * FFN, identity none.
 *
 * Shapes: B examples, T positions of a stack (input length, +1 with a class
 * token; target length in the decoder), N = B*T rows; e embed dim, q =
 * q/k/v width, d = q / heads, f FFN dim of the bound arch; E, Q, F the
 * maxima (leading dimensions of the weights). Cross-attention reads memory
 * of Sk = k*S rows per example (k = En-De Connect, S the source length):
 * the valid rows of the last k encoder layers' outputs, earliest layer
 * first, padding at the end. */
#include "model_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "space.h"
#include "util.h"

static int32_t max_of(const et_int_choices *c)
{
    int32_t m = 0;
    for (int32_t i = 0; i < c->n; i++)
        m = c->v[i] > m ? c->v[i] : m;
    return m;
}

int32_t et_model_q_width(const et_space *s, int32_t heads)
{
    return s->heads_rule == ET_HEADS_RULE_QKV_DIM ? s->qkv_dim : s->head_dim * heads;
}

static int32_t add_tensor(et_model *m, const char *prefix, const char *name, int32_t rows,
                          int32_t cols, int decay)
{
    et_tensor *t = &m->tensors[m->n_tensors];
    snprintf(m->names[m->n_tensors], sizeof m->names[0], "%s%s", prefix, name);
    t->name = m->names[m->n_tensors];
    t->offset = m->n_params;
    t->rows = rows;
    t->cols = cols;
    t->bound_rows = 0;
    t->bound_cols = 0;
    t->decay = decay;
    m->n_params += (int64_t)rows * cols;
    return m->n_tensors++;
}

float *et_model_param(const et_model *m, int32_t t)
{
    return m->arena + m->tensors[t].offset;
}

#define P(m, t) et_model_param((m), (t))

static float *G(const et_model *m, int32_t t)
{
    return m->arena + m->n_params + m->tensors[t].offset;
}

static const char *const layer_names[P_PER_LAYER] = {
    "ln1.gamma", "ln1.beta", "qkv.weight", "qkv.bias", "proj.weight", "proj.bias",
    "ln2.gamma", "ln2.beta", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
    "lnc.gamma", "lnc.beta", "cq.weight", "cq.bias", "ckv.weight", "ckv.bias",
    "cproj.weight", "cproj.bias", "dconv.weight", "lnv.gamma", "lnv.beta", "conv_in.weight",
    "conv_in.bias", "conv_dw.weight", "conv_out.weight", "conv_out.bias"};

static void stack_maxima(et_model *m, et_stack *s, const et_stack_space *sp, int32_t id)
{
    s->id = id;
    s->present = 1;
    s->E = max_of(&sp->embed_dim);
    s->F = max_of(&sp->ffn_dim);
    s->L = max_of(&sp->layers);
    s->Q = et_model_q_width(&m->space, max_of(&sp->heads));
    s->n_attn = sp->attention.n;
    s->n_cross = 0;
    if (id == 1 && m->kind == ET_MODEL_KIND_SEQ2SEQ) {
        s->QC = et_model_q_width(&m->space, max_of(&sp->cross_heads));
        s->n_cross = sp->cross_attention.n;
    }
    s->n_inst = s->n_attn + s->n_cross;
    s->t_tok = s->t_pos = s->t_lnf_g = s->t_lnf_b = -1;
}

static void layer_tensors(et_model *m, et_stack *s, const char *prefix)
{
    int32_t E = s->E, Q = s->Q, F = s->F, QC = s->QC;
    int32_t E_enc = m->st[0].E;
    int parts = s->n_cross ? P_DCONV_W : P_SELF_COUNT; /* the rest are optional, below */
    for (int32_t l = 0; l < s->L; l++) {
        for (int p = 0; p < P_PER_LAYER; p++)
            s->t_layer[l][p] = -1;
        for (int p = 0; p < parts; p++) {
            int32_t r = 1, c = E;
            switch (p) {
            case P_QKV_W: r = 3 * Q; c = E; break;
            case P_QKV_B: c = 3 * Q; break;
            case P_PROJ_W: r = E; c = Q; break;
            case P_FC1_W: r = F; c = E; break;
            case P_FC1_B: c = F; break;
            case P_FC2_W: r = E; c = F; break;
            case P_CQ_W: r = QC; c = E; break;
            case P_CQ_B: c = QC; break;
            case P_CKV_W: r = 2 * QC; c = E_enc; break;
            case P_CKV_B: c = 2 * QC; break;
            case P_CPROJ_W: r = E; c = QC; break;
            default: break;
            }
            s->t_layer[l][p] = add_tensor(m, prefix, layer_names[p], r, c, r > 1);
        }
        if (m->space.primer_dconv)
            s->t_layer[l][P_DCONV_W] = add_tensor(m, prefix, layer_names[P_DCONV_W], 3, 3 * Q, 1);
        const et_stack_space *sp = s->id ? &m->space.dec : &m->space.enc;
        if (sp->conv_kernel.n) {
            int32_t K = max_of(&sp->conv_kernel);
            const int32_t shape[7][2] = {{1, E}, {1, E}, {2 * E, E}, {1, 2 * E},
                                         {K, E}, {E, E},  {1, E}};
            for (int p = 0; p < 7; p++)
                s->t_layer[l][P_LNV_G + p] =
                    add_tensor(m, prefix, layer_names[P_LNV_G + p], shape[p][0], shape[p][1],
                               p == 2 || p == 4 || p == 5);
        }
    }
}

static int create_operators(et_model *m, et_stack *s, const et_stack_space *sp, char **err)
{
    int32_t n = s->L * s->n_inst;
    s->hosts = calloc((size_t)(n ? n : 1), sizeof *s->hosts);
    s->states = calloc((size_t)(n ? n : 1), sizeof *s->states);
    if (!s->hosts || !s->states)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "model: out of memory");
    for (int32_t l = 0; l < s->L; l++)
        for (int32_t c = 0; c < s->n_inst; c++) {
            int32_t i = l * s->n_inst + c;
            int cross = c >= s->n_attn;
            const et_attn_impl *impl = cross ? &s->cross_impl[c - s->n_attn] : &s->impl[c];
            const char *name =
                cross ? sp->cross_attention.v[c - s->n_attn] : sp->attention.v[c];
            s->hosts[i] = m->host;
            et_rng base = et_rng_from_seed(m->host.seed);
            /* the encoder's streams are those of the first engine version */
            uint64_t stream = (uint64_t)s->id * ((uint64_t)ET_MAX_LAYERS * 2 * ET_MAX_CHOICES) +
                              (uint64_t)i + 1;
            et_rng r = et_rng_split(&base, stream);
            s->hosts[i].seed = et_rng_u64(&r);
            char *perr = NULL;
            int rc = impl->vt->create(&s->hosts[i], impl->opts, &s->states[i], &perr);
            if (rc) {
                et_fail(err, rc, "model: %s attention '%s' (%s layer %d): %s",
                        cross ? "cross" : "self", name, s->id ? "decoder" : "encoder", l,
                        perr ? perr : "create failed");
                free(perr);
                s->states[i] = NULL;
                return rc;
            }
        }
    return 0;
}

static int check_config(const et_space *space, const et_model_config *cfg, char **err)
{
    if (cfg->max_batch < 1)
        return et_fail(err, ET_STATUS_ERR_USAGE, "model: max_batch must be >= 1");
    switch (space->kind) {
    case ET_MODEL_KIND_ENCODER:
        if (cfg->input_dim < 1 || cfg->max_len < 1 || cfg->num_classes < 2)
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "model: input_dim, max_len must be >= 1 and num_classes >= 2");
        if (!cfg->enc_attention)
            return et_fail(err, ET_STATUS_ERR_USAGE, "model: no encoder attention operators");
        return 0;
    case ET_MODEL_KIND_SEQ2SEQ:
        if (cfg->src_vocab < 5 || cfg->max_len < 1 || !cfg->enc_attention ||
            !cfg->cross_attention)
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "model: a seq2seq model needs a source vocabulary, max_len >= 1 and "
                           "encoder and cross-attention operators");
        if (cfg->share_embeddings && cfg->src_vocab != cfg->tgt_vocab)
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "model: shared embeddings need one vocabulary (source %d, target %d "
                           "tokens)",
                           cfg->src_vocab, cfg->tgt_vocab);
        /* fall through */
    case ET_MODEL_KIND_DECODER:
        if (cfg->tgt_vocab < 5 || cfg->max_tgt_len < 1 || !cfg->dec_attention)
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "model: a token model needs a target vocabulary, max_tgt_len >= 1 and "
                           "decoder attention operators");
        return 0;
    default:
        return et_fail(err, ET_STATUS_ERR_USAGE, "model: unknown model kind %d", space->kind);
    }
}

int et_model_create(const et_space *space, const et_model_config *cfg, const et_host *host,
                    et_model **out, char **err)
{
    *out = NULL;
    int rc = check_config(space, cfg, err);
    if (rc)
        return rc;
    et_model *m = calloc(1, sizeof *m);
    if (!m)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "model: out of memory");
    m->space = *space;
    m->cfg = *cfg;
    m->host = *host;
    m->kind = space->kind;
    m->C = cfg->num_classes;
    m->in_dim = cfg->input_dim;
    m->V_src = cfg->src_vocab;
    m->V_tgt = cfg->tgt_vocab;
    int classifier = m->kind == ET_MODEL_KIND_ENCODER;
    if (m->kind != ET_MODEL_KIND_DECODER)
        stack_maxima(m, &m->st[0], &space->enc, 0);
    if (m->kind != ET_MODEL_KIND_ENCODER)
        stack_maxima(m, &m->st[1], &space->dec, 1);
    m->st[0].impl = cfg->enc_attention;
    m->st[1].impl = cfg->dec_attention;
    m->st[1].cross_impl = cfg->cross_attention;
    m->cap_tensors = 16 + P_PER_LAYER * (m->st[0].L + m->st[1].L);
    m->tensors = calloc((size_t)m->cap_tensors, sizeof *m->tensors);
    m->names = calloc((size_t)m->cap_tensors, sizeof *m->names);
    m->ibuf_cap = (int64_t)cfg->max_batch * 5;
    m->ibuf = calloc((size_t)m->ibuf_cap, sizeof *m->ibuf);
    if (!m->tensors || !m->names || !m->ibuf) {
        et_model_destroy(m);
        return et_fail(err, ET_STATUS_ERR_NOMEM, "model: out of memory");
    }
    m->key_len_buf = m->ibuf;
    for (int k = 1; k <= 3; k++)
        m->mem_len[k] = m->ibuf + (int64_t)k * cfg->max_batch;
    m->t_patch_w = m->t_patch_b = m->t_cls = m->t_head_w = m->t_head_b = -1;
    if (classifier) {
        et_stack *s = &m->st[0];
        s->pos_rows = cfg->max_len + (space->pooling == ET_POOLING_CLS);
        m->t_patch_w = add_tensor(m, "", "embed.weight", s->E, m->in_dim, 1);
        m->t_patch_b = add_tensor(m, "", "embed.bias", 1, s->E, 0);
        m->t_cls = add_tensor(m, "", "cls", 1, s->E, 0);
        s->t_pos = add_tensor(m, "", "pos", s->pos_rows, s->E, 0);
        layer_tensors(m, s, "");
        s->t_lnf_g = add_tensor(m, "", "lnf.gamma", 1, s->E, 0);
        s->t_lnf_b = add_tensor(m, "", "lnf.beta", 1, s->E, 0);
        m->t_head_w = add_tensor(m, "", "head.weight", m->C, s->E, 1);
        m->t_head_b = add_tensor(m, "", "head.bias", 1, m->C, 0);
    } else {
        et_stack *enc = &m->st[0], *dec = &m->st[1];
        int learned = cfg->positions == ET_POSITIONS_LEARNED;
        if (enc->present) {
            int32_t E = enc->E;
            if (cfg->share_embeddings)
                E = dec->E > E ? dec->E : E;
            enc->t_tok = add_tensor(m, "enc.", "tok", m->V_src, E, 0);
            enc->pos_rows = cfg->max_len;
            if (learned)
                enc->t_pos = add_tensor(m, "enc.", "pos", enc->pos_rows, enc->E, 0);
            layer_tensors(m, enc, "enc.");
            enc->t_lnf_g = add_tensor(m, "enc.", "lnf.gamma", 1, enc->E, 0);
            enc->t_lnf_b = add_tensor(m, "enc.", "lnf.beta", 1, enc->E, 0);
        }
        dec->t_tok = enc->present && cfg->share_embeddings
                         ? enc->t_tok
                         : add_tensor(m, "dec.", "tok", m->V_tgt, dec->E, 0);
        dec->pos_rows = cfg->max_tgt_len;
        if (learned)
            dec->t_pos = add_tensor(m, "dec.", "pos", dec->pos_rows, dec->E, 0);
        layer_tensors(m, dec, "dec.");
        dec->t_lnf_g = add_tensor(m, "dec.", "lnf.gamma", 1, dec->E, 0);
        dec->t_lnf_b = add_tensor(m, "dec.", "lnf.beta", 1, dec->E, 0);
    }
    m->arena = calloc((size_t)m->n_params * 2, sizeof(float));
    if (!m->arena) {
        et_model_destroy(m);
        return et_fail(err, ET_STATUS_ERR_NOMEM, "model: out of memory for %lld parameters",
                       (long long)m->n_params);
    }
    const et_stack_space *sps[2] = {&space->enc, &space->dec};
    for (int i = 0; i < 2; i++)
        if (m->st[i].present && (rc = create_operators(m, &m->st[i], sps[i], err))) {
            et_model_destroy(m);
            return rc;
        }
    *out = m;
    return 0;
}

void et_model_destroy(et_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < 2; i++) {
        et_stack *s = &m->st[i];
        for (int32_t k = 0; s->states && k < s->L * s->n_inst; k++) {
            int32_t c = k % s->n_inst;
            const et_attn_impl *impl =
                c >= s->n_attn ? &s->cross_impl[c - s->n_attn] : &s->impl[c];
            if (s->states[k])
                impl->vt->destroy(s->states[k]);
        }
        free(s->states);
        free(s->hosts);
    }
    free(m->tensors);
    free(m->names);
    free(m->arena);
    free(m->act);
    free(m->ibuf);
    free(m->dec.arena);
    free(m->dec.cross_len);
    free(m);
}

float *et_model_params(et_model *m, int64_t *n)
{
    if (n)
        *n = m->n_params;
    return m->arena;
}

float *et_model_grads(et_model *m, int64_t *n)
{
    if (n)
        *n = m->n_params;
    return m->arena + m->n_params;
}

const et_tensor *et_model_tensors(const et_model *m, int32_t *n)
{
    *n = m->n_tensors;
    return m->tensors;
}

const et_space *et_model_space(const et_model *m)
{
    return &m->space;
}

const et_arch *et_model_arch(const et_model *m)
{
    return m->bound ? &m->arch : NULL;
}

const float *et_model_logits(const et_model *m)
{
    return m->logits;
}

int64_t et_model_units(const et_model *m)
{
    return m->units;
}

int64_t et_model_activation_bytes(const et_model *m)
{
    return m->act_need * (int64_t)sizeof(float);
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && !strcmp(s + len - n, suffix);
}

/* The tensor named as x's first `stem` characters then `suffix` (a layer's
 * other tensor), or NULL. */
static const et_tensor *sibling(const et_model *m, const et_tensor *x, size_t stem,
                                const char *suffix)
{
    for (int32_t t = 0; t < m->n_tensors; t++) {
        const char *w = m->tensors[t].name;
        if (!strncmp(w, x->name, stem) && !strcmp(w + stem, suffix))
            return &m->tensors[t];
    }
    return NULL;
}

/* The fan-in of tensor t's layer under ET_INIT_TORCH: a matrix reads its
 * columns (a depthwise conv its taps); a bias that of the weight it goes with
 * (the tensor of the same name with "weight" for "bias"). 0 when none. */
static int64_t torch_fan_in(const et_model *m, const et_tensor *x)
{
    size_t len = strlen(x->name);
    if (ends_with(x->name, len, "conv_dw.weight"))
        return x->rows;
    if (ends_with(x->name, len, ".weight"))
        return x->cols;
    if (!ends_with(x->name, len, ".bias"))
        return 0;
    const et_tensor *w = sibling(m, x, len - 4 /* up to and with the dot */, "weight");
    return w ? torch_fan_in(m, w) : 0;
}

/* The Xavier bound of cross-attention's q (QC, E) or k, v (2 QC, E_enc)
 * under ET_INIT_TORCH: nn.MultiheadAttention packs q, k, v into one (3E, E)
 * matrix when QC = E = E_enc (kdim = embed_dim), and draws q (QC, E), k and
 * v (QC, E_enc) each on its own shape otherwise. */
static double torch_cross_bound(const et_model *m, const et_tensor *x, size_t len, int is_q)
{
    size_t stem = len - (is_q ? strlen("cq.weight") : strlen("ckv.weight"));
    const et_tensor *q = sibling(m, x, stem, "cq.weight"), *kv = sibling(m, x, stem, "ckv.weight");
    if (q && kv && q->rows == q->cols && kv->cols == q->cols)
        return sqrt(6.0 / (4.0 * q->cols));
    return sqrt(6.0 / ((double)(is_q ? x->rows : x->rows / 2) + (double)x->cols));
}

/* The Xavier bound of an attention's q/k/v projection matrix as torch's
 * nn.MultiheadAttention draws it; 0 when x is no such matrix. */
static double torch_qkv_bound(const et_model *m, const et_tensor *x)
{
    size_t len = strlen(x->name);
    if (ends_with(x->name, len, "qkv.weight")) /* (3Q, E): packed as torch's in_proj */
        return sqrt(6.0 / ((double)x->rows + (double)x->cols));
    if (ends_with(x->name, len, "cq.weight") || ends_with(x->name, len, "ckv.weight"))
        return torch_cross_bound(m, x, len, ends_with(x->name, len, "cq.weight"));
    return 0;
}

static void uniform_fill(float *p, int64_t n, double a, et_rng *r)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(a * (2.0 * et_rng_uniform(r) - 1.0));
}

/* PyTorch's defaults (ET_INIT_TORCH) for a weight or bias tensor; 0 when
 * tensor x is neither (tables, norms: the caller's other rules). */
static int torch_init(const et_model *m, const et_tensor *x, float *p, et_rng *r)
{
    static const char *const mha_bias[] = {"qkv.bias", "proj.bias", "cq.bias", "ckv.bias",
                                           "cproj.bias"};
    size_t len = strlen(x->name);
    int64_t n = (int64_t)x->rows * x->cols;
    for (size_t i = 0; i < sizeof mha_bias / sizeof mha_bias[0]; i++)
        if (ends_with(x->name, len, mha_bias[i])) {
            memset(p, 0, sizeof(float) * (size_t)n);
            return 1;
        }
    double a = torch_qkv_bound(m, x);
    if (a == 0) {
        int64_t fan = torch_fan_in(m, x);
        if (fan <= 0)
            return 0;
        a = 1.0 / sqrt((double)fan);
    }
    uniform_fill(p, n, a, r);
    return 1;
}

void et_model_init(et_model *m, uint64_t seed)
{
    et_rng base = et_rng_from_seed(seed);
    for (int32_t t = 0; t < m->n_tensors; t++) {
        const et_tensor *x = &m->tensors[t];
        float *p = m->arena + x->offset;
        int64_t n = (int64_t)x->rows * x->cols;
        const char *dot = strrchr(x->name, '.');
        const char *kind = dot ? dot + 1 : x->name;
        et_rng r = et_rng_split(&base, (uint64_t)t);
        size_t len = strlen(x->name);
        if (ends_with(x->name, len, "dconv.weight")) {
            /* identity at init: the tap that reads position t is 1 (tap 0
             * in causal decoders, the centre tap in encoders) */
            memset(p, 0, sizeof(float) * (size_t)n);
            int64_t tap = strncmp(x->name, "dec.", 4) ? 1 : 0;
            for (int32_t c = 0; c < x->cols; c++)
                p[tap * x->cols + c] = 1.0f;
            continue;
        }
        double qkv = m->cfg.qkv_xavier ? torch_qkv_bound(m, x) : 0;
        if (qkv > 0) { /* the draw torch_init makes, under any init */
            uniform_fill(p, n, qkv, &r);
            continue;
        }
        if (m->cfg.init == ET_INIT_TORCH && torch_init(m, x, p, &r))
            continue;
        if (!strcmp(kind, "gamma")) {
            for (int64_t i = 0; i < n; i++)
                p[i] = 1.0f;
        } else if (!strcmp(kind, "beta") || !strcmp(kind, "bias")) {
            memset(p, 0, sizeof(float) * (size_t)n);
        } else if (m->cfg.init == ET_INIT_XAVIER && !strcmp(kind, "weight") && x->rows > 1 &&
                   !ends_with(x->name, len, "conv_dw.weight")) {
            /* U(-a, a), a = sqrt(6 / (fan_in + fan_out)), on the tensor at its
             * maxima (a fused QKV matrix as torch's multi-head attention) */
            uniform_fill(p, n, sqrt(6.0 / ((double)x->rows + (double)x->cols)), &r);
        } else if (m->cfg.init == ET_INIT_XAVIER && !strcmp(kind, "tok")) {
            /* N(0, 1/E): the lookup's sqrt(E) scale makes unit variance */
            double sd = 1.0 / sqrt((double)x->cols);
            for (int64_t i = 0; i < n; i++)
                p[i] = (float)(sd * et_rng_normal(&r));
        } else {
            /* tables: N(0, sd^2) cut at 2 sd (BERT, ViT); under init = torch
             * uncut (trunc_normal_'s default cut is +-2 absolute) and token
             * tables N(0, 1) as nn.Embedding */
            int torch = m->cfg.init == ET_INIT_TORCH;
            double sd = torch && !strcmp(kind, "tok") ? 1.0 : 0.02;
            if ((!strcmp(kind, "pos") || !strcmp(kind, "cls")) && m->cfg.pos_init_std > 0)
                sd = m->cfg.pos_init_std;
            for (int64_t i = 0; i < n; i++) {
                double z;
                do
                    z = et_rng_normal(&r);
                while (!torch && fabs(z) > 2.0);
                p[i] = (float)(sd * z);
            }
        }
    }
}

void et_model_sinusoid(float *out, int64_t t, int32_t e)
{
    int32_t half = e / 2;
    double step = half > 1 ? log(10000.0) / (double)(half - 1) : 0.0;
    for (int32_t i = 0; i < half; i++) {
        double a = (double)t * exp(-(double)i * step);
        out[i] = (float)sin(a);
        out[half + i] = (float)cos(a);
    }
    if (e % 2)
        out[e - 1] = 0.0f;
}

float et_model_embed_scale(const et_model *m, int32_t e)
{
    return m->kind == ET_MODEL_KIND_ENCODER ? 1.0f : sqrtf((float)e);
}

/* ---------------------------------------------------------------- binding */

typedef struct carve {
    float *base;
    int64_t used;
} carve;

static float *take(carve *c, int64_t n)
{
    float *p = c->base ? c->base + c->used : NULL;
    c->used += (n + 15) & ~(int64_t)15; /* 64-byte aligned blocks */
    return p;
}

static void layer_dims(const et_model *m, const et_stack *s, int32_t l, int cross, int32_t *q,
                       int32_t *d, int32_t *heads)
{
    const et_layer_arch *g = &s->arch->layer[l];
    *heads = cross ? g->cross_heads : g->heads;
    *q = et_model_q_width(&m->space, *heads);
    *d = *q / *heads;
}

void *et_model_attn_state(const et_model *m, const et_stack *s, int32_t l, int cross)
{
    (void)m;
    const et_layer_arch *g = &s->arch->layer[l];
    int32_t c = cross ? s->n_attn + g->cross_attention : g->attention;
    return s->states[l * s->n_inst + c];
}

const et_attention_vtable *et_model_attn_vt(const et_model *m, const et_stack *s, int32_t l,
                                            int cross)
{
    (void)m;
    const et_layer_arch *g = &s->arch->layer[l];
    return cross ? s->cross_impl[g->cross_attention].vt : s->impl[g->attention].vt;
}

static int has_part(const et_stack *s, int32_t l, int part)
{
    if (s->soft)
        return part == PART_CONV ? 0 : part != PART_CROSS || s->n_cross > 0;
    int32_t b = s->arch->layer[l].block;
    int attn = b == ET_BLOCK_STANDARD || b == ET_BLOCK_ATTENTION_ONLY;
    switch (part) {
    case PART_ATTN: return attn;
    case PART_CROSS: return attn && s->n_cross > 0;
    case PART_CONV: return b == ET_BLOCK_CONV;
    default: return b == ET_BLOCK_STANDARD || b == ET_BLOCK_FFN_ONLY || b == ET_BLOCK_CONV;
    }
}

/* Attention shape of layer l for b examples of the stack's T positions. */
static et_attn_shape self_shape(const et_model *m, const et_stack *s, int32_t l, int32_t b,
                                int32_t T, const int32_t *key_len)
{
    int32_t q, d, h;
    layer_dims(m, s, l, 0, &q, &d, &h);
    int32_t mode = s->id ? ET_ATTN_MODE_CAUSAL : ET_ATTN_MODE_BIDIRECTIONAL;
    return (et_attn_shape){b, h, T, T, d, d, mode, s->id ? NULL : key_len};
}

static et_attn_shape cross_shape(const et_model *m, const et_stack *s, int32_t l, int32_t b,
                                 int32_t T, int32_t Sk, const int32_t *key_len)
{
    int32_t q, d, h;
    layer_dims(m, s, l, 1, &q, &d, &h);
    return (et_attn_shape){b, h, T, Sk, d, d, ET_ATTN_MODE_CROSS, key_len};
}

/* Source positions of the bound arch (the encoder's T without class token). */
static int32_t src_cap(const et_model *m)
{
    return m->st[0].present ? m->st[0].T_cap : 0;
}

/* Lay out one stack's activations for N rows. */
static void plan_stack(et_model *m, et_stack *s, carve *c, int64_t *max_q, int64_t *max_f,
                       int64_t *max_qc)
{
    int64_t N = (int64_t)m->B * s->T_cap, e = s->arch->embed_dim;
    int pre = m->space.norm == ET_NORM_PRE;
    s->x0 = take(c, N * e);
    float *stream = s->x0;
    for (int32_t l = 0; l < s->arch->layers; l++) {
        layer_act *a = &s->la[l];
        const et_layer_arch *g = &s->arch->layer[l];
        memset(a, 0, sizeof *a);
        float *x = stream;
        for (int p = 0; p < PARTS; p++) {
            if (!has_part(s, l, p))
                continue;
            part_act *pa = &a->part[p];
            pa->in = s->soft && p == PART_FFN ? x : stream; /* soft: F reads the layer input */
            pa->out = take(c, N * e);
            pa->mean = take(c, N);
            pa->rstd = take(c, N);
            if (pre)
                pa->z = take(c, N * e);
            else
                pa->s = take(c, N * e);
            stream = pa->out;
        }
        if (s->soft) {
            a->soft_out = take(c, N * e);
            stream = a->soft_out; /* the next layer reads the mixture */
            if (s->soft_std) { /* `standard`: the FFN on the attention block's output */
                part_act *ps = &a->std_ffn;
                ps->in = a->part[s->n_cross ? PART_CROSS : PART_ATTN].out;
                ps->out = take(c, N * e);
                ps->mean = take(c, N);
                ps->rstd = take(c, N);
                if (pre)
                    ps->z = take(c, N * e);
                else
                    ps->s = take(c, N * e);
                a->std_h = take(c, N * g->ffn_dim);
                a->std_g = take(c, N * g->ffn_dim);
            }
        }
        int32_t q, d, h;
        if (has_part(s, l, PART_ATTN)) {
            layer_dims(m, s, l, 0, &q, &d, &h);
            a->qkv = take(c, N * 3 * q);
            a->qkv_pre = m->space.primer_dconv ? take(c, N * 3 * q) : NULL;
            a->att = take(c, N * q);
            et_attn_shape sh = self_shape(m, s, l, m->B, s->T_cap, NULL);
            for (int32_t o = 0; o < (s->soft_ops ? s->n_attn : 1); o++) {
                const et_attention_vtable *vt =
                    s->soft_ops ? s->impl[o].vt : et_model_attn_vt(m, s, l, 0);
                void *st = s->soft_ops ? s->states[l * s->n_inst + o]
                                       : et_model_attn_state(m, s, l, 0);
                float *saved = take(c, vt->saved_floats(st, &sh));
                if (s->soft_ops) {
                    a->saved_op[o] = saved;
                    a->att_op[o] = take(c, N * q);
                } else {
                    a->saved = saved;
                }
                int64_t w = vt->work_floats(st, &sh);
                m->work_floats = w > m->work_floats ? w : m->work_floats;
            }
            *max_q = q > *max_q ? q : *max_q;
        }
        if (has_part(s, l, PART_CROSS)) {
            layer_dims(m, s, l, 1, &q, &d, &h);
            int64_t Sk = (int64_t)g->connect * src_cap(m);
            a->cq = take(c, N * q);
            a->catt = take(c, N * q);
            a->ckv = take(c, (int64_t)m->B * Sk * 2 * q);
            et_attn_shape sh = cross_shape(m, s, l, m->B, s->T_cap, (int32_t)Sk, NULL);
            const et_attention_vtable *vt = et_model_attn_vt(m, s, l, 1);
            void *st = et_model_attn_state(m, s, l, 1);
            a->csaved = take(c, vt->saved_floats(st, &sh));
            int64_t w = vt->work_floats(st, &sh);
            m->work_floats = w > m->work_floats ? w : m->work_floats;
            *max_qc = q > *max_qc ? q : *max_qc;
            m->conn_used[g->connect] = 1;
            m->n_conn = g->connect > m->n_conn ? g->connect : m->n_conn;
        }
        if (has_part(s, l, PART_FFN)) {
            a->h = take(c, N * g->ffn_dim);
            a->g = take(c, N * g->ffn_dim);
            *max_f = g->ffn_dim > *max_f ? g->ffn_dim : *max_f;
        }
        if (has_part(s, l, PART_CONV)) {
            a->cin = take(c, N * 2 * e);
            a->cglu = take(c, N * e);
            a->cconv = take(c, N * e);
            m->has_conv = 1;
        }
    }
    s->fz = pre ? take(c, N * e) : NULL;
    s->fmean = take(c, N);
    s->frstd = take(c, N);
}

/* Lay the activations out for the bound arch (base NULL: just measure). */
static void plan(et_model *m, float *base)
{
    carve c = {base, 0};
    int64_t max_q = 0, max_f = 0, max_qc = 0, max_ne = 0;
    m->work_floats = 0;
    m->n_conn = 0;
    m->has_conv = 0;
    memset(m->conn_used, 0, sizeof m->conn_used);
    for (int i = 0; i < 2; i++) {
        et_stack *s = &m->st[i];
        if (!s->present)
            continue;
        plan_stack(m, s, &c, &max_q, &max_f, &max_qc);
        int64_t ne = (int64_t)m->B * s->T_cap * s->arch->embed_dim;
        max_ne = ne > max_ne ? ne : max_ne;
    }
    int64_t B = m->B;
    if (m->kind == ET_MODEL_KIND_ENCODER) {
        int64_t e = m->st[0].arch->embed_dim;
        m->emb = take(&c, B * m->cfg.max_len * e);
        m->pooled = take(&c, B * e);
        m->logits = take(&c, B * m->C);
        m->dlogits = take(&c, B * m->C);
        m->dpool = take(&c, B * e);
    } else {
        m->logits = take(&c, B * m->st[1].T_cap * m->V_tgt);
        m->dlogits = m->logits;
    }
    if (m->kind == ET_MODEL_KIND_SEQ2SEQ) {
        int64_t Ee = m->st[0].arch->embed_dim, S = src_cap(m);
        int pre = m->space.norm == ET_NORM_PRE;
        for (int j = 0; j < 3; j++) {
            m->seg[j] = m->segmean[j] = m->segrstd[j] = m->dseg[j] = NULL;
            if (j >= m->n_conn)
                continue;
            if (pre) {
                m->seg[j] = take(&c, B * S * Ee);
                m->segmean[j] = take(&c, B * S);
                m->segrstd[j] = take(&c, B * S);
            }
            m->dseg[j] = take(&c, B * S * Ee);
        }
        for (int k = 1; k <= 3; k++) {
            m->mem[k] = m->dmem[k] = NULL;
            if (!m->conn_used[k])
                continue;
            m->mem[k] = take(&c, B * k * S * Ee);
            m->dmem[k] = take(&c, B * k * S * Ee);
        }
        m->dcq = take(&c, B * m->st[1].T_cap * max_qc);
        m->dcatt = take(&c, B * m->st[1].T_cap * max_qc);
        m->dckv = take(&c, B * 3 * S * 2 * max_qc);
    }
    int64_t max_n = 0;
    for (int i = 0; i < 2; i++)
        if (m->st[i].present && (int64_t)m->B * m->st[i].T_cap > max_n)
            max_n = (int64_t)m->B * m->st[i].T_cap;
    m->dx = take(&c, max_ne);
    m->dsub = take(&c, max_ne);
    m->dqkv = take(&c, max_n * 3 * max_q);
    m->datt = take(&c, max_n * max_q);
    m->dh = take(&c, max_n * max_f);
    m->dg = take(&c, max_n * max_f);
    m->work = take(&c, m->work_floats);
    int soft = m->st[0].soft || m->st[1].soft;
    m->dsoft_g = soft ? take(&c, max_ne) : NULL;
    m->dsoft_acc = soft ? take(&c, max_ne) : NULL;
    int soft_ops = m->st[0].soft_ops || m->st[1].soft_ops;
    m->dqkv_op = soft_ops ? take(&c, max_n * 3 * max_q) : NULL;
    m->datt_op = soft_ops ? take(&c, max_n * max_q) : NULL;
    m->dqkv_pre = m->space.primer_dconv ? take(&c, max_n * 3 * max_q) : NULL;
    m->dcin = m->has_conv ? take(&c, 2 * max_ne) : NULL;
    m->dcglu = m->has_conv ? take(&c, max_ne) : NULL;
    m->dcconv = m->has_conv ? take(&c, max_ne) : NULL;
    m->dinput_per_example = 0;
    m->dinput = NULL;
    if (m->want_input_grad) {
        const et_stack *first = m->st[0].present ? &m->st[0] : &m->st[1];
        int64_t cap = m->kind == ET_MODEL_KIND_ENCODER
                          ? (int64_t)m->cfg.max_len * m->in_dim
                          : (int64_t)first->T_cap * first->arch->embed_dim;
        m->dinput = take(&c, B * cap);
    }
    m->act_need = c.used;
}

static void bind_stack_tensors(et_model *m, et_stack *s)
{
    int32_t e = s->arch->embed_dim;
#define BIND(t, r, c) (m->tensors[t].bound_rows = (r), m->tensors[t].bound_cols = (c))
    if (s->t_pos >= 0)
        BIND(s->t_pos, s->T_cap, e);
    if (s->t_tok >= 0) {
        int32_t V = s->id ? m->V_tgt : m->V_src;
        int32_t cols = m->tensors[s->t_tok].bound_cols > e ? m->tensors[s->t_tok].bound_cols : e;
        BIND(s->t_tok, V, cols);
    }
    if (s->t_lnf_g >= 0 && (m->space.norm == ET_NORM_PRE)) {
        BIND(s->t_lnf_g, 1, e);
        BIND(s->t_lnf_b, 1, e);
    }
    int32_t Ee = m->st[0].present ? m->st[0].arch->embed_dim : 0;
    for (int32_t l = 0; l < s->arch->layers; l++) {
        const et_layer_arch *g = &s->arch->layer[l];
        const int32_t *t = s->t_layer[l];
        int32_t q, d, h;
        if (has_part(s, l, PART_ATTN)) {
            layer_dims(m, s, l, 0, &q, &d, &h);
            BIND(t[P_LN1_G], 1, e);
            BIND(t[P_LN1_B], 1, e);
            BIND(t[P_QKV_W], 3 * q, e);
            BIND(t[P_QKV_B], 1, 3 * q);
            BIND(t[P_PROJ_W], e, q);
            BIND(t[P_PROJ_B], 1, e);
            if (t[P_DCONV_W] >= 0)
                BIND(t[P_DCONV_W], 3, 3 * q);
        }
        if (has_part(s, l, PART_CROSS)) {
            layer_dims(m, s, l, 1, &q, &d, &h);
            BIND(t[P_LNC_G], 1, e);
            BIND(t[P_LNC_B], 1, e);
            BIND(t[P_CQ_W], q, e);
            BIND(t[P_CQ_B], 1, q);
            BIND(t[P_CKV_W], 2 * q, Ee);
            BIND(t[P_CKV_B], 1, 2 * q);
            BIND(t[P_CPROJ_W], e, q);
            BIND(t[P_CPROJ_B], 1, e);
        }
        if (has_part(s, l, PART_CONV)) {
            BIND(t[P_LNV_G], 1, e);
            BIND(t[P_LNV_B], 1, e);
            BIND(t[P_CIN_W], 2 * e, e);
            BIND(t[P_CIN_B], 1, 2 * e);
            BIND(t[P_CDW_W], g->conv_kernel, e);
            BIND(t[P_COUT_W], e, e);
            BIND(t[P_COUT_B], 1, e);
        }
        if (has_part(s, l, PART_FFN)) {
            BIND(t[P_LN2_G], 1, e);
            BIND(t[P_LN2_B], 1, e);
            BIND(t[P_FC1_W], g->ffn_dim, e);
            BIND(t[P_FC1_B], 1, g->ffn_dim);
            BIND(t[P_FC2_W], e, g->ffn_dim);
            BIND(t[P_FC2_B], 1, e);
        }
    }
}

static void bind_tensors(et_model *m)
{
    for (int32_t t = 0; t < m->n_tensors; t++)
        m->tensors[t].bound_rows = m->tensors[t].bound_cols = 0;
    if (m->kind == ET_MODEL_KIND_ENCODER) {
        int32_t e = m->arch.enc.embed_dim;
        BIND(m->t_patch_w, e, m->in_dim);
        BIND(m->t_patch_b, 1, e);
        if (m->space.pooling == ET_POOLING_CLS)
            BIND(m->t_cls, 1, e);
        BIND(m->t_head_w, m->C, e);
        BIND(m->t_head_b, 1, m->C);
    }
    for (int i = 0; i < 2; i++)
        if (m->st[i].present)
            bind_stack_tensors(m, &m->st[i]);
#undef BIND
}

static int prepare_operators(et_model *m, et_stack *s, char **err)
{
    const et_stack_space *sp = s->id ? &m->space.dec : &m->space.enc;
    for (int32_t l = 0; l < s->arch->layers; l++) {
        for (int cross = 0; cross < 2; cross++) {
            if (!has_part(s, l, cross ? PART_CROSS : PART_ATTN))
                continue;
            const et_layer_arch *g = &s->arch->layer[l];
            et_attn_shape sh =
                cross ? cross_shape(m, s, l, m->B, s->T_cap, g->connect * src_cap(m), NULL)
                      : self_shape(m, s, l, m->B, s->T_cap, NULL);
            int32_t n_ops = !cross && s->soft_ops ? s->n_attn : 1, rc = 0, o = 0;
            char *perr = NULL;
            for (; o < n_ops && !rc; o++)
                rc = n_ops > 1 || (!cross && s->soft_ops)
                         ? s->impl[o].vt->prepare(s->states[l * s->n_inst + o], &sh, &perr)
                         : et_model_attn_vt(m, s, l, cross)
                               ->prepare(et_model_attn_state(m, s, l, cross), &sh, &perr);
            if (rc) {
                const char *name = cross ? sp->cross_attention.v[g->cross_attention]
                                   : s->soft_ops ? sp->attention.v[o - 1]
                                                 : sp->attention.v[g->attention];
                et_fail(err, rc, "model: attention '%s' (%s layer %d%s): %s", name,
                        s->id ? "decoder" : "encoder", l, cross ? ", cross" : "",
                        perr ? perr : "prepare failed");
                free(perr);
                return rc;
            }
        }
    }
    return 0;
}

int et_model_bind_lengths(et_model *m, const et_arch *arch, int32_t batch, int32_t len,
                          int32_t tgt_len, char **err)
{
    char *verr = NULL;
    if (et_arch_validate(&m->space, arch, &verr)) {
        int rc = et_fail(err, ET_STATUS_ERR_USAGE, "model: %s", verr);
        free(verr);
        return rc;
    }
    int src = m->st[0].present;
    if (batch < 1 || batch > m->cfg.max_batch || (src && (len < 1 || len > m->cfg.max_len)))
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "model: batch %d x length %d is outside 1..%d x 1..%d", batch, len,
                       m->cfg.max_batch, m->cfg.max_len);
    if (m->st[1].present && (tgt_len < 1 || tgt_len > m->cfg.max_tgt_len))
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "model: target length %d is outside 1..%d", tgt_len, m->cfg.max_tgt_len);
    m->arch = *arch;
    m->B = batch;
    m->st[0].arch = &m->arch.enc;
    m->st[1].arch = &m->arch.dec;
    m->st[0].T_cap = len + (m->kind == ET_MODEL_KIND_ENCODER && m->space.pooling == ET_POOLING_CLS);
    m->st[1].T_cap = tgt_len;
    for (int i = 0; i < 2; i++) {
        int rc;
        if (m->st[i].present && (rc = prepare_operators(m, &m->st[i], err)))
            return rc;
    }
    plan(m, NULL);
    if (m->act_need > m->act_cap) {
        float *na = realloc(m->act, sizeof(float) * (size_t)m->act_need);
        if (!na)
            return et_fail(err, ET_STATUS_ERR_NOMEM, "model: out of memory for %lld activations",
                           (long long)m->act_need);
        m->act = na;
        m->act_cap = m->act_need;
    }
    int64_t ints = (int64_t)batch * (tgt_len > 0 ? tgt_len : 1) + (int64_t)m->cfg.max_batch * 4;
    if (ints > m->ibuf_cap) {
        int32_t *nb = realloc(m->ibuf, sizeof *nb * (size_t)ints);
        if (!nb)
            return et_fail(err, ET_STATUS_ERR_NOMEM, "model: out of memory");
        m->ibuf = nb;
        m->ibuf_cap = ints;
    }
    m->key_len_buf = m->ibuf;
    for (int k = 1; k <= 3; k++)
        m->mem_len[k] = m->ibuf + (int64_t)k * m->cfg.max_batch;
    m->targets = m->ibuf + (int64_t)4 * m->cfg.max_batch;
    plan(m, m->act);
    bind_tensors(m);
    m->bound = 1;
    m->dec.active = 0;
    return 0;
}

int et_model_bind(et_model *m, const et_arch *arch, int32_t batch, int32_t len, char **err)
{
    return et_model_bind_lengths(m, arch, batch, len, m->cfg.max_tgt_len, err);
}

void et_model_zero_grads(et_model *m)
{
    for (int32_t t = 0; t < m->n_tensors; t++) {
        const et_tensor *x = &m->tensors[t];
        float *g = m->arena + m->n_params + x->offset;
        for (int32_t r = 0; r < x->bound_rows; r++)
            memset(g + (int64_t)r * x->cols, 0, sizeof(float) * (size_t)x->bound_cols);
    }
}

/* ---------------------------------------------------------------- forward */

/* Dropout masks are a function of (seed, step, stack, layer, site) only. */
static uint64_t dropout_seed(const et_model *m)
{
    return et_rng_mix64(m->seed + et_rng_mix64((uint64_t)m->step));
}

/* Sites of the first engine version for the encoder: attention 0, FFN 1. */
static uint64_t site(const et_stack *s, int32_t l, int part)
{
    static const int k_of[PARTS] = {0, 2, 3, 1}; /* attention, cross, conv, FFN */
    return ((uint64_t)s->id * ET_MAX_LAYERS + (uint64_t)l) * 8 + (uint64_t)k_of[part] + 1;
}

static void part_forward(et_model *m, part_act *pa, const float *gamma, const float *beta,
                         float *u, uint64_t stream, int64_t N, int64_t e)
{
    if (m->training && m->cfg.dropout > 0)
        et_dropout_forward(u, N * e, m->cfg.dropout, dropout_seed(m), stream);
    if (m->space.norm == ET_NORM_PRE) {
        for (int64_t i = 0; i < N * e; i++)
            pa->out[i] = pa->in[i] + u[i];
    } else {
        for (int64_t i = 0; i < N * e; i++)
            pa->s[i] = pa->in[i] + u[i];
        et_layernorm_forward(pa->out, pa->mean, pa->rstd, pa->s, gamma, beta, N, e);
    }
}

/* The sub-layer's input: LN(in) for pre-norm, in itself for post-norm. */
static const float *part_input(et_model *m, part_act *pa, const float *gamma, const float *beta,
                               int64_t N, int64_t e)
{
    if (m->space.norm != ET_NORM_PRE)
        return pa->in;
    et_layernorm_forward(pa->z, pa->mean, pa->rstd, pa->in, gamma, beta, N, e);
    return pa->z;
}

static et_attn_view view(float *base, int64_t sb, int64_t sh, int64_t st)
{
    return (et_attn_view){base, sb, sh, st};
}

static int self_forward(et_model *m, et_stack *s, int32_t l)
{
    layer_act *a = &s->la[l];
    part_act *pa = &a->part[PART_ATTN];
    const int32_t *t = s->t_layer[l];
    int64_t T = s->T, N = (int64_t)m->b_now * T, e = s->arch->embed_dim, E = s->E, Q = s->Q;
    int32_t q, d, h;
    layer_dims(m, s, l, 0, &q, &d, &h);
    const float *x = part_input(m, pa, P(m, t[P_LN1_G]), P(m, t[P_LN1_B]), N, e);
    if (a->qkv_pre) {
        /* Primer: qkv = dconv(x W^T + b), per channel along time */
        et_linear_forward(a->qkv_pre, 3 * q, x, e, P(m, t[P_QKV_W]), E, P(m, t[P_QKV_B]), N, e,
                          3 * q);
        et_dwconv_forward(a->qkv, a->qkv_pre, 3 * q, P(m, t[P_DCONV_W]), 3 * Q,
                          s->id ? NULL : s->key_len, m->b_now, T, 3 * q, 3, s->id);
    } else {
        et_linear_forward(a->qkv, 3 * q, x, e, P(m, t[P_QKV_W]), E, P(m, t[P_QKV_B]), N, e,
                          3 * q);
    }
    et_attn_shape sh = self_shape(m, s, l, m->b_now, (int32_t)T, s->key_len);
    int32_t n_ops = s->soft_ops ? s->n_attn : 1;
    for (int32_t o = 0; o < n_ops; o++) {
        void *st = s->soft_ops ? s->states[l * s->n_inst + o] : et_model_attn_state(m, s, l, 0);
        const et_attention_vtable *vt = s->soft_ops ? s->impl[o].vt : et_model_attn_vt(m, s, l, 0);
        if (vt->set_step)
            vt->set_step(st, m->training, m->step);
        float *out = s->soft_ops ? a->att_op[o] : a->att;
        int rc = vt->forward(st, &sh, view(a->qkv, T * 3 * q, d, 3 * q),
                             view(a->qkv + q, T * 3 * q, d, 3 * q),
                             view(a->qkv + 2 * q, T * 3 * q, d, 3 * q), view(out, T * q, d, q),
                             s->soft_ops ? a->saved_op[o] : a->saved, m->work);
        if (rc)
            return rc;
    }
    if (s->soft_ops) {
        /* att = sum_o w_o att_o */
        memset(a->att, 0, sizeof(float) * (size_t)(N * q));
        for (int32_t o = 0; o < n_ops; o++) {
            float w = s->op_w[l][o];
            const float *ao = a->att_op[o];
            for (int64_t i = 0; i < N * q; i++)
                a->att[i] += w * ao[i];
        }
    }
    et_linear_forward(m->dsub, e, a->att, q, P(m, t[P_PROJ_W]), Q, P(m, t[P_PROJ_B]), N, q, e);
    part_forward(m, pa, P(m, t[P_LN1_G]), P(m, t[P_LN1_B]), m->dsub, site(s, l, PART_ATTN), N, e);
    return 0;
}

static int cross_forward(et_model *m, et_stack *s, int32_t l)
{
    layer_act *a = &s->la[l];
    part_act *pa = &a->part[PART_CROSS];
    const int32_t *t = s->t_layer[l];
    int32_t k = s->arch->layer[l].connect;
    int64_t T = s->T, N = (int64_t)m->b_now * T, e = s->arch->embed_dim, E = s->E, QC = s->QC;
    int64_t Ee = m->st[0].arch->embed_dim, Sk = (int64_t)k * m->st[0].T;
    int32_t q, d, h;
    layer_dims(m, s, l, 1, &q, &d, &h);
    const float *x = part_input(m, pa, P(m, t[P_LNC_G]), P(m, t[P_LNC_B]), N, e);
    et_linear_forward(a->cq, q, x, e, P(m, t[P_CQ_W]), E, P(m, t[P_CQ_B]), N, e, q);
    et_linear_forward(a->ckv, 2 * q, m->mem[k], Ee, P(m, t[P_CKV_W]), m->st[0].E,
                      P(m, t[P_CKV_B]), m->b_now * Sk, Ee, 2 * q);
    et_attn_shape sh = cross_shape(m, s, l, m->b_now, (int32_t)T, (int32_t)Sk, m->mem_len[k]);
    void *st = et_model_attn_state(m, s, l, 1);
    const et_attention_vtable *vt = et_model_attn_vt(m, s, l, 1);
    if (vt->set_step)
        vt->set_step(st, m->training, m->step);
    int rc = vt->forward(st, &sh, view(a->cq, T * q, d, q), view(a->ckv, Sk * 2 * q, d, 2 * q),
                         view(a->ckv + q, Sk * 2 * q, d, 2 * q), view(a->catt, T * q, d, q),
                         a->csaved, m->work);
    if (rc)
        return rc;
    et_linear_forward(m->dsub, e, a->catt, q, P(m, t[P_CPROJ_W]), QC, P(m, t[P_CPROJ_B]), N, q,
                      e);
    part_forward(m, pa, P(m, t[P_LNC_G]), P(m, t[P_LNC_B]), m->dsub, site(s, l, PART_CROSS), N,
                 e);
    return 0;
}

static float sigmoidf(float x)
{
    return 1.0f / (1.0f + et_expf(-x));
}

/* Conv block: u = W_out dwconv(GLU(W_in x + b_in)) + b_out; GLU(a|b) = a * sigmoid(b). */
static void conv_forward(et_model *m, et_stack *s, int32_t l)
{
    layer_act *a = &s->la[l];
    part_act *pa = &a->part[PART_CONV];
    const int32_t *t = s->t_layer[l];
    const et_layer_arch *g = &s->arch->layer[l];
    int64_t T = s->T, N = (int64_t)m->b_now * T, e = s->arch->embed_dim, E = s->E;
    const float *x = part_input(m, pa, P(m, t[P_LNV_G]), P(m, t[P_LNV_B]), N, e);
    et_linear_forward(a->cin, 2 * e, x, e, P(m, t[P_CIN_W]), E, P(m, t[P_CIN_B]), N, e, 2 * e);
    for (int64_t i = 0; i < N; i++)
        for (int64_t c = 0; c < e; c++)
            a->cglu[i * e + c] = a->cin[i * 2 * e + c] * sigmoidf(a->cin[i * 2 * e + e + c]);
    et_dwconv_forward(a->cconv, a->cglu, e, P(m, t[P_CDW_W]), E, s->id ? NULL : s->key_len,
                      m->b_now, T, e, g->conv_kernel, s->id);
    et_linear_forward(m->dsub, e, a->cconv, e, P(m, t[P_COUT_W]), E, P(m, t[P_COUT_B]), N, e, e);
    part_forward(m, pa, P(m, t[P_LNV_G]), P(m, t[P_LNV_B]), m->dsub, site(s, l, PART_CONV), N, e);
}

/* The FFN part, or with std = 1 the soft mixture's `standard` branch: the
 * same weights on the attention block's output (its own activations). */
static void ffn_forward_branch(et_model *m, et_stack *s, int32_t l, int std)
{
    layer_act *a = &s->la[l];
    part_act *pa = std ? &a->std_ffn : &a->part[PART_FFN];
    float *h = std ? a->std_h : a->h, *gg = std ? a->std_g : a->g;
    uint64_t st = site(s, l, PART_FFN) + (std ? 5 : 0);
    const int32_t *t = s->t_layer[l];
    const et_layer_arch *g = &s->arch->layer[l];
    int64_t N = (int64_t)m->b_now * s->T, e = s->arch->embed_dim, f = g->ffn_dim;
    const float *x = part_input(m, pa, P(m, t[P_LN2_G]), P(m, t[P_LN2_B]), N, e);
    et_linear_forward(h, f, x, e, P(m, t[P_FC1_W]), s->E, P(m, t[P_FC1_B]), N, e, f);
    et_activation_forward(g->activation, gg, h, N * f);
    if (m->training && m->cfg.activation_dropout > 0)
        et_dropout_forward(gg, N * f, m->cfg.activation_dropout, dropout_seed(m), st + 4);
    et_linear_forward(m->dsub, e, gg, f, P(m, t[P_FC2_W]), s->F, P(m, t[P_FC2_B]), N, f, e);
    part_forward(m, pa, P(m, t[P_LN2_G]), P(m, t[P_LN2_B]), m->dsub, st, N, e);
}

static void ffn_forward(et_model *m, et_stack *s, int32_t l)
{
    ffn_forward_branch(m, s, l, 0);
}

/* The stream leaving layer l (identity layers pass theirs on). */
static float *layer_out(const et_stack *s, int32_t l, float *in)
{
    const layer_act *a = &s->la[l];
    if (s->soft)
        return a->soft_out;
    for (int p = PARTS - 1; p >= 0; p--)
        if (a->part[p].out)
            return a->part[p].out;
    return in;
}

static int stack_forward(et_model *m, et_stack *s, char **err)
{
    float *stream = s->x0;
    for (int32_t l = 0; l < s->arch->layers; l++) {
        layer_act *a = &s->la[l];
        int rc = 0;
        if (a->part[PART_ATTN].out && (rc = self_forward(m, s, l)))
            return et_fail(err, rc, "model: attention forward failed in %s layer %d",
                           s->id ? "decoder" : "encoder", l);
        if (a->part[PART_CROSS].out && (rc = cross_forward(m, s, l)))
            return et_fail(err, rc, "model: cross-attention forward failed in decoder layer %d",
                           l);
        if (a->part[PART_CONV].out)
            conv_forward(m, s, l);
        if (a->part[PART_FFN].out)
            ffn_forward(m, s, l);
        if (s->soft) {
            /* out = w_A A(x) + w_F F(x) + w_I x (+ w_S F(A(x))) */
            int64_t n = (int64_t)m->b_now * s->T * s->arch->embed_dim;
            const float *ya = a->part[s->n_cross ? PART_CROSS : PART_ATTN].out;
            const float *yf = a->part[PART_FFN].out;
            float wa = s->soft_w[l][0], wf = s->soft_w[l][1], wi = s->soft_w[l][2];
            for (int64_t i = 0; i < n; i++)
                a->soft_out[i] = wa * ya[i] + wf * yf[i] + wi * stream[i];
            if (s->soft_std) {
                ffn_forward_branch(m, s, l, 1);
                float ws = s->soft_w[l][3];
                const float *ys = a->std_ffn.out;
                for (int64_t i = 0; i < n; i++)
                    a->soft_out[i] += ws * ys[i];
            }
        }
        stream = layer_out(s, l, stream);
        s->lout[l] = stream;
    }
    s->out = stream;
    return 0;
}

/* Token embedding of a stack: x0[b,t] = sqrt(e) tok[id] + pos[t]. */
static void embed_tokens(et_model *m, et_stack *s, const int32_t *ids, int64_t B, int64_t T)
{
    int64_t e = s->arch->embed_dim, ld = m->tensors[s->t_tok].cols;
    float scale = et_model_embed_scale(m, (int32_t)e);
    const float *tok = P(m, s->t_tok);
    for (int64_t t = 0; t < T; t++) {
        float *row = s->x0 + t * e; /* position row, built once in example 0 */
        if (s->t_pos >= 0)
            memcpy(row, P(m, s->t_pos) + t * s->E, sizeof(float) * (size_t)e);
        else
            et_model_sinusoid(row, t, (int32_t)e);
    }
    for (int64_t b = B - 1; b >= 0; b--)
        for (int64_t t = 0; t < T; t++) {
            float *x = s->x0 + (b * T + t) * e;
            const float *p = s->x0 + t * e, *w = tok + (int64_t)ids[b * T + t] * ld;
            for (int64_t i = 0; i < e; i++)
                x[i] = p[i] + scale * w[i];
        }
}

/* Memory for cross-attention from the encoder's last n_conn layer outputs. */
static void build_memory(et_model *m)
{
    et_stack *enc = &m->st[0];
    int64_t B = m->b_now, S = enc->T, Ee = enc->arch->embed_dim, L = enc->arch->layers;
    const float *seg[3];
    for (int j = 0; j < m->n_conn; j++) {
        int64_t l = L - 1 - j;
        float *out = l >= 0 ? enc->lout[l] : enc->x0;
        if (m->space.norm == ET_NORM_PRE) {
            et_layernorm_forward(m->seg[j], m->segmean[j], m->segrstd[j], out,
                                 P(m, enc->t_lnf_g), P(m, enc->t_lnf_b), B * S, Ee);
            seg[j] = m->seg[j];
        } else {
            seg[j] = out;
        }
    }
    for (int k = 1; k <= 3; k++) {
        if (!m->conn_used[k])
            continue;
        int64_t Sk = k * S;
        for (int64_t b = 0; b < B; b++) {
            int64_t n = m->src_lens ? m->src_lens[b] : S;
            float *dst = m->mem[k] + b * Sk * Ee;
            for (int j = k - 1; j >= 0; j--) {
                memcpy(dst, seg[j] + b * S * Ee, sizeof(float) * (size_t)(n * Ee));
                dst += n * Ee;
            }
            memset(dst, 0, sizeof(float) * (size_t)((Sk - k * n) * Ee));
            m->mem_len[k][b] = (int32_t)(k * n);
        }
    }
}

int et_model_encode(et_model *m, const et_batch *b, char **err)
{
    et_stack *enc = &m->st[0];
    enc->T = b->src_len;
    m->src_lens = b->src_lens;
    enc->key_len = b->src_lens;
    embed_tokens(m, enc, b->src_tok, b->size, b->src_len);
    int rc = stack_forward(m, enc, err);
    if (rc)
        return rc;
    build_memory(m);
    return 0;
}

static int forward_classifier(et_model *m, const et_batch *b, double *loss, int64_t *correct,
                              char **err)
{
    et_stack *s = &m->st[0];
    if (!b->src_vec || !b->labels || b->src_len != s->T_cap - (m->space.pooling == ET_POOLING_CLS))
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "model: batch of %d x %d does not fit the binding (%d x %d) or lacks inputs",
                       b->size, b->src_len, m->B,
                       s->T_cap - (m->space.pooling == ET_POOLING_CLS));
    m->src = b->src_vec;
    m->labels = b->labels;
    int cls = m->space.pooling == ET_POOLING_CLS;
    int64_t B = b->size, L = b->src_len, T = L + cls, e = s->arch->embed_dim, N = B * T;
    s->T = (int32_t)T;
    /* embed: x0[b, cls + p] = W x[b, p] + bias + pos[cls + p]; x0[b, 0] = cls + pos[0] */
    et_linear_forward(m->emb, e, m->src, m->in_dim, P(m, m->t_patch_w), m->in_dim,
                      P(m, m->t_patch_b), B * L, m->in_dim, e);
    const float *pos = P(m, s->t_pos), *cv = P(m, m->t_cls);
    for (int64_t i = 0; i < B; i++)
        for (int64_t t = 0; t < T; t++) {
            float *x = s->x0 + (i * T + t) * e;
            const float *src = t < cls ? cv : m->emb + (i * L + t - cls) * e;
            const float *p = pos + t * s->E;
            for (int64_t k = 0; k < e; k++)
                x[k] = src[k] + p[k];
        }
    /* key padding: image inputs are never padded; token inputs give lengths */
    m->src_lens = b->src_lens;
    m->key_len = NULL;
    if (b->src_lens) {
        for (int64_t i = 0; i < B; i++)
            m->key_len_buf[i] = b->src_lens[i] + cls;
        m->key_len = m->key_len_buf;
    }
    s->key_len = m->key_len;
    int rc = stack_forward(m, s, err);
    if (rc)
        return rc;
    if (m->space.norm == ET_NORM_PRE) {
        et_layernorm_forward(s->fz, s->fmean, s->frstd, s->out, P(m, s->t_lnf_g),
                             P(m, s->t_lnf_b), N, e);
    }
    const float *fz = m->space.norm == ET_NORM_PRE ? s->fz : s->out;
    if (cls)
        for (int64_t i = 0; i < B; i++)
            memcpy(m->pooled + i * e, fz + i * T * e, sizeof(float) * (size_t)e);
    else
        et_meanpool_forward(m->pooled, fz, b->src_lens, B, T, e);
    et_linear_forward(m->logits, m->C, m->pooled, e, P(m, m->t_head_w), s->E, P(m, m->t_head_b),
                      B, e, m->C);
    *loss = et_cross_entropy(NULL, m->logits, m->C, m->labels, B, m->C, m->cfg.label_smoothing,
                             1.0f, NULL);
    m->units = B;
    if (correct) {
        int64_t ok = 0;
        for (int64_t i = 0; i < B; i++) {
            const float *z = m->logits + i * m->C;
            int32_t best = 0;
            for (int32_t k = 1; k < m->C; k++)
                best = z[k] > z[best] ? k : best;
            ok += best == m->labels[i];
        }
        *correct = ok;
    }
    return 0;
}

static int forward_tokens(et_model *m, const et_batch *b, double *loss, int64_t *correct,
                          char **err)
{
    et_stack *dec = &m->st[1];
    int seq2seq = m->kind == ET_MODEL_KIND_SEQ2SEQ;
    if (!b->tgt_in || !b->tgt_out || !b->tgt_lens || b->tgt_len < 1 ||
        b->tgt_len > dec->T_cap ||
        (seq2seq && (!b->src_tok || b->src_len < 1 || b->src_len > m->st[0].T_cap)))
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "model: batch of %d x %d -> %d tokens does not fit the binding (%d x %d -> "
                       "%d) or lacks inputs",
                       b->size, b->src_len, b->tgt_len, m->B, src_cap(m), dec->T_cap);
    for (int32_t i = 0; i < b->size; i++)
        if (b->tgt_lens[i] < 0 || b->tgt_lens[i] > b->tgt_len ||
            (seq2seq && b->src_lens && (b->src_lens[i] < 1 || b->src_lens[i] > b->src_len)))
            return et_fail(err, ET_STATUS_ERR_USAGE, "model: example %d has bad lengths", i);
    int64_t B = b->size, T = b->tgt_len, N = B * T, e = dec->arch->embed_dim;
    for (int64_t i = 0; i < N; i++) {
        int32_t in = b->tgt_in[i], out = b->tgt_out[i];
        if (in < 0 || in >= m->V_tgt || out < 0 || out >= m->V_tgt)
            return et_fail(err, ET_STATUS_ERR_USAGE, "model: target token %d outside 0..%d",
                           in < 0 || in >= m->V_tgt ? in : out, m->V_tgt - 1);
    }
    if (seq2seq) {
        for (int64_t i = 0; i < B * b->src_len; i++)
            if (b->src_tok[i] < 0 || b->src_tok[i] >= m->V_src)
                return et_fail(err, ET_STATUS_ERR_USAGE, "model: source token %d outside 0..%d",
                               b->src_tok[i], m->V_src - 1);
        m->src_tok = b->src_tok;
        int rc = et_model_encode(m, b, err);
        if (rc)
            return rc;
    }
    m->tgt_in = b->tgt_in;
    dec->T = (int32_t)T;
    dec->key_len = NULL;
    embed_tokens(m, dec, b->tgt_in, B, T);
    int rc = stack_forward(m, dec, err);
    if (rc)
        return rc;
    const float *fz = dec->out;
    if (m->space.norm == ET_NORM_PRE) {
        et_layernorm_forward(dec->fz, dec->fmean, dec->frstd, dec->out, P(m, dec->t_lnf_g),
                             P(m, dec->t_lnf_b), N, e);
        fz = dec->fz;
    }
    int64_t V = m->V_tgt;
    et_linear_forward(m->logits, V, fz, e, P(m, dec->t_tok), m->tensors[dec->t_tok].cols, NULL, N,
                      e, V);
    for (int64_t i = 0; i < B; i++)
        for (int64_t t = 0; t < T; t++)
            m->targets[i * T + t] = t < b->tgt_lens[i] ? b->tgt_out[i * T + t] : -1;
    int64_t counted = 0;
    *loss = et_cross_entropy(NULL, m->logits, V, m->targets, N, V, m->cfg.label_smoothing, 1.0f,
                             &counted);
    m->units = counted;
    if (correct) {
        int64_t ok = 0;
        for (int64_t i = 0; i < N; i++) {
            if (m->targets[i] < 0)
                continue;
            const float *z = m->logits + i * V;
            int64_t best = 0;
            for (int64_t k = 1; k < V; k++)
                best = z[k] > z[best] ? k : best;
            ok += best == m->targets[i];
        }
        *correct = ok;
    }
    return 0;
}

int et_model_forward(et_model *m, const et_batch *b, int training, uint64_t seed, int64_t step,
                     double *loss, int64_t *correct, char **err)
{
    if (!m->bound)
        return et_fail(err, ET_STATUS_ERR_USAGE, "model: no architecture bound");
    if (b->size < 1 || b->size > m->B)
        return et_fail(err, ET_STATUS_ERR_USAGE, "model: batch of %d examples (bound for %d)",
                       b->size, m->B);
    m->b_now = 0;
    m->dec.active = 0;
    m->training = training;
    m->seed = seed;
    m->step = step;
    int32_t b_now = b->size;
    m->b_now = b_now;
    for (int i = 0; i < 2; i++) {
        memset(m->st[i].soft_g, 0, sizeof m->st[i].soft_g);
        memset(m->st[i].op_g, 0, sizeof m->st[i].op_g);
    }
    int rc = m->kind == ET_MODEL_KIND_ENCODER ? forward_classifier(m, b, loss, correct, err)
                                              : forward_tokens(m, b, loss, correct, err);
    if (rc) {
        m->b_now = 0;
        return rc;
    }
    if (!isfinite(*loss))
        return et_fail(err, ET_STATUS_ERR_NUMERIC, "model: the loss is not finite");
    return 0;
}

/* ---------------------------------------------------------------- backward */

/* dout (N,e) is the gradient of the part's output, in m->dx. Leaves the
 * gradient of the sub-layer output u in du (for the residual: the skip path
 * stays in dx). */
static void part_backward_output(et_model *m, part_act *pa, const float *gamma, float *dgamma,
                                 float *dbeta, float *du, uint64_t stream, int64_t N, int64_t e)
{
    if (m->space.norm == ET_NORM_PRE) {
        /* out = in + drop(u): d in = dout (stays in dx), du = dout */
        memcpy(du, m->dx, sizeof(float) * (size_t)(N * e));
    } else {
        /* out = LN(s), s = in + drop(u): ds into du, and d in = ds */
        memset(du, 0, sizeof(float) * (size_t)(N * e));
        et_layernorm_backward(du, dgamma, dbeta, m->dx, pa->s, gamma, pa->mean, pa->rstd, N, e);
        memcpy(m->dx, du, sizeof(float) * (size_t)(N * e));
    }
    if (m->training && m->cfg.dropout > 0)
        et_dropout_backward(du, N * e, m->cfg.dropout, dropout_seed(m), stream);
}

/* dx_sub (N,e): gradient of the sub-layer input; fold it into dx. */
static void part_backward_input(et_model *m, part_act *pa, const float *gamma, float *dgamma,
                                float *dbeta, const float *dx_sub, int64_t N, int64_t e)
{
    if (m->space.norm == ET_NORM_PRE)
        et_layernorm_backward(m->dx, dgamma, dbeta, dx_sub, pa->in, gamma, pa->mean, pa->rstd, N,
                              e);
    else
        for (int64_t i = 0; i < N * e; i++)
            m->dx[i] += dx_sub[i];
}

static void ffn_backward_branch(et_model *m, et_stack *s, int32_t l, int std)
{
    layer_act *a = &s->la[l];
    part_act *pa = std ? &a->std_ffn : &a->part[PART_FFN];
    float *h = std ? a->std_h : a->h, *gg = std ? a->std_g : a->g;
    uint64_t st = site(s, l, PART_FFN) + (std ? 5 : 0);
    const int32_t *t = s->t_layer[l];
    const et_layer_arch *g = &s->arch->layer[l];
    int64_t N = (int64_t)m->b_now * s->T, e = s->arch->embed_dim, f = g->ffn_dim;
    float *du = m->dsub;
    part_backward_output(m, pa, P(m, t[P_LN2_G]), G(m, t[P_LN2_G]), G(m, t[P_LN2_B]), du, st, N,
                         e);
    memset(m->dg, 0, sizeof(float) * (size_t)(N * f));
    et_linear_backward(m->dg, f, G(m, t[P_FC2_W]), s->F, G(m, t[P_FC2_B]), du, e, gg, f,
                       P(m, t[P_FC2_W]), s->F, N, f, e);
    if (m->training && m->cfg.activation_dropout > 0)
        et_dropout_backward(m->dg, N * f, m->cfg.activation_dropout, dropout_seed(m), st + 4);
    memset(m->dh, 0, sizeof(float) * (size_t)(N * f));
    et_activation_backward(g->activation, m->dh, h, m->dg, N * f);
    const float *x = m->space.norm == ET_NORM_PRE ? pa->z : pa->in;
    memset(du, 0, sizeof(float) * (size_t)(N * e));
    et_linear_backward(du, e, G(m, t[P_FC1_W]), s->E, G(m, t[P_FC1_B]), m->dh, f, x, e,
                       P(m, t[P_FC1_W]), s->E, N, e, f);
    part_backward_input(m, pa, P(m, t[P_LN2_G]), G(m, t[P_LN2_G]), G(m, t[P_LN2_B]), du, N, e);
}

static void ffn_backward(et_model *m, et_stack *s, int32_t l)
{
    ffn_backward_branch(m, s, l, 0);
}

static void conv_backward(et_model *m, et_stack *s, int32_t l)
{
    layer_act *a = &s->la[l];
    part_act *pa = &a->part[PART_CONV];
    const int32_t *t = s->t_layer[l];
    const et_layer_arch *g = &s->arch->layer[l];
    int64_t T = s->T, N = (int64_t)m->b_now * T, e = s->arch->embed_dim, E = s->E;
    float *du = m->dsub;
    part_backward_output(m, pa, P(m, t[P_LNV_G]), G(m, t[P_LNV_G]), G(m, t[P_LNV_B]), du,
                         site(s, l, PART_CONV), N, e);
    memset(m->dcconv, 0, sizeof(float) * (size_t)(N * e));
    et_linear_backward(m->dcconv, e, G(m, t[P_COUT_W]), E, G(m, t[P_COUT_B]), du, e, a->cconv, e,
                       P(m, t[P_COUT_W]), E, N, e, e);
    memset(m->dcglu, 0, sizeof(float) * (size_t)(N * e));
    et_dwconv_backward(m->dcglu, G(m, t[P_CDW_W]), E, m->dcconv, a->cglu, e, P(m, t[P_CDW_W]), E,
                       s->id ? NULL : s->key_len, m->b_now, T, e, g->conv_kernel, s->id);
    /* GLU: d a = d glu * sig(b); d b = d glu * a * sig(b) (1 - sig(b)) */
    for (int64_t i = 0; i < N; i++)
        for (int64_t c = 0; c < e; c++) {
            float av = a->cin[i * 2 * e + c], sb = sigmoidf(a->cin[i * 2 * e + e + c]);
            float dg = m->dcglu[i * e + c];
            m->dcin[i * 2 * e + c] = dg * sb;
            m->dcin[i * 2 * e + e + c] = dg * av * sb * (1.0f - sb);
        }
    const float *x = m->space.norm == ET_NORM_PRE ? pa->z : pa->in;
    memset(du, 0, sizeof(float) * (size_t)(N * e));
    et_linear_backward(du, e, G(m, t[P_CIN_W]), E, G(m, t[P_CIN_B]), m->dcin, 2 * e, x, e,
                       P(m, t[P_CIN_W]), E, N, e, 2 * e);
    part_backward_input(m, pa, P(m, t[P_LNV_G]), G(m, t[P_LNV_G]), G(m, t[P_LNV_B]), du, N, e);
}

static int cross_backward(et_model *m, et_stack *s, int32_t l)
{
    layer_act *a = &s->la[l];
    part_act *pa = &a->part[PART_CROSS];
    const int32_t *t = s->t_layer[l];
    int32_t k = s->arch->layer[l].connect;
    int64_t T = s->T, N = (int64_t)m->b_now * T, e = s->arch->embed_dim, E = s->E, QC = s->QC;
    int64_t Ee = m->st[0].arch->embed_dim, Sk = (int64_t)k * m->st[0].T;
    int32_t q, d, h;
    layer_dims(m, s, l, 1, &q, &d, &h);
    float *du = m->dsub;
    part_backward_output(m, pa, P(m, t[P_LNC_G]), G(m, t[P_LNC_G]), G(m, t[P_LNC_B]), du,
                         site(s, l, PART_CROSS), N, e);
    memset(m->dcatt, 0, sizeof(float) * (size_t)(N * q));
    et_linear_backward(m->dcatt, q, G(m, t[P_CPROJ_W]), QC, G(m, t[P_CPROJ_B]), du, e, a->catt, q,
                       P(m, t[P_CPROJ_W]), QC, N, q, e);
    et_attn_shape sh = cross_shape(m, s, l, m->b_now, (int32_t)T, (int32_t)Sk, m->mem_len[k]);
    int rc = et_model_attn_vt(m, s, l, 1)->backward(
        et_model_attn_state(m, s, l, 1), &sh, view(a->cq, T * q, d, q),
        view(a->ckv, Sk * 2 * q, d, 2 * q), view(a->ckv + q, Sk * 2 * q, d, 2 * q),
        view(a->catt, T * q, d, q), view(m->dcatt, T * q, d, q), a->csaved,
        view(m->dcq, T * q, d, q), view(m->dckv, Sk * 2 * q, d, 2 * q),
        view(m->dckv + q, Sk * 2 * q, d, 2 * q), m->work);
    if (rc)
        return rc;
    et_linear_backward(m->dmem[k], Ee, G(m, t[P_CKV_W]), m->st[0].E, G(m, t[P_CKV_B]), m->dckv,
                       2 * q, m->mem[k], Ee, P(m, t[P_CKV_W]), m->st[0].E, m->b_now * Sk, Ee,
                       2 * q);
    const float *x = m->space.norm == ET_NORM_PRE ? pa->z : pa->in;
    memset(du, 0, sizeof(float) * (size_t)(N * e));
    et_linear_backward(du, e, G(m, t[P_CQ_W]), E, G(m, t[P_CQ_B]), m->dcq, q, x, e,
                       P(m, t[P_CQ_W]), E, N, e, q);
    part_backward_input(m, pa, P(m, t[P_LNC_G]), G(m, t[P_LNC_G]), G(m, t[P_LNC_B]), du, N, e);
    return 0;
}

static int self_backward(et_model *m, et_stack *s, int32_t l)
{
    layer_act *a = &s->la[l];
    part_act *pa = &a->part[PART_ATTN];
    const int32_t *t = s->t_layer[l];
    int64_t T = s->T, N = (int64_t)m->b_now * T, e = s->arch->embed_dim, E = s->E, Q = s->Q;
    int32_t q, d, h;
    layer_dims(m, s, l, 0, &q, &d, &h);
    float *du = m->dsub;
    part_backward_output(m, pa, P(m, t[P_LN1_G]), G(m, t[P_LN1_G]), G(m, t[P_LN1_B]), du,
                         site(s, l, PART_ATTN), N, e);
    memset(m->datt, 0, sizeof(float) * (size_t)(N * q));
    et_linear_backward(m->datt, q, G(m, t[P_PROJ_W]), Q, G(m, t[P_PROJ_B]), du, e, a->att, q,
                       P(m, t[P_PROJ_W]), Q, N, q, e);
    et_attn_shape sh = self_shape(m, s, l, m->b_now, (int32_t)T, s->key_len);
    if (!s->soft_ops) {
        int rc = et_model_attn_vt(m, s, l, 0)->backward(
            et_model_attn_state(m, s, l, 0), &sh, view(a->qkv, T * 3 * q, d, 3 * q),
            view(a->qkv + q, T * 3 * q, d, 3 * q), view(a->qkv + 2 * q, T * 3 * q, d, 3 * q),
            view(a->att, T * q, d, q), view(m->datt, T * q, d, q), a->saved,
            view(m->dqkv, T * 3 * q, d, 3 * q), view(m->dqkv + q, T * 3 * q, d, 3 * q),
            view(m->dqkv + 2 * q, T * 3 * q, d, 3 * q), m->work);
        if (rc)
            return rc;
    } else {
        /* att = sum_o w_o att_o: d w_o = <datt, att_o>, d att_o = w_o datt */
        memset(m->dqkv, 0, sizeof(float) * (size_t)(N * 3 * q));
        for (int32_t o = 0; o < s->n_attn; o++) {
            float w = s->op_w[l][o];
            const float *ao = a->att_op[o];
            double dw = 0;
            for (int64_t i = 0; i < N * q; i++) {
                dw += (double)m->datt[i] * ao[i];
                m->datt_op[i] = w * m->datt[i];
            }
            s->op_g[l][o] += (float)dw;
            int rc = s->impl[o].vt->backward(
                s->states[l * s->n_inst + o], &sh, view(a->qkv, T * 3 * q, d, 3 * q),
                view(a->qkv + q, T * 3 * q, d, 3 * q), view(a->qkv + 2 * q, T * 3 * q, d, 3 * q),
                view(a->att_op[o], T * q, d, q), view(m->datt_op, T * q, d, q), a->saved_op[o],
                view(m->dqkv_op, T * 3 * q, d, 3 * q), view(m->dqkv_op + q, T * 3 * q, d, 3 * q),
                view(m->dqkv_op + 2 * q, T * 3 * q, d, 3 * q), m->work);
            if (rc)
                return rc;
            for (int64_t i = 0; i < N * 3 * q; i++)
                m->dqkv[i] += m->dqkv_op[i];
        }
    }
    const float *x = m->space.norm == ET_NORM_PRE ? pa->z : pa->in;
    const float *dlin = m->dqkv;
    if (a->qkv_pre) {
        memset(m->dqkv_pre, 0, sizeof(float) * (size_t)(N * 3 * q));
        et_dwconv_backward(m->dqkv_pre, G(m, t[P_DCONV_W]), 3 * Q, m->dqkv, a->qkv_pre, 3 * q,
                           P(m, t[P_DCONV_W]), 3 * Q, s->id ? NULL : s->key_len, m->b_now, T,
                           3 * q, 3, s->id);
        dlin = m->dqkv_pre;
    }
    memset(du, 0, sizeof(float) * (size_t)(N * e));
    et_linear_backward(du, e, G(m, t[P_QKV_W]), E, G(m, t[P_QKV_B]), dlin, 3 * q, x, e,
                       P(m, t[P_QKV_W]), E, N, e, 3 * q);
    part_backward_input(m, pa, P(m, t[P_LN1_G]), G(m, t[P_LN1_G]), G(m, t[P_LN1_B]), du, N, e);
    return 0;
}

/* Gradient of one encoder segment (in dseg[j]) into dx at its layer output. */
static void segment_backward(et_model *m, int j, const float *out)
{
    et_stack *enc = &m->st[0];
    int64_t n = (int64_t)m->b_now * enc->T * enc->arch->embed_dim;
    if (m->space.norm == ET_NORM_PRE)
        et_layernorm_backward(m->dx, G(m, enc->t_lnf_g), G(m, enc->t_lnf_b), m->dseg[j], out,
                              P(m, enc->t_lnf_g), m->segmean[j], m->segrstd[j],
                              (int64_t)m->b_now * enc->T, enc->arch->embed_dim);
    else
        for (int64_t i = 0; i < n; i++)
            m->dx[i] += m->dseg[j][i];
}

/* Backward through the layers of a stack: dx holds the gradient of the
 * stack's output on entry, of its embedded input on return. */
static int stack_backward(et_model *m, et_stack *s, char **err)
{
    int enc_of_seq2seq = s->id == 0 && m->kind == ET_MODEL_KIND_SEQ2SEQ;
    int32_t L = s->arch->layers;
    for (int32_t l = L - 1; l >= 0; l--) {
        if (enc_of_seq2seq) {
            int j = L - 1 - l;
            if (j < m->n_conn)
                segment_backward(m, j, s->lout[l]);
        }
        layer_act *a = &s->la[l];
        int rc;
        int64_t n = (int64_t)m->b_now * s->T * s->arch->embed_dim;
        const float *x = l ? s->lout[l - 1] : s->x0;
        if (s->soft) {
            /* out = w_A A(x) + w_F F(x) + w_I x: the weights' gradients, then
             * each branch from its share of dout, summed at x */
            const float *ya = a->part[s->n_cross ? PART_CROSS : PART_ATTN].out;
            const float *yf = a->part[PART_FFN].out;
            const float *ys = s->soft_std ? a->std_ffn.out : NULL;
            double ga = 0, gf = 0, gi = 0, gs = 0;
            for (int64_t i = 0; i < n; i++) {
                float g = m->dx[i];
                ga += (double)g * ya[i];
                gf += (double)g * yf[i];
                gi += (double)g * x[i];
                if (ys)
                    gs += (double)g * ys[i];
                m->dsoft_g[i] = g;
            }
            s->soft_g[l][0] += (float)ga;
            s->soft_g[l][1] += (float)gf;
            s->soft_g[l][2] += (float)gi;
            s->soft_g[l][3] += (float)gs;
            float wf = s->soft_w[l][1];
            for (int64_t i = 0; i < n; i++)
                m->dx[i] = wf * m->dsoft_g[i];
        }
        if (a->part[PART_FFN].out)
            ffn_backward(m, s, l);
        if (a->part[PART_CONV].out)
            conv_backward(m, s, l);
        if (s->soft) {
            float wa = s->soft_w[l][0], wi = s->soft_w[l][2];
            for (int64_t i = 0; i < n; i++)
                m->dsoft_acc[i] = m->dx[i] + wi * m->dsoft_g[i];
            if (s->soft_std) {
                /* the standard branch first: its input is the attention block's output */
                float ws = s->soft_w[l][3];
                for (int64_t i = 0; i < n; i++)
                    m->dx[i] = ws * m->dsoft_g[i];
                ffn_backward_branch(m, s, l, 1); /* dx: its share at A's output */
                for (int64_t i = 0; i < n; i++)
                    m->dx[i] += wa * m->dsoft_g[i];
            } else {
                for (int64_t i = 0; i < n; i++)
                    m->dx[i] = wa * m->dsoft_g[i];
            }
        }
        if (a->part[PART_CROSS].out && (rc = cross_backward(m, s, l)))
            return et_fail(err, rc, "model: cross-attention backward failed in decoder layer %d",
                           l);
        if (a->part[PART_ATTN].out && (rc = self_backward(m, s, l)))
            return et_fail(err, rc, "model: attention backward failed in %s layer %d",
                           s->id ? "decoder" : "encoder", l);
        if (s->soft)
            for (int64_t i = 0; i < n; i++)
                m->dx[i] += m->dsoft_acc[i];
    }
    if (enc_of_seq2seq)
        for (int j = L; j < m->n_conn; j++)
            segment_backward(m, j, s->x0);
    return 0;
}

/* dx (B*T,e) into the token table (scaled) and the learned positions. */
static void embed_tokens_backward(et_model *m, et_stack *s, const int32_t *ids)
{
    int64_t B = m->b_now, T = s->T, e = s->arch->embed_dim, ld = m->tensors[s->t_tok].cols;
    float scale = et_model_embed_scale(m, (int32_t)e);
    float *gtok = G(m, s->t_tok);
    for (int64_t i = 0; i < B * T; i++) {
        float *w = gtok + (int64_t)ids[i] * ld;
        const float *g = m->dx + i * e;
        for (int64_t k = 0; k < e; k++)
            w[k] += scale * g[k];
    }
    if (s->t_pos >= 0) {
        float *gpos = G(m, s->t_pos);
        for (int64_t i = 0; i < B; i++)
            for (int64_t t = 0; t < T; t++) {
                const float *g = m->dx + (i * T + t) * e;
                float *gp = gpos + t * s->E;
                for (int64_t k = 0; k < e; k++)
                    gp[k] += g[k];
            }
    }
}

/* dout: NULL for the loss's gradient (times scale), else the outputs'. */
static int backward_classifier(et_model *m, float scale, const float *dout, int ones,
                               char **err)
{
    et_stack *s = &m->st[0];
    int64_t B = m->b_now, T = s->T, e = s->arch->embed_dim, N = B * T;
    int cls = m->space.pooling == ET_POOLING_CLS;
    int64_t L = T - cls;
    if (ones)
        for (int64_t i = 0; i < B * m->C; i++)
            m->dlogits[i] = 1.0f;
    else if (dout)
        memcpy(m->dlogits, dout, sizeof(float) * (size_t)(B * m->C));
    else
        et_cross_entropy(m->dlogits, m->logits, m->C, m->labels, B, m->C,
                         m->cfg.label_smoothing, scale, NULL);
    memset(m->dpool, 0, sizeof(float) * (size_t)(B * e));
    et_linear_backward(m->dpool, e, G(m, m->t_head_w), s->E, G(m, m->t_head_b), m->dlogits, m->C,
                       m->pooled, e, P(m, m->t_head_w), s->E, B, e, m->C);
    float *dfz = m->dsub;
    memset(dfz, 0, sizeof(float) * (size_t)(N * e));
    if (cls)
        for (int64_t i = 0; i < B; i++)
            memcpy(dfz + i * T * e, m->dpool + i * e, sizeof(float) * (size_t)e);
    else
        et_meanpool_backward(dfz, m->dpool, m->src_lens, B, T, e);
    memset(m->dx, 0, sizeof(float) * (size_t)(N * e));
    if (m->space.norm == ET_NORM_PRE)
        et_layernorm_backward(m->dx, G(m, s->t_lnf_g), G(m, s->t_lnf_b), dfz, s->out,
                              P(m, s->t_lnf_g), s->fmean, s->frstd, N, e);
    else
        memcpy(m->dx, dfz, sizeof(float) * (size_t)(N * e));
    int rc = stack_backward(m, s, err);
    if (rc)
        return rc;
    /* embedding: dx (N,e) -> pos, cls, patch linear */
    float *gpos = G(m, s->t_pos), *gcls = G(m, m->t_cls);
    float *demb = m->dsub;
    for (int64_t i = 0; i < B; i++)
        for (int64_t t = 0; t < T; t++) {
            const float *g = m->dx + (i * T + t) * e;
            float *gp = gpos + t * s->E;
            for (int64_t k = 0; k < e; k++)
                gp[k] += g[k];
            if (t < cls)
                for (int64_t k = 0; k < e; k++)
                    gcls[k] += g[k];
            else
                memcpy(demb + (i * L + t - cls) * e, g, sizeof(float) * (size_t)e);
        }
    if (m->dinput) {
        memset(m->dinput, 0, sizeof(float) * (size_t)(B * L * m->in_dim));
        m->dinput_per_example = L * m->in_dim;
    }
    et_linear_backward(m->dinput, m->in_dim, G(m, m->t_patch_w), m->in_dim, G(m, m->t_patch_b),
                       demb, e, m->src, m->in_dim, P(m, m->t_patch_w), m->in_dim, B * L,
                       m->in_dim, e);
    return 0;
}

/* d memory (per connect k) back to the encoder segments it was built from. */
static void memory_backward(et_model *m)
{
    et_stack *enc = &m->st[0];
    int64_t B = m->b_now, S = enc->T, Ee = enc->arch->embed_dim;
    for (int j = 0; j < m->n_conn; j++)
        memset(m->dseg[j], 0, sizeof(float) * (size_t)(B * S * Ee));
    for (int k = 1; k <= 3; k++) {
        if (!m->conn_used[k])
            continue;
        int64_t Sk = k * S;
        for (int64_t b = 0; b < B; b++) {
            int64_t n = m->src_lens ? m->src_lens[b] : S;
            const float *src = m->dmem[k] + b * Sk * Ee;
            for (int j = k - 1; j >= 0; j--) {
                float *dst = m->dseg[j] + b * S * Ee;
                for (int64_t i = 0; i < n * Ee; i++)
                    dst[i] += src[i];
                src += n * Ee;
            }
        }
    }
}

static int backward_tokens(et_model *m, float scale, const float *dout, int ones, char **err)
{
    et_stack *dec = &m->st[1];
    int64_t B = m->b_now, T = dec->T, N = B * T, e = dec->arch->embed_dim, V = m->V_tgt;
    int pre = m->space.norm == ET_NORM_PRE;
    if (ones || dout) {
        for (int64_t i = 0; i < N; i++)
            for (int64_t k = 0; k < V; k++)
                m->dlogits[i * V + k] = m->targets[i] < 0 ? 0.0f : ones ? 1.0f : dout[i * V + k];
    } else {
        et_cross_entropy(m->dlogits, m->logits, V, m->targets, N, V, m->cfg.label_smoothing,
                         scale, NULL);
    }
    float *dfz = m->dsub;
    memset(dfz, 0, sizeof(float) * (size_t)(N * e));
    const float *fz = pre ? dec->fz : dec->out;
    int64_t ld = m->tensors[dec->t_tok].cols;
    et_linear_backward(dfz, e, G(m, dec->t_tok), ld, NULL, m->dlogits, V, fz, e,
                       P(m, dec->t_tok), ld, N, e, V);
    memset(m->dx, 0, sizeof(float) * (size_t)(N * e));
    if (pre)
        et_layernorm_backward(m->dx, G(m, dec->t_lnf_g), G(m, dec->t_lnf_b), dfz, dec->out,
                              P(m, dec->t_lnf_g), dec->fmean, dec->frstd, N, e);
    else
        memcpy(m->dx, dfz, sizeof(float) * (size_t)(N * e));
    int seq2seq = m->kind == ET_MODEL_KIND_SEQ2SEQ;
    if (seq2seq) {
        int64_t Ee = m->st[0].arch->embed_dim, S = m->st[0].T;
        for (int k = 1; k <= 3; k++)
            if (m->conn_used[k])
                memset(m->dmem[k], 0, sizeof(float) * (size_t)(B * k * S * Ee));
    }
    int rc = stack_backward(m, dec, err);
    if (rc)
        return rc;
    if (!seq2seq && m->dinput) {
        memcpy(m->dinput, m->dx, sizeof(float) * (size_t)(B * T * e));
        m->dinput_per_example = T * e;
    }
    embed_tokens_backward(m, dec, m->tgt_in);
    if (!seq2seq)
        return 0;
    et_stack *enc = &m->st[0];
    memory_backward(m);
    memset(m->dx, 0, sizeof(float) * (size_t)(B * enc->T * enc->arch->embed_dim));
    if ((rc = stack_backward(m, enc, err)))
        return rc;
    if (m->dinput) {
        memcpy(m->dinput, m->dx,
               sizeof(float) * (size_t)(B * enc->T * enc->arch->embed_dim));
        m->dinput_per_example = (int64_t)enc->T * enc->arch->embed_dim;
    }
    embed_tokens_backward(m, enc, m->src_tok);
    return 0;
}

int et_model_backward(et_model *m, float scale, char **err)
{
    if (!m->bound || !m->b_now)
        return et_fail(err, ET_STATUS_ERR_USAGE, "model: backward without a forward");
    return m->kind == ET_MODEL_KIND_ENCODER ? backward_classifier(m, scale, NULL, 0, err)
                                            : backward_tokens(m, scale, NULL, 0, err);
}

int et_model_backward_outputs(et_model *m, const float *dlogits, char **err)
{
    if (!m->bound || !m->b_now)
        return et_fail(err, ET_STATUS_ERR_USAGE, "model: backward without a forward");
    int ones = dlogits == NULL;
    return m->kind == ET_MODEL_KIND_ENCODER ? backward_classifier(m, 1.0f, dlogits, ones, err)
                                            : backward_tokens(m, 1.0f, dlogits, ones, err);
}

int32_t et_model_input_dim(const et_model *m)
{
    return m->kind == ET_MODEL_KIND_ENCODER ? m->in_dim : 0;
}

void et_model_want_input_grad(et_model *m, int on)
{
    if (m->want_input_grad != (on != 0))
        m->bound = 0;
    m->want_input_grad = on != 0;
}

const float *et_model_input_grad(const et_model *m, int64_t *per_example)
{
    if (per_example)
        *per_example = m->dinput_per_example;
    return m->dinput;
}

/* ---------------------------------------------------------------- soft choices */

int et_model_set_soft(et_model *m, int32_t stack, const float *block_w, const float *op_w,
                      char **err)
{
    return et_model_set_soft_blocks(m, stack, 3, block_w, op_w, err);
}

int et_model_set_soft_blocks(et_model *m, int32_t stack, int32_t blocks, const float *block_w,
                             const float *op_w, char **err)
{
    if (blocks != 3 && blocks != 4)
        return et_fail(err, ET_STATUS_ERR_USAGE, "model: soft mixtures have 3 or 4 candidates");
    if (stack < 0 || stack > 1 || !m->st[stack].present || !block_w)
        return et_fail(err, ET_STATUS_ERR_USAGE, "model: soft choices need a present stack (0 "
                                                 "encoder, 1 decoder) and block weights");
    et_stack *s = &m->st[stack];
    for (int32_t l = 0; l < s->L; l++) {
        s->soft_w[l][3] = 0.0f;
        for (int k = 0; k < blocks; k++) {
            float w = block_w[l * blocks + k];
            if (!isfinite(w))
                return et_fail(err, ET_STATUS_ERR_NUMERIC,
                               "model: soft block weight %d of layer %d is not finite", k, l);
            s->soft_w[l][k] = w;
        }
        for (int32_t o = 0; op_w && o < s->n_attn; o++) {
            float w = op_w[l * s->n_attn + o];
            if (!isfinite(w))
                return et_fail(err, ET_STATUS_ERR_NUMERIC,
                               "model: soft operator weight %d of layer %d is not finite", o, l);
            s->op_w[l][o] = w;
        }
    }
    if (s->soft != 1 || s->soft_ops != (op_w != NULL) || s->soft_std != (blocks == 4))
        m->bound = 0; /* the arena changes: bind again */
    s->soft = 1;
    s->soft_ops = op_w != NULL;
    s->soft_std = blocks == 4;
    return 0;
}

void et_model_clear_soft(et_model *m)
{
    for (int i = 0; i < 2; i++) {
        if (m->st[i].soft)
            m->bound = 0;
        m->st[i].soft = m->st[i].soft_ops = m->st[i].soft_std = 0;
    }
}

const float *et_model_soft_grads(const et_model *m, int32_t stack, const float **op_grads)
{
    const et_stack *s = &m->st[stack < 0 || stack > 1 ? 0 : stack];
    if (op_grads)
        *op_grads = &s->op_g[0][0];
    return &s->soft_g[0][0];
}
