/* evolution: HAT's evolutionary search (spec/search.md) on the shared
 * supernet, every number an option with HAT's default. The loop itself
 * (population, parents, mutation and crossover children redrawn when they
 * repeat a member or break a constraint) is evo_core.h's; here the fitness
 * of a candidate is its supernet score with inherited weights, through
 * host->evaluate and the store. So a run asks for
 *     population + (iterations - 1) x (mutations + crossovers)
 * evaluations. A child may repeat an arch of an earlier population that was
 * not kept; the host then returns the stored score at no cost.
 *
 * Every decision comes from one stream seeded by host->seed and depends only
 * on it and on the scores, so a resumed run replays the same search and gets
 * its scores back from the store. */
#include <stdlib.h>

#include <etnas/etnas.h>

#include "evo_core.h"

enum { FITNESS_METRIC = 0, FITNESS_LOSS = 1 };

typedef struct evolution {
    const et_host *host;
    int64_t population, parents, mutations, crossovers, iterations;
    double mutation_prob, crossover_prob;
    int32_t fitness;
    int64_t supernet_steps, max_draws;
} evolution;

static const et_option_decl evolution_options[] = {
    {"population", ET_OPTION_TYPE_INT, "125", 1, 100000, NULL,
     "architectures sampled for the first iteration"},
    {"parents", ET_OPTION_TYPE_INT, "25", 1, 100000, NULL,
     "best architectures kept from one iteration to the next"},
    {"mutations", ET_OPTION_TYPE_INT, "50", 0, 100000, NULL,
     "mutated children per iteration (more when crossovers run out)"},
    {"mutation_prob", ET_OPTION_TYPE_FLOAT, "0.3", 0, 1, NULL,
     "probability that a mutation redraws each gene"},
    {"crossovers", ET_OPTION_TYPE_INT, "50", 0, 100000, NULL, "crossover children per iteration"},
    {"crossover_prob", ET_OPTION_TYPE_FLOAT, "0.5", 0, 1, NULL,
     "probability that a crossover takes each gene from its first parent"},
    {"iterations", ET_OPTION_TYPE_INT, "30", 1, 1000000, NULL,
     "populations scored, the sampled one included"},
    {"fitness", ET_OPTION_TYPE_CHOICE, "metric", 0, -1, "metric|loss",
     "what ranks architectures: the task's metric in its direction, or the loss (lower is better)"},
    {"supernet_steps", ET_OPTION_TYPE_INT, "0", 0, 1e12, NULL,
     "supernet updates before searching (0 = [train] steps)"},
    {"max_draws", ET_OPTION_TYPE_INT, "1000", 1, 1e9, NULL,
     "draws in a row without a new architecture before a phase goes on with fewer"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int evolution_create(const et_host *host, const et_option_value *opts, void **state,
                            char **err)
{
    *state = NULL;
    if (!ET_HOST_HAS(host, satisfies) || !host->space) {
        *err = host->errorf("evolution: this etnas gives no evaluation services to search plugins");
        return ET_STATUS_ERR_UNSUPPORTED;
    }
    evolution e = {
        .host = host,
        .population = opts[0].i,
        .parents = opts[1].i,
        .mutations = opts[2].i,
        .mutation_prob = opts[3].f,
        .crossovers = opts[4].i,
        .crossover_prob = opts[5].f,
        .iterations = opts[6].i,
        .fitness = (int32_t)opts[7].i,
        .supernet_steps = opts[8].i,
        .max_draws = opts[9].i,
    };
    if (e.parents > e.population) {
        *err = host->errorf("evolution: parents = %lld exceeds population = %lld: the parents are "
                            "chosen from the population, so lower parents or raise population",
                            (long long)e.parents, (long long)e.population);
        return ET_STATUS_ERR_USAGE;
    }
    if (e.crossovers > 0 && e.parents < 2) {
        *err = host->errorf("evolution: crossovers need two distinct parents: set parents >= 2 "
                            "or crossovers = 0");
        return ET_STATUS_ERR_USAGE;
    }
    if (e.iterations > 1 && e.mutations + e.crossovers == 0) {
        *err = host->errorf("evolution: mutations = crossovers = 0 breeds nothing after the first "
                            "iteration: raise one of them or set iterations = 1");
        return ET_STATUS_ERR_USAGE;
    }
    if (e.fitness == FITNESS_METRIC && !host->task) {
        *err = host->errorf("evolution: fitness = metric needs the task's metric direction, and "
                            "this host has no task: use fitness = loss");
        return ET_STATUS_ERR_USAGE;
    }
    evolution *s = malloc(sizeof *s);
    if (!s) {
        *err = host->errorf("evolution: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    *s = e;
    *state = s;
    return 0;
}

static void evolution_destroy(void *state)
{
    free(state);
}

/* ---------------------------------------------------------------- search */

typedef struct scorer {
    evolution *e;
    et_eval_result *res;
} scorer;

/* The fitness of archs: their supernet scores, through the store. */
static int score_supernet(void *arg, const et_arch *archs, int64_t n, double *values, char **err)
{
    scorer *s = arg;
    const et_host *h = s->e->host;
    int rc = h->evaluate(h->ctx, archs, (int32_t)n, s->res, err);
    if (rc)
        return rc;
    for (int64_t i = 0; i < n; i++)
        values[i] = s->e->fitness == FITNESS_LOSS ? s->res[i].loss : s->res[i].metric;
    return 0;
}

static int accept_constraints(void *arg, const et_arch *arch, int32_t *ok, char **err)
{
    const et_host *h = ((scorer *)arg)->e->host;
    return h->satisfies(h->ctx, arch, ok, err);
}

static int evolution_run(void *state, char **err)
{
    evolution *e = state;
    const et_host *h = e->host;
    int rc = h->train_supernet(h->ctx, e->supernet_steps, err);
    if (rc)
        return rc;

    /* the option ranges keep this well inside one evaluate call's int32_t */
    int64_t size = e->parents + e->mutations + e->crossovers;
    if (size < e->population)
        size = e->population;
    const char *fitness_name = e->fitness == FITNESS_LOSS ? "loss"
                               : h->task->metric          ? h->task->metric
                                                          : "metric";
    evo_config cfg = {
        .name = "evolution",
        .fitness_name = fitness_name,
        .phase = "evolution search",
        .scored = "evaluations",
        .population = e->population,
        .parents = e->parents,
        .mutations = e->mutations,
        .crossovers = e->crossovers,
        .iterations = e->iterations,
        .max_draws = e->max_draws,
        .mutation_prob = e->mutation_prob,
        .crossover_prob = e->crossover_prob,
        .sign = e->fitness == FITNESS_LOSS || !h->task->higher_is_better ? -1.0 : 1.0,
        .rng = et_rng_from_seed(h->seed),
    };
    scorer sc = {e, malloc(sizeof *sc.res * (size_t)size)};
    if (!sc.res) {
        *err = h->errorf("evolution: out of memory for a population of %lld", (long long)size);
        return ET_STATUS_ERR_NOMEM;
    }
    evo_ops ops = {.arg = &sc, .score = score_supernet, .accept = accept_constraints};
    et_arch best;
    double best_value;
    int64_t n_best;
    rc = evo_run(h, &cfg, &ops, 1, &best, &best_value, &n_best, err);
    /* the runner ranks its winners by the metric; with fitness = loss this
     * one may differ, so say which arch the search itself ended on */
    char text[16384];
    if (!rc && n_best > 0 && h->arch_format(h->space, &best, text, sizeof text) >= 0)
        h->log(h->ctx, ET_LOG_LEVEL_INFO, "evolution: best by %s: %s", fitness_name, text);
    free(sc.res);
    return rc;
}

static const et_search_vtable evolution_vtable = {evolution_create, evolution_destroy,
                                                  evolution_run};

static const et_plugin_descriptor evolution_descriptor = {
    ET_ABI_VERSION,
    ET_PLUGIN_KIND_SEARCH,
    "evolution",
    "HAT's evolutionary search: top parents kept, mutation and crossover children under the "
    "constraints, scored with inherited supernet weights",
    evolution_options,
    &evolution_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &evolution_descriptor;
}
