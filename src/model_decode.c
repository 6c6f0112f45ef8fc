/* Incremental decoding of token models (model.h): the encoder runs once,
 * cross-attention keys and values are projected once per sentence, and
 * each step pushes one token per hypothesis through the decoder, with the
 * attention operators' decode_step (a KV cache or a recurrent state).
 *
 * Every hypothesis has its own operator state (decode_floats of a batch of
 * one), so beam search reorders hypotheses by copying whole states. The
 * beams of a sentence share its cross-attention keys and values through a
 * zero batch stride. Shapes: R = B*beams rows, e decoder embed dim, q/qc
 * self/cross widths, V target vocabulary, Sk = connect * S memory rows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "model_impl.h"
#include "util.h"

typedef struct carve {
    float *base;
    int64_t used;
} carve;

static float *take(carve *c, int64_t n)
{
    float *p = c->base ? c->base + c->used : NULL;
    c->used += (n + 15) & ~(int64_t)15;
    return p;
}

static void dims(const et_model *m, const et_stack *s, int32_t l, int cross, int32_t *q,
                 int32_t *d, int32_t *h)
{
    const et_layer_arch *g = &s->arch->layer[l];
    *h = cross ? g->cross_heads : g->heads;
    *q = et_model_q_width(&m->space, *h);
    *d = *q / *h;
}

static int has_attn(const et_stack *s, int32_t l)
{
    int32_t b = s->arch->layer[l].block;
    return b == ET_BLOCK_STANDARD || b == ET_BLOCK_ATTENTION_ONLY;
}

static int has_ffn(const et_stack *s, int32_t l)
{
    int32_t b = s->arch->layer[l].block;
    return b == ET_BLOCK_STANDARD || b == ET_BLOCK_FFN_ONLY || b == ET_BLOCK_CONV;
}

static int has_conv(const et_stack *s, int32_t l)
{
    return s->arch->layer[l].block == ET_BLOCK_CONV;
}

/* Lay out the decode arena (base NULL: just measure); returns its floats. */
static int64_t plan(et_model *m, float *base)
{
    et_decode *d = &m->dec;
    et_stack *s = &m->st[1];
    carve c = {base, 0};
    int64_t R = d->rows, e = s->arch->embed_dim, maxq = 1, maxqc = 1, maxf = 1;
    int64_t work = 0, csaved = 0;
    for (int32_t l = 0; l < s->arch->layers; l++) {
        int32_t q, dd, h;
        d->dstate[l] = d->spare[l] = d->ckv[l] = NULL;
        d->dconv[l] = d->dconv_spare[l] = NULL;
        d->cstate[l] = d->cstate_spare[l] = NULL;
        if (has_conv(s, l)) {
            int64_t k = s->arch->layer[l].conv_kernel;
            d->cstate[l] = take(&c, R * (k - 1) * e);
            d->cstate_spare[l] = take(&c, R * (k - 1) * e);
        }
        if (has_attn(s, l)) {
            dims(m, s, l, 0, &q, &dd, &h);
            maxq = q > maxq ? q : maxq;
            const et_attention_vtable *vt = et_model_attn_vt(m, s, l, 0);
            void *st = et_model_attn_state(m, s, l, 0);
            et_attn_shape one = {1, h, 1, 1, dd, dd, ET_ATTN_MODE_CAUSAL, NULL};
            et_attn_shape full = {1, h, d->max_len, d->max_len, dd, dd, ET_ATTN_MODE_CAUSAL, NULL};
            d->dstate_floats[l] = vt->decode_floats(st, &one, d->max_len);
            d->dstate[l] = take(&c, R * d->dstate_floats[l]);
            d->spare[l] = take(&c, R * d->dstate_floats[l]);
            if (m->space.primer_dconv) {
                d->dconv[l] = take(&c, R * 2 * 3 * q);
                d->dconv_spare[l] = take(&c, R * 2 * 3 * q);
            }
            int64_t w = vt->work_floats(st, &full);
            work = w > work ? w : work;
            if (s->n_cross) {
                dims(m, s, l, 1, &q, &dd, &h);
                maxqc = q > maxqc ? q : maxqc;
                int64_t Sk = (int64_t)s->arch->layer[l].connect * d->S;
                d->ckv[l] = take(&c, (int64_t)d->B * Sk * 2 * q);
                et_attn_shape cs = {d->beams, h, 1, (int32_t)Sk, dd, dd, ET_ATTN_MODE_CROSS, NULL};
                vt = et_model_attn_vt(m, s, l, 1);
                st = et_model_attn_state(m, s, l, 1);
                w = vt->work_floats(st, &cs);
                work = w > work ? w : work;
                w = vt->saved_floats(st, &cs);
                csaved = w > csaved ? w : csaved;
            }
        }
        if (has_ffn(s, l))
            maxf = s->arch->layer[l].ffn_dim > maxf ? s->arch->layer[l].ffn_dim : maxf;
    }
    d->x = take(&c, R * e);
    d->sub = take(&c, R * e);
    d->lnz = take(&c, R * e);
    d->mean = take(&c, R);
    d->rstd = take(&c, R);
    d->qkv = take(&c, R * 3 * maxq);
    d->qkv_pre = take(&c, R * 3 * maxq);
    d->att = take(&c, R * maxq);
    d->cq = take(&c, R * maxqc);
    d->catt = take(&c, R * maxqc);
    d->h = take(&c, R * maxf);
    d->cin = take(&c, R * 2 * e);
    d->cglu = take(&c, R * e);
    d->cconv = take(&c, R * e);
    d->g = take(&c, R * maxf);
    d->logits = take(&c, R * m->V_tgt);
    d->pos = take(&c, e);
    d->csaved = take(&c, csaved);
    d->work = take(&c, work);
    return c.used;
}

/* Prepare the operators for the decode shapes on top of the bound ones. */
static int prepare(et_model *m, char **err)
{
    et_decode *d = &m->dec;
    et_stack *s = &m->st[1];
    for (int32_t l = 0; l < s->arch->layers; l++) {
        if (!has_attn(s, l))
            continue;
        for (int cross = 0; cross < 1 + (s->n_cross > 0); cross++) {
            int32_t q, dd, h;
            dims(m, s, l, cross, &q, &dd, &h);
            int32_t b = d->beams > m->B ? d->beams : m->B;
            int32_t T = d->max_len > s->T_cap ? d->max_len : s->T_cap;
            int32_t Sk = s->arch->layer[l].connect * (m->st[0].present ? m->st[0].T_cap : 0);
            et_attn_shape sh = cross ? (et_attn_shape){b, h, s->T_cap, Sk, dd, dd,
                                                       ET_ATTN_MODE_CROSS, NULL}
                                     : (et_attn_shape){b, h, T, T, dd, dd, ET_ATTN_MODE_CAUSAL,
                                                       NULL};
            const et_attention_vtable *vt = et_model_attn_vt(m, s, l, cross);
            if (!cross && (!vt->decode_floats || !vt->decode_reset || !vt->decode_step))
                return et_fail(err, ET_STATUS_ERR_UNSUPPORTED,
                               "decode: the self-attention operator of decoder layer %d has no "
                               "incremental decoding",
                               l);
            char *perr = NULL;
            int rc = et_model_attn_vt(m, s, l, cross)
                         ->prepare(et_model_attn_state(m, s, l, cross), &sh, &perr);
            if (rc) {
                et_fail(err, rc, "decode: attention of decoder layer %d%s: %s", l,
                        cross ? " (cross)" : "", perr ? perr : "prepare failed");
                free(perr);
                return rc;
            }
        }
    }
    return 0;
}

int et_model_decode_begin(et_model *m, const et_batch *src, int32_t beams, int32_t max_len,
                          char **err)
{
    et_decode *d = &m->dec;
    d->active = 0;
    if (m->kind == ET_MODEL_KIND_ENCODER)
        return et_fail(err, ET_STATUS_ERR_USAGE, "decode: an encoder classifier does not decode");
    if (!m->bound)
        return et_fail(err, ET_STATUS_ERR_USAGE, "decode: no architecture bound");
    int seq2seq = m->kind == ET_MODEL_KIND_SEQ2SEQ;
    if (m->st[0].soft || m->st[1].soft)
        return et_fail(err, ET_STATUS_ERR_UNSUPPORTED,
                       "decode: soft choices are for training; decode a discrete arch");
    if (src->size < 1 || src->size > m->B || beams < 1 || max_len < 1)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "decode: %d examples x %d beams for %d steps (bound for %d examples)",
                       src->size, beams, max_len, m->B);
    if (m->st[1].t_pos >= 0 && max_len > m->st[1].pos_rows)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "decode: %d steps exceed the %d learned decoder positions", max_len,
                       m->st[1].pos_rows);
    if (seq2seq) {
        if (!src->src_tok || src->src_len < 1 || src->src_len > m->st[0].T_cap)
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "decode: source of length %d does not fit the binding (%d)",
                           src->src_len, m->st[0].T_cap);
        for (int64_t i = 0; i < (int64_t)src->size * src->src_len; i++)
            if (src->src_tok[i] < 0 || src->src_tok[i] >= m->V_src)
                return et_fail(err, ET_STATUS_ERR_USAGE, "decode: source token %d outside 0..%d",
                               src->src_tok[i], m->V_src - 1);
    }
    m->training = 0;
    m->b_now = src->size;
    d->B = src->size;
    d->beams = beams;
    d->rows = src->size * beams;
    d->max_len = max_len;
    d->S = seq2seq ? src->src_len : 0;
    int rc = prepare(m, err);
    if (rc)
        return rc;
    if (seq2seq) {
        m->src_tok = src->src_tok;
        if ((rc = et_model_encode(m, src, err)))
            return rc;
    }
    /* size, then (re)allocate: here, never in the steps */
    int64_t need = plan(m, NULL);
    if (need > d->cap) {
        float *na = realloc(d->arena, sizeof(float) * (size_t)need);
        if (!na)
            return et_fail(err, ET_STATUS_ERR_NOMEM, "decode: out of memory for %lld floats",
                           (long long)need);
        d->arena = na;
        d->cap = need;
    }
    if (d->rows > d->cross_rows) {
        int32_t *nl = realloc(d->cross_len, sizeof *nl * (size_t)d->rows * 4);
        if (!nl)
            return et_fail(err, ET_STATUS_ERR_NOMEM, "decode: out of memory");
        d->cross_len = nl;
        d->cross_rows = d->rows;
    }
    plan(m, d->arena);
    et_stack *s = &m->st[1];
    for (int32_t l = 0; l < s->arch->layers; l++) {
        if (d->cstate[l])
            memset(d->cstate[l], 0, sizeof(float) * (size_t)d->rows *
                                        (size_t)(s->arch->layer[l].conv_kernel - 1) *
                                        (size_t)s->arch->embed_dim);
        if (!has_attn(s, l))
            continue;
        int32_t q, dd, h;
        dims(m, s, l, 0, &q, &dd, &h);
        const et_attention_vtable *vt = et_model_attn_vt(m, s, l, 0);
        void *st = et_model_attn_state(m, s, l, 0);
        et_attn_shape one = {1, h, 1, 1, dd, dd, ET_ATTN_MODE_CAUSAL, NULL};
        for (int32_t i = 0; i < d->rows; i++)
            vt->decode_reset(st, &one, max_len, d->dstate[l] + (int64_t)i * d->dstate_floats[l]);
        if (d->dconv[l])
            memset(d->dconv[l], 0, sizeof(float) * (size_t)d->rows * 2 * 3 * q);
        if (!s->n_cross)
            continue;
        /* cross keys and values of each sentence: (B*Sk, 2qc) = mem_k . Wckv^T */
        dims(m, s, l, 1, &q, &dd, &h);
        int32_t k = s->arch->layer[l].connect;
        int64_t Ee = m->st[0].arch->embed_dim, Sk = (int64_t)k * d->S;
        const int32_t *t = s->t_layer[l];
        et_linear_forward(d->ckv[l], 2 * q, m->mem[k], Ee, et_model_param(m, t[P_CKV_W]),
                          m->st[0].E, et_model_param(m, t[P_CKV_B]), d->B * Sk, Ee, 2 * q);
    }
    for (int k = 1; k <= 3; k++)
        for (int32_t i = 0; i < d->rows; i++)
            d->cross_len[(k - 1) * d->rows + i] = seq2seq && m->conn_used[k]
                                                      ? m->mem_len[k][i / beams]
                                                      : 0;
    d->active = 1;
    return 0;
}

static et_attn_view view(float *base, int64_t sb, int64_t sh, int64_t st)
{
    return (et_attn_view){base, sb, sh, st};
}

/* One residual part on the decode rows, in place on d->x: the sub-layer
 * input is returned, and part_end folds the sub-layer output d->sub back. */
static const float *part_begin(et_model *m, const float *gamma, const float *beta)
{
    et_decode *d = &m->dec;
    int64_t e = m->st[1].arch->embed_dim;
    if (m->space.norm != ET_NORM_PRE)
        return d->x;
    et_layernorm_forward(d->lnz, d->mean, d->rstd, d->x, gamma, beta, d->rows, e);
    return d->lnz;
}

static void part_end(et_model *m, const float *gamma, const float *beta)
{
    et_decode *d = &m->dec;
    int64_t n = (int64_t)d->rows * m->st[1].arch->embed_dim;
    for (int64_t i = 0; i < n; i++)
        d->sub[i] += d->x[i];
    if (m->space.norm == ET_NORM_PRE)
        memcpy(d->x, d->sub, sizeof(float) * (size_t)n);
    else
        et_layernorm_forward(d->x, d->mean, d->rstd, d->sub, gamma, beta, d->rows,
                             m->st[1].arch->embed_dim);
}

static int self_step(et_model *m, int32_t l, int32_t pos)
{
    et_decode *d = &m->dec;
    et_stack *s = &m->st[1];
    const int32_t *t = s->t_layer[l];
    int64_t R = d->rows, e = s->arch->embed_dim;
    int32_t q, dd, h;
    dims(m, s, l, 0, &q, &dd, &h);
    const float *x = part_begin(m, et_model_param(m, t[P_LN1_G]), et_model_param(m, t[P_LN1_B]));
    if (d->dconv[l]) {
        /* Primer, causal: qkv_t = w0 pre_t + w1 pre_{t-1} + w2 pre_{t-2}, the
         * two past inputs kept per hypothesis (zeros before the start) */
        int64_t C = 3 * q;
        et_linear_forward(d->qkv_pre, C, x, e, et_model_param(m, t[P_QKV_W]), s->E,
                          et_model_param(m, t[P_QKV_B]), R, e, C);
        const float *w = et_model_param(m, t[P_DCONV_W]);
        int64_t ldw = 3 * s->Q;
        for (int64_t i = 0; i < R; i++) {
            float *now = d->qkv_pre + i * C, *out = d->qkv + i * C;
            float *p1 = d->dconv[l] + i * 2 * C, *p2 = p1 + C;
            for (int64_t ch = 0; ch < C; ch++) {
                out[ch] = w[ch] * now[ch] + w[ldw + ch] * p1[ch] + w[2 * ldw + ch] * p2[ch];
                p2[ch] = p1[ch];
                p1[ch] = now[ch];
            }
        }
    } else {
        et_linear_forward(d->qkv, 3 * q, x, e, et_model_param(m, t[P_QKV_W]), s->E,
                          et_model_param(m, t[P_QKV_B]), R, e, 3 * q);
    }
    const et_attention_vtable *vt = et_model_attn_vt(m, s, l, 0);
    void *st = et_model_attn_state(m, s, l, 0);
    if (vt->set_step)
        vt->set_step(st, 0, m->step);
    et_attn_shape one = {1, h, 1, 1, dd, dd, ET_ATTN_MODE_CAUSAL, NULL};
    for (int64_t i = 0; i < R; i++) {
        float *r = d->qkv + i * 3 * q;
        int rc = vt->decode_step(st, &one, d->max_len, d->dstate[l] + i * d->dstate_floats[l],
                                 pos, view(r, 3 * q, dd, 3 * q), view(r + q, 3 * q, dd, 3 * q),
                                 view(r + 2 * q, 3 * q, dd, 3 * q),
                                 view(d->att + i * q, q, dd, q), d->work);
        if (rc)
            return rc;
    }
    et_linear_forward(d->sub, e, d->att, q, et_model_param(m, t[P_PROJ_W]), s->Q,
                      et_model_param(m, t[P_PROJ_B]), R, q, e);
    part_end(m, et_model_param(m, t[P_LN1_G]), et_model_param(m, t[P_LN1_B]));
    return 0;
}

static int cross_step(et_model *m, int32_t l)
{
    et_decode *d = &m->dec;
    et_stack *s = &m->st[1];
    const int32_t *t = s->t_layer[l];
    int64_t R = d->rows, e = s->arch->embed_dim;
    int32_t k = s->arch->layer[l].connect;
    int64_t Sk = (int64_t)k * d->S;
    int32_t q, dd, h;
    dims(m, s, l, 1, &q, &dd, &h);
    const float *x = part_begin(m, et_model_param(m, t[P_LNC_G]), et_model_param(m, t[P_LNC_B]));
    et_linear_forward(d->cq, q, x, e, et_model_param(m, t[P_CQ_W]), s->E,
                      et_model_param(m, t[P_CQ_B]), R, e, q);
    const et_attention_vtable *vt = et_model_attn_vt(m, s, l, 1);
    void *st = et_model_attn_state(m, s, l, 1);
    if (vt->set_step)
        vt->set_step(st, 0, m->step);
    for (int64_t b = 0; b < d->B; b++) {
        /* the sentence's beams share its keys and values: batch stride 0 */
        float *kv = d->ckv[l] + b * Sk * 2 * q;
        et_attn_shape cs = {d->beams, h, 1, (int32_t)Sk, dd, dd, ET_ATTN_MODE_CROSS,
                            d->cross_len + (k - 1) * d->rows + b * d->beams};
        int rc = vt->forward(st, &cs, view(d->cq + b * d->beams * q, q, dd, q),
                             view(kv, 0, dd, 2 * q), view(kv + q, 0, dd, 2 * q),
                             view(d->catt + b * d->beams * q, q, dd, q), d->csaved, d->work);
        if (rc)
            return rc;
    }
    et_linear_forward(d->sub, e, d->catt, q, et_model_param(m, t[P_CPROJ_W]), s->QC,
                      et_model_param(m, t[P_CPROJ_B]), R, q, e);
    part_end(m, et_model_param(m, t[P_LNC_G]), et_model_param(m, t[P_LNC_B]));
    return 0;
}

/* Causal conv block on one new position: out = sum_j w[j] glu_{t-j}, the
 * k - 1 previous GLU outputs kept per hypothesis, newest first. */
static void conv_step(et_model *m, int32_t l)
{
    et_decode *d = &m->dec;
    et_stack *s = &m->st[1];
    const int32_t *t = s->t_layer[l];
    int64_t R = d->rows, e = s->arch->embed_dim, E = s->E, k = s->arch->layer[l].conv_kernel;
    const float *x = part_begin(m, et_model_param(m, t[P_LNV_G]), et_model_param(m, t[P_LNV_B]));
    et_linear_forward(d->cin, 2 * e, x, e, et_model_param(m, t[P_CIN_W]), E,
                      et_model_param(m, t[P_CIN_B]), R, e, 2 * e);
    const float *w = et_model_param(m, t[P_CDW_W]);
    for (int64_t i = 0; i < R; i++) {
        float *glu = d->cglu + i * e, *out = d->cconv + i * e;
        float *past = d->cstate[l] + i * (k - 1) * e;
        for (int64_t c = 0; c < e; c++) {
            float b = d->cin[i * 2 * e + e + c];
            glu[c] = d->cin[i * 2 * e + c] / (1.0f + et_expf(-b));
            out[c] = w[c] * glu[c];
        }
        for (int64_t j = 1; j < k; j++)
            for (int64_t c = 0; c < e; c++)
                out[c] += w[j * E + c] * past[(j - 1) * e + c];
        if (k > 1) {
            memmove(past + e, past, sizeof(float) * (size_t)((k - 2) * e));
            memcpy(past, glu, sizeof(float) * (size_t)e);
        }
    }
    et_linear_forward(d->sub, e, d->cconv, e, et_model_param(m, t[P_COUT_W]), E,
                      et_model_param(m, t[P_COUT_B]), R, e, e);
    part_end(m, et_model_param(m, t[P_LNV_G]), et_model_param(m, t[P_LNV_B]));
}

static void ffn_step(et_model *m, int32_t l)
{
    et_decode *d = &m->dec;
    et_stack *s = &m->st[1];
    const int32_t *t = s->t_layer[l];
    const et_layer_arch *g = &s->arch->layer[l];
    int64_t R = d->rows, e = s->arch->embed_dim, f = g->ffn_dim;
    const float *x = part_begin(m, et_model_param(m, t[P_LN2_G]), et_model_param(m, t[P_LN2_B]));
    et_linear_forward(d->h, f, x, e, et_model_param(m, t[P_FC1_W]), s->E,
                      et_model_param(m, t[P_FC1_B]), R, e, f);
    et_activation_forward(g->activation, d->g, d->h, R * f);
    et_linear_forward(d->sub, e, d->g, f, et_model_param(m, t[P_FC2_W]), s->F,
                      et_model_param(m, t[P_FC2_B]), R, f, e);
    part_end(m, et_model_param(m, t[P_LN2_G]), et_model_param(m, t[P_LN2_B]));
}

int et_model_decode_step(et_model *m, const int32_t *tokens, int32_t pos, const float **logprobs,
                         char **err)
{
    et_decode *d = &m->dec;
    if (!d->active)
        return et_fail(err, ET_STATUS_ERR_USAGE, "decode: step without decode_begin");
    if (pos < 0 || pos >= d->max_len)
        return et_fail(err, ET_STATUS_ERR_USAGE, "decode: position %d outside 0..%d", pos,
                       d->max_len - 1);
    et_stack *s = &m->st[1];
    int64_t R = d->rows, e = s->arch->embed_dim, V = m->V_tgt;
    int64_t ld = m->tensors[s->t_tok].cols;
    for (int64_t i = 0; i < R; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return et_fail(err, ET_STATUS_ERR_USAGE, "decode: token %d outside 0..%lld",
                           tokens[i], (long long)(V - 1));
    /* x[i] = sqrt(e) tok[tokens[i]] + pos[pos] */
    const float *p = d->pos;
    if (s->t_pos >= 0)
        p = et_model_param(m, s->t_pos) + (int64_t)pos * s->E;
    else
        et_model_sinusoid(d->pos, pos, (int32_t)e);
    float scale = et_model_embed_scale(m, (int32_t)e);
    const float *tok = et_model_param(m, s->t_tok);
    for (int64_t i = 0; i < R; i++) {
        const float *w = tok + (int64_t)tokens[i] * ld;
        float *x = d->x + i * e;
        for (int64_t k = 0; k < e; k++)
            x[k] = p[k] + scale * w[k];
    }
    for (int32_t l = 0; l < s->arch->layers; l++) {
        int rc;
        if (has_attn(s, l)) {
            if ((rc = self_step(m, l, pos)))
                return et_fail(err, rc, "decode: attention step failed in decoder layer %d", l);
            if (s->n_cross && (rc = cross_step(m, l)))
                return et_fail(err, rc, "decode: cross-attention failed in decoder layer %d", l);
        }
        if (has_conv(s, l))
            conv_step(m, l);
        if (has_ffn(s, l))
            ffn_step(m, l);
    }
    const float *z = d->x;
    if (m->space.norm == ET_NORM_PRE) {
        et_layernorm_forward(d->lnz, d->mean, d->rstd, d->x, et_model_param(m, s->t_lnf_g),
                             et_model_param(m, s->t_lnf_b), R, e);
        z = d->lnz;
    }
    et_linear_forward(d->logits, V, z, e, tok, ld, NULL, R, e, V);
    for (int64_t i = 0; i < R; i++) {
        float *row = d->logits + i * V;
        float mx = row[0];
        for (int64_t k = 1; k < V; k++)
            mx = row[k] > mx ? row[k] : mx;
        double sum = 0;
        for (int64_t k = 0; k < V; k++)
            sum += et_expf(row[k] - mx);
        float lse = mx + (float)log(sum);
        for (int64_t k = 0; k < V; k++)
            row[k] -= lse;
    }
    *logprobs = d->logits;
    return 0;
}

void et_model_decode_reorder(et_model *m, const int32_t *from)
{
    et_decode *d = &m->dec;
    et_stack *s = &m->st[1];
    for (int32_t l = 0; l < s->arch->layers; l++) {
        if (d->cstate[l]) {
            int64_t k = (int64_t)(s->arch->layer[l].conv_kernel - 1) * s->arch->embed_dim;
            for (int64_t i = 0; i < d->rows; i++)
                memcpy(d->cstate_spare[l] + i * k, d->cstate[l] + (int64_t)from[i] * k,
                       sizeof(float) * (size_t)k);
            float *t = d->cstate[l];
            d->cstate[l] = d->cstate_spare[l];
            d->cstate_spare[l] = t;
        }
        if (!d->dstate[l])
            continue;
        int64_t n = d->dstate_floats[l];
        for (int64_t i = 0; i < d->rows; i++)
            memcpy(d->spare[l] + i * n, d->dstate[l] + (int64_t)from[i] * n,
                   sizeof(float) * (size_t)n);
        float *t = d->dstate[l];
        d->dstate[l] = d->spare[l];
        d->spare[l] = t;
        if (d->dconv[l]) {
            int32_t q, dd, h;
            dims(m, s, l, 0, &q, &dd, &h);
            int64_t k = 2 * 3 * (int64_t)q;
            for (int64_t i = 0; i < d->rows; i++)
                memcpy(d->dconv_spare[l] + i * k, d->dconv[l] + (int64_t)from[i] * k,
                       sizeof(float) * (size_t)k);
            t = d->dconv[l];
            d->dconv[l] = d->dconv_spare[l];
            d->dconv_spare[l] = t;
        }
    }
}
