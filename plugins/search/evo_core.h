/* HAT's evolutionary search loop (spec/search.md), shared by the search
 * plugins that use it (evolution: fitness from the supernet; ranknas:
 * fitness from a ranker). Compiled into each of them; nothing here is
 * exported.
 *
 * Iteration 1 scores a population sampled uniformly under the constraints.
 * Each later iteration keeps the best `parents` of the previous population
 * (they carry their fitness and are not scored again), breeds `crossovers`
 * children (two distinct parents, each gene from the first with
 * `crossover_prob`) and `mutations` children (a random parent, each gene
 * redrawn with `mutation_prob`), and scores the children in one call of
 * ops->score. So a run asks for
 *     population + (iterations - 1) x (mutations + crossovers)
 * scores; HAT breeds once more after its last scoring and throws the brood
 * away, which is skipped here.
 *
 * A candidate is redrawn when its hash is already in the population being
 * built or ops->accept refuses it (the constraints), so nothing refused is
 * ever scored. Once parents converge, their crossovers can only rebuild the
 * population; the crossover children not found are then bred as mutations
 * instead, which keeps the budget above. A phase (the first sample, a
 * generation's crossovers, its mutations) gives up after `max_draws` draws
 * in a row that bring no new member; when the space or the constraints
 * leave too few archs, the generation goes on with fewer and logs a
 * warning, so the run still reports what it found.
 *
 * Every decision comes from cfg->rng and depends only on it and on the
 * scores, so equal streams and scores replay the same search. */
#ifndef ETNAS_PLUGINS_EVO_CORE_H
#define ETNAS_PLUGINS_EVO_CORE_H

#include <stdint.h>

#include <etnas/etnas.h>

typedef struct evo_config {
    const char *name;         /* log prefix, e.g. "evolution" */
    const char *fitness_name; /* what the per-iteration log line calls the fitness */
    const char *phase;        /* progress phase */
    const char *scored;       /* what the log line calls the scores: "evaluations" */
    int64_t population, parents, mutations, crossovers, iterations, max_draws;
    double mutation_prob, crossover_prob;
    double sign; /* +1 when a higher fitness is better, -1 when lower is */
    et_rng rng;  /* the search's stream */
} evo_config;

typedef struct evo_ops {
    void *arg;
    /* Fitness of archs[0, n) into values[0, n); a non-finite value ranks last. */
    int (*score)(void *arg, const et_arch *archs, int64_t n, double *values, char **err);
    /* *ok = 1 when arch may join a population (it meets the constraints). */
    int (*accept)(void *arg, const et_arch *arch, int32_t *ok, char **err);
    /* NULL, or adjusts every drawn candidate before it is checked (genes the
     * caller keeps fixed). */
    void (*fix)(void *arg, et_arch *arch);
} evo_ops;

/* Runs the search. On success top[0, *n_top) holds the best min(k, size)
 * members of the last population, best first (ties: older members first),
 * and top_values their fitness; *n_top is 0 when nothing could be sampled. */
int evo_run(const et_host *h, const evo_config *cfg, const evo_ops *ops, int64_t k,
            et_arch *top, double *top_values, int64_t *n_top, char **err);

#endif
