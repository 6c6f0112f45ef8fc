/* opnas: OP-NAS from AutoBERT-Zero (spec/search.md): evolution of
 * architectures whose layers are either attention computed by a graph of
 * primitive ops (block = standard with an `opgraph` operator) or a light
 * convolution (block = conv with a kernel size), every other dim at the
 * space's largest.
 *
 * The seed member has the standard-attention graph in every layer and is
 * trained from scratch (`init_steps`); the rest of the first population are
 * seeded random mutations of it. Each generation keeps the best `parents`
 * and breeds population - parents children, round robin over the parents.
 * A child gets an inter-layer mutation (with `inter_prob`: one layer turns
 * attention <-> convolution or changes its kernel) and an intra-layer
 * mutation of one attention layer's graph (graph_mutate.h: replace, insert
 * or delete one op), the op chosen by UCB (ucb.h) with reward = the child's
 * fitness gain over its parent. Candidates are rejected before any training
 * when the graph breaks the rules of the layer's attention mode or the size
 * limits (graph_edits offers valid graphs only; besides `max_ops`, a graph's
 * text must fit an attention choice, "opgraph(graph=...)" within
 * ET_MAX_CHOICE_TEXT), repeats a graph seen earlier in the run (canonical
 * hash), or gives a non-finite output on random input. A child starts from
 * its parent's trained weights (BIWS) and trains `steps` updates through
 * host->train_custom, which scores it on the validation split and keeps
 * result, weights and costs (measured with its graphs) in the store. With
 * [constraints], a child whose costs with its graphs break one
 * (host->satisfies_custom) is redrawn before any training, like a repeated
 * one; the seed is trained whatever its costs, as the root of the search.
 *
 * At the end the best graphs are logged as formulas with their metric,
 * graph MACs, FLOPs and measured latency (host->cost_custom, when the
 * experiment has flops and latency proxies), with the UCB statistics per
 * op, and kept as a markdown artifact beside the run's report; the best
 * `final_top` members that satisfy the constraints are retrained
 * (`final_steps`) and scored on the test split as the strategy's final
 * results.
 *
 * Every decision comes from one stream seeded by host->seed and depends only
 * on it and on the scores; train_custom answers a repeated call from the
 * store (weights included), so a resumed run replays the same search, UCB
 * statistics included, without training again. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

#include "graph_eval.h"
#include "graph_mutate.h"
#include "opgraph.h"
#include "ucb.h"

#define STANDARD_GRAPH "matmul(softmax(scale(matmul(Q,transpose(K)))),V)"
#define OP_TEXT_PREFIX "opgraph(graph="
#define OP_TEXT_MAX (OPGRAPH_MAX_TEXT + 32)

enum { FITNESS_METRIC = 0, FITNESS_LOSS = 1 };
enum { STACK_AUTO = 0, STACK_ENCODER = 1, STACK_DECODER = 2 };
enum { FINAL_SCRATCH = 0, FINAL_INHERIT = 1 };
/* what was thrown away before training */
enum {
    REJECT_NO_EDIT, REJECT_DUPLICATE, REJECT_NONFINITE, REJECT_SAME_ARCH, REJECT_CONSTRAINT,
    REJECTS
};
static const char *const reject_name[REJECTS] = {
    "draws with no graph to give", "candidate graphs seen before",
    "candidate graphs with non-finite outputs", "draws repeating an architecture",
    "children breaking a constraint"};

enum {
    OPT_POPULATION, OPT_PARENTS, OPT_GENERATIONS, OPT_ALPHA, OPT_MAX_OPS, OPT_INIT_STEPS,
    OPT_STEPS, OPT_INIT_MUTATIONS, OPT_INTER_PROB, OPT_FITNESS, OPT_FINAL_TOP, OPT_FINAL_STEPS,
    OPT_FINAL_INIT, OPT_REPORT_TOP, OPT_CHECK_LEN, OPT_CHECK_SCALE, OPT_MAX_DRAWS, OPT_STACK
};

static const et_option_decl opnas_options[] = {
    {"population", ET_OPTION_TYPE_INT, "50", 2, 100000, NULL,
     "architectures per generation (parents kept plus children)"},
    {"parents", ET_OPTION_TYPE_INT, "10", 1, 100000, NULL,
     "best architectures kept as parents from one generation to the next (K)"},
    {"generations", ET_OPTION_TYPE_INT, "20", 0, 1000000, NULL,
     "generations bred after the first population"},
    {"alpha", ET_OPTION_TYPE_FLOAT, "1.0", 0, 1e6, NULL,
     "UCB exploration weight: u = mean reward + alpha sqrt(2 ln N / N_op)"},
    {"max_ops", ET_OPTION_TYPE_INT, "10", 1, OPGRAPH_MAX_NODES - 3, NULL,
     "ops per attention graph at most (inputs Q, K, V not counted)"},
    {"init_steps", ET_OPTION_TYPE_INT, "500", 1, 1e12, NULL,
     "updates of the seed member (standard attention everywhere) from scratch"},
    {"steps", ET_OPTION_TYPE_INT, "100", 1, 1e12, NULL,
     "proxy training of every other member, from its parent's weights"},
    {"init_mutations", ET_OPTION_TYPE_INT, "2", 1, 100, NULL,
     "random mutations of the seed behind each other member of the first population"},
    {"inter_prob", ET_OPTION_TYPE_FLOAT, "1.0", 0, 1, NULL,
     "probability that a child gets an inter-layer mutation (attention <-> convolution, kernel "
     "size) besides its graph mutation"},
    {"fitness", ET_OPTION_TYPE_CHOICE, "metric", 0, -1, "metric|loss",
     "what ranks architectures: the task's metric in its direction, or the loss (lower is "
     "better)"},
    {"final_top", ET_OPTION_TYPE_INT, "1", 0, 1000, NULL,
     "best architectures retrained and scored on the test split at the end"},
    {"final_steps", ET_OPTION_TYPE_INT, "1000", 1, 1e12, NULL,
     "updates of each final retraining"},
    {"final_init", ET_OPTION_TYPE_CHOICE, "scratch", 0, -1, "scratch|inherit",
     "final retraining from a fresh initialisation, or from the member's search weights"},
    {"report_top", ET_OPTION_TYPE_INT, "5", 1, 1000, NULL,
     "best architectures whose graphs the report lists"},
    {"check_len", ET_OPTION_TYPE_INT, "16", 1, 4096, NULL,
     "positions of the random input a new graph must map to finite values"},
    {"check_scale", ET_OPTION_TYPE_FLOAT, "1.0", 1e-30, 1e30, NULL,
     "standard deviation of that random input"},
    {"max_draws", ET_OPTION_TYPE_INT, "200", 1, 1e9, NULL,
     "draws for one child before the generation goes on with fewer children"},
    {"stack", ET_OPTION_TYPE_CHOICE, "auto", 0, -1, "auto|encoder|decoder",
     "the stack whose self-attention is searched (auto: the decoder of decoder-only models, "
     "else the encoder)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* One architecture: per layer attention (with its graph) or convolution
 * (with its kernel size; the graph is kept for a later switch back). */
typedef struct member {
    int64_t id, parent;   /* creation order; the parent's id or -1 */
    int32_t arm, edit;    /* the graph mutation that made it, -1 for none */
    int32_t layer;        /* the layer that mutation changed, -1 for none */
    int8_t attn[ET_MAX_LAYERS];
    int32_t kernel[ET_MAX_LAYERS];
    opgraph graph[ET_MAX_LAYERS];
    et_eval_result res;
    double fitness; /* higher is better; -INFINITY when not finite */
    int8_t ok;      /* satisfies the experiment's constraints */
    float *w;
    int64_t wn;
} member;

/* A set of 64-bit hashes (linear search: a run sees thousands at most). */
typedef struct hset {
    uint64_t *v;
    int64_t n, cap;
} hset;

typedef struct opnas {
    const et_host *host;
    int64_t population, parents, generations, init_steps, steps, init_mutations, final_top,
        final_steps, report_top, max_draws;
    int32_t check_len, fitness, final_init, stack, layers, conv;
    double alpha, inter_prob, check_scale, sign;
    graph_rules rules;
    et_arch base;
    int32_t head_dim[ET_MAX_LAYERS], heads[ET_MAX_LAYERS], ref_len;
    et_int_choices kernels;
    opgraph standard;
    ucb ucb;
    et_rng rng;
    hset graphs, archs; /* canonical graph hashes and member keys seen in the run */
    int64_t next_id, done, total;
    int64_t rejects[REJECTS];
    member *pop; /* population + 1 slots */
    int64_t n_pop;
    char (*op_text)[OP_TEXT_MAX];
} opnas;

static void member_clear(member *m)
{
    free(m->w);
    m->w = NULL;
    m->wn = 0;
}

static void opnas_destroy(void *state)
{
    opnas *s = state;
    if (!s)
        return;
    for (int64_t i = 0; i < s->n_pop; i++)
        member_clear(&s->pop[i]);
    free(s->pop);
    free(s->graphs.v);
    free(s->archs.v);
    free(s->op_text);
    free(s);
}

static int has_choice(const et_int_choices *c, int32_t v)
{
    for (int32_t i = 0; i < c->n; i++)
        if (c->v[i] == v)
            return 1;
    return 0;
}

static int opnas_create(const et_host *host, const et_option_value *opts, void **state,
                        char **err)
{
    *state = NULL;
    if (!ET_HOST_HAS(host, train_custom) || !host->train_custom || !host->space) {
        *err = host->errorf("opnas: this etnas cannot train architectures with custom attention "
                            "graphs (no train_custom service); update etnas");
        return ET_STATUS_ERR_UNSUPPORTED;
    }
    const et_space *sp = host->space;
    int32_t stack = (int32_t)opts[OPT_STACK].i == STACK_DECODER   ? 1
                    : (int32_t)opts[OPT_STACK].i == STACK_ENCODER ? 0
                    : sp->kind == ET_MODEL_KIND_DECODER           ? 1
                                                                  : 0;
    if ((stack == 0 && sp->kind == ET_MODEL_KIND_DECODER) ||
        (stack == 1 && sp->kind == ET_MODEL_KIND_ENCODER)) {
        *err = host->errorf("opnas: stack = %s, but the space's model has no %s; use stack = "
                            "auto", stack ? "decoder" : "encoder", stack ? "decoder" : "encoder");
        return ET_STATUS_ERR_USAGE;
    }
    const et_stack_space *st = stack ? &sp->dec : &sp->enc;
    const char *sname = stack ? "decoder" : "encoder";
    if (!has_choice(&st->block, ET_BLOCK_STANDARD)) {
        *err = host->errorf("opnas: the %s blocks of [space] must include standard (attention "
                            "then FFN), e.g. %s_block = standard, conv",
                            sname, sname);
        return ET_STATUS_ERR_USAGE;
    }
    if (opts[OPT_PARENTS].i >= opts[OPT_POPULATION].i) {
        *err = host->errorf("opnas: parents = %lld must be below population = %lld, or no "
                            "child is bred",
                            (long long)opts[OPT_PARENTS].i, (long long)opts[OPT_POPULATION].i);
        return ET_STATUS_ERR_USAGE;
    }
    if ((int32_t)opts[OPT_FITNESS].i == FITNESS_METRIC && !host->task) {
        *err = host->errorf("opnas: fitness = metric needs the task's metric direction, and "
                            "this host has no task: use fitness = loss");
        return ET_STATUS_ERR_USAGE;
    }
    opnas *s = calloc(1, sizeof *s);
    if (!s) {
        *err = host->errorf("opnas: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    *state = s;
    s->host = host;
    s->population = opts[OPT_POPULATION].i;
    s->parents = opts[OPT_PARENTS].i;
    s->generations = opts[OPT_GENERATIONS].i;
    s->alpha = opts[OPT_ALPHA].f;
    s->init_steps = opts[OPT_INIT_STEPS].i;
    s->steps = opts[OPT_STEPS].i;
    s->init_mutations = opts[OPT_INIT_MUTATIONS].i;
    s->inter_prob = opts[OPT_INTER_PROB].f;
    s->fitness = (int32_t)opts[OPT_FITNESS].i;
    s->final_top = opts[OPT_FINAL_TOP].i;
    s->final_steps = opts[OPT_FINAL_STEPS].i;
    s->final_init = (int32_t)opts[OPT_FINAL_INIT].i;
    s->report_top = opts[OPT_REPORT_TOP].i;
    s->check_len = (int32_t)opts[OPT_CHECK_LEN].i;
    s->check_scale = opts[OPT_CHECK_SCALE].f;
    s->max_draws = opts[OPT_MAX_DRAWS].i;
    s->stack = stack;
    s->sign = s->fitness == FITNESS_LOSS || !host->task->higher_is_better ? -1.0 : 1.0;
    /* a graph travels inside an attention choice text, "opgraph(graph=...)",
     * of fewer than ET_MAX_CHOICE_TEXT characters */
    s->rules = (graph_rules){OPGRAPH_CTX_SAME_LEN | OPGRAPH_CTX_SAME_DIM |
                                 (stack ? OPGRAPH_CTX_CAUSAL : 0u),
                             (int32_t)opts[OPT_MAX_OPS].i,
                             ET_MAX_CHOICE_TEXT - 1 - (int32_t)strlen(OP_TEXT_PREFIX ")")};
    s->conv = has_choice(&st->block, ET_BLOCK_CONV) && st->conv_kernel.n > 0;
    s->kernels = st->conv_kernel;
    host->arch_largest(sp, &s->base);
    et_stack_arch *sa = stack ? &s->base.dec : &s->base.enc;
    s->layers = sa->layers;
    for (int32_t l = 0; l < s->layers; l++) {
        int32_t h = sa->layer[l].heads > 0 ? sa->layer[l].heads : 1;
        s->heads[l] = h;
        s->head_dim[l] = sp->heads_rule == ET_HEADS_RULE_QKV_DIM ? sp->qkv_dim / h : sp->head_dim;
    }
    const et_task_info *t = host->task;
    s->ref_len = !t ? s->check_len
                 : stack ? (t->max_tgt_len > 0 ? t->max_tgt_len : t->max_src_len)
                         : t->max_src_len + (sp->kind == ET_MODEL_KIND_ENCODER &&
                                             sp->pooling == ET_POOLING_CLS);
    char why[OPGRAPH_MAX_TEXT + 256];
    if (opgraph_parse(STANDARD_GRAPH, &s->standard, why, sizeof why) ||
        opgraph_canonicalize(&s->standard, &s->standard, why, sizeof why) ||
        graph_check(&s->standard, &s->rules, why, sizeof why)) {
        *err = host->errorf("opnas: the standard-attention graph does not fit the options: %s",
                            why);
        return ET_STATUS_ERR_USAGE;
    }
    if (s->layers < 1) {
        *err = host->errorf("opnas: the %s has no layers to search", sname);
        return ET_STATUS_ERR_USAGE;
    }
    if (ucb_init(&s->ucb, GRAPH_OPS, s->alpha)) {
        *err = host->errorf("opnas: alpha = %g is not a UCB weight", s->alpha);
        return ET_STATUS_ERR_USAGE;
    }
    s->pop = calloc((size_t)s->population + 1, sizeof *s->pop);
    s->op_text = calloc((size_t)s->layers, sizeof *s->op_text);
    if (!s->pop || !s->op_text) {
        *err = host->errorf("opnas: out of memory for a population of %lld",
                            (long long)s->population);
        return ET_STATUS_ERR_NOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------- members */

static int hset_has(const hset *set, uint64_t h)
{
    for (int64_t i = 0; i < set->n; i++)
        if (set->v[i] == h)
            return 1;
    return 0;
}

static int hset_add(const opnas *s, hset *set, uint64_t h, char **err)
{
    if (set->n == set->cap) {
        int64_t cap = set->cap ? 2 * set->cap : 256;
        uint64_t *p = realloc(set->v, sizeof *p * (size_t)cap);
        if (!p) {
            *err = s->host->errorf("opnas: out of memory");
            return ET_STATUS_ERR_NOMEM;
        }
        set->v = p;
        set->cap = cap;
    }
    set->v[set->n++] = h;
    return 0;
}

/* What tells members apart: per layer its graph or its kernel size. */
static uint64_t member_key(const opnas *s, const member *m)
{
    uint64_t h = UINT64_C(0x6f706e61736b6579);
    for (int32_t l = 0; l < s->layers; l++) {
        uint64_t x = m->attn[l] ? opgraph_hash(&m->graph[l]) : (uint64_t)m->kernel[l] + 1;
        h = et_rng_mix64(h ^ (x + (uint64_t)(2 * l + m->attn[l]) * ET_RNG_GAMMA));
    }
    return h;
}

/* The member's arch and its operator texts (op_text, one per layer,
 * pointed to by ops). */
static void member_arch(opnas *s, const member *m, et_arch *a, const char *ops[ET_MAX_LAYERS])
{
    *a = s->base;
    et_stack_arch *sa = s->stack ? &a->dec : &a->enc;
    for (int32_t l = 0; l < s->layers; l++) {
        et_layer_arch *g = &sa->layer[l];
        g->block = m->attn[l] ? ET_BLOCK_STANDARD : ET_BLOCK_CONV;
        g->conv_kernel = m->attn[l] ? 0 : m->kernel[l];
        char graph[OPGRAPH_MAX_TEXT];
        /* a conv layer has no attention: one fixed text, so that graphs kept
         * for a later switch back do not tell equal archs apart */
        if (!m->attn[l] || opgraph_canonical_text(&m->graph[l], graph, sizeof graph) < 0)
            snprintf(s->op_text[l], OP_TEXT_MAX, "opgraph");
        else
            snprintf(s->op_text[l], OP_TEXT_MAX, OP_TEXT_PREFIX "%s)", graph);
        ops[l] = s->op_text[l];
    }
}

/* Whether m satisfies the experiment's constraints, its costs measured
 * with its graphs (yes on a host that cannot tell). */
static int member_satisfies(opnas *s, const member *m, int32_t *ok, char **err)
{
    const et_host *h = s->host;
    *ok = 1;
    if (!ET_HOST_HAS(h, satisfies_custom) || !h->satisfies_custom)
        return 0;
    et_arch a;
    const char *ops[ET_MAX_LAYERS];
    member_arch(s, m, &a, ops);
    return h->satisfies_custom(h->ctx, &a, s->stack, ops, ok, err);
}

/* A cost figure of m with its graphs; NAN when the experiment has no proxy
 * giving it (or the host cannot measure graphs). */
static int member_cost(opnas *s, const member *m, const char *figure, double *value, char **err)
{
    const et_host *h = s->host;
    *value = NAN;
    if (!ET_HOST_HAS(h, cost_custom) || !h->cost_custom)
        return 0;
    et_arch a;
    const char *ops[ET_MAX_LAYERS];
    member_arch(s, m, &a, ops);
    return h->cost_custom(h->ctx, &a, s->stack, ops, figure, value, err);
}

/* Multiply-adds of the member's attention graphs for one example at the
 * reference length (every head of every attention layer). */
static double member_macs(const opnas *s, const member *m)
{
    double macs = 0;
    for (int32_t l = 0; l < s->layers; l++) {
        opgraph_shapes sh;
        if (!m->attn[l] || opgraph_validate(&m->graph[l], NULL, s->rules.ctx, &sh, NULL, 0))
            continue;
        macs += s->heads[l] * opgraph_macs(&m->graph[l], &sh, s->ref_len, s->ref_len,
                                           s->head_dim[l], s->head_dim[l]);
    }
    return macs;
}

/* Train m from init (NULL: scratch) and score it. */
static int member_train(opnas *s, member *m, const member *init, int64_t steps, int32_t split,
                        int32_t final_rank, char **err)
{
    const et_host *h = s->host;
    et_arch a;
    const char *ops[ET_MAX_LAYERS];
    member_arch(s, m, &a, ops);
    float *w = NULL;
    int64_t wn = 0;
    int rc = h->train_custom(h->ctx, &a, s->stack, ops, init ? init->w : NULL, init ? init->wn : 0,
                             steps, split, final_rank, &m->res, &w, &wn, err);
    if (rc) {
        free(w);
        return rc;
    }
    if (split == ET_SPLIT_VALID) {
        member_clear(m);
        m->w = w;
        m->wn = wn;
        double v = s->fitness == FITNESS_LOSS ? m->res.loss : m->res.metric;
        m->fitness = isfinite(v) ? s->sign * v : -INFINITY;
    } else {
        free(w);
    }
    return 0;
}

/* Best first; ties (and equal non-finite fitness) go to the older member. */
static int member_cmp(const void *pa, const void *pb)
{
    const member *a = pa, *b = pb;
    if (a->fitness != b->fitness)
        return a->fitness > b->fitness ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* ----------------------------------------------------------- mutations */

/* One layer turns attention <-> convolution or takes another kernel size,
 * uniformly among the alternatives that layer has. */
static void mutate_inter(opnas *s, member *m)
{
    int32_t l = (int32_t)et_rng_below(&s->rng, (uint64_t)s->layers);
    int32_t nk = s->kernels.n;
    if (m->attn[l]) { /* to convolution, any kernel */
        m->attn[l] = 0;
        m->kernel[l] = s->kernels.v[et_rng_below(&s->rng, (uint64_t)nk)];
        return;
    }
    int32_t others[ET_MAX_CHOICES], n = 0;
    for (int32_t k = 0; k < nk; k++)
        if (s->kernels.v[k] != m->kernel[l])
            others[n++] = s->kernels.v[k];
    uint64_t pick = et_rng_below(&s->rng, (uint64_t)n + 1); /* n: back to attention */
    if (pick == (uint64_t)n)
        m->attn[l] = 1;
    else
        m->kernel[l] = others[pick];
}

/* Draws from the edits of one op until a graph passes the checks the rules
 * cannot make: new in the run (canonical hash) and finite on random input.
 * Failing candidates leave the lists. 1 with m's layer l replaced, 0 when
 * the lists run out, or a negative et_status. */
static int draw_edit(opnas *s, member *m, int32_t l, opgraph *list[GRAPH_EDIT_COUNT],
                     int32_t n[GRAPH_EDIT_COUNT], int32_t *edit, char **err)
{
    for (;;) {
        int kinds = 0;
        for (int e = 0; e < GRAPH_EDIT_COUNT; e++)
            kinds += n[e] > 0;
        if (!kinds)
            return 0;
        int32_t k = (int32_t)et_rng_below(&s->rng, (uint64_t)kinds), e = 0;
        for (;; e++)
            if (n[e] > 0 && k-- == 0)
                break;
        int32_t i = (int32_t)et_rng_below(&s->rng, (uint64_t)n[e]);
        const opgraph *c = &list[e][i];
        uint64_t h = opgraph_hash(c);
        int ok = !hset_has(&s->graphs, h);
        if (!ok)
            s->rejects[REJECT_DUPLICATE]++;
        else {
            et_rng probe = et_rng_split(&s->rng, h);
            int rc = graph_output_finite(c, s->rules.ctx, s->check_len,
                                         s->head_dim[l] > 0 ? s->head_dim[l] : 1, s->check_scale,
                                         &probe);
            if (rc < 0) {
                *err = s->host->errorf("opnas: cannot evaluate a candidate graph (out of memory)");
                return rc;
            }
            if (!rc)
                s->rejects[REJECT_NONFINITE]++;
            ok = rc;
        }
        if (!ok) {
            list[e][i] = list[e][--n[e]];
            continue;
        }
        int rc = hset_add(s, &s->graphs, h, err);
        if (rc)
            return rc;
        m->graph[l] = *c;
        *edit = e;
        return 1;
    }
}

/* An intra-layer mutation of layer l of m: the op by UCB (or uniformly),
 * then an edit kind and an edit of that op, uniformly among those left
 * after the checks; an op with none is set aside and the next one chosen.
 * *arm is -1 when no op has a graph to give there. */
static int mutate_intra(opnas *s, member *m, int32_t l, int use_ucb, int32_t *arm, int32_t *edit,
                        char **err)
{
    unsigned char allowed[GRAPH_OPS];
    memset(allowed, 1, sizeof allowed);
    *arm = -1;
    for (int left = GRAPH_OPS; left > 0; left--) {
        int32_t a;
        if (use_ucb)
            a = ucb_select(&s->ucb, allowed, &s->rng);
        else {
            int32_t k = (int32_t)et_rng_below(&s->rng, (uint64_t)left);
            for (a = 0; a < GRAPH_OPS && (!allowed[a] || k-- > 0); a++)
                ;
        }
        opgraph *list[GRAPH_EDIT_COUNT] = {0};
        int32_t n[GRAPH_EDIT_COUNT] = {0};
        int rc = 0;
        for (int e = 0; e < GRAPH_EDIT_COUNT && !rc; e++)
            rc = graph_edits(&m->graph[l], e, GRAPH_OP_OF_ARM(a), &s->rules, &list[e], &n[e]);
        if (rc)
            *err = s->host->errorf("opnas: out of memory listing graph edits");
        else
            rc = draw_edit(s, m, l, list, n, edit, err);
        for (int e = 0; e < GRAPH_EDIT_COUNT; e++)
            free(list[e]);
        if (rc < 0)
            return rc;
        if (rc) {
            *arm = a;
            return 0;
        }
        allowed[a] = 0;
    }
    return 0;
}

/* A child of parent: `rounds` times an inter-layer mutation (with
 * inter_prob) and an intra-layer one, redrawn (at most max_draws times)
 * while no layer yields a graph, the arch was tried before or it breaks a
 * constraint. *made = 0 when no draw succeeded. */
static int breed(opnas *s, const member *parent, int use_ucb, int64_t rounds, member *child,
                 int *made, char **err)
{
    *made = 0;
    for (int64_t draw = 0; draw < s->max_draws; draw++) {
        member c = *parent;
        c.w = NULL;
        c.wn = 0;
        c.parent = parent->id;
        c.arm = c.edit = c.layer = -1;
        int ok = 1;
        for (int64_t r = 0; r < rounds && ok; r++) {
            if (s->conv && et_rng_uniform(&s->rng) < s->inter_prob)
                mutate_inter(s, &c);
            int32_t att[ET_MAX_LAYERS], na = 0;
            for (int32_t l = 0; l < s->layers; l++)
                if (c.attn[l])
                    att[na++] = l;
            if (!na) /* all convolution: nothing to mutate inside */
                continue;
            int32_t l = att[et_rng_below(&s->rng, (uint64_t)na)], arm, edit = -1;
            int rc = mutate_intra(s, &c, l, use_ucb, &arm, &edit, err);
            if (rc)
                return rc;
            if (arm < 0) {
                s->rejects[REJECT_NO_EDIT]++;
                ok = 0;
                break;
            }
            c.arm = arm;
            c.edit = edit;
            c.layer = l;
        }
        /* with no graph mutation (all layers convolutions) the arch may be
         * one tried before */
        uint64_t key = member_key(s, &c);
        if (ok && hset_has(&s->archs, key)) {
            s->rejects[REJECT_SAME_ARCH]++;
            ok = 0;
        }
        if (ok) {
            int rc = hset_add(s, &s->archs, key, err);
            if (rc)
                return rc;
            /* the constraints, on the costs with its graphs, before any
             * training */
            int32_t fits;
            if ((rc = member_satisfies(s, &c, &fits, err)))
                return rc;
            if (!fits) {
                s->rejects[REJECT_CONSTRAINT]++;
                continue;
            }
            c.ok = 1;
            c.id = s->next_id++;
            *child = c;
            *made = 1;
            return 0;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- report */

static void layer_desc(const opnas *s, const member *m, int32_t l, char *buf, size_t n)
{
    if (!m->attn[l]) {
        snprintf(buf, n, "conv(kernel %d)", (int)m->kernel[l]);
        return;
    }
    if (graph_formula(&m->graph[l], buf, n) < 0 &&
        opgraph_canonical_text(&m->graph[l], buf, n) < 0)
        snprintf(buf, n, "(graph too long to show)");
}

static const char *metric_name(const opnas *s)
{
    return s->host->task && s->host->task->metric ? s->host->task->metric : "metric";
}

static void log_child(opnas *s, const char *when, const member *c, const member *p)
{
    const et_host *h = s->host;
    char what[OPGRAPH_MAX_TEXT + 128] = "";
    if (c->arm >= 0) {
        char f[OPGRAPH_MAX_TEXT];
        layer_desc(s, c, c->layer, f, sizeof f);
        snprintf(what, sizeof what, "; layer %d %s %s: %s", (int)c->layer,
                 graph_edit_name(c->edit), opgraph_op_name(GRAPH_OP_OF_ARM(c->arm)), f);
    }
    h->log(h->ctx, ET_LOG_LEVEL_DEBUG, "opnas %s #%lld (parent #%lld)%s; %s %.4f, loss %.4f%s",
           when, (long long)c->id, (long long)(p ? p->id : -1), what, metric_name(s),
           c->res.metric, c->res.loss, c->res.from_store ? " (stored)" : "");
}

/* Appends printf output to a growing text. */
typedef struct text {
    char *s;
    size_t len, cap;
    int nomem;
} text;

static void tprintf(text *t, const char *fmt, ...) ET_PRINTF(2, 3);

static void tprintf(text *t, const char *fmt, ...)
{
    if (t->nomem)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            t->nomem = 1;
            return;
        }
        if (t->s && t->len + (size_t)k < t->cap) {
            t->len += (size_t)k;
            return;
        }
        size_t cap = (t->cap ? 2 * t->cap : 4096) + (size_t)k;
        char *p = realloc(t->s, cap);
        if (!p) {
            t->nomem = 1;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
}

/* A figure for a table: "-" when not finite. */
static void tnum(text *t, const char *fmt, double v)
{
    if (isfinite(v))
        tprintf(t, fmt, v);
    else
        tprintf(t, "-");
}

/* The best members' graphs with their costs (the experiment's proxies
 * measuring each with its graphs), and the UCB statistics: logged, and
 * kept as the blob "artifact/opnas-<seed>.md" (a markdown page the report
 * links). */
static int report(opnas *s, char **err)
{
    const et_host *h = s->host;
    text t = {0}, md = {0};
    const char *metric = metric_name(s);
    int64_t top = s->report_top < s->n_pop ? s->report_top : s->n_pop;
    int rc = 0;
    tprintf(&t, "opnas: best %lld of %lld trained architectures (%s on the validation split; "
                "graph MACs per example at length %d)\n",
            (long long)top, (long long)s->next_id, metric, (int)s->ref_len);
    tprintf(&md, "# OP-NAS: the best architectures\n\n%lld architectures trained, %s on the "
                 "validation split after proxy training. Graph MACs: multiply-adds of the "
                 "attention graphs (all heads and layers) for one example of %d positions. "
                 "FLOPs and latency: the experiment's flops and latency proxies on the model "
                 "with these graphs (- without such a proxy). "
                 "@ is the matrix product, * the elementwise one.\n\n| rank | member | %s | "
                 "loss | graph MACs | FLOPs (G) | latency (ms) | constraints |",
            (long long)s->next_id, metric, (int)s->ref_len, metric);
    for (int32_t l = 0; l < s->layers; l++)
        tprintf(&md, " layer %d |", (int)l);
    tprintf(&md, "\n|---|---|---|---|---|---|---|---|");
    for (int32_t l = 0; l < s->layers; l++)
        tprintf(&md, "---|");
    tprintf(&md, "\n");
    for (int64_t i = 0; i < top && !rc; i++) {
        const member *m = &s->pop[i];
        double macs = member_macs(s, m), flops, latency;
        if ((rc = member_cost(s, m, "flops_g", &flops, err)) ||
            (rc = member_cost(s, m, "latency_ms", &latency, err)))
            break;
        tprintf(&t, "opnas #%lld: rank %lld, %s %.4f, loss %.4f, graph MACs %.4g%s\n",
                (long long)m->id, (long long)i + 1, metric, m->res.metric, m->res.loss, macs,
                m->ok ? "" : " (breaks a constraint)");
        /* measured figures: kept off the lines above, which a rerun repeats exactly */
        if (isfinite(flops) || isfinite(latency)) {
            tprintf(&t, "opnas costs of #%lld: FLOPs ", (long long)m->id);
            tnum(&t, "%.4g G", flops);
            tprintf(&t, ", latency ");
            tnum(&t, "%.4g ms", latency);
            tprintf(&t, "\n");
        }
        tprintf(&md, "| %lld | #%lld | %.4f | %.4f | %.4g | ", (long long)i + 1, (long long)m->id,
                m->res.metric, m->res.loss, macs);
        tnum(&md, "%.4g", flops);
        tprintf(&md, " | ");
        tnum(&md, "%.4g", latency);
        tprintf(&md, " | %s |", m->ok ? "met" : "broken");
        for (int32_t l = 0; l < s->layers; l++) {
            char f[OPGRAPH_MAX_TEXT];
            layer_desc(s, m, l, f, sizeof f);
            tprintf(&t, "opnas #%lld layer %d: %s\n", (long long)m->id, (int)l, f);
            tprintf(&md, " `%s` |", f);
        }
        tprintf(&md, "\n");
    }
    tprintf(&t, "opnas UCB (alpha %g, %lld tries): op, tries, mean reward, u\n", s->alpha,
            (long long)s->ucb.total);
    tprintf(&md, "\n## UCB statistics per op\n\nalpha %g, %lld tries; reward: the child's "
                 "fitness gain over its parent; u = mean + alpha sqrt(2 ln N / tries).\n\n"
                 "| op | tries | mean reward | u |\n|---|---|---|---|\n",
            s->alpha, (long long)s->ucb.total);
    for (int32_t a = 0; a < GRAPH_OPS; a++) {
        const char *op = opgraph_op_name(GRAPH_OP_OF_ARM(a));
        tprintf(&t, "opnas UCB %s: %lld, %.5f, %.5f\n", op, (long long)s->ucb.tries[a],
                ucb_mean(&s->ucb, a), ucb_value(&s->ucb, a));
        tprintf(&md, "| %s | %lld | %.5f | %.5f |\n", op, (long long)s->ucb.tries[a],
                ucb_mean(&s->ucb, a), ucb_value(&s->ucb, a));
    }
    tprintf(&t, "opnas rejected before training:");
    tprintf(&md, "\nRejected before training:");
    for (int k = 0; k < REJECTS; k++) {
        tprintf(&t, "%s %lld %s", k ? "," : "", (long long)s->rejects[k], reject_name[k]);
        tprintf(&md, "%s %lld %s", k ? "," : "", (long long)s->rejects[k], reject_name[k]);
    }
    tprintf(&t, "\n");
    tprintf(&md, ".\n");
    if (!rc && (t.nomem || md.nomem)) {
        *err = h->errorf("opnas: out of memory writing the report");
        rc = ET_STATUS_ERR_NOMEM;
    }
    for (char *line = t.s, *nl; !rc && line && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        *nl = '\0';
        h->log(h->ctx, ET_LOG_LEVEL_INFO, "%s", line);
        *nl = '\n';
    }
    if (!rc && ET_HOST_HAS(h, blob_put) && h->blob_put) {
        char key[64];
        snprintf(key, sizeof key, "artifact/opnas-%016llx.md", (unsigned long long)h->seed);
        rc = h->blob_put(h->ctx, key, md.s, md.len, err);
    }
    free(t.s);
    free(md.s);
    return rc;
}

/* ------------------------------------------------------------------ run */

static void progress(opnas *s)
{
    s->done++;
    if (s->host->progress)
        s->host->progress(s->host->ctx, "opnas", s->done, s->total);
}

/* Keep the best `parents` members; the others' weights go. */
static void select_parents(opnas *s)
{
    qsort(s->pop, (size_t)s->n_pop, sizeof *s->pop, member_cmp);
    int64_t keep = s->parents < s->n_pop ? s->parents : s->n_pop;
    for (int64_t i = keep; i < s->n_pop; i++)
        member_clear(&s->pop[i]);
    s->n_pop = keep;
}

static int first_population(opnas *s, char **err)
{
    member *seed = &s->pop[0];
    memset(seed, 0, sizeof *seed);
    seed->id = s->next_id++;
    seed->parent = seed->arm = seed->edit = seed->layer = -1;
    for (int32_t l = 0; l < s->layers; l++) {
        seed->attn[l] = 1;
        seed->kernel[l] = s->conv ? s->kernels.v[0] : 0;
        seed->graph[l] = s->standard;
    }
    int rc = hset_add(s, &s->graphs, opgraph_hash(&s->standard), err);
    if (!rc)
        rc = hset_add(s, &s->archs, member_key(s, seed), err);
    int32_t fits = 1;
    if (!rc)
        rc = member_satisfies(s, seed, &fits, err);
    if (!rc)
        rc = member_train(s, seed, NULL, s->init_steps, ET_SPLIT_VALID, -1, err);
    if (rc)
        return rc;
    seed->ok = (int8_t)fits;
    if (!fits)
        s->host->log(s->host->ctx, ET_LOG_LEVEL_WARN,
                     "opnas: the seed (standard attention everywhere) breaks the constraints; it "
                     "is trained as the root of the search but never a final result");
    s->n_pop = 1;
    log_child(s, "seed", seed, NULL);
    progress(s);
    while (s->n_pop < s->population) {
        member *c = &s->pop[s->n_pop];
        int made;
        if ((rc = breed(s, seed, 0, s->init_mutations, c, &made, err)))
            return rc;
        if (!made) {
            s->host->log(s->host->ctx, ET_LOG_LEVEL_WARN,
                         "opnas: no new graph in %lld draws; the first population has %lld "
                         "members",
                         (long long)s->max_draws, (long long)s->n_pop);
            break;
        }
        if ((rc = member_train(s, c, seed, s->steps, ET_SPLIT_VALID, -1, err)))
            return rc;
        s->n_pop++;
        log_child(s, "initial", c, seed);
        progress(s);
    }
    return 0;
}

static int generation(opnas *s, int64_t gen, char **err)
{
    select_parents(s);
    int64_t k = s->n_pop, want = s->population - s->parents;
    for (int64_t j = 0; j < want; j++) {
        const member *p = &s->pop[j % k];
        member *c = &s->pop[s->n_pop];
        int made;
        int rc = breed(s, p, 1, 1, c, &made, err);
        if (rc)
            return rc;
        if (!made) {
            s->host->log(s->host->ctx, ET_LOG_LEVEL_WARN,
                         "opnas: generation %lld: no new graph in %lld draws; going on with %lld "
                         "children",
                         (long long)gen, (long long)s->max_draws, (long long)j);
            break;
        }
        if ((rc = member_train(s, c, p, s->steps, ET_SPLIT_VALID, -1, err)))
            return rc;
        if (c->arm >= 0)
            ucb_update(&s->ucb, c->arm, c->fitness - p->fitness);
        s->n_pop++;
        log_child(s, "child", c, p);
        progress(s);
    }
    const member *best = &s->pop[0];
    for (int64_t i = 1; i < s->n_pop; i++)
        if (member_cmp(&s->pop[i], best) < 0)
            best = &s->pop[i];
    s->host->log(s->host->ctx, ET_LOG_LEVEL_INFO,
                 "opnas generation %lld/%lld: %lld members, best #%lld %s %.4f (loss %.4f)",
                 (long long)gen, (long long)s->generations, (long long)s->n_pop,
                 (long long)best->id, metric_name(s), best->res.metric, best->res.loss);
    return 0;
}

/* The best `final_top` members that satisfy the constraints, retrained
 * and scored on the test split. */
static int final_results(opnas *s, char **err)
{
    int64_t r = 0;
    for (int64_t i = 0; i < s->n_pop && r < s->final_top; i++) {
        if (!s->pop[i].ok) {
            s->host->log(s->host->ctx, ET_LOG_LEVEL_INFO,
                         "opnas: #%lld breaks a constraint: not a final result",
                         (long long)s->pop[i].id);
            continue;
        }
        member m = s->pop[i];
        m.w = NULL;
        m.wn = 0;
        const member *init = s->final_init == FINAL_INHERIT ? &s->pop[i] : NULL;
        int rc = member_train(s, &m, init, s->final_steps, ET_SPLIT_TEST, (int32_t)r, err);
        if (rc)
            return rc;
        s->host->log(s->host->ctx, ET_LOG_LEVEL_INFO,
                     "opnas final %lld: #%lld retrained %lld steps (%s): test %s %.4f, loss %.4f",
                     (long long)r + 1, (long long)m.id, (long long)s->final_steps,
                     init ? "from its search weights" : "from scratch", metric_name(s),
                     m.res.metric, m.res.loss);
        r++;
    }
    if (s->final_top > 0 && r == 0)
        s->host->log(s->host->ctx, ET_LOG_LEVEL_WARN,
                     "opnas: no member satisfies the constraints; no final result");
    return 0;
}

static int opnas_run(void *state, char **err)
{
    opnas *s = state;
    s->rng = et_rng_from_seed(s->host->seed);
    s->total = s->population + s->generations * (s->population - s->parents);
    s->host->log(s->host->ctx, ET_LOG_LEVEL_INFO,
                 "opnas: %d %s layers, %s; population %lld, parents %lld, %lld generations, "
                 "up to %d ops per graph",
                 (int)s->layers, s->stack ? "decoder" : "encoder",
                 s->conv ? "attention graphs or convolutions" : "attention graphs only",
                 (long long)s->population, (long long)s->parents, (long long)s->generations,
                 (int)s->rules.max_ops);
    int rc = first_population(s, err);
    for (int64_t g = 1; !rc && g <= s->generations; g++)
        rc = generation(s, g, err);
    if (rc)
        return rc;
    qsort(s->pop, (size_t)s->n_pop, sizeof *s->pop, member_cmp);
    if ((rc = report(s, err)))
        return rc;
    return final_results(s, err);
}

static const et_search_vtable opnas_vtable = {
    .create = opnas_create,
    .destroy = opnas_destroy,
    .run = opnas_run,
};

static const et_plugin_descriptor opnas_descriptor = {
    ET_ABI_VERSION,
    ET_PLUGIN_KIND_SEARCH,
    "opnas",
    "OP-NAS (AutoBERT-Zero): evolves attention graphs of primitive ops and attention/convolution "
    "layers, UCB-guided op mutations, children trained from their parents' weights",
    opnas_options,
    &opnas_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &opnas_descriptor;
}
