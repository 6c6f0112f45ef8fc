/* HAT's evolutionary search loop (evo_core.h). */
#include "evo_core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    const evo_config *cfg;
    const evo_ops *ops;
    const et_host *h;
    et_rng rng;
    hash_set seen;
    et_arch *pop, *next; /* the scored population and the one being built */
    ranked *rank;        /* fitness by position; parents carry theirs into `next` */
    double *values;
    int64_t evaluated;
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
    while (got < want && misses < c->cfg->max_draws) {
        et_arch *child = &c->next[*m];
        tried++;
        if (how == BREED_SAMPLE) {
            h->arch_sample(h->space, &c->rng, child);
        } else if (how == BREED_MUTATE) {
            uint64_t p = et_rng_below(&c->rng, (uint64_t)parents);
            h->arch_mutate(h->space, &c->rng, &c->next[p], c->cfg->mutation_prob, child);
        } else {
            uint64_t a = et_rng_below(&c->rng, (uint64_t)parents);
            uint64_t b = et_rng_below(&c->rng, (uint64_t)parents - 1);
            b += b >= a;
            h->arch_crossover(h->space, &c->rng, &c->next[a], &c->next[b],
                              c->cfg->crossover_prob, child);
        }
        if (c->ops->fix)
            c->ops->fix(c->ops->arg, child);
        misses++;
        uint64_t hash = h->arch_hash(h->space, child);
        if (hash_set_has(&c->seen, hash))
            continue;
        int32_t ok;
        int rc = c->ops->accept(c->ops->arg, child, &ok, err);
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
    int rc = c->ops->score(c->ops->arg, c->next + from, to - from, c->values, err);
    if (rc)
        return rc;
    for (int64_t i = from; i < to; i++) {
        double f = c->values[i - from];
        double s = c->cfg->sign * f;
        c->rank[i] = (ranked){f, isfinite(s) ? s : -INFINITY, i};
    }
    c->evaluated += to - from;
    return 0;
}

int evo_run(const et_host *h, const evo_config *cfg, const evo_ops *ops, int64_t k,
            et_arch *top, double *top_values, int64_t *n_top, char **err)
{
    int rc = 0;
    *n_top = 0;
    int64_t size = cfg->parents + cfg->mutations + cfg->crossovers;
    if (size < cfg->population)
        size = cfg->population;
    run_ctx c = {.cfg = cfg, .ops = ops, .h = h, .rng = cfg->rng};
    int64_t n = 0, best = 0; /* members of pop, and the best of them */
    c.pop = malloc(sizeof *c.pop * (size_t)size);
    c.next = malloc(sizeof *c.next * (size_t)size);
    c.rank = malloc(sizeof *c.rank * (size_t)size);
    c.values = malloc(sizeof *c.values * (size_t)size);
    if (!c.pop || !c.next || !c.rank || !c.values || hash_set_init(&c.seen, size)) {
        *err = h->errorf("%s: out of memory for a population of %lld", cfg->name,
                         (long long)size);
        rc = ET_STATUS_ERR_NOMEM;
        goto done;
    }

    for (int64_t it = 1; it <= cfg->iterations; it++) {
        /* next = the kept parents, best first, then the new members */
        int64_t kept = 0, m = 0, draws = 0;
        hash_set_clear(&c.seen);
        if (it == 1) {
            if ((rc = breed(&c, BREED_SAMPLE, 0, cfg->population, &m, &draws, err)))
                goto done;
            if (m < cfg->population)
                h->log(h->ctx, ET_LOG_LEVEL_WARN,
                       "%s: %lld of %lld sampled architectures found in %lld draws "
                       "(constraints too tight, or a small space)",
                       cfg->name, (long long)m, (long long)cfg->population, (long long)draws);
            if (m == 0)
                goto done;
        } else {
            qsort(c.rank, (size_t)n, sizeof *c.rank, cmp_ranked);
            kept = n < cfg->parents ? n : cfg->parents;
            for (int64_t i = 0; i < kept; i++) {
                c.next[i] = c.pop[c.rank[i].index];
                c.rank[i].index = i;
                hash_set_add(&c.seen, h->arch_hash(h->space, &c.next[i]));
            }
            m = kept;
            if (kept >= 2 &&
                (rc = breed(&c, BREED_CROSS, kept, cfg->crossovers, &m, &draws, err)))
                goto done;
            int64_t crossed = m - kept, want = cfg->mutations + cfg->crossovers - crossed;
            if (crossed < cfg->crossovers)
                h->log(h->ctx, ET_LOG_LEVEL_DEBUG,
                       "%s: iteration %lld: %lld of %lld crossovers bred as mutations",
                       cfg->name, (long long)it, (long long)(cfg->crossovers - crossed),
                       (long long)cfg->crossovers);
            if ((rc = breed(&c, BREED_MUTATE, kept, want, &m, &draws, err)))
                goto done;
            if (m - kept < cfg->mutations + cfg->crossovers)
                h->log(h->ctx, ET_LOG_LEVEL_WARN,
                       "%s: iteration %lld: %lld of %lld children found in %lld draws "
                       "(constraints too tight, or a small space)",
                       cfg->name, (long long)it, (long long)(m - kept),
                       (long long)(cfg->mutations + cfg->crossovers), (long long)draws);
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
        h->log(h->ctx, ET_LOG_LEVEL_INFO, "%s: iteration %lld/%lld: best %s %.6g, %lld %s",
               cfg->name, (long long)it, (long long)cfg->iterations, cfg->fitness_name,
               c.rank[best].value, (long long)c.evaluated, cfg->scored);
        h->progress(h->ctx, cfg->phase, it, cfg->iterations);
    }
    /* the last population, best first; rank[i].index == i after scoring */
    qsort(c.rank, (size_t)n, sizeof *c.rank, cmp_ranked);
    for (int64_t i = 0; i < n && i < k; i++) {
        top[i] = c.pop[c.rank[i].index];
        top_values[i] = c.rank[i].value;
        (*n_top)++;
    }
done:
    hash_set_free(&c.seen);
    free(c.pop);
    free(c.next);
    free(c.rank);
    free(c.values);
    return rc;
}
