/* evolution: HAT's evolutionary search (spec/search.md) on the shared
 * supernet, every number an option with HAT's default.
 *
 * Iteration 1 scores a population sampled uniformly under the constraints.
 * Each later iteration keeps the best `parents` of the previous population
 * (they carry their fitness and are not scored again), breeds `crossovers`
 * children (two distinct parents, each gene from the first with
 * `crossover_prob`) and `mutations` children (a random parent, each gene
 * redrawn with `mutation_prob`), and scores the children in one
 * host->evaluate call. So a run asks for
 *     population + (iterations - 1) x (mutations + crossovers)
 * evaluations; HAT breeds once more after its last scoring and throws the
 * brood away, which is skipped here.
 *
 * A candidate is redrawn when its hash is already in the population being
 * built or it breaks a constraint, so nothing the constraints reject is ever
 * scored. A child may repeat an arch of an earlier population that was not
 * kept; the host then returns the stored score at no cost. Once parents
 * converge, their crossovers can only rebuild the population; the crossover
 * children not found are then bred as mutations instead, which keeps the
 * budget above. A phase (the first sample, a generation's crossovers, its
 * mutations) gives up after `max_draws` draws in a row that bring no new
 * member; when the space or the constraints leave too few archs, the
 * generation goes on with fewer and logs a warning, as `random` does, so the
 * run still reports what it found.
 *
 * Every decision comes from one stream seeded by host->seed and depends only
 * on it and on the scores, so a resumed run replays the same search and gets
 * its scores back from the store. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

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

/* ---------------------------------------------------------------- hash set */

/* The hashes of the population being built, for duplicate checks in O(1):
 * open addressing over a power-of-two table, with a separate "used" mark so
 * that every 64-bit value, 0 included, is a valid hash. */
typedef struct hash_set {
    uint64_t *keys;
    unsigned char *used;
    size_t mask;
} hash_set;

static int hash_set_init(hash_set *s, int64_t members)
{
    size_t cap = 16;
    while (cap < 2 * (size_t)members)
        cap *= 2;
    s->keys = malloc(cap * sizeof *s->keys);
    s->used = calloc(cap, 1);
    s->mask = cap - 1;
    return s->keys && s->used ? 0 : ET_STATUS_ERR_NOMEM;
}

static void hash_set_free(hash_set *s)
{
    free(s->keys);
    free(s->used);
}

static void hash_set_clear(hash_set *s)
{
    memset(s->used, 0, s->mask + 1);
}

/* Inserts h; returns 0 when it was already there. */
static int hash_set_add(hash_set *s, uint64_t h)
{
    size_t i = (size_t)et_rng_mix64(h) & s->mask;
    while (s->used[i]) {
        if (s->keys[i] == h)
            return 0;
        i = (i + 1) & s->mask;
    }
    s->used[i] = 1;
    s->keys[i] = h;
    return 1;
}

static int hash_set_has(const hash_set *s, uint64_t h)
{
    size_t i = (size_t)et_rng_mix64(h) & s->mask;
    while (s->used[i]) {
        if (s->keys[i] == h)
            return 1;
        i = (i + 1) & s->mask;
    }
    return 0;
}

/* ---------------------------------------------------------------- search */

/* A member's fitness as scored, and as ranked: higher is better whatever
 * the fitness, and a non-finite score ranks last. */
typedef struct ranked {
    double value, score;
    int64_t index;
} ranked;

/* Best first, ties by position (older members first) so that the order, and
 * with it the whole search, does not depend on how qsort breaks ties. */
static int cmp_ranked(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

typedef struct run_ctx {
    evolution *e;
    const et_host *h;
    et_rng rng;
    hash_set seen;
    et_arch *pop, *next; /* the scored population and the one being built */
    ranked *rank;        /* fitness by position; parents carry theirs into `next` */
    et_eval_result *res;
    int64_t evaluated;
    double sign; /* +1 when the fitness is higher-is-better, else -1 */
} run_ctx;

enum { BREED_SAMPLE, BREED_MUTATE, BREED_CROSS };

/* Appends up to `want` new members to next[*m, ...), drawn by `how` from the
 * parents next[0, parents); counts its draws into *draws. Converged parents
 * or a full space would make every further draw fail too, hence the stop
 * after max_draws failures in a row rather than a budget per member. */
static int breed(run_ctx *c, int how, int64_t parents, int64_t want, int64_t *m,
                 int64_t *draws, char **err)
{
    const et_host *h = c->h;
    int64_t tried = 0, misses = 0, got = 0;
    while (got < want && misses < c->e->max_draws) {
        et_arch *child = &c->next[*m];
        tried++;
        if (how == BREED_SAMPLE) {
            h->arch_sample(h->space, &c->rng, child);
        } else if (how == BREED_MUTATE) {
            uint64_t p = et_rng_below(&c->rng, (uint64_t)parents);
            h->arch_mutate(h->space, &c->rng, &c->next[p], c->e->mutation_prob, child);
        } else {
            uint64_t a = et_rng_below(&c->rng, (uint64_t)parents);
            uint64_t b = et_rng_below(&c->rng, (uint64_t)parents - 1);
            b += b >= a;
            h->arch_crossover(h->space, &c->rng, &c->next[a], &c->next[b],
                              c->e->crossover_prob, child);
        }
        misses++;
        uint64_t hash = h->arch_hash(h->space, child);
        if (hash_set_has(&c->seen, hash))
            continue;
        int32_t ok;
        int rc = h->satisfies(h->ctx, child, &ok, err);
        if (rc)
            return rc;
        if (!ok)
            continue;
        hash_set_add(&c->seen, hash);
        (*m)++;
        got++;
        misses = 0;
    }
    *draws += tried;
    return 0;
}

/* Scores next[from, to) in one call and ranks them in rank[from, to). */
static int score(run_ctx *c, int64_t from, int64_t to, char **err)
{
    if (to == from)
        return 0;
    int rc = c->h->evaluate(c->h->ctx, c->next + from, (int32_t)(to - from), c->res, err);
    if (rc)
        return rc;
    for (int64_t i = from; i < to; i++) {
        const et_eval_result *r = &c->res[i - from];
        double f = c->e->fitness == FITNESS_LOSS ? r->loss : r->metric;
        double s = c->sign * f;
        c->rank[i] = (ranked){f, isfinite(s) ? s : -INFINITY, i};
    }
    c->evaluated += to - from;
    return 0;
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
    run_ctx c = {.e = e, .h = h, .rng = et_rng_from_seed(h->seed)};
    int64_t n = 0, best = 0; /* members of pop, and the best of them */
    c.sign = e->fitness == FITNESS_LOSS || !h->task->higher_is_better ? -1.0 : 1.0;
    const char *fitness_name = e->fitness == FITNESS_LOSS ? "loss"
                               : h->task->metric          ? h->task->metric
                                                          : "metric";
    c.pop = malloc(sizeof *c.pop * (size_t)size);
    c.next = malloc(sizeof *c.next * (size_t)size);
    c.rank = malloc(sizeof *c.rank * (size_t)size);
    c.res = malloc(sizeof *c.res * (size_t)size);
    if (!c.pop || !c.next || !c.rank || !c.res || hash_set_init(&c.seen, size)) {
        *err = h->errorf("evolution: out of memory for a population of %lld", (long long)size);
        rc = ET_STATUS_ERR_NOMEM;
        goto done;
    }

    for (int64_t it = 1; it <= e->iterations; it++) {
        /* next = the kept parents, best first, then the new members */
        int64_t kept = 0, m = 0, draws = 0;
        hash_set_clear(&c.seen);
        if (it == 1) {
            if ((rc = breed(&c, BREED_SAMPLE, 0, e->population, &m, &draws, err)))
                goto done;
            if (m < e->population)
                h->log(h->ctx, ET_LOG_LEVEL_WARN,
                       "evolution: %lld of %lld sampled architectures found in %lld draws "
                       "(constraints too tight, or a small space)",
                       (long long)m, (long long)e->population, (long long)draws);
            if (m == 0)
                goto done;
        } else {
            qsort(c.rank, (size_t)n, sizeof *c.rank, cmp_ranked);
            kept = n < e->parents ? n : e->parents;
            for (int64_t i = 0; i < kept; i++) {
                c.next[i] = c.pop[c.rank[i].index];
                c.rank[i].index = i;
                hash_set_add(&c.seen, h->arch_hash(h->space, &c.next[i]));
            }
            m = kept;
            if (kept >= 2 &&
                (rc = breed(&c, BREED_CROSS, kept, e->crossovers, &m, &draws, err)))
                goto done;
            int64_t crossed = m - kept, want = e->mutations + e->crossovers - crossed;
            if (crossed < e->crossovers)
                h->log(h->ctx, ET_LOG_LEVEL_DEBUG,
                       "evolution: iteration %lld: %lld of %lld crossovers bred as mutations",
                       (long long)it, (long long)(e->crossovers - crossed),
                       (long long)e->crossovers);
            if ((rc = breed(&c, BREED_MUTATE, kept, want, &m, &draws, err)))
                goto done;
            if (m - kept < e->mutations + e->crossovers)
                h->log(h->ctx, ET_LOG_LEVEL_WARN,
                       "evolution: iteration %lld: %lld of %lld children found in %lld draws "
                       "(constraints too tight, or a small space)",
                       (long long)it, (long long)(m - kept),
                       (long long)(e->mutations + e->crossovers), (long long)draws);
        }
        if ((rc = score(&c, kept, m, err)))
            goto done;
        et_arch *t = c.pop;
        c.pop = c.next;
        c.next = t;
        n = m;
        best = 0;
        for (int64_t i = 1; i < n; i++)
            if (cmp_ranked(&c.rank[i], &c.rank[best]) < 0)
                best = i;
        h->log(h->ctx, ET_LOG_LEVEL_INFO,
               "evolution: iteration %lld/%lld: best %s %.6g, %lld evaluations", (long long)it,
               (long long)e->iterations, fitness_name, c.rank[best].value,
               (long long)c.evaluated);
        h->progress(h->ctx, "evolution search", it, e->iterations);
    }
    /* the runner ranks its winners by the metric; with fitness = loss this
     * one may differ, so say which arch the search itself ended on */
    char text[16384];
    if (n > 0 && h->arch_format(h->space, &c.pop[best], text, sizeof text) >= 0)
        h->log(h->ctx, ET_LOG_LEVEL_INFO, "evolution: best by %s: %s", fitness_name, text);
done:
    hash_set_free(&c.seen);
    free(c.pop);
    free(c.next);
    free(c.rank);
    free(c.res);
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
