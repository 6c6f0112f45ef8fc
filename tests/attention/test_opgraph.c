/* Tests of the opgraph attention plugin and its graph library (opgraph.h):
 * the standard graph against the naive softmax operator (forward and
 * backward), a set of graphs against a naive double evaluator of the same
 * semantics, finite-difference gradients of every primitive, padding,
 * causality, decoding, threads, saved vs recomputed values, MACs; and the
 * text side: parse errors, shape errors, canonical form and hash. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/rng.h>

#include "attn_check.h"
#include "attn_suite.h"
#include "attn_ref.h"
#include "opgraph.h"

const et_plugin_descriptor *etnas_plugin(void);

/* Stated tolerances. Errors are attn_check's scaled errors
 * max|a - b| / max(1, max|ref|) unless said otherwise. */
#define TOL_STD 1e-5     /* standard graph vs the naive softmax operator, fwd and bwd (issue 9) */
#define TOL_REF 2e-6     /* fp32 graph vs double evaluator */
#define TOL_GRAD 5e-4    /* analytic vs central differences: max|g - fd| / max|fd| */
#define TOL_PAD 1e-6     /* padded keys never enter a reduction; lengths change the sgemm shapes */
#define TOL_CAUSAL 0.0   /* later rows enter only as exact zeros: bitwise */
#define TOL_DECODE 1e-5  /* spec */
#define TOL_THREADS 0.0  /* heads are independent: bitwise */

#define STD "matmul(softmax(scale(matmul(Q,transpose(K)))),V)"

enum { M_BI = 1 << ET_ATTN_MODE_BIDIRECTIONAL, M_CA = 1 << ET_ATTN_MODE_CAUSAL,
       M_CR = 1 << ET_ATTN_MODE_CROSS, M_ALL = 7 };

/* A graph, the modes it is an attention graph of, and whether it needs
 * d == dv. Expectations are written out, not derived from the validator. */
typedef struct graph_case {
    const char *name, *text;
    int modes;
    int same_dim;
} graph_case;

static const graph_case graphs[] = {
    {"standard", STD, M_ALL, 0},
    /* the same through transposes: a contraction bounded by its columns */
    {"standard_t",
     "transpose(matmul(transpose(V),transpose(softmax(scale(matmul(Q,transpose(K)))))))",
     M_ALL, 0},
    /* sigmoid leaves future scores nonzero: the causal bound by columns matters */
    {"sigmoid_t", "transpose(matmul(transpose(V),transpose(sigmoid(matmul(Q,transpose(K))))))",
     M_ALL, 0},
    {"linear", "matmul(Q,matmul(transpose(K),V))", M_BI | M_CR, 0},
    {"linear_causal", "matmul(matmul(Q,transpose(K)),V)", M_ALL, 0},
    {"sigmoid", "matmul(sigmoid(scale(matmul(Q,transpose(K)))),V)", M_ALL, 0},
    {"logsigmoid", "matmul(logsigmoid(matmul(Q,transpose(K))),V)", M_ALL, 0},
    /* padded keys give nonzero terms here unless the contraction stops at them */
    {"sigmoid_values", "matmul(sigmoid(matmul(Q,transpose(K))),sigmoid(V))", M_ALL, 0},
    {"feature_softmax", "matmul(softmax(matmul(Q,transpose(K))),softmax(V))", M_ALL, 0},
    /* AutoBERT-Zero's layer: values taken from Q */
    {"paper", "matmul(softmax(scale(matmul(Q,transpose(neg(logsigmoid(K)))))),Q)",
     M_BI | M_CA, 1},
    /* a key-position contraction into an L x S value (P P) */
    {"square",
     "matmul(matmul(softmax(scale(matmul(Q,transpose(K)))),"
     "softmax(scale(matmul(Q,transpose(K))))),V)",
     M_BI | M_CA, 0},
    {"mix",
     "add(matmul(mul(softplus(matmul(Q,transpose(K))),sigmoid(scale(matmul(K,transpose(Q))))),V),"
     "neg(V))",
     M_BI | M_CA, 0},
    /* softmax over the query axis (unmasked in cross-attention) */
    {"query_softmax", "matmul(transpose(softmax(scale(matmul(K,transpose(Q))))),V)", M_ALL, 0},
    /* P^T sigmoid(V): a contraction over query rows, in self-attention positions */
    {"p_transposed", "matmul(transpose(softmax(scale(matmul(Q,transpose(K))))),sigmoid(V))",
     M_BI | M_CA, 0},
    {"identity", "V", M_BI | M_CA, 0},
    {"identity_tt", "transpose(transpose(V))", M_BI | M_CA, 0},
};
#define N_GRAPHS (sizeof graphs / sizeof graphs[0])

/* Graphs with kinks (abs, relu, sqrtabs, max; softsign's slope has one,
 * which central differences see as an O(h) error) get their own gradient
 * check with inputs kept away from the kinks. */
static const graph_case kink_graphs[] = {
    {"abs", "matmul(softmax(matmul(abs(Q),transpose(K))),V)", M_ALL, 0},
    {"relu", "matmul(matmul(relu(Q),transpose(relu(K))),V)", M_ALL, 0},
    {"sqrtabs", "matmul(softmax(scale(matmul(sqrtabs(Q),transpose(K)))),V)", M_ALL, 0},
    {"max", "matmul(softmax(matmul(max(Q,K),transpose(K))),V)", M_BI | M_CA, 0},
    {"softsign", "matmul(softmax(matmul(softsign(Q),transpose(K))),V)", M_ALL, 0},
};
#define N_KINK (sizeof kink_graphs / sizeof kink_graphs[0])

static const char *graph_named(const char *name)
{
    for (size_t i = 0; i < N_GRAPHS; i++)
        if (!strcmp(graphs[i].name, name))
            return graphs[i].text;
    cr_assert_fail("no graph %s", name);
    return NULL;
}

static const int32_t keys_self[2] = {9, 5};   /* L = S = 9 */
static const int32_t keys_cross[2] = {11, 4}; /* S = 11 */
static const int32_t keys_empty[2] = {0, 6};

/* attn_check's overrides split on ',': graphs go in with ';' separators.
 * "graph=..." into buf (size n), then ",more" when more is not NULL. */
static void graph_overrides(char *buf, size_t n, const char *graph, const char *more)
{
    int k = snprintf(buf, n, "graph=%s", graph);
    for (int i = 0; i < k && (size_t)i < n; i++)
        if (buf[i] == ',')
            buf[i] = ';';
    if (more && k >= 0 && (size_t)k < n)
        snprintf(buf + k, n - (size_t)k, ",%s", more);
}

static int try_open(attn_check_op *op, const char *graph, const char *more, int32_t threads,
                    char **err)
{
    char buf[2 * OPGRAPH_MAX_TEXT];
    graph_overrides(buf, sizeof buf, graph, more);
    return attn_check_op_open(op, etnas_plugin(), buf, threads, err);
}

static attn_check_op open_graph(const char *graph, const char *more, int32_t threads)
{
    attn_check_op op;
    char *err = NULL;
    int rc = try_open(&op, graph, more, threads, &err);
    cr_assert(rc == 0, "open %s: %s", graph, err ? err : "?");
    return op;
}

static attn_check_case make_case(int32_t mode, int32_t layout, const int32_t *key_len,
                                 int same_dim, uint64_t seed)
{
    int cross = mode == ET_ATTN_MODE_CROSS;
    return (attn_check_case){.batch = 2, .heads = 2, .len_q = cross ? 6 : 9,
                             .len_k = cross ? 11 : 9, .dim_qk = 4,
                             .dim_v = same_dim ? 4 : (cross ? 5 : 3), .mode = mode,
                             .key_len = key_len, .layout = layout, .scale = 1.0, .seed = seed};
}

static const int32_t *padded_keys(int32_t mode)
{
    return mode == ET_ATTN_MODE_CROSS ? keys_cross : keys_self;
}

/* --------------------------------------------- naive double evaluation */

/* The graph's semantics (opgraph.h, Masks) evaluated directly in double
 * with explicit transposes and index tests for every mask; K and V rows of
 * padded keys read as 0. ctx: the text. */
static void ref_graph(void *ctx, const et_attn_shape *s, const float *q, const float *k,
                      const float *v, double *out)
{
    const char *text = ctx;
    int self = s->mode != ET_ATTN_MODE_CROSS, causal = s->mode == ET_ATTN_MODE_CAUSAL;
    unsigned flags = (self ? OPGRAPH_CTX_SAME_LEN : 0) | (causal ? OPGRAPH_CTX_CAUSAL : 0) |
                     (s->dim_qk == s->dim_v ? OPGRAPH_CTX_SAME_DIM : 0);
    opgraph g;
    opgraph_shapes sh;
    char why[2048];
    cr_assert(opgraph_parse(text, &g, why, sizeof why) == 0, "%s", why);
    cr_assert(opgraph_validate(&g, text, flags, &sh, why, sizeof why) == 0, "%s", why);
    int64_t L = s->len_q, S = s->len_k, d = s->dim_qk, dv = s->dim_v;
    double *m[OPGRAPH_MAX_NODES];
    int64_t rows[OPGRAPH_MAX_NODES], cols[OPGRAPH_MAX_NODES];
    /* key axes: S, and L too in self-attention; ordered: positions when causal */
#define IS_KEY(ax) ((ax) == OPGRAPH_AXIS_S || (self && (ax) == OPGRAPH_AXIS_L))
#define IS_ORD(ax) (causal && ((ax) == OPGRAPH_AXIS_S || (ax) == OPGRAPH_AXIS_L))
    for (int64_t bh = 0; bh < (int64_t)s->batch * s->heads; bh++) {
        int64_t b = bh / s->heads, nk = s->key_len ? s->key_len[b] : S;
        for (int32_t i = 0; i < g.n; i++) {
            const opgraph_node *nd = &g.node[i];
            int32_t a = nd->arg[0], c = nd->arg[1];
            rows[i] = opgraph_axis_size(sh.rows[i], L, S, d, dv);
            cols[i] = opgraph_axis_size(sh.cols[i], L, S, d, dv);
            double *y = m[i] = calloc((size_t)(rows[i] * cols[i] + 1), sizeof(double));
            cr_assert(y);
            const float *src = nd->op == OPGRAPH_OP_Q ? q + bh * L * d
                               : nd->op == OPGRAPH_OP_K ? k + bh * S * d
                                                        : v + bh * S * dv;
            /* elementwise ops and softmax keep their operand's shape */
#define X (m[a][r * cols[a] + j])
            for (int64_t r = 0; r < rows[i]; r++)
                for (int64_t j = 0; j < cols[i]; j++) {
                    double z = 0.0;
                    switch (nd->op) {
                    case OPGRAPH_OP_Q: z = src[r * cols[i] + j]; break;
                    case OPGRAPH_OP_K:
                    case OPGRAPH_OP_V: z = r < nk ? src[r * cols[i] + j] : 0.0; break;
                    case OPGRAPH_OP_TRANSPOSE: z = m[a][j * cols[a] + r]; break;
                    case OPGRAPH_OP_NEG: z = -X; break;
                    case OPGRAPH_OP_SCALE: z = X / sqrt((double)d); break;
                    case OPGRAPH_OP_SIGMOID: z = 1.0 / (1.0 + exp(-X)); break;
                    case OPGRAPH_OP_LOGSIGMOID: z = -log1p(exp(-X)); break;
                    case OPGRAPH_OP_SOFTPLUS: z = log1p(exp(X)); break;
                    case OPGRAPH_OP_SOFTSIGN: z = X / (1.0 + fabs(X)); break;
                    case OPGRAPH_OP_ABS: z = fabs(X); break;
                    case OPGRAPH_OP_RELU: z = X > 0 ? X : 0.0; break;
                    case OPGRAPH_OP_SQRTABS: z = sqrt(fabs(X)); break;
                    case OPGRAPH_OP_ADD: z = X + m[c][r * cols[c] + j]; break;
                    case OPGRAPH_OP_MUL: z = X * m[c][r * cols[c] + j]; break;
                    case OPGRAPH_OP_MAX: z = fmax(X, m[c][r * cols[c] + j]); break;
                    case OPGRAPH_OP_MATMUL: {
                        int32_t inner = sh.cols[a];
                        for (int64_t t = 0; t < cols[a]; t++) {
                            if (IS_KEY(inner) && t >= nk)
                                continue;
                            if (IS_ORD(inner) && t > (IS_ORD(sh.rows[i]) ? r : j))
                                continue;
                            z += m[a][r * cols[a] + t] * m[c][t * cols[c] + j];
                        }
                        break;
                    }
                    case OPGRAPH_OP_SOFTMAX: {
                        int32_t ax = sh.cols[i];
#define SEES(t) (!(IS_KEY(ax) && (t) >= nk) && !(IS_ORD(ax) && (t) > r))
                        if (!SEES(j))
                            break;
                        double mx = -INFINITY, sum = 0.0;
                        for (int64_t t = 0; t < cols[i]; t++)
                            if (SEES(t))
                                mx = fmax(mx, m[a][r * cols[a] + t]);
                        for (int64_t t = 0; t < cols[i]; t++)
                            if (SEES(t))
                                sum += exp(m[a][r * cols[a] + t] - mx);
                        z = exp(X - mx) / sum;
#undef SEES
                        break;
                    }
                    default: cr_assert_fail("op %d", nd->op);
                    }
                    y[r * cols[i] + j] = z;
                }
#undef X
        }
        cr_assert(rows[g.n - 1] == L && cols[g.n - 1] == dv);
        memcpy(out + bh * L * dv, m[g.n - 1], (size_t)(L * dv) * sizeof(double));
        for (int32_t i = 0; i < g.n; i++)
            free(m[i]);
    }
#undef IS_KEY
#undef IS_ORD
}

/* ------------------------------------------------- contiguous run helper */

static et_attn_view contiguous(float *x, const et_attn_shape *s, int64_t T, int64_t C)
{
    return (et_attn_view){x, s->heads * T * C, T * C, C};
}

/* prepare, forward and (dout non-NULL) backward of an operator on
 * contiguous (B,H,T,C) buffers. Returns 0 or the operator's code. */
static int run_vt(const et_attention_vtable *vt, void *state, const et_attn_shape *s, float *q,
                  float *k, float *v, const float *dout, float *out, float *dq, float *dk,
                  float *dv)
{
    char *err = NULL;
    int rc = vt->prepare(state, s, &err);
    free(err);
    if (rc)
        return rc;
    int64_t ns = vt->saved_floats(state, s), nw = vt->work_floats(state, s);
    float *saved = malloc((size_t)(ns + 1) * sizeof(float)), *work =
        malloc((size_t)(nw + 1) * sizeof(float));
    cr_assert(saved && work);
    int64_t L = s->len_q, S = s->len_k, d = s->dim_qk, dvv = s->dim_v;
    et_attn_view vq = contiguous(q, s, L, d), vk = contiguous(k, s, S, d),
                 vv = contiguous(v, s, S, dvv), vo = contiguous(out, s, L, dvv);
    rc = vt->forward(state, s, vq, vk, vv, vo, saved, work);
    if (!rc && dout)
        rc = vt->backward(state, s, vq, vk, vv, vo, contiguous((float *)dout, s, L, dvv), saved,
                          contiguous(dq, s, L, d), contiguous(dk, s, S, d),
                          contiguous(dv, s, S, dvv), work);
    free(saved);
    free(work);
    return rc;
}

static float *floats(int64_t n)
{
    float *x = malloc((size_t)(n + 1) * sizeof(float));
    cr_assert(x);
    return x;
}

/* ------------------------------------------------ standard vs reference */

Test(opgraph, standard_graph_equals_naive_softmax_forward_and_backward)
{
    attn_check_op op = open_graph(STD, NULL, 1);
    for (int32_t mode = 0; mode < 3; mode++)
        for (int pad = 0; pad < 3; pad++) {
            const int32_t *kl = pad == 0 ? NULL : pad == 1 ? padded_keys(mode) : keys_empty;
            attn_check_case c = make_case(mode, 0, kl, mode != ET_ATTN_MODE_CROSS, 77 + mode);
            et_attn_shape s = {c.batch, c.heads, c.len_q, c.len_k, c.dim_qk, c.dim_v, mode, kl};
            int64_t bh = c.batch * c.heads, no = bh * c.len_q * c.dim_v,
                    nq = bh * c.len_q * c.dim_qk, nk = bh * c.len_k * c.dim_qk,
                    nv = bh * c.len_k * c.dim_v;
            float *q, *k, *v;
            attn_check_inputs(&c, &q, &k, &v);
            et_rng g = et_rng_from_seed(5 + mode);
            float *dout = floats(no);
            for (int64_t i = 0; i < no; i++)
                dout[i] = (float)et_rng_normal(&g);
            float *r[2][4];
            for (int w = 0; w < 2; w++) {
                r[w][0] = floats(no), r[w][1] = floats(nq), r[w][2] = floats(nk);
                r[w][3] = floats(nv);
            }
            void *ref_state = NULL;
            char *err = NULL;
            cr_assert(attn_ref_vtable.create(op.host, NULL, &ref_state, &err) == 0);
            cr_assert(run_vt(op.vt, op.state, &s, q, k, v, dout, r[0][0], r[0][1], r[0][2],
                             r[0][3]) == 0);
            cr_assert(run_vt(&attn_ref_vtable, ref_state, &s, q, k, v, dout, r[1][0], r[1][1],
                             r[1][2], r[1][3]) == 0);
            attn_ref_vtable.destroy(ref_state);
            const char *what[4] = {"out", "dq", "dk", "dv"};
            const int64_t n[4] = {no, nq, nk, nv};
            for (int t = 0; t < 4; t++) {
                double e = attn_check_scaled_error(r[0][t], r[1][t], n[t]);
                cr_assert(e <= TOL_STD, "%s pad %d %s: err %g > %g",
                          attn_suite_mode_name(mode), pad, what[t], e, TOL_STD);
            }
            for (int w = 0; w < 2; w++)
                for (int t = 0; t < 4; t++)
                    free(r[w][t]);
            free(q), free(k), free(v), free(dout);
        }
    attn_check_op_close(&op);
}

/* Every graph, in every mode it is for, against the double evaluator, on
 * every layout, with and without padding; and refused in the other modes. */
Test(opgraph, graphs_match_double_evaluator_and_refuse_other_modes)
{
    for (size_t gi = 0; gi < N_GRAPHS + N_KINK; gi++) {
        const graph_case *gc = gi < N_GRAPHS ? &graphs[gi] : &kink_graphs[gi - N_GRAPHS];
        attn_check_op op = open_graph(gc->text, NULL, 1);
        for (int32_t mode = 0; mode < 3; mode++)
            for (int same_dim = 0; same_dim < 2; same_dim++) {
                int want = (gc->modes >> mode & 1) && (same_dim || !gc->same_dim);
                attn_check_case c = make_case(mode, 0, NULL, same_dim, 900 + gi);
                et_attn_shape s = {c.batch, c.heads, c.len_q, c.len_k, c.dim_qk, c.dim_v, mode,
                                   NULL};
                char *err = NULL;
                int rc = op.vt->prepare(op.state, &s, &err);
                if (!want) {
                    cr_assert(rc == ET_STATUS_ERR_UNSUPPORTED, "%s should be refused in %s "
                              "(d %s dv)", gc->name, attn_suite_mode_name(mode),
                              same_dim ? "==" : "!=");
                    cr_assert(err && strstr(err, "opgraph: not a graph for"), "%s", err);
                    free(err);
                    continue;
                }
                cr_assert(rc == 0, "%s in %s: %s", gc->name, attn_suite_mode_name(mode),
                          err ? err : "?");
                for (int32_t layout = 0; layout < 3; layout++)
                    for (int pad = 0; pad < 3; pad++) {
                        c = make_case(mode, layout,
                                      pad == 0 ? NULL : pad == 1 ? padded_keys(mode) : keys_empty,
                                      same_dim, 900 + gi);
                        double e = attn_check_reference(&op, &c, ref_graph, (void *)gc->text);
                        cr_assert(e <= TOL_REF, "%s %s d%sdv layout %d pad %d: err %g > %g",
                                  gc->name, attn_suite_mode_name(mode), same_dim ? "==" : "!=",
                                  layout, pad, e, TOL_REF);
                    }
            }
        attn_check_op_close(&op);
    }
}

/* The two ways of writing softmax attention agree, and bidirectional linear
 * attention is associative. */
Test(opgraph, equivalent_graphs_agree)
{
    const char *pairs[][2] = {
        {STD, graph_named("standard_t")},
        {"matmul(Q,matmul(transpose(K),V))", "matmul(matmul(Q,transpose(K)),V)"},
    };
    for (int p = 0; p < 2; p++)
        for (int32_t mode = 0; mode < 3; mode++) {
            if (p == 1 && mode == ET_ATTN_MODE_CAUSAL)
                continue;
            attn_check_case c = make_case(mode, ATTN_CHECK_LAYOUT_BTHC, padded_keys(mode), 0, 3);
            int64_t n = (int64_t)c.batch * c.heads * c.len_q * c.dim_v;
            float *q, *k, *v, *o[2] = {floats(n), floats(n)};
            attn_check_inputs(&c, &q, &k, &v);
            for (int w = 0; w < 2; w++) {
                attn_check_op op = open_graph(pairs[p][w], NULL, 1);
                cr_assert(attn_check_forward(&op, &c, q, k, v, o[w]) == 0);
                attn_check_op_close(&op);
            }
            double e = attn_check_scaled_error(o[0], o[1], n);
            cr_assert(e <= 1e-5, "pair %d %s: err %g", p, attn_suite_mode_name(mode), e);
            free(q), free(k), free(v), free(o[0]), free(o[1]);
        }
}

/* ------------------------------------------------------------ gradients */

Test(opgraph, gradients_of_smooth_graphs_every_mode)
{
    for (size_t gi = 0; gi < N_GRAPHS; gi++) {
        const graph_case *gc = &graphs[gi];
        attn_check_op op = open_graph(gc->text, gi % 2 ? "recompute=false" : NULL, 2);
        for (int32_t mode = 0; mode < 3; mode++) {
            if (!(gc->modes >> mode & 1))
                continue;
            int32_t layout = 1 + (int32_t)(gi + mode) % 2;
            attn_check_case c = make_case(mode, layout, padded_keys(mode), gc->same_dim,
                                          400 + gi * 3 + mode);
            double e3[3];
            double e = attn_check_grad(&op, &c, 1e-2, e3);
            cr_log_info("grad %s %s: q %.3g k %.3g v %.3g", gc->name,
                        attn_suite_mode_name(mode), e3[0], e3[1], e3[2]);
            cr_assert(e <= TOL_GRAD, "%s %s: dq %g dk %g dv %g > %g", gc->name,
                      attn_suite_mode_name(mode), e3[0], e3[1], e3[2], TOL_GRAD);
        }
        attn_check_op_close(&op);
    }
}

Test(opgraph, gradients_with_an_empty_sequence)
{
    attn_check_op op = open_graph(graph_named("square"), NULL, 1);
    for (int32_t mode = 0; mode < 2; mode++) {
        attn_check_case c = make_case(mode, ATTN_CHECK_LAYOUT_BHTC, keys_empty, 0, 31);
        double e = attn_check_grad(&op, &c, 1e-2, NULL);
        cr_assert(e <= TOL_GRAD, "%s: err %g > %g", attn_suite_mode_name(mode), e, TOL_GRAD);
    }
    attn_check_op_close(&op);
}

/* Inputs are +-[0.3, 1.3], so abs, relu, sqrtabs, softsign never meet their kink
 * within a step; for max, k = q +- [0.3, 1.0] keeps q and k apart. */
static void draw_away_from_kinks(float *x, int64_t n, et_rng *g)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((et_rng_uniform(g) < 0.5 ? -1.0 : 1.0) * (0.3 + et_rng_uniform(g)));
}

typedef struct kink_run {
    attn_check_op *op;
    et_attn_shape s;
    float *q, *k, *v, *out;
    double *w;
    int64_t no;
} kink_run;

static double kink_loss(kink_run *r)
{
    cr_assert(run_vt(r->op->vt, r->op->state, &r->s, r->q, r->k, r->v, NULL, r->out, NULL, NULL,
                     NULL) == 0);
    double l = 0.0;
    for (int64_t i = 0; i < r->no; i++)
        l += r->w[i] * r->out[i];
    return l;
}

/* max |g - fd| / max |fd| over every entry of q, k and v, central
 * differences of step h. */
static double kink_grad(attn_check_op *op, const et_attn_shape *s, int max_pair, uint64_t seed,
                        double h)
{
    int64_t bh = (int64_t)s->batch * s->heads, nq = bh * s->len_q * s->dim_qk,
            nk = bh * s->len_k * s->dim_qk, nv = bh * s->len_k * s->dim_v,
            no = bh * s->len_q * s->dim_v;
    et_rng g = et_rng_from_seed(seed);
    float *q = floats(nq), *k = floats(nk), *v = floats(nv), *dout = floats(no);
    float *out = floats(no), *dq = floats(nq), *dk = floats(nk), *dv = floats(nv);
    double *w = malloc((size_t)(no + 1) * sizeof(double));
    cr_assert(w);
    draw_away_from_kinks(q, nq, &g);
    draw_away_from_kinks(v, nv, &g);
    if (max_pair) {
        cr_assert(nq == nk);
        draw_away_from_kinks(k, nk, &g);
        for (int64_t i = 0; i < nk; i++)
            k[i] = q[i] + (k[i] > 0 ? 1.0f : -1.0f) * (0.3f + 0.7f * (fabsf(k[i]) - 0.3f));
    } else {
        draw_away_from_kinks(k, nk, &g);
    }
    for (int64_t i = 0; i < no; i++)
        w[i] = dout[i] = (float)et_rng_normal(&g);
    cr_assert(run_vt(op->vt, op->state, s, q, k, v, dout, out, dq, dk, dv) == 0);
    kink_run r = {op, *s, q, k, v, out, w, no};
    float *x[3] = {q, k, v}, *an[3] = {dq, dk, dv};
    int64_t n[3] = {nq, nk, nv};
    double num = 0.0, mx = 0.0;
    for (int t = 0; t < 3; t++)
        for (int64_t i = 0; i < n[t]; i++) {
            float keep = x[t][i], hi = (float)(keep + h), lo = (float)(keep - h);
            x[t][i] = hi;
            double lp = kink_loss(&r);
            x[t][i] = lo;
            double lm = kink_loss(&r);
            x[t][i] = keep;
            double fd = (lp - lm) / ((double)hi - (double)lo);
            num = fmax(num, fabs(fd - an[t][i]));
            mx = fmax(mx, fabs(fd));
        }
    free(q), free(k), free(v), free(dout), free(out), free(dq), free(dk), free(dv), free(w);
    return num / (mx + 1e-6);
}

Test(opgraph, gradients_of_kinked_primitives)
{
    for (size_t gi = 0; gi < N_KINK; gi++) {
        const graph_case *gc = &kink_graphs[gi];
        attn_check_op op = open_graph(gc->text, NULL, 1);
        for (int32_t mode = 0; mode < 3; mode++) {
            if (!(gc->modes >> mode & 1))
                continue;
            int cross = mode == ET_ATTN_MODE_CROSS;
            et_attn_shape s = {1, 2, cross ? 5 : 6, cross ? 7 : 6, 3, 3, mode,
                               cross ? (const int32_t[]){5} : (const int32_t[]){4}};
            double e = kink_grad(&op, &s, !strcmp(gc->name, "max"), 60 + gi, 1e-2);
            cr_log_info("grad %s %s: %.3g", gc->name, attn_suite_mode_name(mode), e);
            cr_assert(e <= TOL_GRAD, "%s %s: err %g > %g", gc->name, attn_suite_mode_name(mode), e,
                      TOL_GRAD);
        }
        attn_check_op_close(&op);
    }
}

/* The gradient-checked graphs use every primitive. */
Test(opgraph, gradient_checks_cover_every_op)
{
    int seen[OPGRAPH_OP_COUNT] = {0};
    for (size_t gi = 0; gi < N_GRAPHS + N_KINK; gi++) {
        const graph_case *gc = gi < N_GRAPHS ? &graphs[gi] : &kink_graphs[gi - N_GRAPHS];
        opgraph g;
        char why[2048];
        cr_assert(opgraph_parse(gc->text, &g, why, sizeof why) == 0, "%s", why);
        for (int32_t i = 0; i < g.n; i++)
            seen[g.node[i].op] = 1;
    }
    for (int32_t op = 0; op < OPGRAPH_OP_COUNT; op++)
        cr_assert(seen[op], "no gradient check uses %s", opgraph_op_name(op));
}

/* ------------------------------------------- masks, decoding, threads */

Test(opgraph, padding_invariance)
{
    for (size_t gi = 0; gi < N_GRAPHS + N_KINK; gi++) {
        const graph_case *gc = gi < N_GRAPHS ? &graphs[gi] : &kink_graphs[gi - N_GRAPHS];
        attn_check_op op = open_graph(gc->text, NULL, 2);
        for (int32_t mode = 0; mode < 3; mode++) {
            if (!(gc->modes >> mode & 1))
                continue;
            attn_check_case c = make_case(mode, (int32_t)(gi % 3), padded_keys(mode),
                                          gc->same_dim, 70 + gi);
            double e = attn_check_padding(&op, &c, 4);
            cr_assert(e <= TOL_PAD, "%s %s: err %g > %g", gc->name, attn_suite_mode_name(mode), e,
                      TOL_PAD);
        }
        attn_check_op_close(&op);
    }
}

Test(opgraph, causality)
{
    for (size_t gi = 0; gi < N_GRAPHS + N_KINK; gi++) {
        const graph_case *gc = gi < N_GRAPHS ? &graphs[gi] : &kink_graphs[gi - N_GRAPHS];
        if (!(gc->modes & M_CA))
            continue;
        attn_check_op op = open_graph(gc->text, NULL, 1);
        for (int pad = 0; pad < 2; pad++) {
            attn_check_case c = make_case(ET_ATTN_MODE_CAUSAL, (int32_t)(gi % 3),
                                          pad ? keys_self : NULL, gc->same_dim, 80 + gi);
            double e = attn_check_causality(&op, &c);
            cr_assert(e <= TOL_CAUSAL, "%s pad %d: err %g > %g", gc->name, pad, e, TOL_CAUSAL);
        }
        attn_check_op_close(&op);
    }
}

Test(opgraph, decode_equals_teacher_forcing)
{
    for (size_t gi = 0; gi < N_GRAPHS + N_KINK; gi++) {
        const graph_case *gc = gi < N_GRAPHS ? &graphs[gi] : &kink_graphs[gi - N_GRAPHS];
        if (!(gc->modes & M_CA))
            continue;
        attn_check_op op = open_graph(gc->text, NULL, 2);
        attn_check_case c = make_case(ET_ATTN_MODE_CAUSAL, (int32_t)(gi % 3), NULL, gc->same_dim,
                                      90 + gi);
        c.len_q = c.len_k = 13;
        c.heads = 3;
        double e = attn_check_decode(&op, &c);
        cr_assert(e <= TOL_DECODE, "%s: err %g > %g", gc->name, e, TOL_DECODE);
        attn_check_op_close(&op);
    }
}

Test(opgraph, decode_refuses_a_graph_that_is_not_causal)
{
    attn_check_op op = open_graph(graph_named("linear"), NULL, 1);
    et_attn_shape sd = {1, 1, 1, 1, 4, 4, ET_ATTN_MODE_CAUSAL, NULL};
    int64_t n = op.vt->decode_floats(op.state, &sd, 5);
    float *state = floats(n), x[4] = {1, 2, 3, 4}, o[4];
    et_attn_view vx = {x, 4, 4, 4}, vo = {o, 4, 4, 4};
    op.vt->decode_reset(op.state, &sd, 5, state);
    cr_assert(op.vt->decode_step(op.state, &sd, 5, state, 0, vx, vx, vx, vo, NULL) ==
              ET_STATUS_ERR_UNSUPPORTED);
    free(state);
    attn_check_op_close(&op);
}

Test(opgraph, threads_agree)
{
    const char *which[] = {"standard", "square", "mix"};
    for (size_t w = 0; w < 3; w++)
        for (int32_t mode = 0; mode < 3; mode++) {
            const graph_case *gc = NULL;
            for (size_t i = 0; i < N_GRAPHS; i++)
                if (!strcmp(graphs[i].name, which[w]))
                    gc = &graphs[i];
            cr_assert(gc);
            if (!(gc->modes >> mode & 1))
                continue;
            attn_check_case c = make_case(mode, ATTN_CHECK_LAYOUT_BTHC, padded_keys(mode), 1,
                                          11 + w);
            c.heads = 5;
            char buf[2 * OPGRAPH_MAX_TEXT];
            graph_overrides(buf, sizeof buf, gc->text, NULL);
            double e = attn_check_threads(etnas_plugin(), buf, &c, 2);
            cr_assert(e <= TOL_THREADS, "%s %s: err %g", gc->name, attn_suite_mode_name(mode), e);
        }
}

/* Saved values and recomputed ones are the same numbers; saved memory is
 * every computing node but the output (3 L x S per head for the standard
 * graph), or nothing when recomputing. */
Test(opgraph, saved_and_recomputed_values_agree)
{
    for (size_t gi = 0; gi < N_GRAPHS; gi++) {
        const graph_case *gc = &graphs[gi];
        attn_check_op ops[2] = {open_graph(gc->text, "recompute=true", 1),
                                open_graph(gc->text, "recompute=false", 1)};
        for (int32_t mode = 0; mode < 3; mode++) {
            if (!(gc->modes >> mode & 1))
                continue;
            attn_check_case c = make_case(mode, 0, padded_keys(mode), gc->same_dim, 5);
            et_attn_shape s = {c.batch, c.heads, c.len_q, c.len_k, c.dim_qk, c.dim_v, mode,
                               c.key_len};
            int64_t bh = c.batch * c.heads, no = bh * c.len_q * c.dim_v,
                    nq = bh * c.len_q * c.dim_qk, nk = bh * c.len_k * c.dim_qk,
                    nv = bh * c.len_k * c.dim_v;
            float *q, *k, *v, *r[2][4];
            attn_check_inputs(&c, &q, &k, &v);
            float *dout = floats(no);
            for (int64_t i = 0; i < no; i++)
                dout[i] = (float)(i % 7) - 3.0f;
            for (int w = 0; w < 2; w++) {
                r[w][0] = floats(no), r[w][1] = floats(nq), r[w][2] = floats(nk);
                r[w][3] = floats(nv);
                cr_assert(run_vt(ops[w].vt, ops[w].state, &s, q, k, v, dout, r[w][0], r[w][1],
                                 r[w][2], r[w][3]) == 0);
            }
            const int64_t n[4] = {no, nq, nk, nv};
            for (int t = 0; t < 4; t++)
                cr_assert(!memcmp(r[0][t], r[1][t], (size_t)n[t] * sizeof(float)),
                          "%s %s: tensor %d differs", gc->name, attn_suite_mode_name(mode), t);
            cr_assert(ops[0].vt->saved_floats(ops[0].state, &s) == 0);
            if (gi == 0)
                cr_assert(ops[1].vt->saved_floats(ops[1].state, &s) ==
                          bh * 3 * c.len_q * c.len_k);
            for (int w = 0; w < 2; w++)
                for (int t = 0; t < 4; t++)
                    free(r[w][t]);
            free(q), free(k), free(v), free(dout);
        }
        attn_check_op_close(&ops[0]);
        attn_check_op_close(&ops[1]);
    }
}

Test(opgraph, refuses_causal_cross)
{
    attn_check_op op = open_graph(STD, NULL, 1);
    attn_suite_refuses_causal_cross(&op, 8);
    attn_check_op_close(&op);
    ((const et_attention_vtable *)etnas_plugin()->vtable)->destroy(NULL);
}

/* MACs: matmuls at full lengths; softmax, scale and elementwise ops count 0. */
Test(opgraph, macs)
{
    attn_check_op std = open_graph(STD, NULL, 1), lin = open_graph(graph_named("linear"), NULL, 1);
    et_attn_shape a = {2, 4, 100, 100, 64, 32, ET_ATTN_MODE_BIDIRECTIONAL, NULL};
    cr_assert(std.vt->macs(std.state, &a) == 8.0 * 100 * 100 * 96); /* = softmax plugin */
    a.mode = ET_ATTN_MODE_CROSS;
    a.len_q = 10;
    cr_assert(std.vt->macs(std.state, &a) == 8.0 * 10 * 100 * 96);
    cr_assert(lin.vt->macs(lin.state, &a) == 8.0 * (100.0 * 64 * 32 + 10.0 * 64 * 32));
    a.mode = ET_ATTN_MODE_CAUSAL;
    a.len_q = 100;
    cr_assert(std.vt->macs(std.state, &a) == 8.0 * 100 * 100 * 96); /* the full score matrix */
    cr_assert(lin.vt->macs(lin.state, &a) == 0.0);                  /* not a causal graph */
    attn_check_op_close(&std);
    attn_check_op_close(&lin);
}

/* --------------------------------------------------- text and validation */

/* Create-time errors: one line, naming the op and its column. */
Test(opgraph, ill_formed_graphs_are_rejected_with_position)
{
    const struct {
        const char *text, *want1, *want2;
    } bad[] = {
        {"matmul(Q,V)", "col 1: matmul: L x d times S x dv", "inner axes d and S differ"},
        {"matmul(softmax(scale(matmul(Q,V))),V)", "col 22: matmul", "inner axes"},
        {"matmul(Q,transpose(K))", "col 1: the output (matmul) is L x S", "must give L x dv"},
        {"add(matmul(Q,transpose(K)),Q)", "col 1: add: operands are L x S and L x d",
         "no broadcasting"},
        {"softmax(Q,K)", "col 1: softmax takes 1 operand, got 2", NULL},
        {"matmul(softmax(Q))", "col 1: matmul takes 2 operands, got 1", NULL},
        {"matmul(frob(Q),V)", "col 8: unknown op 'frob'", "ops neg, transpose"},
        {"matmul(q,V)", "col 8: unknown input 'q'", "upper case"},
        {"matmul(softmax(Q),V", "col 1: matmul( is not closed", NULL},
        {"V)", "col 2: unexpected ')' after the end of the graph", NULL},
        {"", "col 1: unexpected end", NULL},
        {"Q(K)", "col 1: Q is an input and takes no operands", NULL},
        {"relu", "col 1: relu needs '(' and 1 operand", NULL},
        {"matmul(Q transpose(K))", "col 10: unexpected 't' in the operands of matmul", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        attn_check_op op;
        char *err = NULL;
        int rc = try_open(&op, bad[i].text, NULL, 1, &err);
        cr_assert(rc == ET_STATUS_ERR_USAGE, "'%s' accepted (rc %d)", bad[i].text, rc);
        cr_assert(err && !strchr(err, '\n'), "'%s': no one-line message", bad[i].text);
        cr_assert(!strncmp(err, "opgraph: graph \"", 16), "'%s': %s", bad[i].text, err);
        cr_assert(strstr(err, bad[i].want1), "'%s': %s (wanted '%s')", bad[i].text, err,
                  bad[i].want1);
        cr_assert(!bad[i].want2 || strstr(err, bad[i].want2), "'%s': %s (wanted '%s')",
                  bad[i].text, err, bad[i].want2);
        free(err);
        attn_check_op_close(&op);
    }
    /* the quoted text is the one given, ';' and all */
    attn_check_op op;
    char *err = NULL;
    cr_assert(try_open(&op, "matmul(Q,V)", NULL, 1, &err) < 0);
    cr_assert(strstr(err, "\"matmul(Q;V)\""), "%s", err);
    free(err);
    attn_check_op_close(&op);
}

/* Mode-dependent refusals at prepare, with the op and column. */
Test(opgraph, mode_errors_name_the_op)
{
    const struct {
        const char *text;
        int32_t mode;
        int32_t dim_v;
        const char *want;
    } bad[] = {
        {"matmul(Q,matmul(transpose(K),V))", ET_ATTN_MODE_CAUSAL, 4,
         "col 10: matmul: sums over key positions into a d x dv value"},
        {"matmul(matmul(Q,softmax(transpose(K))),V)", ET_ATTN_MODE_CAUSAL, 4,
         "col 17: softmax: normalises a d x S value over key positions"},
        {graph_named("paper"), ET_ATTN_MODE_CROSS, 4, "col 1: matmul: L x S times L x d"},
        {graph_named("paper"), ET_ATTN_MODE_BIDIRECTIONAL, 3, "the output (matmul) is L x d"},
        {"add(matmul(softmax(matmul(Q,transpose(K))),V),V)", ET_ATTN_MODE_CROSS, 4,
         "col 1: add: operands are L x dv and S x dv"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        attn_check_op op = open_graph(bad[i].text, NULL, 1);
        int cross = bad[i].mode == ET_ATTN_MODE_CROSS;
        et_attn_shape s = {1, 1, 5, cross ? 7 : 5, 4, bad[i].dim_v, bad[i].mode, NULL};
        char *err = NULL;
        cr_assert(op.vt->prepare(op.state, &s, &err) == ET_STATUS_ERR_UNSUPPORTED, "%s",
                  bad[i].text);
        cr_assert(err && strstr(err, bad[i].want), "%s: %s (wanted '%s')", bad[i].text,
                  err ? err : "(none)", bad[i].want);
        cr_assert(!strchr(err, '\n'));
        free(err);
        s = (et_attn_shape){1, 1, 5, 5, 4, 4, ET_ATTN_MODE_BIDIRECTIONAL, NULL};
        cr_assert(op.vt->prepare(op.state, &s, &err) == 0, "%s", bad[i].text);
        attn_check_op_close(&op);
    }
}

static opgraph parsed(const char *text)
{
    opgraph g;
    char why[2048];
    cr_assert(opgraph_parse(text, &g, why, sizeof why) == 0, "%s: %s", text, why);
    return g;
}

static void canonical(const char *text, char *buf)
{
    opgraph g = parsed(text);
    cr_assert(opgraph_canonical_text(&g, buf, OPGRAPH_MAX_TEXT) > 0, "%s", text);
}

Test(opgraph, canonical_form_round_trips)
{
    for (size_t gi = 0; gi < N_GRAPHS + N_KINK; gi++) {
        const char *text = gi < N_GRAPHS ? graphs[gi].text : kink_graphs[gi - N_GRAPHS].text;
        char c1[OPGRAPH_MAX_TEXT], c2[OPGRAPH_MAX_TEXT], f[OPGRAPH_MAX_TEXT];
        canonical(text, c1);
        canonical(c1, c2);
        cr_assert_str_eq(c1, c2);
        opgraph g = parsed(c1), h;
        cr_assert(opgraph_format(&g, f, sizeof f, NULL) == (int)strlen(c1));
        cr_assert_str_eq(f, c1, "canonical text is its own text");
        cr_assert(opgraph_canonicalize(&g, &h, NULL, 0) == 0);
        cr_assert(h.n == g.n && !memcmp(h.node, g.node, (size_t)g.n * sizeof g.node[0]));
        cr_assert(opgraph_hash(&g) == opgraph_hash(&h) && opgraph_hash(&g) != 0);
    }
    char c[OPGRAPH_MAX_TEXT];
    canonical("add(relu(K),Q)", c);
    cr_assert_str_eq(c, "add(Q,relu(K))");
    canonical(" matmul ( softmax(scale(matmul(Q ; transpose( K )))) ,V)\n", c);
    cr_assert_str_eq(c, STD);
}

Test(opgraph, reordered_commutative_ops_are_equal)
{
    const char *same[][2] = {
        {"add(Q,V)", "add(V,Q)"},
        {"matmul(softmax(add(matmul(Q,transpose(K)),matmul(K,transpose(Q)))),V)",
         "matmul(softmax(add(matmul(K,transpose(Q)),matmul(Q,transpose(K)))),V)"},
        {"max(mul(V,Q),add(K,Q))", "max(add(Q,K),mul(Q,V))"},
        {"mul(relu(mul(Q,K)),max(V,neg(Q)))", "mul(max(neg(Q),V),relu(mul(K,Q)))"},
        {STD, "matmul(softmax(scale(matmul(Q;transpose(K)))), V)"},
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        opgraph a = parsed(same[i][0]), b = parsed(same[i][1]), ca, cb;
        char ta[OPGRAPH_MAX_TEXT], tb[OPGRAPH_MAX_TEXT];
        cr_assert(opgraph_canonical_text(&a, ta, sizeof ta) > 0);
        cr_assert(opgraph_canonical_text(&b, tb, sizeof tb) > 0);
        cr_assert_str_eq(ta, tb);
        cr_assert(opgraph_hash(&a) == opgraph_hash(&b), "%s", same[i][0]);
        cr_assert(opgraph_canonicalize(&a, &ca, NULL, 0) == 0);
        cr_assert(opgraph_canonicalize(&b, &cb, NULL, 0) == 0);
        cr_assert(ca.n == cb.n && !memcmp(ca.node, cb.node, (size_t)ca.n * sizeof ca.node[0]));
    }
    /* different graphs hash differently, non-commutative ops included */
    const char *diff[] = {
        "matmul(matmul(Q,transpose(K)),V)", "matmul(matmul(K,transpose(Q)),V)",
        "add(Q,K)", "mul(Q,K)", "max(Q,K)", "add(Q,Q)", "add(K,K)", "neg(Q)", "neg(neg(Q))",
        "transpose(transpose(Q))", "Q", "K", "V", "relu(Q)", "abs(Q)", "sqrtabs(Q)",
    };
    size_t nd = sizeof diff / sizeof diff[0];
    for (size_t i = 0; i < nd; i++)
        for (size_t j = i + 1; j < nd; j++) {
            opgraph a = parsed(diff[i]), b = parsed(diff[j]);
            cr_assert(opgraph_hash(&a) != opgraph_hash(&b), "%s vs %s", diff[i], diff[j]);
        }
}

Test(opgraph, parse_shares_subexpressions_and_has_limits)
{
    opgraph g = parsed("mul(relu(Q),relu(Q))");
    cr_assert(g.n == 3);
    cr_assert(g.node[2].arg[0] == 1 && g.node[2].arg[1] == 1);
    /* square: Q, K, transpose, matmul, scale, softmax, two matmuls, V */
    g = parsed(graph_named("square"));
    cr_assert(g.n == 9, "n %d", g.n);
    char text[2 * OPGRAPH_MAX_TEXT], why[4096];
    opgraph h;
    /* 33 distinct nodes: neg applied 32 times */
    size_t o = 0;
    for (int i = 0; i < 32; i++)
        o += (size_t)sprintf(text + o, "neg(");
    o += (size_t)sprintf(text + o, "Q");
    for (int i = 0; i < 32; i++)
        text[o++] = ')';
    text[o] = 0;
    cr_assert(opgraph_parse(text, &h, why, sizeof why) == ET_STATUS_ERR_USAGE);
    cr_assert(strstr(why, "more than 32 distinct nodes"), "%s", why);
    /* text over the limit */
    memset(text, ' ', OPGRAPH_MAX_TEXT);
    text[OPGRAPH_MAX_TEXT] = 0;
    text[0] = 'Q';
    cr_assert(opgraph_parse(text, &h, why, sizeof why) == ET_STATUS_ERR_USAGE);
    cr_assert(strstr(why, "longer than 1023"), "%s", why);
}

/* Graphs built by hand (as a search builds them) go through the same checks. */
Test(opgraph, validate_catches_dead_and_malformed_nodes)
{
    char why[2048];
    opgraph g = {.n = 7,
                 .node = {{OPGRAPH_OP_Q, {-1, -1}, 0},
                          {OPGRAPH_OP_K, {-1, -1}, 0},
                          {OPGRAPH_OP_V, {-1, -1}, 0},
                          {OPGRAPH_OP_RELU, {0, -1}, 0},
                          {OPGRAPH_OP_TRANSPOSE, {1, -1}, 0},
                          {OPGRAPH_OP_MATMUL, {0, 4}, 0},
                          {OPGRAPH_OP_MATMUL, {5, 2}, 0}}};
    cr_assert(opgraph_validate(&g, NULL, OPGRAPH_CTX_SAME_LEN, NULL, why, sizeof why) < 0);
    cr_assert(strstr(why, "node 3 (relu) is dead"), "%s", why);
    opgraph c;
    cr_assert(opgraph_canonicalize(&g, &c, why, sizeof why) == 0, "%s", why);
    cr_assert(c.n == 6);
    cr_assert(opgraph_validate(&c, NULL, OPGRAPH_CTX_CAUSAL | OPGRAPH_CTX_SAME_LEN, NULL, why,
                               sizeof why) == 0, "%s", why);
    opgraph p = parsed("matmul(matmul(Q,transpose(K)),V)");
    cr_assert(opgraph_hash(&g) == opgraph_hash(&p));
    /* errors in built graphs quote the graph's own text */
    g.node[3] = (opgraph_node){OPGRAPH_OP_MATMUL, {0, 2}, 0};
    g.node[6].arg[0] = 3;
    cr_assert(opgraph_validate(&g, NULL, 0, NULL, why, sizeof why) < 0);
    cr_assert(strstr(why, "node 1 (K) is dead"), "%s", why);
    g.node[5] = (opgraph_node){OPGRAPH_OP_NEG, {4, -1}, 0};
    g.node[6] = (opgraph_node){OPGRAPH_OP_MATMUL, {3, 5}, 0};
    cr_assert(opgraph_validate(&g, NULL, OPGRAPH_CTX_SAME_LEN, NULL, why, sizeof why) < 0);
    cr_assert(strstr(why, "graph \"matmul(matmul(Q,V),neg(transpose(K)))\" col 8: matmul: "
                          "L x d times S x dv"), "%s", why);
    /* operands must come first; unused slots are -1 */
    opgraph bad = {.n = 2, .node = {{OPGRAPH_OP_NEG, {1, -1}, 0}, {OPGRAPH_OP_Q, {-1, -1}, 0}}};
    cr_assert(opgraph_validate(&bad, NULL, 0, NULL, why, sizeof why) < 0);
    cr_assert(strstr(why, "does not come before it"), "%s", why);
    bad = (opgraph){.n = 1, .node = {{OPGRAPH_OP_V, {0, -1}, 0}}};
    cr_assert(opgraph_validate(&bad, NULL, OPGRAPH_CTX_SAME_LEN, NULL, why, sizeof why) < 0);
    cr_assert(opgraph_hash(&bad) == 0);
}
