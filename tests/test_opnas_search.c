/* The opnas search plugin against a fake host whose train_custom scores an
 * arch by a known function of its layers' operator texts and hands back
 * weights that name the call: the budget is population + generations x
 * (population - parents) trainings plus the final ones (test split, ranks
 * 0..); every graph trained is valid for the stack's attention mode and
 * within the size limit; each child starts from exactly the weights its
 * parent's training returned (BIWS), a parent one mutation away; the first
 * member trains from scratch; UCB counts one try per child; equal seeds
 * replay the same calls and log lines, other seeds differ; bad options and
 * a host without train_custom are refused; with a host that applies
 * constraints to the graphs (satisfies_custom), children that break them
 * are never trained, and a seed that breaks them is trained but never a
 * final result; the report gives the host's costs of the graphs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

#include "graph_eval.h"
#include "hostimpl.h"
#include "inifile.h"
#include "opgraph.h"
#include "options.h"

/* defined by plugins/search/opnas.c, linked into this test */
const et_plugin_descriptor *etnas_plugin(void);

#define MAX_CALLS 512
#define LAYERS 3
#define WN 3 /* weights: call number, a check value, steps */

typedef struct call {
    char ops[LAYERS][OPGRAPH_MAX_TEXT + 32];
    int32_t block[LAYERS], kernel[LAYERS];
    int64_t steps, init_call; /* -1: no init */
    int32_t split, final_rank;
    double metric;
} call;

typedef struct fake {
    et_space space;
    et_task_info info;
    int32_t stack;
    call calls[MAX_CALLS];
    int64_t n_calls, bad_init, not_valid;
    char log[1 << 18];
    size_t log_len;
    int64_t ucb_tries;
    int32_t constrain; /* a CONSTRAIN_* of satisfies_custom; NONE: no such service */
    int64_t n_satisfies;
} fake;

/* What the fake satisfies_custom accepts: attention layers whose text is
 * no longer than the standard graph's (no insertion), or nothing. */
enum { CONSTRAIN_NONE, CONSTRAIN_LENGTH, CONSTRAIN_NOTHING };

#define STANDARD_OP "opgraph(graph=matmul(softmax(scale(matmul(Q,transpose(K)))),V))"

static et_space make_space(int32_t kind)
{
    et_space s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.heads_rule = ET_HEADS_RULE_HEAD_DIM;
    s.head_dim = 4;
    s.norm = ET_NORM_PRE;
    s.pooling = ET_POOLING_CLS;
    et_stack_space *st = kind == ET_MODEL_KIND_DECODER ? &s.dec : &s.enc;
    st->present = 1;
    st->embed_dim = (et_int_choices){1, {16}};
    st->layers = (et_int_choices){1, {LAYERS}};
    st->ffn_dim = (et_int_choices){1, {32}};
    st->heads = (et_int_choices){1, {2}};
    st->attention.n = 1;
    strcpy(st->attention.v[0], "opgraph");
    st->block = (et_int_choices){2, {ET_BLOCK_STANDARD, ET_BLOCK_CONV}};
    st->activation = (et_int_choices){1, {ET_ACTIVATION_RELU}};
    st->conv_kernel = (et_int_choices){2, {3, 5}};
    return s;
}

static void fake_log(void *ctx, int32_t level, const char *fmt, ...)
{
    fake *f = ctx;
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    long long tries;
    if (sscanf(line, "opnas UCB (alpha %*g, %lld tries)", &tries) == 1)
        f->ucb_tries = tries;
    if (level > ET_LOG_LEVEL_INFO)
        return;
    int k = snprintf(f->log + f->log_len, sizeof f->log - f->log_len, "%s\n", line);
    if (k > 0 && f->log_len + (size_t)k < sizeof f->log)
        f->log_len += (size_t)k;
}

/* A score that likes relu and sigmoid in graphs and kernel 5 convolutions,
 * and a little less every op. */
static double score(const call *c)
{
    double s = 0.5;
    for (int l = 0; l < LAYERS; l++) {
        if (c->block[l] == ET_BLOCK_CONV) {
            s += c->kernel[l] == 5 ? 0.02 : 0.0;
            continue;
        }
        for (const char *p = c->ops[l]; (p = strstr(p, "relu")); p++)
            s += 0.03;
        for (const char *p = c->ops[l]; (p = strstr(p, "sigmoid")); p++)
            s += 0.01;
        s -= 0.0002 * (double)strlen(c->ops[l]);
    }
    return s;
}

static int fake_train_custom(void *ctx, const et_arch *arch, int32_t stack,
                             const char *const *ops, const float *init, int64_t init_n,
                             int64_t steps, int32_t split, int32_t final_rank,
                             et_eval_result *result, float **weights, int64_t *weights_n,
                             char **err)
{
    fake *f = ctx;
    (void)err;
    cr_assert_lt(f->n_calls, MAX_CALLS);
    cr_assert_eq(stack, f->stack);
    call *c = &f->calls[f->n_calls];
    const et_stack_arch *sa = stack ? &arch->dec : &arch->enc;
    cr_assert_eq(sa->layers, LAYERS);
    cr_assert_eq(sa->embed_dim, 16);
    unsigned ctx_flags = OPGRAPH_CTX_SAME_LEN | OPGRAPH_CTX_SAME_DIM |
                         (stack ? OPGRAPH_CTX_CAUSAL : 0u);
    for (int l = 0; l < LAYERS; l++) {
        snprintf(c->ops[l], sizeof c->ops[l], "%s", ops[l]);
        /* the host keeps operator texts as attention choices */
        f->not_valid += strlen(ops[l]) >= ET_MAX_CHOICE_TEXT;
        c->block[l] = sa->layer[l].block;
        c->kernel[l] = sa->layer[l].conv_kernel;
        if (c->block[l] == ET_BLOCK_CONV) {
            cr_assert(c->kernel[l] == 3 || c->kernel[l] == 5);
            continue;
        }
        cr_assert_eq(c->block[l], ET_BLOCK_STANDARD);
        const char *pre = "opgraph(graph=";
        cr_assert(!strncmp(ops[l], pre, strlen(pre)), "layer %d: %s", l, ops[l]);
        char text[OPGRAPH_MAX_TEXT];
        snprintf(text, sizeof text, "%s", ops[l] + strlen(pre));
        text[strlen(text) - 1] = '\0';
        opgraph g;
        char why[2048];
        int bad = opgraph_parse(text, &g, why, sizeof why) ||
                  opgraph_validate(&g, NULL, ctx_flags, NULL, why, sizeof why);
        int32_t n_ops = 0;
        for (int32_t i = 0; i < g.n; i++)
            n_ops += opgraph_op_arity(g.node[i].op) > 0;
        f->not_valid += bad || n_ops > 6;
    }
    c->steps = steps;
    c->split = split;
    c->final_rank = final_rank;
    c->init_call = -1;
    if (init) {
        /* the weights must be exactly those an earlier call returned */
        int ok = init_n == WN && init[0] >= 0 && init[0] < (float)f->n_calls;
        if (ok) {
            const call *from = &f->calls[(int64_t)init[0]];
            ok = init[1] == (float)(from->metric * 1000.0) && init[2] == (float)from->steps;
            c->init_call = (int64_t)init[0];
        }
        f->bad_init += !ok;
    }
    c->metric = score(c);
    *result = (et_eval_result){c->metric, 1.0 - c->metric, 0.0, 0};
    if (weights) {
        float *w = malloc(sizeof *w * WN);
        cr_assert(w);
        w[0] = (float)f->n_calls;
        w[1] = (float)(c->metric * 1000.0);
        w[2] = (float)steps;
        *weights = w;
        *weights_n = WN;
    }
    f->n_calls++;
    return 0;
}

static int fake_satisfies_custom(void *ctx, const et_arch *arch, int32_t stack,
                                 const char *const *ops, int32_t *ok, char **err)
{
    fake *f = ctx;
    (void)err;
    const et_stack_arch *sa = stack ? &arch->dec : &arch->enc;
    f->n_satisfies++;
    *ok = f->constrain != CONSTRAIN_NOTHING;
    for (int l = 0; l < LAYERS && f->constrain == CONSTRAIN_LENGTH; l++)
        if (sa->layer[l].block == ET_BLOCK_STANDARD && strlen(ops[l]) > strlen(STANDARD_OP))
            *ok = 0;
    return 0;
}

/* FLOPs: a millionth of the operator texts' length; latency 0.25 ms; no
 * other figure. */
static int fake_cost_custom(void *ctx, const et_arch *arch, int32_t stack,
                            const char *const *ops, const char *figure, double *value,
                            char **err)
{
    (void)ctx;
    (void)arch;
    (void)stack;
    (void)err;
    *value = NAN;
    if (!strcmp(figure, "latency_ms"))
        *value = 0.25;
    if (!strcmp(figure, "flops_g")) {
        *value = 0;
        for (int l = 0; l < LAYERS; l++)
            *value += 1e-6 * (double)strlen(ops[l]);
    }
    return 0;
}

static void fake_init(fake *f, int32_t kind)
{
    memset(f, 0, sizeof *f);
    f->space = make_space(kind);
    f->stack = kind == ET_MODEL_KIND_DECODER;
    f->info = (et_task_info){.model_kind = kind,
                             .metric = "accuracy",
                             .higher_is_better = 1,
                             .max_src_len = 8,
                             .max_tgt_len = 8};
}

static int bind(const char *body, et_config *cfg, et_option_value *v, char **err)
{
    char text[2048];
    snprintf(text, sizeof text, "[search opnas]\n%s", body);
    cr_assert_eq(et_config_parse(text, "o.ini", cfg, err), 0, "%s", *err);
    static const char *const reserved[] = {"plugin", NULL};
    return et_options_bind(etnas_plugin()->options, &cfg->sections[0], reserved, 0, v, err);
}

/* create + run + destroy; returns run's (or create's) code. */
static int search(fake *f, const char *options, uint64_t seed, int with_service, char **err)
{
    et_config cfg;
    et_option_value v[32];
    cr_assert_eq(bind(options, &cfg, v, err), 0, "%s", *err);
    et_host host;
    et_host_init(&host, seed, 1, &f->space);
    host.ctx = f;
    host.log = fake_log;
    host.progress = NULL;
    host.task = &f->info;
    host.train_custom = with_service ? fake_train_custom : NULL;
    if (f->constrain != CONSTRAIN_NONE) {
        host.satisfies_custom = fake_satisfies_custom;
        host.cost_custom = fake_cost_custom;
    }
    const et_search_vtable *vt = etnas_plugin()->vtable;
    void *state = NULL;
    int rc = vt->create(&host, v, &state, err);
    if (!rc)
        rc = vt->run(state, err);
    vt->destroy(state);
    et_config_free(&cfg);
    return rc;
}

/* Layers in which two calls differ (block, kernel or operator). */
static int differing_layers(const call *a, const call *b)
{
    int n = 0;
    for (int l = 0; l < LAYERS; l++)
        n += a->block[l] != b->block[l] ||
             (a->block[l] == ET_BLOCK_CONV ? a->kernel[l] != b->kernel[l]
                                           : strcmp(a->ops[l], b->ops[l]) != 0);
    return n;
}

static const char *const small =
    "population = 6\nparents = 2\ngenerations = 5\ninit_steps = 50\nsteps = 7\n"
    "init_mutations = 1\nmax_ops = 6\nfinal_top = 2\nfinal_steps = 30\n";

static void budget_and_inheritance(int32_t kind)
{
    fake *f = malloc(sizeof *f);
    cr_assert(f);
    fake_init(f, kind);
    char *err = NULL;
    cr_assert_eq(search(f, small, 7, 1, &err), 0, "%s", err);
    int64_t valid = 6 + 5 * (6 - 2);
    cr_assert_eq(f->n_calls, valid + 2, "%lld calls", (long long)f->n_calls);
    cr_assert_eq(f->not_valid, 0);
    cr_assert_eq(f->bad_init, 0);
    /* the seed: standard attention everywhere, from scratch */
    const call *seed = &f->calls[0];
    cr_assert_eq(seed->init_call, -1);
    cr_assert_eq(seed->steps, 50);
    for (int l = 0; l < LAYERS; l++)
        cr_assert_str_eq(seed->ops[l],
                         "opgraph(graph=matmul(softmax(scale(matmul(Q,transpose(K)))),V))");
    for (int64_t i = 1; i < valid; i++) {
        const call *c = &f->calls[i];
        cr_assert_eq(c->split, ET_SPLIT_VALID);
        cr_assert_eq(c->final_rank, -1);
        cr_assert_eq(c->steps, 7);
        cr_assert_geq(c->init_call, 0, "call %lld has no parent weights", (long long)i);
        const call *p = &f->calls[c->init_call];
        cr_assert_eq(p->split, ET_SPLIT_VALID);
        int d = differing_layers(c, p);
        cr_assert(d >= 1 && d <= 2, "call %lld differs from its parent in %d layers",
                  (long long)i, d);
    }
    /* finals: the two best, test split, ranks 0 and 1, from scratch */
    double best = -INFINITY;
    for (int64_t i = 0; i < valid; i++)
        best = fmax(best, f->calls[i].metric);
    for (int r = 0; r < 2; r++) {
        const call *c = &f->calls[valid + r];
        cr_assert_eq(c->split, ET_SPLIT_TEST);
        cr_assert_eq(c->final_rank, r);
        cr_assert_eq(c->steps, 30);
        cr_assert_eq(c->init_call, -1);
    }
    cr_assert_float_eq(f->calls[valid].metric, best, 1e-12);
    cr_assert_geq(f->calls[valid].metric, f->calls[valid + 1].metric);
    /* one UCB try per child with a graph mutation: a graph no earlier call
     * had (children of all-convolution parents have none) */
    int64_t fresh = 0;
    for (int64_t i = 6; i < valid; i++) {
        int is_new = 0;
        for (int l = 0; l < LAYERS && !is_new; l++) {
            if (f->calls[i].block[l] == ET_BLOCK_CONV)
                continue;
            is_new = 1;
            for (int64_t j = 0; j < i && is_new; j++)
                for (int m = 0; m < LAYERS && is_new; m++)
                    is_new = strcmp(f->calls[i].ops[l], f->calls[j].ops[m]) != 0;
        }
        fresh += is_new;
    }
    cr_assert_eq(f->ucb_tries, fresh, "%lld tries, %lld children with a new graph\n%s",
                 (long long)f->ucb_tries, (long long)fresh, f->log);
    cr_assert_gt(fresh, 5);
    cr_assert(strstr(f->log, "opnas UCB relu: "), "%s", f->log);
    cr_assert(strstr(f->log, "layer 0: "), "%s", f->log);
    free(f);
}

Test(opnas, budget_validity_and_inheritance_encoder)
{
    budget_and_inheritance(ET_MODEL_KIND_ENCODER);
}

Test(opnas, budget_validity_and_inheritance_decoder)
{
    budget_and_inheritance(ET_MODEL_KIND_DECODER);
}

Test(opnas, same_seed_same_search)
{
    fake *a = malloc(sizeof *a), *b = malloc(sizeof *b), *c = malloc(sizeof *c);
    cr_assert(a && b && c);
    fake_init(a, ET_MODEL_KIND_ENCODER);
    fake_init(b, ET_MODEL_KIND_ENCODER);
    fake_init(c, ET_MODEL_KIND_ENCODER);
    char *err = NULL;
    cr_assert_eq(search(a, small, 11, 1, &err), 0, "%s", err);
    cr_assert_eq(search(b, small, 11, 1, &err), 0, "%s", err);
    cr_assert_eq(search(c, small, 12, 1, &err), 0, "%s", err);
    cr_assert_eq(a->n_calls, b->n_calls);
    for (int64_t i = 0; i < a->n_calls; i++)
        cr_assert(!memcmp(&a->calls[i], &b->calls[i], sizeof a->calls[i]), "call %lld differs",
                  (long long)i);
    cr_assert_str_eq(a->log, b->log);
    int same = a->n_calls == c->n_calls;
    for (int64_t i = 0; same && i < a->n_calls; i++)
        same = !memcmp(&a->calls[i], &c->calls[i], sizeof a->calls[i]);
    cr_assert_not(same, "seeds 11 and 12 made the same calls");
    free(a);
    free(b);
    free(c);
}

Test(opnas, search_improves_on_the_seed)
{
    fake *f = malloc(sizeof *f);
    cr_assert(f);
    fake_init(f, ET_MODEL_KIND_ENCODER);
    char *err = NULL;
    cr_assert_eq(search(f, "population = 10\nparents = 3\ngenerations = 12\nmax_ops = 6\n"
                           "final_top = 1\n", 5, 1, &err), 0, "%s", err);
    int64_t valid = 10 + 12 * 7;
    cr_assert_eq(f->n_calls, valid + 1);
    cr_assert_gt(f->calls[valid].metric, f->calls[0].metric + 0.05,
                 "best %g, seed %g\n%s", f->calls[valid].metric, f->calls[0].metric, f->log);
    cr_assert_eq(f->not_valid, 0);
    free(f);
}

Test(opnas, refuses_bad_setups)
{
    fake *f = malloc(sizeof *f);
    cr_assert(f);
    fake_init(f, ET_MODEL_KIND_ENCODER);
    char *err = NULL;
    cr_assert_eq(search(f, "population = 4\nparents = 4\n", 1, 1, &err), ET_STATUS_ERR_USAGE);
    cr_assert(strstr(err, "parents = 4 must be below population = 4"), "%s", err);
    free(err);
    err = NULL;
    cr_assert_eq(search(f, "", 1, 0, &err), ET_STATUS_ERR_UNSUPPORTED);
    cr_assert(strstr(err, "train_custom"), "%s", err);
    free(err);
    err = NULL;
    f->space.enc.block = (et_int_choices){1, {ET_BLOCK_CONV}};
    cr_assert_eq(search(f, "", 1, 1, &err), ET_STATUS_ERR_USAGE);
    cr_assert(strstr(err, "encoder_block = standard, conv"), "%s", err);
    free(err);
    err = NULL;
    f->space = make_space(ET_MODEL_KIND_ENCODER);
    cr_assert_eq(search(f, "stack = decoder\n", 1, 1, &err), ET_STATUS_ERR_USAGE);
    free(err);
    err = NULL;
    /* the standard graph has five ops */
    cr_assert_eq(search(f, "max_ops = 4\n", 1, 1, &err), ET_STATUS_ERR_USAGE);
    cr_assert(strstr(err, "more than the 4 allowed"), "%s", err);
    free(err);
    cr_assert_eq(f->n_calls, 0);
    free(f);
}

Test(opnas, without_conv_blocks_only_graphs_change)
{
    fake *f = malloc(sizeof *f);
    cr_assert(f);
    fake_init(f, ET_MODEL_KIND_ENCODER);
    f->space.enc.block = (et_int_choices){1, {ET_BLOCK_STANDARD}};
    char *err = NULL;
    cr_assert_eq(search(f, small, 3, 1, &err), 0, "%s", err);
    for (int64_t i = 0; i < f->n_calls; i++)
        for (int l = 0; l < LAYERS; l++)
            cr_assert_eq(f->calls[i].block[l], ET_BLOCK_STANDARD);
    for (int64_t i = 1; i < 6 + 5 * 4; i++)
        cr_assert_eq(differing_layers(&f->calls[i], &f->calls[f->calls[i].init_call]), 1);
    free(f);
}

Test(opnas, graphs_with_non_finite_outputs_are_never_trained)
{
    fake *f = malloc(sizeof *f);
    cr_assert(f);
    fake_init(f, ET_MODEL_KIND_ENCODER);
    f->space.enc.block = (et_int_choices){1, {ET_BLOCK_STANDARD}};
    char *err = NULL;
    /* inputs near 1e13: a product of three inputs passes float's range */
    cr_assert_eq(search(f, "population = 8\nparents = 2\ngenerations = 6\nmax_ops = 6\n"
                           "final_top = 0\ncheck_scale = 1e13\n", 9, 1, &err), 0, "%s", err);
    long long rejected = 0;
    const char *line = strstr(f->log, "opnas rejected before training: ");
    cr_assert(line);
    cr_assert_eq(sscanf(line, "opnas rejected before training: %*d draws with no graph to give, "
                              "%*d candidate graphs seen before, %lld candidate graphs with "
                              "non-finite outputs", &rejected), 1, "%s", line);
    cr_assert_gt(rejected, 0, "%s", f->log);
    for (int64_t i = 0; i < f->n_calls; i++)
        for (int l = 0; l < LAYERS; l++) {
            char text[OPGRAPH_MAX_TEXT];
            snprintf(text, sizeof text, "%s", f->calls[i].ops[l] + strlen("opgraph(graph="));
            text[strlen(text) - 1] = '\0';
            opgraph g;
            cr_assert_eq(opgraph_parse(text, &g, NULL, 0), 0);
            et_rng r = et_rng_from_seed(1);
            cr_assert_eq(graph_output_finite(&g, OPGRAPH_CTX_SAME_LEN | OPGRAPH_CTX_SAME_DIM, 16,
                                             4, 1e13, &r), 1, "%s", text);
        }
    free(f);
}

/* The count of one kind of rejection in the log's summary line. */
static long long rejected(const fake *f, const char *kind)
{
    const char *line = strstr(f->log, "opnas rejected before training: ");
    cr_assert(line, "%s", f->log);
    const char *at = strstr(line, kind);
    cr_assert(at, "%s", line);
    while (at > line && (at[-1] == ' ' || (at[-1] >= '0' && at[-1] <= '9')))
        at--;
    return atoll(at);
}

Test(opnas, children_breaking_a_constraint_are_never_trained)
{
    fake *f = malloc(sizeof *f);
    cr_assert(f);
    fake_init(f, ET_MODEL_KIND_ENCODER);
    f->constrain = CONSTRAIN_LENGTH;
    char *err = NULL;
    cr_assert_eq(search(f, small, 7, 1, &err), 0, "%s", err);
    for (int64_t i = 0; i < f->n_calls; i++)
        for (int l = 0; l < LAYERS; l++)
            cr_assert(f->calls[i].block[l] == ET_BLOCK_CONV ||
                          strlen(f->calls[i].ops[l]) <= strlen(STANDARD_OP),
                      "call %lld layer %d: %s", (long long)i, l, f->calls[i].ops[l]);
    cr_assert_gt(f->n_satisfies, f->n_calls - 2);
    cr_assert_gt(rejected(f, "children breaking a constraint"), 0, "%s", f->log);
    /* the finals come from the members kept */
    int finals = 0;
    for (int64_t i = 0; i < f->n_calls; i++)
        finals += f->calls[i].final_rank >= 0;
    cr_assert_eq(finals, 2);
    /* the report's costs of the best graphs come from the host */
    cr_assert(strstr(f->log, "opnas costs of #"), "%s", f->log);
    cr_assert(strstr(f->log, ", latency 0.25 ms\n"), "%s", f->log);
    free(f);
}

Test(opnas, a_seed_breaking_the_constraints_is_trained_but_never_final)
{
    fake *f = malloc(sizeof *f);
    cr_assert(f);
    fake_init(f, ET_MODEL_KIND_ENCODER);
    f->constrain = CONSTRAIN_NOTHING;
    char *err = NULL;
    cr_assert_eq(search(f, "population = 4\nparents = 2\ngenerations = 2\nmax_draws = 5\n"
                           "final_top = 2\n", 3, 1, &err), 0, "%s", err);
    cr_assert_eq(f->n_calls, 1, "%s", f->log);
    cr_assert_eq(f->calls[0].final_rank, -1);
    cr_assert_str_eq(f->calls[0].ops[0], STANDARD_OP);
    cr_assert_gt(rejected(f, "children breaking a constraint"), 0, "%s", f->log);
    cr_assert(strstr(f->log, "#0 breaks a constraint: not a final result"), "%s", f->log);
    cr_assert(strstr(f->log, "no member satisfies the constraints"), "%s", f->log);
    free(f);
}
