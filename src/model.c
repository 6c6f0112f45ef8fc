/* The elastic Transformer supernet (model.h): parameter arena at the space's
 * maxima, binding of an architecture to top-left slices, and the forward and
 * backward passes of an encoder classifier.
 *
 * A layer is two residual parts, attention then FFN, each wrapped the same
 * way: pre-norm  out = in + drop(sub(LN(in)))
 *           post-norm out = LN(in + drop(sub(in)))
 * Block types drop a part (attention-only, ffn-only) or both (identity).
 *
 * Shapes: B examples, T positions (input length, +1 with a class token),
 * N = B*T rows; e embed dim, q = q/k/v width, d = q / heads, f FFN dim of the
 * bound arch; E, Q, F the maxima (leading dimensions of the weights). */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "space.h"
#include "util.h"

enum { P_LN1_G, P_LN1_B, P_QKV_W, P_QKV_B, P_PROJ_W, P_PROJ_B, P_LN2_G, P_LN2_B,
       P_FC1_W, P_FC1_B, P_FC2_W, P_FC2_B, P_PER_LAYER };

typedef struct part_act {
    float *in, *out;   /* (N,e) streams */
    float *s;          /* post-norm: in + drop(sub) before the LN (N,e) */
    float *z;          /* pre-norm: LN(in), the sub-layer input (N,e) */
    float *mean, *rstd; /* (N) */
} part_act;

typedef struct layer_act {
    part_act attn, ffn;
    float *qkv;   /* (N,3q) */
    float *att;   /* (N,q) */
    float *saved; /* the operator's saved state */
    float *h, *g; /* (N,f) FFN pre- and post-activation */
} layer_act;

struct et_model {
    et_space space;
    et_model_config cfg;
    et_host host;
    int32_t E, Q, F, L, T_max, C, in_dim, n_attn;
    et_tensor *tensors;
    int32_t n_tensors;
    float *arena; /* params then grads */
    int64_t n_params;
    int32_t t_patch_w, t_patch_b, t_cls, t_pos, t_lnf_g, t_lnf_b, t_head_w, t_head_b;
    int32_t t_layer[ET_MAX_LAYERS][P_PER_LAYER];
    et_host *attn_host;  /* (L * n_attn) */
    void **attn_state;   /* (L * n_attn) */

    /* bound */
    int bound;
    et_arch arch;
    int32_t B, T, len; /* batch capacity, positions (with class token), input length */
    float *act;
    int64_t act_cap, act_need;
    float *emb, *x0, *fz, *fmean, *frstd, *pooled, *logits;
    layer_act la[ET_MAX_LAYERS];
    float *dx, *dsub, *dqkv, *datt, *dh, *dg, *dpool, *dlogits, *work;
    int64_t work_floats;

    /* the last forward, for backward */
    int32_t b_now;
    const float *src;
    const int32_t *labels;
    const int32_t *src_lens;  /* input lengths, NULL: all */
    const int32_t *key_len;   /* src_lens (+1 with a class token), or NULL */
    int32_t *key_len_buf;     /* (max_batch) */
    int training;
    uint64_t seed;
    int64_t step;
};

static int32_t max_of(const et_int_choices *c)
{
    int32_t m = 0;
    for (int32_t i = 0; i < c->n; i++)
        m = c->v[i] > m ? c->v[i] : m;
    return m;
}

static int32_t q_width(const et_space *s, int32_t heads)
{
    return s->heads_rule == ET_HEADS_RULE_QKV_DIM ? s->qkv_dim : s->head_dim * heads;
}

static int32_t add_tensor(et_model *m, const char *name, int32_t rows, int32_t cols, int decay)
{
    et_tensor *t = &m->tensors[m->n_tensors];
    t->name = name;
    t->offset = m->n_params;
    t->rows = rows;
    t->cols = cols;
    t->bound_rows = 0;
    t->bound_cols = 0;
    t->decay = decay;
    m->n_params += (int64_t)rows * cols;
    return m->n_tensors++;
}

static float *P(const et_model *m, int32_t t)
{
    return m->arena + m->tensors[t].offset;
}

static float *G(const et_model *m, int32_t t)
{
    return m->arena + m->n_params + m->tensors[t].offset;
}

static const char *const layer_names[P_PER_LAYER] = {
    "ln1.gamma", "ln1.beta", "qkv.weight", "qkv.bias", "proj.weight", "proj.bias",
    "ln2.gamma", "ln2.beta", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};

int et_model_create(const et_space *space, const et_model_config *cfg, const et_host *host,
                    et_model **out, char **err)
{
    *out = NULL;
    if (space->kind != ET_MODEL_KIND_ENCODER)
        return et_fail(err, ET_STATUS_ERR_UNSUPPORTED,
                       "model: only encoder classifiers are built so far (the space has a decoder)");
    if (cfg->input_dim < 1 || cfg->max_len < 1 || cfg->num_classes < 2 || cfg->max_batch < 1)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "model: input_dim, max_len, max_batch must be >= 1 and num_classes >= 2");
    et_model *m = calloc(1, sizeof *m);
    if (!m)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "model: out of memory");
    m->space = *space;
    m->cfg = *cfg;
    m->host = *host;
    const et_stack_space *st = &space->enc;
    m->E = max_of(&st->embed_dim);
    m->F = max_of(&st->ffn_dim);
    m->L = max_of(&st->layers);
    m->Q = q_width(space, max_of(&st->heads));
    m->C = cfg->num_classes;
    m->in_dim = cfg->input_dim;
    m->n_attn = st->attention.n;
    m->T_max = cfg->max_len + (space->pooling == ET_POOLING_CLS);
    m->tensors = calloc((size_t)(8 + P_PER_LAYER * m->L), sizeof *m->tensors);
    m->attn_host = calloc((size_t)(m->L * m->n_attn), sizeof *m->attn_host);
    m->attn_state = calloc((size_t)(m->L * m->n_attn), sizeof *m->attn_state);
    m->key_len_buf = calloc((size_t)cfg->max_batch, sizeof *m->key_len_buf);
    if (!m->tensors || !m->attn_host || !m->attn_state || !m->key_len_buf) {
        et_model_destroy(m);
        return et_fail(err, ET_STATUS_ERR_NOMEM, "model: out of memory");
    }
    int32_t E = m->E, Q = m->Q, F = m->F;
    m->t_patch_w = add_tensor(m, "embed.weight", E, m->in_dim, 1);
    m->t_patch_b = add_tensor(m, "embed.bias", 1, E, 0);
    m->t_cls = add_tensor(m, "cls", 1, E, 0);
    m->t_pos = add_tensor(m, "pos", m->T_max, E, 0);
    for (int32_t l = 0; l < m->L; l++) {
        for (int p = 0; p < P_PER_LAYER; p++) {
            int32_t r, c;
            switch (p) {
            case P_QKV_W: r = 3 * Q; c = E; break;
            case P_QKV_B: r = 1; c = 3 * Q; break;
            case P_PROJ_W: r = E; c = Q; break;
            case P_FC1_W: r = F; c = E; break;
            case P_FC1_B: r = 1; c = F; break;
            case P_FC2_W: r = E; c = F; break;
            default: r = 1; c = E; break;
            }
            m->t_layer[l][p] = add_tensor(m, layer_names[p], r, c, r > 1);
        }
    }
    m->t_lnf_g = add_tensor(m, "lnf.gamma", 1, E, 0);
    m->t_lnf_b = add_tensor(m, "lnf.beta", 1, E, 0);
    m->t_head_w = add_tensor(m, "head.weight", m->C, E, 1);
    m->t_head_b = add_tensor(m, "head.bias", 1, m->C, 0);
    m->arena = calloc((size_t)m->n_params * 2, sizeof(float));
    if (!m->arena) {
        et_model_destroy(m);
        return et_fail(err, ET_STATUS_ERR_NOMEM, "model: out of memory for %lld parameters",
                       (long long)m->n_params);
    }
    for (int32_t l = 0; l < m->L; l++)
        for (int32_t c = 0; c < m->n_attn; c++) {
            int32_t i = l * m->n_attn + c;
            m->attn_host[i] = *host;
            et_rng base = et_rng_from_seed(host->seed);
            et_rng r = et_rng_split(&base, (uint64_t)i + 1);
            m->attn_host[i].seed = et_rng_u64(&r);
            const et_attn_impl *impl = &cfg->enc_attention[c];
            char *perr = NULL;
            int rc = impl->vt->create(&m->attn_host[i], impl->opts, &m->attn_state[i], &perr);
            if (rc) {
                et_fail(err, rc, "model: attention '%s' (layer %d): %s", st->attention.v[c], l,
                        perr ? perr : "create failed");
                free(perr);
                m->attn_state[i] = NULL;
                et_model_destroy(m);
                return rc;
            }
        }
    *out = m;
    return 0;
}

void et_model_destroy(et_model *m)
{
    if (!m)
        return;
    for (int32_t i = 0; m->attn_state && i < m->L * m->n_attn; i++)
        if (m->attn_state[i])
            m->cfg.enc_attention[i % m->n_attn].vt->destroy(m->attn_state[i]);
    free(m->attn_state);
    free(m->attn_host);
    free(m->tensors);
    free(m->arena);
    free(m->act);
    free(m->key_len_buf);
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

int64_t et_model_activation_bytes(const et_model *m)
{
    return m->act_need * (int64_t)sizeof(float);
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
        if (!strcmp(kind, "gamma")) {
            for (int64_t i = 0; i < n; i++)
                p[i] = 1.0f;
        } else if (!strcmp(kind, "beta") || !strcmp(kind, "bias")) {
            memset(p, 0, sizeof(float) * (size_t)n);
        } else {
            for (int64_t i = 0; i < n; i++) {
                double z;
                do
                    z = et_rng_normal(&r);
                while (fabs(z) > 2.0);
                p[i] = (float)(0.02 * z);
            }
        }
    }
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

static void layer_dims(const et_model *m, int32_t l, int32_t *q, int32_t *d, int32_t *heads)
{
    const et_layer_arch *g = &m->arch.enc.layer[l];
    *heads = g->heads;
    *q = q_width(&m->space, g->heads);
    *d = *q / g->heads;
}

static et_attn_shape attn_shape(const et_model *m, int32_t l, int32_t b, const int32_t *key_len)
{
    int32_t q, d, h;
    layer_dims(m, l, &q, &d, &h);
    return (et_attn_shape){b, h, m->T, m->T, d, d, ET_ATTN_MODE_BIDIRECTIONAL, key_len};
}

static void *attn_state(const et_model *m, int32_t l)
{
    return m->attn_state[l * m->n_attn + m->arch.enc.layer[l].attention];
}

static const et_attention_vtable *attn_vt(const et_model *m, int32_t l)
{
    return m->cfg.enc_attention[m->arch.enc.layer[l].attention].vt;
}

/* Lay the activations out for the bound arch (base NULL: just measure). */
static void plan(et_model *m, float *base)
{
    carve c = {base, 0};
    int64_t N = (int64_t)m->B * m->T, e = m->arch.enc.embed_dim;
    int pre = m->space.norm == ET_NORM_PRE;
    m->emb = take(&c, (int64_t)m->B * m->len * e);
    m->x0 = take(&c, N * e);
    float *stream = m->x0;
    int64_t max_q = 0, max_f = 0;
    m->work_floats = 0;
    for (int32_t l = 0; l < m->arch.enc.layers; l++) {
        layer_act *a = &m->la[l];
        const et_layer_arch *g = &m->arch.enc.layer[l];
        int32_t q, d, h;
        layer_dims(m, l, &q, &d, &h);
        memset(a, 0, sizeof *a);
        int has_attn = g->block == ET_BLOCK_STANDARD || g->block == ET_BLOCK_ATTENTION_ONLY;
        int has_ffn = g->block == ET_BLOCK_STANDARD || g->block == ET_BLOCK_FFN_ONLY;
        part_act *parts[2] = {has_attn ? &a->attn : NULL, has_ffn ? &a->ffn : NULL};
        for (int p = 0; p < 2; p++) {
            if (!parts[p])
                continue;
            part_act *pa = parts[p];
            pa->in = stream;
            pa->out = take(&c, N * e);
            pa->mean = take(&c, N);
            pa->rstd = take(&c, N);
            if (pre)
                pa->z = take(&c, N * e);
            else
                pa->s = take(&c, N * e);
            stream = pa->out;
        }
        if (has_attn) {
            a->qkv = take(&c, N * 3 * q);
            a->att = take(&c, N * q);
            et_attn_shape sh = attn_shape(m, l, m->B, NULL);
            void *st = attn_state(m, l);
            a->saved = take(&c, attn_vt(m, l)->saved_floats(st, &sh));
            int64_t w = attn_vt(m, l)->work_floats(st, &sh);
            m->work_floats = w > m->work_floats ? w : m->work_floats;
            max_q = q > max_q ? q : max_q;
        }
        if (has_ffn) {
            a->h = take(&c, N * g->ffn_dim);
            a->g = take(&c, N * g->ffn_dim);
            max_f = g->ffn_dim > max_f ? g->ffn_dim : max_f;
        }
        /* identity layers: the stream passes through untouched */
        a->attn.out = has_attn ? a->attn.out : NULL;
        a->ffn.out = has_ffn ? a->ffn.out : NULL;
    }
    m->fz = pre ? take(&c, N * e) : stream;
    m->fmean = take(&c, N);
    m->frstd = take(&c, N);
    m->pooled = take(&c, (int64_t)m->B * e);
    m->logits = take(&c, (int64_t)m->B * m->C);
    m->dlogits = take(&c, (int64_t)m->B * m->C);
    m->dpool = take(&c, (int64_t)m->B * e);
    m->dx = take(&c, N * e);
    m->dsub = take(&c, N * e);
    m->dqkv = take(&c, N * 3 * max_q);
    m->datt = take(&c, N * max_q);
    m->dh = take(&c, N * max_f);
    m->dg = take(&c, N * max_f);
    m->work = take(&c, m->work_floats);
    m->act_need = c.used;
}

/* The stream that leaves layer l (identity layers pass theirs on). */
static float *layer_out(const et_model *m, int32_t l, float *in)
{
    const layer_act *a = &m->la[l];
    return a->ffn.out ? a->ffn.out : a->attn.out ? a->attn.out : in;
}

static void bind_tensors(et_model *m)
{
    int32_t e = m->arch.enc.embed_dim;
    for (int32_t t = 0; t < m->n_tensors; t++)
        m->tensors[t].bound_rows = m->tensors[t].bound_cols = 0;
#define BIND(t, r, c) (m->tensors[t].bound_rows = (r), m->tensors[t].bound_cols = (c))
    BIND(m->t_patch_w, e, m->in_dim);
    BIND(m->t_patch_b, 1, e);
    if (m->space.pooling == ET_POOLING_CLS)
        BIND(m->t_cls, 1, e);
    BIND(m->t_pos, m->T, e);
    if (m->space.norm == ET_NORM_PRE) {
        BIND(m->t_lnf_g, 1, e);
        BIND(m->t_lnf_b, 1, e);
    }
    BIND(m->t_head_w, m->C, e);
    BIND(m->t_head_b, 1, m->C);
    for (int32_t l = 0; l < m->arch.enc.layers; l++) {
        const et_layer_arch *g = &m->arch.enc.layer[l];
        const int32_t *t = m->t_layer[l];
        int32_t q, d, h;
        layer_dims(m, l, &q, &d, &h);
        if (g->block == ET_BLOCK_STANDARD || g->block == ET_BLOCK_ATTENTION_ONLY) {
            BIND(t[P_LN1_G], 1, e);
            BIND(t[P_LN1_B], 1, e);
            BIND(t[P_QKV_W], 3 * q, e);
            BIND(t[P_QKV_B], 1, 3 * q);
            BIND(t[P_PROJ_W], e, q);
            BIND(t[P_PROJ_B], 1, e);
        }
        if (g->block == ET_BLOCK_STANDARD || g->block == ET_BLOCK_FFN_ONLY) {
            BIND(t[P_LN2_G], 1, e);
            BIND(t[P_LN2_B], 1, e);
            BIND(t[P_FC1_W], g->ffn_dim, e);
            BIND(t[P_FC1_B], 1, g->ffn_dim);
            BIND(t[P_FC2_W], e, g->ffn_dim);
            BIND(t[P_FC2_B], 1, e);
        }
    }
#undef BIND
}

int et_model_bind(et_model *m, const et_arch *arch, int32_t batch, int32_t len, char **err)
{
    char *verr = NULL;
    if (et_arch_validate(&m->space, arch, &verr)) {
        int rc = et_fail(err, ET_STATUS_ERR_USAGE, "model: %s", verr);
        free(verr);
        return rc;
    }
    if (batch < 1 || batch > m->cfg.max_batch || len < 1 || len > m->cfg.max_len)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "model: batch %d x length %d is outside 1..%d x 1..%d", batch, len,
                       m->cfg.max_batch, m->cfg.max_len);
    m->arch = *arch;
    m->B = batch;
    m->len = len;
    m->T = len + (m->space.pooling == ET_POOLING_CLS);
    for (int32_t l = 0; l < arch->enc.layers; l++) {
        const et_layer_arch *g = &arch->enc.layer[l];
        if (g->block != ET_BLOCK_STANDARD && g->block != ET_BLOCK_ATTENTION_ONLY)
            continue;
        et_attn_shape sh = attn_shape(m, l, batch, NULL);
        char *perr = NULL;
        int rc = attn_vt(m, l)->prepare(attn_state(m, l), &sh, &perr);
        if (rc) {
            et_fail(err, rc, "model: attention '%s' (layer %d): %s",
                    m->space.enc.attention.v[g->attention], l, perr ? perr : "prepare failed");
            free(perr);
            return rc;
        }
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
    plan(m, m->act);
    bind_tensors(m);
    m->bound = 1;
    return 0;
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

/* Dropout masks are a function of (seed, step, layer, site) only. */
static uint64_t dropout_seed(const et_model *m)
{
    return et_rng_mix64(m->seed + et_rng_mix64((uint64_t)m->step));
}

static uint64_t site(int32_t l, int32_t k)
{
    return (uint64_t)l * 8 + (uint64_t)k + 1;
}

/* Sub-layer output u (N,e) in m->dsub-sized scratch is added to the stream. */
static void part_forward(et_model *m, part_act *pa, const float *gamma, const float *beta,
                         float *u, int32_t l, int32_t k, int64_t N, int64_t e)
{
    if (m->training && m->cfg.dropout > 0)
        et_dropout_forward(u, N * e, m->cfg.dropout, dropout_seed(m), site(l, k));
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

static int layer_forward(et_model *m, int32_t l, const int32_t *key_len)
{
    layer_act *a = &m->la[l];
    const et_layer_arch *g = &m->arch.enc.layer[l];
    const int32_t *t = m->t_layer[l];
    int64_t N = (int64_t)m->b_now * m->T, e = m->arch.enc.embed_dim, T = m->T;
    int32_t q, d, h;
    layer_dims(m, l, &q, &d, &h);
    if (a->attn.out) {
        const float *x = part_input(m, &a->attn, P(m, t[P_LN1_G]), P(m, t[P_LN1_B]), N, e);
        et_linear_forward(a->qkv, 3 * q, x, e, P(m, t[P_QKV_W]), m->E, P(m, t[P_QKV_B]), N, e,
                          3 * q);
        et_attn_shape sh = attn_shape(m, l, m->b_now, key_len);
        void *st = attn_state(m, l);
        const et_attention_vtable *vt = attn_vt(m, l);
        if (vt->set_step)
            vt->set_step(st, m->training, m->step);
        int rc = vt->forward(st, &sh, view(a->qkv, T * 3 * q, d, 3 * q),
                             view(a->qkv + q, T * 3 * q, d, 3 * q),
                             view(a->qkv + 2 * q, T * 3 * q, d, 3 * q), view(a->att, T * q, d, q),
                             a->saved, m->work);
        if (rc)
            return rc;
        et_linear_forward(m->dsub, e, a->att, q, P(m, t[P_PROJ_W]), m->Q, P(m, t[P_PROJ_B]), N, q,
                          e);
        part_forward(m, &a->attn, P(m, t[P_LN1_G]), P(m, t[P_LN1_B]), m->dsub, l, 0, N, e);
    }
    if (a->ffn.out) {
        a->ffn.in = a->attn.out ? a->attn.out : a->ffn.in;
        int64_t f = g->ffn_dim;
        const float *x = part_input(m, &a->ffn, P(m, t[P_LN2_G]), P(m, t[P_LN2_B]), N, e);
        et_linear_forward(a->h, f, x, e, P(m, t[P_FC1_W]), m->E, P(m, t[P_FC1_B]), N, e, f);
        et_activation_forward(g->activation, a->g, a->h, N * f);
        et_linear_forward(m->dsub, e, a->g, f, P(m, t[P_FC2_W]), m->F, P(m, t[P_FC2_B]), N, f, e);
        part_forward(m, &a->ffn, P(m, t[P_LN2_G]), P(m, t[P_LN2_B]), m->dsub, l, 1, N, e);
    }
    return 0;
}

int et_model_forward(et_model *m, const et_batch *b, int training, uint64_t seed, int64_t step,
                     double *loss, int64_t *correct, char **err)
{
    if (!m->bound)
        return et_fail(err, ET_STATUS_ERR_USAGE, "model: no architecture bound");
    if (b->size < 1 || b->size > m->B || b->src_len != m->len || !b->src_vec || !b->labels)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "model: batch of %d x %d does not fit the binding (%d x %d) or lacks inputs",
                       b->size, b->src_len, m->B, m->len);
    m->b_now = b->size;
    m->src = b->src_vec;
    m->labels = b->labels;
    m->training = training;
    m->seed = seed;
    m->step = step;
    int64_t B = b->size, T = m->T, L = m->len, e = m->arch.enc.embed_dim, N = B * T;
    int cls = m->space.pooling == ET_POOLING_CLS;
    /* embed: x0[b, cls + p] = W x[b, p] + bias + pos[cls + p]; x0[b, 0] = cls + pos[0] */
    et_linear_forward(m->emb, e, m->src, m->in_dim, P(m, m->t_patch_w), m->in_dim,
                      P(m, m->t_patch_b), B * L, m->in_dim, e);
    const float *pos = P(m, m->t_pos), *cv = P(m, m->t_cls);
    for (int64_t i = 0; i < B; i++)
        for (int64_t t = 0; t < T; t++) {
            float *x = m->x0 + (i * T + t) * e;
            const float *src = t < cls ? cv : m->emb + (i * L + t - cls) * e;
            const float *p = pos + t * m->E;
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
    float *stream = m->x0;
    for (int32_t l = 0; l < m->arch.enc.layers; l++) {
        layer_act *a = &m->la[l];
        if (a->attn.out)
            a->attn.in = stream;
        else if (a->ffn.out)
            a->ffn.in = stream;
        int rc = layer_forward(m, l, m->key_len);
        if (rc)
            return et_fail(err, rc, "model: attention forward failed in layer %d", l);
        stream = layer_out(m, l, stream);
    }
    if (m->space.norm == ET_NORM_PRE)
        et_layernorm_forward(m->fz, m->fmean, m->frstd, stream, P(m, m->t_lnf_g),
                             P(m, m->t_lnf_b), N, e);
    else
        m->fz = stream;
    if (cls)
        for (int64_t i = 0; i < B; i++)
            memcpy(m->pooled + i * e, m->fz + i * T * e, sizeof(float) * (size_t)e);
    else
        et_meanpool_forward(m->pooled, m->fz, b->src_lens, B, T, e);
    et_linear_forward(m->logits, m->C, m->pooled, e, P(m, m->t_head_w), m->E, P(m, m->t_head_b),
                      B, e, m->C);
    *loss = et_cross_entropy(NULL, m->logits, m->C, m->labels, B, m->C, m->cfg.label_smoothing,
                             1.0f, NULL);
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
    if (!isfinite(*loss))
        return et_fail(err, ET_STATUS_ERR_NUMERIC, "model: the loss is not finite");
    return 0;
}

/* ---------------------------------------------------------------- backward */

/* dout (N,e) is the gradient of the part's output, in m->dx. Leaves the
 * gradient of the sub-layer output u in du (for the residual: also adds to
 * dx the skip path), and returns the gradient buffer of the sub-layer input
 * (which the caller fills and then folds back with part_backward_input). */
static void part_backward_output(et_model *m, part_act *pa, const float *gamma, float *dgamma,
                                 float *dbeta, float *du, int32_t l, int32_t k, int64_t N,
                                 int64_t e)
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
        et_dropout_backward(du, N * e, m->cfg.dropout, dropout_seed(m), site(l, k));
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

static int layer_backward(et_model *m, int32_t l, const int32_t *key_len)
{
    layer_act *a = &m->la[l];
    const et_layer_arch *g = &m->arch.enc.layer[l];
    const int32_t *t = m->t_layer[l];
    int64_t N = (int64_t)m->b_now * m->T, e = m->arch.enc.embed_dim, T = m->T;
    int pre = m->space.norm == ET_NORM_PRE;
    int32_t q, d, h;
    layer_dims(m, l, &q, &d, &h);
    /* m->dsub is the (N,e) scratch for du, and then for the sub-layer input gradient */
    if (a->ffn.out) {
        int64_t f = g->ffn_dim;
        float *du = m->dsub;
        part_backward_output(m, &a->ffn, P(m, t[P_LN2_G]), G(m, t[P_LN2_G]), G(m, t[P_LN2_B]), du,
                             l, 1, N, e);
        memset(m->dg, 0, sizeof(float) * (size_t)(N * f));
        et_linear_backward(m->dg, f, G(m, t[P_FC2_W]), m->F, G(m, t[P_FC2_B]), du, e, a->g, f,
                           P(m, t[P_FC2_W]), m->F, N, f, e);
        memset(m->dh, 0, sizeof(float) * (size_t)(N * f));
        et_activation_backward(g->activation, m->dh, a->h, m->dg, N * f);
        const float *x = pre ? a->ffn.z : a->ffn.in;
        memset(du, 0, sizeof(float) * (size_t)(N * e));
        et_linear_backward(du, e, G(m, t[P_FC1_W]), m->E, G(m, t[P_FC1_B]), m->dh, f, x, e,
                           P(m, t[P_FC1_W]), m->E, N, e, f);
        part_backward_input(m, &a->ffn, P(m, t[P_LN2_G]), G(m, t[P_LN2_G]), G(m, t[P_LN2_B]), du,
                            N, e);
    }
    if (a->attn.out) {
        float *du = m->dsub;
        part_backward_output(m, &a->attn, P(m, t[P_LN1_G]), G(m, t[P_LN1_G]), G(m, t[P_LN1_B]),
                             du, l, 0, N, e);
        memset(m->datt, 0, sizeof(float) * (size_t)(N * q));
        et_linear_backward(m->datt, q, G(m, t[P_PROJ_W]), m->Q, G(m, t[P_PROJ_B]), du, e, a->att,
                           q, P(m, t[P_PROJ_W]), m->Q, N, q, e);
        et_attn_shape sh = attn_shape(m, l, m->b_now, key_len);
        int rc = attn_vt(m, l)->backward(
            attn_state(m, l), &sh, view(a->qkv, T * 3 * q, d, 3 * q),
            view(a->qkv + q, T * 3 * q, d, 3 * q), view(a->qkv + 2 * q, T * 3 * q, d, 3 * q),
            view(a->att, T * q, d, q), view(m->datt, T * q, d, q), a->saved,
            view(m->dqkv, T * 3 * q, d, 3 * q), view(m->dqkv + q, T * 3 * q, d, 3 * q),
            view(m->dqkv + 2 * q, T * 3 * q, d, 3 * q), m->work);
        if (rc)
            return rc;
        const float *x = pre ? a->attn.z : a->attn.in;
        memset(du, 0, sizeof(float) * (size_t)(N * e));
        et_linear_backward(du, e, G(m, t[P_QKV_W]), m->E, G(m, t[P_QKV_B]), m->dqkv, 3 * q, x, e,
                           P(m, t[P_QKV_W]), m->E, N, e, 3 * q);
        part_backward_input(m, &a->attn, P(m, t[P_LN1_G]), G(m, t[P_LN1_G]), G(m, t[P_LN1_B]), du,
                            N, e);
    }
    return 0;
}

int et_model_backward(et_model *m, float scale, char **err)
{
    if (!m->bound || !m->b_now)
        return et_fail(err, ET_STATUS_ERR_USAGE, "model: backward without a forward");
    int64_t B = m->b_now, T = m->T, L = m->len, e = m->arch.enc.embed_dim, N = B * T;
    int cls = m->space.pooling == ET_POOLING_CLS;
    et_cross_entropy(m->dlogits, m->logits, m->C, m->labels, B, m->C, m->cfg.label_smoothing,
                     scale, NULL);
    memset(m->dpool, 0, sizeof(float) * (size_t)(B * e));
    et_linear_backward(m->dpool, e, G(m, m->t_head_w), m->E, G(m, m->t_head_b), m->dlogits, m->C,
                       m->pooled, e, P(m, m->t_head_w), m->E, B, e, m->C);
    float *dfz = m->dsub;
    memset(dfz, 0, sizeof(float) * (size_t)(N * e));
    if (cls)
        for (int64_t i = 0; i < B; i++)
            memcpy(dfz + i * T * e, m->dpool + i * e, sizeof(float) * (size_t)e);
    else
        et_meanpool_backward(dfz, m->dpool, m->src_lens, B, T, e);
    float *stream_end = m->x0;
    for (int32_t l = 0; l < m->arch.enc.layers; l++)
        stream_end = layer_out(m, l, stream_end);
    memset(m->dx, 0, sizeof(float) * (size_t)(N * e));
    if (m->space.norm == ET_NORM_PRE)
        et_layernorm_backward(m->dx, G(m, m->t_lnf_g), G(m, m->t_lnf_b), dfz, stream_end,
                              P(m, m->t_lnf_g), m->fmean, m->frstd, N, e);
    else
        memcpy(m->dx, dfz, sizeof(float) * (size_t)(N * e));
    for (int32_t l = m->arch.enc.layers - 1; l >= 0; l--) {
        int rc = layer_backward(m, l, m->key_len);
        if (rc)
            return et_fail(err, rc, "model: attention backward failed in layer %d", l);
    }
    /* embedding: dx (N,e) -> pos, cls, patch linear */
    float *gpos = G(m, m->t_pos), *gcls = G(m, m->t_cls);
    float *demb = m->dsub;
    for (int64_t i = 0; i < B; i++)
        for (int64_t t = 0; t < T; t++) {
            const float *g = m->dx + (i * T + t) * e;
            float *gp = gpos + t * m->E;
            for (int64_t k = 0; k < e; k++)
                gp[k] += g[k];
            if (t < cls)
                for (int64_t k = 0; k < e; k++)
                    gcls[k] += g[k];
            else
                memcpy(demb + (i * L + t - cls) * e, g, sizeof(float) * (size_t)e);
        }
    et_linear_backward(NULL, 0, G(m, m->t_patch_w), m->in_dim, G(m, m->t_patch_b), demb, e,
                       m->src, m->in_dim, P(m, m->t_patch_w), m->in_dim, B * L, m->in_dim, e);
    return 0;
}
