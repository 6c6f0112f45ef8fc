/* The `opgraph` attention operator: attention as a small graph of primitive
 * ops over Q, K and V (OP-NAS, spec/search.md), given by the option `graph`
 * in the text of opgraph.h, which also defines the shapes and where the key
 * and causal masks apply. The default graph is exact softmax attention.
 *
 * Per (batch, head), forward evaluates the nodes in order and backward runs
 * reverse mode over them: matmuls are sgemm calls on the strided input views
 * and on node buffers; transposes are views (a flag), never copies; the
 * output node writes straight into `out`. A masked contraction copies its
 * masked operand (and, in backward, its masked gradient) through one scratch
 * buffer. A padded sequence's K and V rows are copied with the padding
 * zeroed (S (d + dv) floats per worker). Heads run in parallel over
 * host->parallel_for.
 *
 * Memory: every node but the inputs, transposes and the output has one
 * rows x cols buffer per head. With `recompute` (the default) backward
 * evaluates them again into `work` and nothing is saved; otherwise forward
 * keeps them in `saved` (B*H times their sum, e.g. 3*L*S per head for
 * softmax attention). Scratch per worker: values (recompute), gradients of
 * the same nodes, and the largest masked matmul operand.
 *
 * Decoding keeps a KV cache (and the queries, which a graph may use as
 * values). Step t evaluates the causal graph on the t+1 cached positions and
 * keeps row t: one causal forward of length t+1 per step, so O(T^3) over T
 * steps for graphs with an L x S node (the softmax plugin's cache is O(T^2)).
 * Cheap for the short sequences of a search; not a serving path.
 *
 * Non-finite values: masked entries are multiplied by 0 inside sgemm, so an
 * infinite value outside the mask would still give NaN there. Finite inputs
 * keep every op finite except sqrtabs' slope at 0, which is capped (below). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/attention.h>

#include "opgraph.h"

#define DEFAULT_GRAPH "matmul(softmax(scale(matmul(Q,transpose(K)))),V)"

/* sqrtabs' slope sign(x) / (2 sqrt|x|) is capped at 1 / (2 SQRTABS_FLOOR)
 * (reached for |x| < 1e-6), and is 0 at x = 0. */
#define SQRTABS_FLOOR 1e-3f

#define N_CTX 6 /* (mode 0..2) x (d == dv) */

typedef struct ctx_analysis {
    int ok;
    opgraph_shapes shapes;
} ctx_analysis;

typedef struct opgraph_state {
    const et_host *host;
    int recompute;
    opgraph g;
    char text[OPGRAPH_MAX_TEXT];
    ctx_analysis an[N_CTX];
} opgraph_state;

static const et_option_decl opgraph_options[] = {
    {"graph", ET_OPTION_TYPE_STRING, DEFAULT_GRAPH, 1, 0, NULL,
     "the attention graph over Q, K, V, e.g. " DEFAULT_GRAPH " (';' may separate operands)"},
    {"recompute", ET_OPTION_TYPE_BOOL, "true", 1, 0, NULL,
     "backward re-evaluates the graph instead of saving every node (saved memory 0)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static unsigned ctx_flags(int32_t mode, int same_dim)
{
    unsigned f = same_dim ? OPGRAPH_CTX_SAME_DIM : 0;
    if (mode == ET_ATTN_MODE_BIDIRECTIONAL)
        f |= OPGRAPH_CTX_SAME_LEN;
    else if (mode == ET_ATTN_MODE_CAUSAL)
        f |= OPGRAPH_CTX_SAME_LEN | OPGRAPH_CTX_CAUSAL;
    return f;
}

static int ctx_index(int32_t mode, int same_dim)
{
    return mode * 2 + (same_dim != 0);
}

static int opg_create(const et_host *host, const et_option_value *opts, void **state, char **err)
{
    *state = NULL;
    opgraph_state *st = calloc(1, sizeof *st);
    if (!st) {
        *err = host->errorf("opgraph: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    st->host = host;
    st->recompute = opts[1].i != 0;
    const char *text = opts[0].s ? opts[0].s : "";
    char why[OPGRAPH_MAX_TEXT + 512];
    /* the most permissive context: a graph failing here fails everywhere */
    int rc = opgraph_parse(text, &st->g, why, sizeof why);
    if (!rc)
        rc = opgraph_validate(&st->g, text, OPGRAPH_CTX_SAME_LEN | OPGRAPH_CTX_SAME_DIM, NULL,
                              why, sizeof why);
    if (rc) {
        *err = host->errorf("opgraph: %s", why);
        free(st);
        return rc;
    }
    snprintf(st->text, sizeof st->text, "%s", text);
    for (int32_t mode = 0; mode < 3; mode++)
        for (int same_dim = 0; same_dim < 2; same_dim++) {
            ctx_analysis *a = &st->an[ctx_index(mode, same_dim)];
            a->ok = !opgraph_validate(&st->g, NULL, ctx_flags(mode, same_dim), &a->shapes, NULL,
                                      0);
        }
    *state = st;
    return 0;
}

static void opg_destroy(void *state)
{
    free(state);
}

/* 0 when the shape is one this operator computes (the graph aside). */
static int shape_ok(const et_attn_shape *s)
{
    if (s->batch < 1 || s->heads < 1 || s->len_q < 0 || s->len_k < 0 || s->dim_qk < 1 ||
        s->dim_v < 1)
        return ET_STATUS_ERR_USAGE;
    if (s->mode == ET_ATTN_MODE_CROSS)
        return 0;
    if (s->mode != ET_ATTN_MODE_BIDIRECTIONAL && s->mode != ET_ATTN_MODE_CAUSAL)
        return ET_STATUS_ERR_USAGE;
    return s->len_q == s->len_k ? 0 : ET_STATUS_ERR_UNSUPPORTED;
}

static const char *mode_name(int32_t mode)
{
    return mode == ET_ATTN_MODE_CAUSAL ? "causal" : mode == ET_ATTN_MODE_CROSS ? "cross" : "self";
}

static int opg_prepare(void *state, const et_attn_shape *max, char **err)
{
    opgraph_state *st = state;
    int rc = shape_ok(max);
    if (rc == ET_STATUS_ERR_UNSUPPORTED) {
        *err = st->host->errorf("opgraph: %s attention needs len_q == len_k (got %d and %d); "
                                "use mode cross for different lengths (causal cross-attention "
                                "is not defined)",
                                mode_name(max->mode), max->len_q, max->len_k);
        return rc;
    }
    if (rc) {
        *err = st->host->errorf("opgraph: bad shape B=%d H=%d L=%d S=%d d=%d dv=%d mode=%d",
                                max->batch, max->heads, max->len_q, max->len_k, max->dim_qk,
                                max->dim_v, max->mode);
        return rc;
    }
    int same_dim = max->dim_qk == max->dim_v;
    if (!st->an[ctx_index(max->mode, same_dim)].ok) {
        char why[OPGRAPH_MAX_TEXT + 512];
        opgraph_validate(&st->g, st->text, ctx_flags(max->mode, same_dim), NULL, why,
                         sizeof why);
        *err = st->host->errorf("opgraph: not a graph for %s attention with %s: %s",
                                mode_name(max->mode), same_dim ? "d == dv" : "d != dv", why);
        return ET_STATUS_ERR_UNSUPPORTED;
    }
    return 0;
}

/* ------------------------------------------------------------------ plan */

enum { BOUND_NONE = 0, BOUND_ROW = 1, BOUND_COL = 2 };

/* Sizes, storage and masks of every node for one shape. A node "computes"
 * when it has its own buffer: not an input, not a transpose. Values and
 * gradients of computing nodes other than the output sit at off/goff. */
typedef struct plan {
    const opgraph *g;
    int32_t root;
    int64_t rows[OPGRAPH_MAX_NODES], cols[OPGRAPH_MAX_NODES];
    int8_t computes[OPGRAPH_MAX_NODES];
    int8_t own[OPGRAPH_MAX_NODES]; /* node whose storage holds the value */
    int8_t tr[OPGRAPH_MAX_NODES];  /* value is own's transposed */
    int64_t off[OPGRAPH_MAX_NODES], goff[OPGRAPH_MAX_NODES];
    int8_t key_inner[OPGRAPH_MAX_NODES]; /* matmul: contracts over a key axis */
    int8_t bound[OPGRAPH_MAX_NODES];     /* matmul: causal bound of the contraction */
    int8_t key_cols[OPGRAPH_MAX_NODES];  /* softmax: columns are keys */
    int8_t ordered[OPGRAPH_MAX_NODES];   /* softmax: row i sees columns <= i */
    int64_t nval, ngrad, nscratch;
    int64_t nkv; /* K and V rows with padded keys zeroed: S (d + dv) */
    float scale;
} plan;

/* The plan for shape s (its mode, dims and lengths); ERR_UNSUPPORTED when
 * the graph is not one of s's context. */
static int plan_make(const opgraph_state *st, const et_attn_shape *s, plan *pl)
{
    int same_dim = s->dim_qk == s->dim_v;
    if (s->mode < 0 || s->mode > 2 || !st->an[ctx_index(s->mode, same_dim)].ok)
        return ET_STATUS_ERR_UNSUPPORTED;
    const opgraph_shapes *sh = &st->an[ctx_index(s->mode, same_dim)].shapes;
    unsigned ctx = ctx_flags(s->mode, same_dim);
    const opgraph *g = &st->g;
    memset(pl, 0, sizeof *pl);
    pl->g = g;
    pl->root = g->n - 1;
    pl->scale = 1.0f / sqrtf((float)s->dim_qk);
    pl->nkv = (int64_t)s->len_k * (s->dim_qk + s->dim_v);
    for (int32_t i = 0; i < g->n; i++) {
        const opgraph_node *nd = &g->node[i];
        int32_t a = nd->arg[0], b = nd->arg[1];
        pl->rows[i] = opgraph_axis_size(sh->rows[i], s->len_q, s->len_k, s->dim_qk, s->dim_v);
        pl->cols[i] = opgraph_axis_size(sh->cols[i], s->len_q, s->len_k, s->dim_qk, s->dim_v);
        pl->own[i] = (int8_t)i;
        if (opgraph_op_arity(nd->op) == 0)
            continue;
        if (nd->op == OPGRAPH_OP_TRANSPOSE) {
            pl->own[i] = pl->own[a];
            pl->tr[i] = !pl->tr[a];
            continue;
        }
        pl->computes[i] = 1;
        if (i != pl->root) {
            pl->off[i] = pl->nval;
            pl->goff[i] = pl->ngrad;
            pl->nval += pl->rows[i] * pl->cols[i];
            pl->ngrad += pl->rows[i] * pl->cols[i];
        }
        if (nd->op == OPGRAPH_OP_MATMUL) {
            int32_t inner = sh->cols[a];
            pl->key_inner[i] = (int8_t)opgraph_axis_is_key(inner, ctx);
            if (opgraph_axis_is_ordered(inner, ctx)) {
                pl->bound[i] = opgraph_axis_is_ordered(sh->rows[i], ctx) ? BOUND_ROW : BOUND_COL;
                int64_t need = pl->rows[a] * pl->cols[a];
                if (pl->rows[b] * pl->cols[b] > need)
                    need = pl->rows[b] * pl->cols[b];
                if (need > pl->nscratch)
                    pl->nscratch = need;
            }
        } else if (nd->op == OPGRAPH_OP_SOFTMAX) {
            pl->key_cols[i] = (int8_t)opgraph_axis_is_key(sh->cols[i], ctx);
            pl->ordered[i] = (int8_t)opgraph_axis_is_ordered(sh->cols[i], ctx);
        }
    }
    return 0;
}

/* One worker's floats: values (when recomputed), gradients, scratch, and
 * the K and V copies of a padded sequence. */
static int64_t worker_floats(const opgraph_state *st, const plan *pl)
{
    return (st->recompute ? pl->nval : 0) + pl->ngrad + pl->nscratch + pl->nkv;
}

static int64_t opg_saved_floats(void *state, const et_attn_shape *s)
{
    opgraph_state *st = state;
    plan pl;
    if (st->recompute || plan_make(st, s, &pl))
        return 0;
    return (int64_t)s->batch * s->heads * pl.nval;
}

static int64_t opg_work_floats(void *state, const et_attn_shape *s)
{
    opgraph_state *st = state;
    plan pl;
    if (plan_make(st, s, &pl))
        return 0;
    return st->host->threads * worker_floats(st, &pl);
}

/* ------------------------------------------------------------- matrices */

/* A matrix operand: element (i, j) at p[i*ld + j], or at p[j*ld + i] when
 * tr. Values of inputs and saved nodes are only read through it. */
typedef struct tref {
    float *p;
    int64_t ld;
    int tr;
} tref;

static inline float *at(tref t, int64_t i, int64_t j)
{
    return t.tr ? t.p + j * t.ld + i : t.p + i * t.ld + j;
}

static tref flip(tref t)
{
    t.tr = !t.tr;
    return t;
}

static tref dense(float *p, int64_t cols)
{
    return (tref){p, cols, 0};
}

static void zero(tref c, int64_t m, int64_t n)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            *at(c, i, j) = 0.0f;
}

// c (m,n) = a (m,k) b (k,n) + beta c
static void gemm(tref c, tref a, tref b, int64_t m, int64_t n, int64_t k, float beta)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) {
        if (beta == 0.0f)
            zero(c, m, n);
        return;
    }
    if (c.tr) { /* c^T (n,m) = b^T a^T */
        tref t = flip(a);
        a = flip(b);
        b = t;
        int64_t x = m;
        m = n;
        n = x;
    }
    cblas_sgemm(CblasRowMajor, a.tr ? CblasTrans : CblasNoTrans, b.tr ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, 1.0f, a.p, (int)a.ld, b.p, (int)b.ld, beta, c.p,
                (int)c.ld);
}

/* dst (m,k) dense: a (m,k) with entries (i, j > i) set to 0 */
static void copy_lower(float *dst, tref a, int64_t m, int64_t k)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < k; j++)
            dst[i * k + j] = j <= i ? *at(a, i, j) : 0.0f;
}

/* dst (k,n) dense: b (k,n) with entries (j > c, c) set to 0 */
static void copy_upper(float *dst, tref b, int64_t k, int64_t n)
{
    for (int64_t j = 0; j < k; j++)
        for (int64_t c = 0; c < n; c++)
            dst[j * n + c] = j <= c ? *at(b, j, c) : 0.0f;
}

/* ----------------------------------------------------------- evaluation */

/* One head being evaluated: its plan, valid keys, every node's value and
 * (backward) gradient, and the scratch for masked matmuls. */
typedef struct head {
    const plan *pl;
    int64_t nk;
    tref val[OPGRAPH_MAX_NODES];
    tref grad[OPGRAPH_MAX_NODES];
    float *scratch;
} head;

/* dy/dx of a unary op at input x, output y */
static float unary_slope(int32_t op, float x, float y, float scale)
{
    switch (op) {
    case OPGRAPH_OP_NEG: return -1.0f;
    case OPGRAPH_OP_SCALE: return scale;
    case OPGRAPH_OP_SIGMOID: return y * (1.0f - y);
    case OPGRAPH_OP_LOGSIGMOID: return opgraph_sigmoid(-x);
    case OPGRAPH_OP_SOFTPLUS: return opgraph_sigmoid(x);
    case OPGRAPH_OP_SOFTSIGN: {
        float t = 1.0f + fabsf(x);
        return 1.0f / (t * t);
    }
    case OPGRAPH_OP_ABS: return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : 0.0f;
    case OPGRAPH_OP_RELU: return x > 0.0f ? 1.0f : 0.0f;
    default: /* OPGRAPH_OP_SQRTABS */
        return x == 0.0f ? 0.0f : copysignf(0.5f / fmaxf(y, SQRTABS_FLOOR), x);
    }
}

/* Columns row i of a softmax node sees: keys < nk, and <= i when ordered. */
static int64_t softmax_limit(const head *hd, int32_t node, int64_t i)
{
    const plan *pl = hd->pl;
    int64_t lim = pl->cols[node];
    if (pl->key_cols[node] && hd->nk < lim)
        lim = hd->nk;
    if (pl->ordered[node] && i + 1 < lim)
        lim = i + 1;
    return lim;
}

/* Length of a matmul's contraction: key axes stop at the valid keys. */
static int64_t inner_len(const head *hd, int32_t node)
{
    const plan *pl = hd->pl;
    int64_t k = pl->cols[pl->g->node[node].arg[0]];
    return pl->key_inner[node] && hd->nk < k ? hd->nk : k;
}

static void matmul_forward(head *hd, int32_t i, tref c)
{
    const plan *pl = hd->pl;
    const opgraph_node *nd = &pl->g->node[i];
    tref a = hd->val[nd->arg[0]], b = hd->val[nd->arg[1]];
    int64_t m = pl->rows[i], n = pl->cols[i], k = inner_len(hd, i);
    if (pl->bound[i] == BOUND_ROW) { /* c_ij sums over keys <= i */
        copy_lower(hd->scratch, a, m, k);
        a = dense(hd->scratch, k);
    } else if (pl->bound[i] == BOUND_COL) { /* ... over keys <= j */
        copy_upper(hd->scratch, b, k, n);
        b = dense(hd->scratch, n);
    }
    gemm(c, a, b, m, n, k, 0.0f);
}

static void softmax_forward(head *hd, int32_t i, tref y)
{
    tref x = hd->val[hd->pl->g->node[i].arg[0]];
    int64_t m = hd->pl->rows[i], n = hd->pl->cols[i];
    for (int64_t r = 0; r < m; r++) {
        int64_t lim = softmax_limit(hd, i, r);
        float mx = -INFINITY, sum = 0.0f;
        for (int64_t j = 0; j < lim; j++)
            mx = fmaxf(mx, *at(x, r, j));
        for (int64_t j = 0; j < lim; j++) {
            float e = expf(*at(x, r, j) - mx);
            *at(y, r, j) = e;
            sum += e;
        }
        for (int64_t j = 0; j < lim; j++)
            *at(y, r, j) /= sum;
        for (int64_t j = lim; j < n; j++)
            *at(y, r, j) = 0.0f;
    }
}

/* Value of computing node i into y (rows(i), cols(i)). */
static void node_forward(head *hd, int32_t i, tref y)
{
    const plan *pl = hd->pl;
    const opgraph_node *nd = &pl->g->node[i];
    int64_t m = pl->rows[i], n = pl->cols[i];
    tref a = hd->val[nd->arg[0]];
    switch (nd->op) {
    case OPGRAPH_OP_MATMUL: matmul_forward(hd, i, y); return;
    case OPGRAPH_OP_SOFTMAX: softmax_forward(hd, i, y); return;
    case OPGRAPH_OP_ADD:
    case OPGRAPH_OP_MUL:
    case OPGRAPH_OP_MAX: {
        tref b = hd->val[nd->arg[1]];
        for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < n; j++)
                *at(y, r, j) = opgraph_binary(nd->op, *at(a, r, j), *at(b, r, j));
        return;
    }
    default:
        for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < n; j++)
                *at(y, r, j) = opgraph_unary(nd->op, *at(a, r, j), pl->scale);
        return;
    }
}

/* Where every node's value lives: inputs and the output are the views,
 * transposes are their operand flipped, the rest sit in vals. */
static void bind_values(head *hd, const tref leaf[3], tref out, float *vals)
{
    const plan *pl = hd->pl;
    for (int32_t i = 0; i < pl->g->n; i++) {
        const opgraph_node *nd = &pl->g->node[i];
        if (opgraph_op_arity(nd->op) == 0)
            hd->val[i] = leaf[nd->op];
        else if (nd->op == OPGRAPH_OP_TRANSPOSE)
            hd->val[i] = flip(hd->val[nd->arg[0]]);
        else
            hd->val[i] = i == pl->root ? out : dense(vals + pl->off[i], pl->cols[i]);
    }
}

/* Evaluates every computing node (the output too unless skip_root); an
 * output that is an input or a transpose is copied into out. */
static void compute_values(head *hd, tref out, int skip_root)
{
    const plan *pl = hd->pl;
    for (int32_t i = 0; i < pl->g->n; i++)
        if (pl->computes[i] && !(skip_root && i == pl->root))
            node_forward(hd, i, hd->val[i]);
    if (!skip_root && !pl->computes[pl->root])
        for (int64_t r = 0; r < pl->rows[pl->root]; r++)
            for (int64_t j = 0; j < pl->cols[pl->root]; j++)
                *at(out, r, j) = *at(hd->val[pl->root], r, j);
}

/* dst (m,n) += s (m,n dense) on entries (i, j <= i) */
static void add_lower(tref dst, const float *s, int64_t m, int64_t n)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j <= i && j < n; j++)
            *at(dst, i, j) += s[i * n + j];
}

/* dst (m,n) += s (m,n dense) on entries (j <= c, c) */
static void add_upper(tref dst, const float *s, int64_t m, int64_t n)
{
    for (int64_t j = 0; j < m; j++)
        for (int64_t c = j; c < n; c++)
            *at(dst, j, c) += s[j * n + c];
}

/* c = a b with a (m,k), b (k,n): da += g b^T, db += a^T g, each through the
 * same mask as the forward (the masked operand is rebuilt in scratch). */
static void matmul_backward(head *hd, int32_t i, tref g)
{
    const plan *pl = hd->pl;
    const opgraph_node *nd = &pl->g->node[i];
    tref a = hd->val[nd->arg[0]], b = hd->val[nd->arg[1]];
    tref da = hd->grad[nd->arg[0]], db = hd->grad[nd->arg[1]];
    int64_t m = pl->rows[i], n = pl->cols[i], k = inner_len(hd, i);
    tref s;
    switch (pl->bound[i]) {
    case BOUND_ROW: /* c = tril(a) b */
        copy_lower(hd->scratch, a, m, k);
        s = dense(hd->scratch, k);
        gemm(db, flip(s), g, k, n, m, 1.0f);
        gemm(s, g, flip(b), m, k, n, 0.0f);
        add_lower(da, hd->scratch, m, k);
        break;
    case BOUND_COL: /* c = a triu(b) */
        copy_upper(hd->scratch, b, k, n);
        s = dense(hd->scratch, n);
        gemm(da, g, flip(s), m, k, n, 1.0f);
        gemm(s, flip(a), g, k, n, m, 0.0f);
        add_upper(db, hd->scratch, k, n);
        break;
    default:
        gemm(da, g, flip(b), m, k, n, 1.0f);
        gemm(db, flip(a), g, k, n, m, 1.0f);
        break;
    }
}

// y = softmax(x) by rows over the visible columns: dx = y (g - sum_visible y g)
static void softmax_backward(head *hd, int32_t i, tref g)
{
    int32_t a = hd->pl->g->node[i].arg[0];
    tref y = hd->val[i], dx = hd->grad[a];
    for (int64_t r = 0; r < hd->pl->rows[i]; r++) {
        int64_t lim = softmax_limit(hd, i, r);
        float dot = 0.0f;
        for (int64_t j = 0; j < lim; j++)
            dot += *at(y, r, j) * *at(g, r, j);
        for (int64_t j = 0; j < lim; j++)
            *at(dx, r, j) += *at(y, r, j) * (*at(g, r, j) - dot);
    }
}

/* Adds node i's contributions to its operands' gradients, given its own g. */
static void node_backward(head *hd, int32_t i, tref g)
{
    const plan *pl = hd->pl;
    const opgraph_node *nd = &pl->g->node[i];
    int64_t m = pl->rows[i], n = pl->cols[i];
    int32_t ia = nd->arg[0], ib = nd->arg[1];
    tref a = hd->val[ia], y = hd->val[i], da = hd->grad[ia];
    switch (nd->op) {
    case OPGRAPH_OP_MATMUL: matmul_backward(hd, i, g); return;
    case OPGRAPH_OP_SOFTMAX: softmax_backward(hd, i, g); return;
    case OPGRAPH_OP_ADD:
    case OPGRAPH_OP_MUL:
    case OPGRAPH_OP_MAX: {
        tref b = hd->val[ib], db = hd->grad[ib];
        for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < n; j++) {
                float gv = *at(g, r, j), av = *at(a, r, j), bv = *at(b, r, j);
                float ga = gv, gb = gv;
                if (nd->op == OPGRAPH_OP_MUL)
                    ga = gv * bv, gb = gv * av;
                else if (nd->op == OPGRAPH_OP_MAX) /* ties go to the first operand */
                    ga = av >= bv ? gv : 0.0f, gb = av >= bv ? 0.0f : gv;
                *at(da, r, j) += ga;
                *at(db, r, j) += gb;
            }
        return;
    }
    default:
        for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < n; j++)
                *at(da, r, j) += *at(g, r, j) *
                                 unary_slope(nd->op, *at(a, r, j), *at(y, r, j), pl->scale);
        return;
    }
}

/* Gradients: inputs accumulate straight into dq, dk, dv; computing nodes
 * other than the output into grads (zeroed here); transposes share their
 * operand's storage, flipped. Then reverse mode from dout. */
static void run_backward(head *hd, const tref dleaf[3], tref dout, float *grads)
{
    const plan *pl = hd->pl;
    const opgraph *g = pl->g;
    for (int32_t i = 0; i < g->n; i++) {
        int32_t o = pl->own[i];
        hd->grad[i] = opgraph_op_arity(g->node[o].op) == 0 ? dleaf[g->node[o].op]
                      : o == pl->root ? dout
                                      : dense(grads + pl->goff[o], pl->cols[o]);
        if (pl->tr[i])
            hd->grad[i] = flip(hd->grad[i]);
    }
    memset(grads, 0, (size_t)pl->ngrad * sizeof(float));
    if (!pl->computes[pl->root]) /* the output is an input, maybe transposed */
        for (int64_t r = 0; r < pl->rows[pl->root]; r++)
            for (int64_t j = 0; j < pl->cols[pl->root]; j++)
                *at(hd->grad[pl->root], r, j) += *at(dout, r, j);
    for (int32_t i = g->n - 1; i >= 0; i--)
        if (pl->computes[i])
            node_backward(hd, i, i == pl->root ? dout : hd->grad[i]);
}

/* ----------------------------------------------------------------- heads */

typedef struct heads_job {
    const opgraph_state *st;
    const et_attn_shape *s;
    const plan *pl;
    et_attn_view q, k, v, out, dout, dq, dk, dv;
    float *saved;
    const float *csaved;
    float *work;
    int64_t per_worker;
    /* decoding: per worker, values (dec_nval) then scratch (dec_nscratch)
     * then an output (max_len, dv) */
    int32_t max_len, pos;
    float *dstate;
    int64_t dec_nval, dec_nscratch;
} heads_job;

#define ROW(view, b, h, t) ((view).data + (int64_t)(b) * (view).sb + (int64_t)(h) * (view).sh + \
                            (int64_t)(t) * (view).st)

static tref view_ref(et_attn_view x, int64_t b, int64_t h)
{
    return (tref){ROW(x, b, h, 0), x.st, 0};
}

static int64_t valid_keys(const et_attn_shape *s, int64_t b)
{
    int64_t n = s->key_len ? s->key_len[b] : s->len_k;
    return n < 0 ? 0 : (n > s->len_k ? s->len_k : n);
}

/* A worker's part of `work`. */
typedef struct worker_area {
    float *vals, *grads, *scratch, *kv;
} worker_area;

static worker_area worker_parts(const heads_job *jb, int32_t worker)
{
    const plan *pl = jb->pl;
    worker_area w;
    w.vals = jb->work + worker * jb->per_worker;
    w.grads = w.vals + (jb->st->recompute ? pl->nval : 0);
    w.scratch = w.grads + pl->ngrad;
    w.kv = w.scratch + pl->nscratch;
    return w;
}

/* The inputs of head (b, h). Keys past nk are read as 0, so padded rows of K
 * and V influence no output, even where a graph uses them row by row (as in
 * add(...,V)): they are copied to kv with the padding zeroed. */
static void bind_inputs(const heads_job *jb, int64_t b, int64_t h, int64_t nk, float *kv,
                        tref leaf[3])
{
    const et_attn_shape *s = jb->s;
    int64_t S = s->len_k, d = s->dim_qk, dv = s->dim_v;
    leaf[0] = view_ref(jb->q, b, h);
    leaf[1] = view_ref(jb->k, b, h);
    leaf[2] = view_ref(jb->v, b, h);
    if (nk >= S)
        return;
    float *kc = kv, *vc = kv + S * d;
    for (int64_t t = 0; t < S; t++) {
        if (t < nk) {
            memcpy(kc + t * d, ROW(jb->k, b, h, t), (size_t)d * sizeof(float));
            memcpy(vc + t * dv, ROW(jb->v, b, h, t), (size_t)dv * sizeof(float));
        } else {
            memset(kc + t * d, 0, (size_t)d * sizeof(float));
            memset(vc + t * dv, 0, (size_t)dv * sizeof(float));
        }
    }
    leaf[1] = dense(kc, d);
    leaf[2] = dense(vc, dv);
}

static void forward_range(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const heads_job *jb = arg;
    const plan *pl = jb->pl;
    worker_area w = worker_parts(jb, worker);
    for (int64_t idx = begin; idx < end; idx++) {
        int64_t b = idx / jb->s->heads, h = idx % jb->s->heads;
        head hd = {.pl = pl, .nk = valid_keys(jb->s, b), .scratch = w.scratch};
        tref leaf[3], out = view_ref(jb->out, b, h);
        bind_inputs(jb, b, h, hd.nk, w.kv, leaf);
        bind_values(&hd, leaf, out, jb->st->recompute ? w.vals : jb->saved + idx * pl->nval);
        compute_values(&hd, out, 0);
    }
}

static void run_heads(const opgraph_state *st, const et_attn_shape *s, et_parallel_fn fn,
                      heads_job *jb)
{
    st->host->parallel_for(st->host->ctx, (int64_t)s->batch * s->heads, fn, jb);
}

// q (B,H,L,d), k (B,H,S,d), v (B,H,S,dv) -> out (B,H,L,dv); saved (B,H, node values) or nothing
static int opg_forward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                       et_attn_view v, et_attn_view out, float *saved, float *work)
{
    opgraph_state *st = state;
    plan pl;
    int rc = shape_ok(s);
    if (rc || (rc = plan_make(st, s, &pl)))
        return rc;
    heads_job jb = {.st = st, .s = s, .pl = &pl, .q = q, .k = k, .v = v, .out = out,
                    .saved = saved, .work = work, .per_worker = worker_floats(st, &pl)};
    run_heads(st, s, forward_range, &jb);
    return 0;
}

static void zero_view(tref x, int64_t rows, int64_t cols)
{
    for (int64_t t = 0; t < rows; t++)
        memset(x.p + t * x.ld, 0, (size_t)cols * sizeof(float));
}

static void backward_range(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const heads_job *jb = arg;
    const et_attn_shape *s = jb->s;
    const plan *pl = jb->pl;
    worker_area w = worker_parts(jb, worker);
    int recompute = jb->st->recompute;
    for (int64_t idx = begin; idx < end; idx++) {
        int64_t b = idx / s->heads, h = idx % s->heads;
        head hd = {.pl = pl, .nk = valid_keys(s, b), .scratch = w.scratch};
        tref leaf[3], out = view_ref(jb->out, b, h);
        tref dleaf[3] = {view_ref(jb->dq, b, h), view_ref(jb->dk, b, h), view_ref(jb->dv, b, h)};
        bind_inputs(jb, b, h, hd.nk, w.kv, leaf);
        /* saved values are only read; tref is not const-qualified */
        bind_values(&hd, leaf, out, recompute ? w.vals : (float *)(jb->csaved + idx * pl->nval));
        if (recompute)
            compute_values(&hd, out, 1);
        zero_view(dleaf[0], s->len_q, s->dim_qk);
        zero_view(dleaf[1], s->len_k, s->dim_qk);
        zero_view(dleaf[2], s->len_k, s->dim_v);
        run_backward(&hd, dleaf, view_ref(jb->dout, b, h), w.grads);
        /* padded keys were read as constants */
        zero_view((tref){ROW(jb->dk, b, h, hd.nk), jb->dk.st, 0}, s->len_k - hd.nk, s->dim_qk);
        zero_view((tref){ROW(jb->dv, b, h, hd.nk), jb->dv.st, 0}, s->len_k - hd.nk, s->dim_v);
    }
}

// dout (B,H,L,dv) -> dq (B,H,L,d), dk (B,H,S,d), dv (B,H,S,dv)
static int opg_backward(void *state, const et_attn_shape *s, et_attn_view q, et_attn_view k,
                        et_attn_view v, et_attn_view out, et_attn_view dout, const float *saved,
                        et_attn_view dq, et_attn_view dk, et_attn_view dv, float *work)
{
    opgraph_state *st = state;
    plan pl;
    int rc = shape_ok(s);
    if (rc || (rc = plan_make(st, s, &pl)))
        return rc;
    heads_job jb = {.st = st, .s = s, .pl = &pl, .q = q, .k = k, .v = v, .out = out,
                    .dout = dout, .dq = dq, .dk = dk, .dv = dv, .csaved = saved, .work = work,
                    .per_worker = worker_floats(st, &pl)};
    run_heads(st, s, backward_range, &jb);
    return 0;
}

/* -------------------------------------------------------------- decoding */

/* The causal shape of a decode at length len. */
static et_attn_shape decode_shape(const et_attn_shape *s, int32_t len)
{
    return (et_attn_shape){s->batch, s->heads, len, len, s->dim_qk, s->dim_v,
                           ET_ATTN_MODE_CAUSAL, NULL};
}

/* Per head: Q, K, V caches (max_len rows each). */
static int64_t cache_floats(const et_attn_shape *s, int32_t max_len)
{
    return (int64_t)max_len * (2 * s->dim_qk + s->dim_v);
}

/* Per worker: node values, scratch and an output (max_len, dv), sized at
 * max_len (every size grows with the length). */
static int64_t decode_worker_floats(const plan *at_max, const et_attn_shape *s, int32_t max_len)
{
    return at_max->nval + at_max->nscratch + (int64_t)max_len * s->dim_v;
}

static int64_t opg_decode_floats(void *state, const et_attn_shape *s, int32_t max_len)
{
    opgraph_state *st = state;
    et_attn_shape ds = decode_shape(s, max_len);
    plan pl;
    int64_t caches = (int64_t)s->batch * s->heads * cache_floats(s, max_len);
    if (plan_make(st, &ds, &pl))
        return caches;
    return caches + st->host->threads * decode_worker_floats(&pl, s, max_len);
}

static void opg_decode_reset(void *state, const et_attn_shape *s, int32_t max_len,
                             float *dstate)
{
    /* cache rows are written before they are read: only `pos` matters */
    (void)state, (void)s, (void)max_len, (void)dstate;
}

static void decode_range(void *arg, int64_t begin, int64_t end, int32_t worker)
{
    const heads_job *jb = arg;
    const et_attn_shape *s = jb->s;
    const plan *pl = jb->pl;
    int64_t d = s->dim_qk, dv = s->dim_v, pos = jb->pos, ml = jb->max_len;
    float *vals = jb->dstate + (int64_t)s->batch * s->heads * cache_floats(s, jb->max_len) +
                  worker * jb->per_worker;
    float *scratch = vals + jb->dec_nval, *obuf = scratch + jb->dec_nscratch;
    for (int64_t idx = begin; idx < end; idx++) {
        int64_t b = idx / s->heads, h = idx % s->heads;
        float *qc = jb->dstate + idx * cache_floats(s, jb->max_len), *kc = qc + ml * d,
              *vc = kc + ml * d;
        memcpy(qc + pos * d, ROW(jb->q, b, h, 0), (size_t)d * sizeof(float));
        memcpy(kc + pos * d, ROW(jb->k, b, h, 0), (size_t)d * sizeof(float));
        memcpy(vc + pos * dv, ROW(jb->v, b, h, 0), (size_t)dv * sizeof(float));
        head hd = {.pl = pl, .nk = pos + 1, .scratch = scratch};
        tref leaf[3] = {dense(qc, d), dense(kc, d), dense(vc, dv)};
        tref out = dense(obuf, dv);
        bind_values(&hd, leaf, out, vals);
        compute_values(&hd, out, 0);
        memcpy(ROW(jb->out, b, h, 0), obuf + pos * dv, (size_t)dv * sizeof(float));
    }
}

// q (B,H,1,d), k (B,H,1,d), v (B,H,1,dv) at position pos -> out (B,H,1,dv)
static int opg_decode_step(void *state, const et_attn_shape *s, int32_t max_len, float *dstate,
                           int32_t pos, et_attn_view q, et_attn_view k, et_attn_view v,
                           et_attn_view out, float *work)
{
    opgraph_state *st = state;
    (void)work;
    if (pos < 0 || pos >= max_len || s->batch < 1 || s->heads < 1 || s->dim_qk < 1 ||
        s->dim_v < 1)
        return ET_STATUS_ERR_USAGE;
    et_attn_shape ds = decode_shape(s, pos + 1), dmax = decode_shape(s, max_len);
    plan pl, pmax;
    int rc = plan_make(st, &ds, &pl);
    if (rc || (rc = plan_make(st, &dmax, &pmax)))
        return rc;
    heads_job jb = {.st = st, .s = s, .pl = &pl, .q = q, .k = k, .v = v, .out = out,
                    .max_len = max_len, .pos = pos, .dstate = dstate,
                    .per_worker = decode_worker_floats(&pmax, s, max_len),
                    .dec_nval = pmax.nval, .dec_nscratch = pmax.nscratch};
    run_heads(st, s, decode_range, &jb);
    return 0;
}

/* The graph's matmuls at full lengths (opgraph_macs); 0 for a shape the
 * graph does not fit. */
static double opg_macs(void *state, const et_attn_shape *s)
{
    opgraph_state *st = state;
    int same_dim = s->dim_qk == s->dim_v;
    if (s->mode < 0 || s->mode > 2 || !st->an[ctx_index(s->mode, same_dim)].ok)
        return 0.0;
    return (double)s->batch * s->heads *
           opgraph_macs(&st->g, &st->an[ctx_index(s->mode, same_dim)].shapes, s->len_q, s->len_k,
                        s->dim_qk, s->dim_v);
}

static const et_attention_vtable opgraph_vtable = {
    .create = opg_create,
    .destroy = opg_destroy,
    .prepare = opg_prepare,
    .saved_floats = opg_saved_floats,
    .work_floats = opg_work_floats,
    .forward = opg_forward,
    .backward = opg_backward,
    .decode_floats = opg_decode_floats,
    .decode_reset = opg_decode_reset,
    .decode_step = opg_decode_step,
    .macs = opg_macs,
    .set_step = NULL,
};

static const et_plugin_descriptor opgraph_descriptor = {
    ET_ABI_VERSION,
    ET_PLUGIN_KIND_ATTENTION,
    "opgraph",
    "attention as a graph of primitive ops over Q, K, V (OP-NAS search space)",
    opgraph_options,
    &opgraph_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &opgraph_descriptor;
}
