/* evolution search plugin against a fake host whose "evaluate" scores an
 * arch by a known function of its genes: it finds the optimum and its best
 * never falls, the constraints keep every rejected arch away from evaluate,
 * equal seeds replay the same search, the evaluation counts match the
 * formula population + (iterations - 1) x (mutations + crossovers), and bad
 * options are refused. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

#include "hostimpl.h"
#include "inifile.h"
#include "options.h"
#include "space.h"
#include "testutil.h"

/* defined by plugins/search/evolution.c, linked into this test */
const et_plugin_descriptor *etnas_plugin(void);

/* 2 x (6 + 36 + 216) = 516 archs; value() has one maximum, 284. */
static const char *const small_space =
    "encoder_embed_dim = 16, 32\nencoder_layers = 1..3\nencoder_ffn_dim = 16, 32, 64\n"
    "encoder_heads = 1, 2\nencoder_attention = softmax\nhead_dim = 4\n";

/* Far more archs than HAT's defaults can exhaust. */
static const char *const large_space =
    "encoder_embed_dim = 64, 96, 128\nencoder_layers = 2..6\nencoder_ffn_dim = 128, 256, 512\n"
    "encoder_heads = 2, 4\nencoder_attention = softmax, cosformer\n"
    "encoder_activation = relu, gelu\nhead_dim = 16\n";

#define SMALL_OPTIMUM 284.0

/* How the fake task turns value() into what evaluate returns. Each way has
 * its optimum at the largest value; SCORE_UNIQUE adds less than 1e-3 drawn
 * from the hash so that no two archs tie. */
enum { SCORE_METRIC_HIGH, SCORE_METRIC_LOW, SCORE_LOSS, SCORE_UNIQUE };

typedef struct fake {
    et_space space;
    et_task_info info;
    int scoring;
    double bound;       /* satisfies() rejects value > bound; <= 0: accepts all */
    int satisfies_fail; /* satisfies() returns an error */
    int64_t accept_every; /* > 0: satisfies() accepts only every n-th call */
    int64_t satisfies_calls;
    int64_t evaluated, calls, rejected, violations, duplicates_in_call;
    uint64_t *hashes;   /* every evaluated arch, in order */
    double *metrics;    /* and its metric */
    int64_t call_size[256];
    double running_best[256]; /* best value evaluated so far, after each call */
    double logged[256];       /* the plugin's "best" line, per iteration */
    int64_t n_logged, warnings, supernet_steps;
    int64_t progress_done, progress_total;
} fake;

static double value(const et_arch *a)
{
    double v = a->enc.embed_dim;
    for (int32_t l = 0; l < a->enc.layers; l++)
        v += a->enc.layer[l].ffn_dim + 10.0 * a->enc.layer[l].heads;
    return v;
}

static void fake_init(fake *f, const char *space, int scoring)
{
    memset(f, 0, sizeof *f);
    f->space = tu_space(space);
    f->scoring = scoring;
    f->info = (et_task_info){.model_kind = ET_MODEL_KIND_ENCODER,
                             .metric = "score",
                             .higher_is_better = scoring != SCORE_METRIC_LOW};
    f->hashes = malloc(sizeof *f->hashes * 4096);
    f->metrics = malloc(sizeof *f->metrics * 4096);
    cr_assert(f->hashes && f->metrics);
}

static void fake_log(void *ctx, int32_t level, const char *fmt, ...)
{
    fake *f = ctx;
    char line[20000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (level == ET_LOG_LEVEL_WARN)
        f->warnings++;
    int it, total;
    double best;
    if (sscanf(line, "evolution: iteration %d/%d: best %*s %lf", &it, &total, &best) == 3) {
        cr_assert_eq(it, f->n_logged + 1, "iteration lines out of order: %s", line);
        cr_assert_lt(f->n_logged, 256);
        f->logged[f->n_logged++] = best;
    }
}

static void fake_progress(void *ctx, const char *phase, int64_t done, int64_t total)
{
    fake *f = ctx;
    (void)phase;
    f->progress_done = done;
    f->progress_total = total;
}

static int fake_train(void *ctx, int64_t steps, char **err)
{
    fake *f = ctx;
    (void)err;
    f->supernet_steps = steps;
    return 0;
}

static int fake_satisfies(void *ctx, const et_arch *arch, int32_t *ok, char **err)
{
    fake *f = ctx;
    if (f->satisfies_fail) {
        *err = strdup("the proxy broke");
        return ET_STATUS_ERR_INTERNAL;
    }
    f->satisfies_calls++;
    *ok = f->bound <= 0 || value(arch) <= f->bound;
    if (f->accept_every > 0)
        *ok = f->satisfies_calls % f->accept_every == 0;
    f->rejected += !*ok;
    return 0;
}

static int fake_evaluate(void *ctx, const et_arch *archs, int32_t n, et_eval_result *results,
                         char **err)
{
    fake *f = ctx;
    (void)err;
    cr_assert_gt(n, 0, "evaluate called with no archs");
    cr_assert_leq(f->evaluated + n, 4096);
    double best = f->calls ? f->running_best[f->calls - 1] : -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        double v = value(&archs[i]);
        uint64_t h = et_arch_hash(&f->space, &archs[i]);
        for (int32_t j = 0; j < i; j++)
            f->duplicates_in_call += et_arch_hash(&f->space, &archs[j]) == h;
        f->violations += f->bound > 0 && v > f->bound;
        f->hashes[f->evaluated++] = h;
        best = v > best ? v : best;
        double metric = f->scoring == SCORE_METRIC_HIGH  ? v
                        : f->scoring == SCORE_METRIC_LOW ? -v
                        : f->scoring == SCORE_UNIQUE ? v + 1e-3 * (double)(h >> 11) * 0x1p-53
                                                     : 0.5;
        double loss = f->scoring == SCORE_LOSS ? -v : 1.0;
        f->metrics[f->evaluated - 1] = metric;
        results[i] = (et_eval_result){metric, loss, 0.0, 0};
    }
    cr_assert_lt(f->calls, 256);
    f->call_size[f->calls] = n;
    f->running_best[f->calls++] = best;
    return 0;
}

static void fake_free(fake *f)
{
    free(f->hashes);
    free(f->metrics);
}

/* The options of a "[search evolution]" section with `body`, as the host
 * binds them; *cfg holds the strings and is freed by the caller. */
static int bind(const char *body, et_config *cfg, et_option_value *v, char **err)
{
    char text[1024];
    snprintf(text, sizeof text, "[search evolution]\n%s", body);
    cr_assert_eq(et_config_parse(text, "e.ini", cfg, err), 0, "%s", *err);
    static const char *const reserved[] = {"plugin", NULL};
    return et_options_bind(etnas_plugin()->options, &cfg->sections[0], reserved, 0, v, err);
}

static void host_for(fake *f, et_host *host, uint64_t seed)
{
    et_host_init(host, seed, 1, &f->space);
    host->ctx = f;
    host->log = fake_log;
    host->progress = fake_progress;
    host->task = &f->info;
    host->train_supernet = fake_train;
    host->evaluate = fake_evaluate;
    host->satisfies = fake_satisfies;
}

/* create + run + destroy on the fake host; returns run's (or create's) code. */
static int search(fake *f, const char *options, uint64_t seed, char **err)
{
    et_config cfg;
    et_option_value v[16];
    cr_assert_eq(bind(options, &cfg, v, err), 0, "%s", *err);
    et_host host;
    host_for(f, &host, seed);
    const et_search_vtable *vt = etnas_plugin()->vtable;
    void *state = NULL;
    int rc = vt->create(&host, v, &state, err);
    if (!rc)
        rc = vt->run(state, err);
    vt->destroy(state);
    et_config_free(&cfg);
    return rc;
}

/* The plugin's best per iteration never falls and is the best scored so
 * far (the kept parents hold it); the last one is the optimum. */
static void finds_optimum(int scoring, const char *fitness, uint64_t seed)
{
    fake f;
    fake_init(&f, small_space, scoring);
    char *err = NULL, opts[256];
    snprintf(opts, sizeof opts,
             "population = 20\nparents = 5\nmutations = 10\ncrossovers = 10\niterations = 15\n"
             "fitness = %s\nsupernet_steps = 77\n",
             fitness);
    cr_assert_eq(search(&f, opts, seed, &err), 0, "%s", err);
    double sign = scoring == SCORE_METRIC_HIGH ? 1.0 : -1.0;
    cr_assert_eq(f.n_logged, 15);
    cr_assert_eq(f.calls, 15);
    for (int64_t i = 0; i < f.n_logged; i++) {
        double best = sign * f.logged[i];
        cr_assert_float_eq(best, f.running_best[i], 1e-9,
                           "iteration %lld: logged best %g, best scored so far %g",
                           (long long)i + 1, best, f.running_best[i]);
        if (i)
            cr_assert_geq(best, sign * f.logged[i - 1], "iteration %lld: best fell",
                          (long long)i + 1);
    }
    cr_assert_float_eq(sign * f.logged[14], SMALL_OPTIMUM, 1e-9,
                       "seed %llu (%s): ended at %g, the optimum is %g", (unsigned long long)seed,
                       fitness, sign * f.logged[14], SMALL_OPTIMUM);
    cr_assert_eq(f.duplicates_in_call, 0);
    cr_assert_eq(f.supernet_steps, 77);
    cr_assert_eq(f.progress_done, 15);
    cr_assert_eq(f.progress_total, 15);
    cr_assert_eq(f.warnings, 0);
    fake_free(&f);
}

Test(evolution, finds_optimum_higher_is_better)
{
    for (uint64_t seed = 1; seed <= 4; seed++)
        finds_optimum(SCORE_METRIC_HIGH, "metric", seed);
}

Test(evolution, finds_optimum_lower_is_better_metric)
{
    for (uint64_t seed = 1; seed <= 4; seed++)
        finds_optimum(SCORE_METRIC_LOW, "metric", seed);
}

Test(evolution, finds_optimum_by_loss)
{
    for (uint64_t seed = 1; seed <= 4; seed++)
        finds_optimum(SCORE_LOSS, "loss", seed);
}

Test(evolution, rejected_archs_never_evaluated)
{
    /* the best value under the bound, over the whole (small) space */
    fake f;
    fake_init(&f, small_space, SCORE_METRIC_HIGH);
    const double bound = 150;
    double best_ok = -INFINITY;
    et_rng rng = et_rng_from_seed(3);
    for (int i = 0; i < 50000; i++) {
        et_arch a;
        et_arch_sample(&f.space, &rng, &a);
        double v = value(&a);
        if (v <= bound && v > best_ok)
            best_ok = v;
    }
    f.bound = bound;
    char *err = NULL;
    cr_assert_eq(search(&f,
                        "population = 20\nparents = 5\nmutations = 10\ncrossovers = 10\n"
                        "iterations = 15\n",
                        5, &err),
                 0, "%s", err);
    cr_assert_gt(f.rejected, 0, "the bound rejected nothing: the test proves nothing");
    cr_assert_eq(f.evaluated, 20 + 14 * 20);
    cr_assert_eq(f.violations, 0, "%lld archs over the bound were evaluated",
                 (long long)f.violations);
    cr_assert_float_eq(f.logged[14], best_ok, 1e-9, "ended at %g, best under the bound %g",
                       f.logged[14], best_ok);
    fake_free(&f);
}

Test(evolution, nothing_satisfies_is_a_warning)
{
    fake f;
    fake_init(&f, small_space, SCORE_METRIC_HIGH);
    f.bound = 1; /* every arch is above it */
    char *err = NULL;
    cr_assert_eq(search(&f, "population = 5\nparents = 2\nmax_draws = 10\n", 1, &err), 0, "%s",
                 err);
    cr_assert_eq(f.evaluated, 0);
    cr_assert_eq(f.rejected, 10, "max_draws failures in a row end the phase");
    cr_assert_eq(f.warnings, 1, "one line for the empty population");
    fake_free(&f);
}

Test(evolution, max_draws_counts_failures_in_a_row)
{
    /* every other candidate is rejected: max_draws = 3 is never reached,
     * although the phase fails 50 times in all */
    fake f;
    fake_init(&f, large_space, SCORE_METRIC_HIGH);
    f.accept_every = 2;
    char *err = NULL;
    cr_assert_eq(search(&f, "population = 50\nparents = 2\niterations = 1\nmax_draws = 3\n", 1,
                        &err),
                 0, "%s", err);
    cr_assert_eq(f.rejected, 50);
    cr_assert_eq(f.evaluated, 50);
    cr_assert_eq(f.warnings, 0);
    fake_free(&f);
}

Test(evolution, small_space_goes_on_with_fewer)
{
    /* 2 archs in all: the first population and every brood fall short */
    fake f;
    fake_init(&f, "encoder_embed_dim = 16, 32\nencoder_layers = 1\nencoder_ffn_dim = 16\n"
                  "encoder_heads = 1\nencoder_attention = softmax\nhead_dim = 4\n",
              SCORE_METRIC_HIGH);
    char *err = NULL;
    cr_assert_eq(search(&f,
                        "population = 4\nparents = 2\nmutations = 2\ncrossovers = 2\n"
                        "iterations = 3\nmax_draws = 20\n",
                        1, &err),
                 0, "%s", err);
    cr_assert_eq(f.evaluated, 2);
    cr_assert_eq(f.n_logged, 3);
    cr_assert_float_eq(f.logged[2], 32 + 16 + 10, 1e-9);
    cr_assert_eq(f.warnings, 3, "one line per short generation");
    fake_free(&f);
}

Test(evolution, satisfies_error_stops_the_run)
{
    fake f;
    fake_init(&f, small_space, SCORE_METRIC_HIGH);
    f.satisfies_fail = 1;
    char *err = NULL;
    cr_assert_eq(search(&f, "population = 5\nparents = 2\n", 1, &err), ET_STATUS_ERR_INTERNAL);
    cr_assert_str_eq(err, "the proxy broke");
    cr_assert_eq(f.evaluated, 0);
    free(err);
    fake_free(&f);
}

typedef struct member {
    double metric;
    uint64_t hash;
} member;

static int cmp_member_best_first(const void *pa, const void *pb)
{
    const member *a = pa, *b = pb;
    return a->metric > b->metric ? -1 : a->metric < b->metric;
}

/* With no ties the populations can be rebuilt from the evaluations alone:
 * the best `parents` of one, then the next call's children. No child may
 * repeat a kept parent or another child. */
Test(evolution, children_never_repeat_the_population)
{
    fake f;
    fake_init(&f, small_space, SCORE_UNIQUE);
    char *err = NULL;
    cr_assert_eq(search(&f,
                        "population = 10\nparents = 4\nmutations = 4\ncrossovers = 4\n"
                        "iterations = 20\n",
                        3, &err),
                 0, "%s", err);
    cr_assert_eq(f.calls, 20);
    member pop[12];
    int64_t n = 0, at = 0;
    for (int64_t call = 0; call < f.calls; call++) {
        int64_t kept = 0;
        if (call) {
            qsort(pop, (size_t)n, sizeof pop[0], cmp_member_best_first);
            kept = n < 4 ? n : 4;
        }
        cr_assert_eq(kept + f.call_size[call], call ? 12 : 10);
        for (int64_t i = 0; i < f.call_size[call]; i++, at++) {
            for (int64_t j = 0; j < kept + i; j++)
                cr_assert_neq(pop[j].hash, f.hashes[at],
                              "iteration %lld: child %lld repeats member %lld",
                              (long long)call + 1, (long long)i, (long long)j);
            pop[kept + i] = (member){f.metrics[at], f.hashes[at]};
        }
        n = kept + f.call_size[call];
    }
    fake_free(&f);
}

static void hashes_of(uint64_t seed, fake *f)
{
    fake_init(f, small_space, SCORE_METRIC_HIGH);
    char *err = NULL;
    cr_assert_eq(search(f,
                        "population = 12\nparents = 4\nmutations = 5\ncrossovers = 3\n"
                        "iterations = 6\n",
                        seed, &err),
                 0, "%s", err);
    cr_assert_eq(f->evaluated, 12 + 5 * 8);
}

Test(evolution, reproducible_by_seed)
{
    fake a, b, c;
    hashes_of(11, &a);
    hashes_of(11, &b);
    hashes_of(12, &c);
    cr_assert_eq(memcmp(a.hashes, b.hashes, sizeof *a.hashes * (size_t)a.evaluated), 0,
                 "equal seeds evaluated different archs");
    cr_assert_neq(memcmp(a.hashes, c.hashes, sizeof *a.hashes * (size_t)a.evaluated), 0,
                  "different seeds evaluated the same archs in the same order");
    fake_free(&a);
    fake_free(&b);
    fake_free(&c);
}

/* Evaluations = population + (iterations - 1) x (mutations + crossovers):
 * the first iteration scores the sampled population, each later one its new
 * children only, and parents carry their fitness. */
static void counts(const char *space, const char *options, int64_t calls, int64_t first,
                   int64_t later)
{
    fake f;
    fake_init(&f, space, SCORE_METRIC_HIGH);
    char *err = NULL;
    cr_assert_eq(search(&f, options, 2, &err), 0, "%s", err);
    cr_assert_eq(f.calls, calls, "%s", options);
    cr_assert_eq(f.evaluated, first + (calls - 1) * later, "%s: %lld evaluations", options,
                 (long long)f.evaluated);
    cr_assert_eq(f.n_logged, calls, "%s", options);
    cr_assert_eq(f.warnings, 0, "%s", options);
    fake_free(&f);
}

Test(evolution, evaluation_counts)
{
    /* 12 + 5 x (5 + 3) = 52 */
    counts(small_space, "population = 12\nparents = 4\nmutations = 5\ncrossovers = 3\n"
                        "iterations = 6\n", 6, 12, 8);
    /* all kept, crossovers only: 7 + 2 x 2 = 11 */
    counts(small_space, "population = 7\nparents = 7\nmutations = 0\ncrossovers = 2\n"
                        "iterations = 3\n", 3, 7, 2);
    /* one parent, mutations only: 5 + 3 x 3 = 14 */
    counts(small_space, "population = 5\nparents = 1\nmutations = 3\ncrossovers = 0\n"
                        "iterations = 4\n", 4, 5, 3);
    /* one iteration is a uniform sample */
    counts(small_space, "population = 30\niterations = 1\nmutations = 0\ncrossovers = 0\n", 1,
           30, 0);
}

Test(evolution, hat_defaults_count)
{
    /* HAT: 125 sampled, then 29 x (50 mutations + 50 crossovers) = 3025 */
    fake f;
    fake_init(&f, large_space, SCORE_METRIC_HIGH);
    char *err = NULL;
    cr_assert_eq(search(&f, "", 9, &err), 0, "%s", err);
    cr_assert_eq(f.calls, 30);
    cr_assert_eq(f.evaluated, 3025);
    cr_assert_eq(f.duplicates_in_call, 0);
    cr_assert_eq(f.supernet_steps, 0, "supernet_steps defaults to the [train] steps (0)");
    fake_free(&f);
}

Test(evolution, declared_defaults_are_hats)
{
    const et_plugin_descriptor *d = etnas_plugin();
    cr_assert_eq(d->abi_version, ET_ABI_VERSION);
    cr_assert_eq(d->kind, ET_PLUGIN_KIND_SEARCH);
    cr_assert_str_eq(d->name, "evolution");
    et_config cfg;
    et_option_value v[16];
    char *err = NULL;
    cr_assert_eq(bind("", &cfg, v, &err), 0, "%s", err);
    cr_assert_eq(v[0].i, 125);
    cr_assert_eq(v[1].i, 25);
    cr_assert_eq(v[2].i, 50);
    cr_assert_float_eq(v[3].f, 0.3, 1e-12);
    cr_assert_eq(v[4].i, 50);
    cr_assert_float_eq(v[5].f, 0.5, 1e-12);
    cr_assert_eq(v[6].i, 30);
    cr_assert_str_eq(v[7].s, "metric");
    cr_assert_eq(v[8].i, 0);
    cr_assert_eq(v[9].i, 1000);
    et_config_free(&cfg);
}

static void bind_fails(const char *body, const char *msg)
{
    et_config cfg;
    et_option_value v[16];
    char *err = NULL;
    cr_assert_neq(bind(body, &cfg, v, &err), 0, "'%s' was accepted", body);
    cr_assert_str_eq(err, msg);
    free(err);
    et_config_free(&cfg);
}

/* create's answer to options that bind but do not make a search. */
static int create_with(const char *body, fake *f, int no_task, uint32_t host_size, char **err)
{
    et_config cfg;
    et_option_value v[16];
    cr_assert_eq(bind(body, &cfg, v, err), 0, "%s", *err);
    et_host host;
    host_for(f, &host, 1);
    if (no_task)
        host.task = NULL;
    if (host_size)
        host.size = host_size;
    const et_search_vtable *vt = etnas_plugin()->vtable;
    void *state = NULL;
    int rc = vt->create(&host, v, &state, err);
    cr_assert(rc == 0 || state == NULL);
    vt->destroy(state);
    et_config_free(&cfg);
    return rc;
}

static void create_fails(const char *body, int no_task, uint32_t host_size, int code,
                         const char *msg)
{
    fake f;
    fake_init(&f, small_space, SCORE_METRIC_HIGH);
    char *err = NULL;
    cr_assert_eq(create_with(body, &f, no_task, host_size, &err), code, "'%s'", body);
    cr_assert_not_null(err);
    cr_assert_str_eq(err, msg);
    free(err);
    fake_free(&f);
}

static void create_works(const char *body, int no_task)
{
    fake f;
    fake_init(&f, small_space, SCORE_METRIC_HIGH);
    char *err = NULL;
    cr_assert_eq(create_with(body, &f, no_task, 0, &err), 0, "'%s': %s", body, err);
    fake_free(&f);
}

Test(evolution, option_errors)
{
    bind_fails("mutation_prob = 1.5\n",
               "e.ini:2: [search evolution] mutation_prob = '1.5': expected a number in [0, 1]");
    bind_fails("crossover_prob = -0.1\n",
               "e.ini:2: [search evolution] crossover_prob = '-0.1': expected a number in [0, 1]");
    bind_fails("population = 0\n",
               "e.ini:2: [search evolution] population = '0': expected an integer in [1, 100000]");
    bind_fails("iterations = 0\n",
               "e.ini:2: [search evolution] iterations = '0': expected an integer in [1, 1000000]");
    bind_fails("fitness = accuracy\n",
               "e.ini:2: [search evolution] fitness = 'accuracy': expected one of metric|loss");
    bind_fails("parent = 3\n",
               "e.ini:2: [search evolution] unknown key 'parent' (did you mean 'parents'?)");

    create_fails("population = 10\nparents = 11\n", 0, 0, ET_STATUS_ERR_USAGE,
                 "evolution: parents = 11 exceeds population = 10: the parents are chosen from "
                 "the population, so lower parents or raise population");
    create_fails("parents = 1\n", 0, 0, ET_STATUS_ERR_USAGE,
                 "evolution: crossovers need two distinct parents: set parents >= 2 or "
                 "crossovers = 0");
    create_fails("mutations = 0\ncrossovers = 0\n", 0, 0, ET_STATUS_ERR_USAGE,
                 "evolution: mutations = crossovers = 0 breeds nothing after the first "
                 "iteration: raise one of them or set iterations = 1");
    create_fails("", 1, 0, ET_STATUS_ERR_USAGE,
                 "evolution: fitness = metric needs the task's metric direction, and this host "
                 "has no task: use fitness = loss");
    create_fails("", 0, (uint32_t)offsetof(et_host, satisfies), ET_STATUS_ERR_UNSUPPORTED,
                 "evolution: this etnas gives no evaluation services to search plugins");

    /* the edges of those rules are fine */
    create_works("population = 10\nparents = 10\n", 0);
    create_works("parents = 1\ncrossovers = 0\n", 0);
    create_works("mutations = 0\ncrossovers = 0\niterations = 1\n", 0);
    create_works("fitness = loss\n", 1);
}
