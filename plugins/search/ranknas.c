/* ranknas: RankNAS (Hu et al., EMNLP 2021; spec/search.md), the seed paper's
 * search, on the shared supernet:
 *
 * 1. Supernet training in chunks of `chunk_steps` updates, stopped early by
 *    ranking stability: a fixed "rank list" of distinct random archs is
 *    scored after each chunk; training stops when Kendall's tau between the
 *    rankings of two successive chunks exceeds `tau_threshold`, when tau
 *    has not beaten its best for `patience` chunks in a row (the ranking
 *    stopped getting more stable), or at `max_steps`.
 * 2. Data: the target (the metric in the task's direction, or minus the
 *    loss) of `samples` random archs with inherited weights, and the
 *    measured latency of `latency_samples` random archs; samples whose
 *    std/mean is over `latency_max_cv` are dropped. Rows with a feature
 *    vector seen before are dropped, a seeded `test_fraction` is held out.
 * 3. Two XGBoost rankers (ranker.h) on host->arch_features: one for the
 *    target, one for latency (skipped when latency_samples = 0); objective
 *    rank:pairwise (the paper) or reg:squarederror (the released code); the
 *    boosting rounds chosen by `folds`-fold cross-validation, at least
 *    `min_rounds`. Their Kendall tau, cross-validated and on the held-out
 *    rows, is logged and shown in the report (blob
 *    artifact/ranknas-<seed>-rankers.md, with the candidates' scores).
 * 4. Feature importance, |Kendall tau| of each feature with the target and
 *    XGBoost gain, for both rankers, logged and kept in the store (key
 *    ranknas/<seed>/importance, tab-separated text); the search then keeps
 *    the genes of the `top_k` features by `importance` and fixes the others
 *    at their best-ranked values (ranknas_prune.h says exactly how).
 * 5. HAT's evolution (evo_core.h) with the target ranker's score as the
 *    fitness, under the [constraints] and, when latency_limit_ms > 0, the
 *    latency ranker's estimate <= the limit (with reg:squarederror the
 *    prediction; with rank:pairwise the score mapped to ms by matching its
 *    quantile among the training rows' scores to the same quantile of their
 *    measured latencies).
 * 6. The `candidates` best archs of the last population, in the ranker's
 *    order, are scored by the supernet (host->evaluate, for the report) and
 *    proposed as the strategy's final candidates (host->propose), so
 *    [final] retrains the ranker's picks, not the best supernet score among
 *    everything evaluated along the way (rank lists, data samples).
 *
 * Resume: the stop rule's state after each chunk, the latency samples (as
 * they are measured) and the trained rankers go to the run's store
 * (host->blob_put, keys ranknas/<seed>/...); the supernet scores come back
 * from the store through host->evaluate. Every random choice comes from
 * streams split off host->seed, so a resumed run repeats the search. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

#include "evo_core.h"
#include "ranker.h"
#include "ranknas_prune.h"
#include "stats.h"

enum { TARGET_METRIC = 0, TARGET_LOSS = 1 };
enum { IMPORTANCE_TAU = 0, IMPORTANCE_GAIN = 1 };
enum {
    STREAM_RANK_LIST = 1, STREAM_SAMPLES, STREAM_LATENCY, STREAM_SPLIT, STREAM_LATENCY_SPLIT,
    STREAM_SEARCH
};

enum {
    OPT_OBJECTIVE, OPT_TARGET, OPT_RANK_LIST, OPT_CHUNK_STEPS, OPT_MAX_STEPS, OPT_PATIENCE,
    OPT_TAU_THRESHOLD, OPT_SAMPLES, OPT_LATENCY_SAMPLES, OPT_LATENCY_WARMUP, OPT_LATENCY_RUNS,
    OPT_LATENCY_MAX_CV, OPT_LATENCY_LIMIT, OPT_TEST_FRACTION, OPT_MAX_DEPTH, OPT_LEARNING_RATE,
    OPT_ROUNDS, OPT_MIN_ROUNDS, OPT_EARLY_STOPPING, OPT_FOLDS, OPT_VALID_FRACTION,
    OPT_IMPORTANCE, OPT_TOP_K,
    OPT_POPULATION, OPT_PARENTS, OPT_MUTATIONS, OPT_MUTATION_PROB, OPT_CROSSOVERS,
    OPT_CROSSOVER_PROB, OPT_ITERATIONS, OPT_MAX_DRAWS, OPT_CANDIDATES, OPT_COUNT
};

static const et_option_decl ranknas_options[] = {
    [OPT_OBJECTIVE] = {"objective", ET_OPTION_TYPE_CHOICE, "pairwise", 0, -1, "pairwise|regression",
                       "rankers' objective: rank:pairwise (the paper) or reg:squarederror (the "
                       "released code)"},
    [OPT_TARGET] = {"target", ET_OPTION_TYPE_CHOICE, "metric", 0, -1, "metric|loss",
                    "what ranks architectures: the task's metric in its direction, or the loss"},
    [OPT_RANK_LIST] = {"rank_list", ET_OPTION_TYPE_INT, "100", 2, 100000, NULL,
                       "architectures whose ranking decides the early stop (paper: 100-200)"},
    [OPT_CHUNK_STEPS] = {"chunk_steps", ET_OPTION_TYPE_INT, "1000", 0, 1e12, NULL,
                         "supernet updates between two rankings (0 = no early stop)"},
    [OPT_MAX_STEPS] = {"max_steps", ET_OPTION_TYPE_INT, "40000", 1, 1e12, NULL,
                       "supernet updates at most (keep it within the [train] steps' schedule)"},
    [OPT_PATIENCE] = {"patience", ET_OPTION_TYPE_INT, "3", 1, 1e6, NULL,
                      "chunks in a row without a better Kendall tau before stopping"},
    [OPT_TAU_THRESHOLD] = {"tau_threshold", ET_OPTION_TYPE_FLOAT, "0.9", -1, 1, NULL,
                           "stop once successive rankings agree above this Kendall tau"},
    [OPT_SAMPLES] = {"samples", ET_OPTION_TYPE_INT, "2000", 10, 1e7, NULL,
                     "architectures scored with inherited weights to train the ranker"},
    [OPT_LATENCY_SAMPLES] = {"latency_samples", ET_OPTION_TYPE_INT, "2000", 0, 1e7, NULL,
                             "architectures measured to train the latency ranker (0 = none)"},
    [OPT_LATENCY_WARMUP] = {"latency_warmup", ET_OPTION_TYPE_INT, "5", 0, 1e6, NULL,
                            "untimed runs before each latency measurement"},
    [OPT_LATENCY_RUNS] = {"latency_runs", ET_OPTION_TYPE_INT, "30", 1, 1e6, NULL,
                          "timed runs per latency measurement"},
    [OPT_LATENCY_MAX_CV] = {"latency_max_cv", ET_OPTION_TYPE_FLOAT, "0.05", 0, 10, NULL,
                            "latency samples with std/mean above this are dropped (RankNAS: "
                            "0.015)"},
    [OPT_LATENCY_LIMIT] = {"latency_limit_ms", ET_OPTION_TYPE_FLOAT, "0", 0, 1e9, NULL,
                           "largest latency the latency ranker may estimate for a candidate (0 "
                           "= no limit)"},
    [OPT_TEST_FRACTION] = {"test_fraction", ET_OPTION_TYPE_FLOAT, "0.1", 0, 0.5, NULL,
                           "share of the collected rows held out to report the rankers' tau"},
    [OPT_MAX_DEPTH] = {"max_depth", ET_OPTION_TYPE_INT, "6", 1, 64, NULL, "trees' depth"},
    [OPT_LEARNING_RATE] = {"learning_rate", ET_OPTION_TYPE_FLOAT, "0.1", 1e-6, 1, NULL,
                           "boosting learning rate"},
    [OPT_ROUNDS] = {"rounds", ET_OPTION_TYPE_INT, "1000", 1, 1e6, NULL,
                    "boosting rounds at most"},
    [OPT_MIN_ROUNDS] = {"min_rounds", ET_OPTION_TYPE_INT, "50", 1, 1e6, NULL,
                        "boosting rounds at least, whatever the validation score (on a few "
                        "dozen rows its first rounds are noise)"},
    [OPT_EARLY_STOPPING] = {"early_stopping", ET_OPTION_TYPE_INT, "5", 0, 1e6, NULL,
                            "rounds without a better validation score before boosting stops"},
    [OPT_FOLDS] = {"folds", ET_OPTION_TYPE_INT, "5", 0, 100, NULL,
                   "cross-validation folds of the training rows that choose the boosting "
                   "rounds (0 = one split of valid_fraction; fewer when the rows are few)"},
    [OPT_VALID_FRACTION] = {"valid_fraction", ET_OPTION_TYPE_FLOAT, "0.1", 0, 0.9, NULL,
                            "with folds = 0, share of the training rows that decides the "
                            "boosting's early stop"},
    [OPT_IMPORTANCE] = {"importance", ET_OPTION_TYPE_CHOICE, "tau", 0, -1, "tau|gain",
                        "what picks the searched features: |Kendall tau| with the target (the "
                        "released code) or XGBoost gain"},
    [OPT_TOP_K] = {"top_k", ET_OPTION_TYPE_INT, "5", 0, 100000, NULL,
                   "features whose genes are searched, the rest fixed (0 = search every gene)"},
    [OPT_POPULATION] = {"population", ET_OPTION_TYPE_INT, "125", 1, 100000, NULL,
                        "architectures sampled for the first iteration"},
    [OPT_PARENTS] = {"parents", ET_OPTION_TYPE_INT, "25", 1, 100000, NULL,
                     "best architectures kept from one iteration to the next"},
    [OPT_MUTATIONS] = {"mutations", ET_OPTION_TYPE_INT, "50", 0, 100000, NULL,
                       "mutated children per iteration (more when crossovers run out)"},
    [OPT_MUTATION_PROB] = {"mutation_prob", ET_OPTION_TYPE_FLOAT, "0.3", 0, 1, NULL,
                           "probability that a mutation redraws each gene"},
    [OPT_CROSSOVERS] = {"crossovers", ET_OPTION_TYPE_INT, "50", 0, 100000, NULL,
                        "crossover children per iteration"},
    [OPT_CROSSOVER_PROB] = {"crossover_prob", ET_OPTION_TYPE_FLOAT, "0.5", 0, 1, NULL,
                            "probability that a crossover takes each gene from its first parent"},
    [OPT_ITERATIONS] = {"iterations", ET_OPTION_TYPE_INT, "30", 1, 1000000, NULL,
                        "populations scored, the sampled one included"},
    [OPT_MAX_DRAWS] = {"max_draws", ET_OPTION_TYPE_INT, "1000", 1, 1e9, NULL,
                       "draws in a row without a new architecture before a phase goes on with "
                       "fewer"},
    [OPT_CANDIDATES] = {"candidates", ET_OPTION_TYPE_INT, "1", 1, 100000, NULL,
                        "best architectures of the search scored by the supernet and handed to "
                        "[final]"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* A trained ranker's figures for the report. */
typedef struct ranker_note {
    const char *name; /* NULL: no such ranker */
    int64_t fit, held; /* training rows, and test rows no ranker saw */
    double test_tau;   /* on the test rows; NAN for fewer than 2 */
} ranker_note;

typedef struct ranknas {
    const et_host *host;
    et_option_value o[OPT_COUNT];
    char key[64]; /* "ranknas/<seed>" */
    int32_t f;    /* features */
    double sign;  /* target = sign x metric (or -loss) */
    const char *target_name;
    /* after the rankers */
    ranker *metric_ranker, *latency_ranker;
    ranker_note notes[2]; /* the target's ranker, the latency ranker */
    float *lat_scores, *lat_ms; /* latency ranker's training scores and latencies, sorted */
    int64_t n_lat;
    gene_mask searched;
    et_arch reference;
    int32_t pruned;
    float *row;
    double *importance[4]; /* target tau, target gain, latency tau, latency gain (f each) */
} ranknas;

#define OPT(r, k) ((r)->o[OPT_##k])

static void ranknas_destroy(void *state)
{
    ranknas *r = state;
    if (!r)
        return;
    ranker_destroy(r->metric_ranker);
    ranker_destroy(r->latency_ranker);
    free(r->lat_scores);
    free(r->lat_ms);
    free(r->row);
    for (int i = 0; i < 4; i++)
        free(r->importance[i]);
    free(r);
}

static int ranknas_create(const et_host *host, const et_option_value *opts, void **state,
                          char **err)
{
    *state = NULL;
    if (!ET_HOST_HAS(host, blob_get) || !host->space || !host->measure_latency) {
        *err = host->errorf("ranknas: this etnas gives no evaluation services to search plugins");
        return ET_STATUS_ERR_UNSUPPORTED;
    }
    if (opts[OPT_PARENTS].i > opts[OPT_POPULATION].i) {
        *err = host->errorf("ranknas: parents = %lld exceeds population = %lld: the parents are "
                            "chosen from the population, so lower parents or raise population",
                            (long long)opts[OPT_PARENTS].i, (long long)opts[OPT_POPULATION].i);
        return ET_STATUS_ERR_USAGE;
    }
    if (opts[OPT_CROSSOVERS].i > 0 && opts[OPT_PARENTS].i < 2) {
        *err = host->errorf("ranknas: crossovers need two distinct parents: set parents >= 2 "
                            "or crossovers = 0");
        return ET_STATUS_ERR_USAGE;
    }
    if (opts[OPT_ITERATIONS].i > 1 && opts[OPT_MUTATIONS].i + opts[OPT_CROSSOVERS].i == 0) {
        *err = host->errorf("ranknas: mutations = crossovers = 0 breeds nothing after the first "
                            "iteration: raise one of them or set iterations = 1");
        return ET_STATUS_ERR_USAGE;
    }
    if (opts[OPT_FOLDS].i == 1) {
        *err = host->errorf("ranknas: folds = 1 holds no row out: set folds = 0 (one split of "
                            "valid_fraction) or at least 2");
        return ET_STATUS_ERR_USAGE;
    }
    if (opts[OPT_LATENCY_LIMIT].f > 0 && opts[OPT_LATENCY_SAMPLES].i == 0) {
        *err = host->errorf("ranknas: latency_limit_ms needs the latency ranker: set "
                            "latency_samples > 0 or latency_limit_ms = 0");
        return ET_STATUS_ERR_USAGE;
    }
    if (opts[OPT_TARGET].i == TARGET_METRIC && !host->task) {
        *err = host->errorf("ranknas: target = metric needs the task's metric direction, and "
                            "this host has no task: use target = loss");
        return ET_STATUS_ERR_USAGE;
    }
    ranknas *r = calloc(1, sizeof *r);
    if (!r) {
        *err = host->errorf("ranknas: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    r->host = host;
    memcpy(r->o, opts, sizeof r->o);
    snprintf(r->key, sizeof r->key, "ranknas/%016llx", (unsigned long long)host->seed);
    r->f = host->arch_feature_count(host->space);
    if (OPT(r, TARGET).i == TARGET_LOSS) {
        r->sign = -1;
        r->target_name = "loss";
    } else {
        r->sign = host->task->higher_is_better ? 1 : -1;
        r->target_name = host->task->metric ? host->task->metric : "metric";
    }
    r->row = malloc(sizeof *r->row * (size_t)r->f);
    for (int i = 0; i < 4; i++)
        r->importance[i] = calloc((size_t)r->f, sizeof *r->importance[i]);
    if (!r->row || !r->importance[0] || !r->importance[1] || !r->importance[2] ||
        !r->importance[3]) {
        ranknas_destroy(r);
        *err = host->errorf("ranknas: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    *state = r;
    return 0;
}

/* ---------------------------------------------------------------- helpers */

static int nomem(const ranknas *r, char **err)
{
    *err = r->host->errorf("ranknas: out of memory");
    return ET_STATUS_ERR_NOMEM;
}

/* n distinct archs from stream `stream`, the same every run. */
static int draw_distinct(ranknas *r, uint64_t stream, int64_t n, et_arch *out, char **err)
{
    const et_host *h = r->host;
    et_rng base = et_rng_from_seed(h->seed), rng = et_rng_split(&base, stream);
    uint64_t *seen = malloc(sizeof *seen * (size_t)n);
    if (!seen)
        return nomem(r, err);
    int64_t draws = 0, limit = 1000 * n;
    for (int64_t i = 0; i < n; i++) {
        int fresh = 0;
        while (!fresh && draws++ < limit) {
            h->arch_sample(h->space, &rng, &out[i]);
            seen[i] = h->arch_hash(h->space, &out[i]);
            fresh = 1;
            for (int64_t j = 0; j < i && fresh; j++)
                fresh = seen[j] != seen[i];
        }
        if (!fresh) {
            free(seen);
            *err = h->errorf("ranknas: the space has fewer than %lld distinct architectures "
                             "for its samples: lower rank_list, samples or latency_samples",
                             (long long)n);
            return ET_STATUS_ERR_USAGE;
        }
    }
    free(seen);
    return 0;
}

/* Targets (higher is better) of archs[0, n) with inherited weights, in
 * calls of at most 100 so that progress shows. */
static int score_archs(ranknas *r, const et_arch *archs, int64_t n, double *y, const char *phase,
                       char **err)
{
    const et_host *h = r->host;
    et_eval_result res[100];
    for (int64_t at = 0; at < n; at += 100) {
        int32_t m = (int32_t)(n - at < 100 ? n - at : 100);
        int rc = h->evaluate(h->ctx, archs + at, m, res, err);
        if (rc)
            return rc;
        for (int32_t i = 0; i < m; i++)
            y[at + i] = OPT(r, TARGET).i == TARGET_LOSS ? -res[i].loss : r->sign * res[i].metric;
        if (phase)
            h->progress(h->ctx, phase, at + m, n);
    }
    return 0;
}

/* ---------------------------------------------------------------- 1. supernet */

/* The stop rule's state after a chunk, as the store keeps it. */
typedef struct stop_blob {
    int64_t chunk, step; /* chunks done, and the supernet step of the last one */
    int64_t stopped;
    stop_state st;
    /* then rank_list doubles: the last chunk's targets */
} stop_blob;

static int train_supernet(ranknas *r, char **err)
{
    const et_host *h = r->host;
    int64_t chunk = OPT(r, CHUNK_STEPS).i, max_steps = OPT(r, MAX_STEPS).i;
    if (chunk == 0 || chunk >= max_steps)
        return h->train_supernet(h->ctx, max_steps, err);
    int64_t n = OPT(r, RANK_LIST).i;
    size_t bytes = sizeof(stop_blob) + sizeof(double) * (size_t)n;
    et_arch *list = malloc(sizeof *list * (size_t)n);
    unsigned char *blob = calloc(1, bytes);
    double *cur = malloc(sizeof *cur * (size_t)n);
    if (!list || !blob || !cur) {
        free(list);
        free(blob);
        free(cur);
        return nomem(r, err);
    }
    stop_blob sb = {0};
    stop_state_init(&sb.st);
    double *prev = (double *)(blob + sizeof sb);
    char key[128];
    snprintf(key, sizeof key, "%s/stop", r->key);
    void *data = NULL;
    size_t got = 0;
    int rc = draw_distinct(r, STREAM_RANK_LIST, n, list, err);
    if (!rc && (rc = h->blob_get(h->ctx, key, &data, &got, err)) == 1) {
        if (got != bytes) {
            *err = h->errorf("ranknas: the stored early-stop state is for another rank_list: "
                             "start a new run");
            rc = ET_STATUS_ERR_FORMAT;
        } else {
            memcpy(blob, data, bytes);
            memcpy(&sb, blob, sizeof sb);
            rc = 0;
            h->log(h->ctx, ET_LOG_LEVEL_INFO,
                   "ranknas: early stop state from the store: %lld chunks, supernet step %lld%s",
                   (long long)sb.chunk, (long long)sb.step, sb.stopped ? ", stopped" : "");
        }
    }
    free(data);
    stop_rule rule = {OPT(r, TAU_THRESHOLD).f, OPT(r, PATIENCE).i};
    while (!rc && !sb.stopped) {
        int64_t step = (sb.chunk + 1) * chunk;
        if (step > max_steps)
            step = max_steps;
        if ((rc = h->train_supernet(h->ctx, step, err)) ||
            (rc = score_archs(r, list, n, cur, NULL, err)))
            break;
        double tau = NAN;
        if (sb.chunk > 0) {
            tau = et_kendall_tau(prev, cur, (size_t)n);
            sb.stopped = stop_update(&sb.st, &rule, tau);
            h->log(h->ctx, ET_LOG_LEVEL_INFO,
                   "ranknas: supernet step %lld: Kendall tau %.4f with the ranking of step %lld "
                   "(%lld archs)",
                   (long long)step, tau, (long long)sb.step, (long long)n);
        }
        sb.chunk++;
        sb.step = step;
        if (step >= max_steps)
            sb.stopped = 1;
        memcpy(prev, cur, sizeof *cur * (size_t)n);
        memcpy(blob, &sb, sizeof sb);
        rc = h->blob_put(h->ctx, key, blob, bytes, err);
    }
    if (!rc) {
        /* a resumed run's supernet is at least at the stop step already */
        rc = h->train_supernet(h->ctx, sb.step, err);
        h->log(h->ctx, ET_LOG_LEVEL_INFO, "ranknas: supernet training stopped at step %lld of "
               "at most %lld (%s)", (long long)sb.step, (long long)max_steps,
               sb.step >= max_steps ? "max_steps" : "the ranking is stable");
    }
    free(list);
    free(blob);
    free(cur);
    return rc;
}

/* ---------------------------------------------------------------- 2. data */

typedef struct lat_sample {
    uint64_t hash;
    double mean_ms, std_ms;
} lat_sample;

/* Latencies of archs[0, n) measured on this host, kept in the store as
 * they are measured (every 20) so that a resumed run measures only the rest. */
static int measure_latencies(ranknas *r, const et_arch *archs, int64_t n, lat_sample *s,
                             char **err)
{
    const et_host *h = r->host;
    char key[160];
    snprintf(key, sizeof key, "%s/latency/n%lld-w%lld-r%lld", r->key, (long long)n,
             (long long)OPT(r, LATENCY_WARMUP).i, (long long)OPT(r, LATENCY_RUNS).i);
    void *data = NULL;
    size_t bytes = 0;
    int64_t have = 0;
    int rc = h->blob_get(h->ctx, key, &data, &bytes, err);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        have = (int64_t)(bytes / sizeof *s);
        have = have > n ? n : have;
        memcpy(s, data, sizeof *s * (size_t)have);
        free(data);
        h->log(h->ctx, ET_LOG_LEVEL_INFO, "ranknas: %lld of %lld latency samples from the store",
               (long long)have, (long long)n);
    }
    for (int64_t i = 0; i < n; i++) {
        uint64_t hash = h->arch_hash(h->space, &archs[i]);
        if (i < have) {
            if (s[i].hash != hash) {
                *err = h->errorf("ranknas: the stored latency samples belong to another space "
                                 "or seed: start a new run");
                return ET_STATUS_ERR_FORMAT;
            }
            continue;
        }
        s[i].hash = hash;
        if ((rc = h->measure_latency(h->ctx, &archs[i], (int32_t)OPT(r, LATENCY_WARMUP).i,
                                     (int32_t)OPT(r, LATENCY_RUNS).i, &s[i].mean_ms,
                                     &s[i].std_ms, err)))
            return rc;
        if ((i + 1) % 20 == 0 || i + 1 == n)
            if ((rc = h->blob_put(h->ctx, key, s, sizeof *s * (size_t)(i + 1), err)))
                return rc;
        h->progress(h->ctx, "ranknas latency samples", i + 1, n);
    }
    return 0;
}

/* A training set: rows of features with targets, distinct feature vectors
 * only, split into training rows [0, fit) and held-out rows [fit, n). */
typedef struct dataset {
    float *x, *y;
    int64_t n, fit;
} dataset;

static uint64_t row_hash(const float *x, int32_t f)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (int32_t j = 0; j < f; j++) {
        uint32_t b;
        memcpy(&b, &x[j], sizeof b);
        h = et_rng_mix64(h ^ b);
    }
    return h;
}

/* Builds d from archs whose target y is finite (keep[i] != 0 when keep is
 * not NULL): first occurrences of each feature vector, shuffled by a
 * seeded stream, the last test_fraction held out. */
static int build(ranknas *r, const et_arch *archs, const double *y, const uint8_t *keep,
                 int64_t n, uint64_t stream, dataset *d, char **err)
{
    const et_host *h = r->host;
    int32_t f = r->f;
    d->x = malloc(sizeof *d->x * (size_t)(n * f));
    d->y = malloc(sizeof *d->y * (size_t)n);
    uint64_t *hs = malloc(sizeof *hs * (size_t)n);
    int64_t *order = malloc(sizeof *order * (size_t)n);
    float *tx = malloc(sizeof *tx * (size_t)(n * f));
    if (!d->x || !d->y || !hs || !order || !tx) {
        free(hs);
        free(order);
        free(tx);
        return nomem(r, err);
    }
    int64_t m = 0, dups = 0;
    for (int64_t i = 0; i < n; i++) {
        if ((keep && !keep[i]) || !isfinite(y[i]))
            continue;
        float *row = tx + m * f;
        h->arch_features(h->space, &archs[i], row);
        uint64_t rh = row_hash(row, f);
        int dup = 0;
        for (int64_t j = 0; j < m && !dup; j++)
            dup = hs[j] == rh && !memcmp(tx + j * f, row, sizeof *row * (size_t)f);
        if (dup) {
            dups++;
            continue;
        }
        hs[m] = rh;
        d->y[m] = (float)y[i];
        m++;
    }
    et_rng base = et_rng_from_seed(h->seed), rng = et_rng_split(&base, stream);
    for (int64_t i = 0; i < m; i++)
        order[i] = i;
    for (int64_t i = m - 1; i > 0; i--) {
        int64_t j = (int64_t)et_rng_below(&rng, (uint64_t)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    float *ty = (float *)hs; /* reuse: m floats fit in m uint64 */
    memcpy(ty, d->y, sizeof *ty * (size_t)m);
    for (int64_t i = 0; i < m; i++) {
        memcpy(d->x + i * f, tx + order[i] * f, sizeof *tx * (size_t)f);
        d->y[i] = ty[order[i]];
    }
    d->n = m;
    d->fit = m - (int64_t)floor(OPT(r, TEST_FRACTION).f * (double)m);
    if (dups)
        h->log(h->ctx, ET_LOG_LEVEL_INFO, "ranknas: %lld rows with a repeated feature vector "
               "dropped", (long long)dups);
    free(hs);
    free(order);
    free(tx);
    return 0;
}

static void dataset_free(dataset *d)
{
    free(d->x);
    free(d->y);
}

/* ---------------------------------------------------------------- 3. rankers */

static void ranker_cfg(const ranknas *r, int64_t fit, ranker_config *cfg)
{
    ranker_config_default(cfg);
    cfg->objective =
        OPT(r, OBJECTIVE).i == 0 ? RANKER_OBJECTIVE_PAIRWISE : RANKER_OBJECTIVE_SQUARED_ERROR;
    cfg->max_depth = (int32_t)OPT(r, MAX_DEPTH).i;
    cfg->learning_rate = OPT(r, LEARNING_RATE).f;
    cfg->rounds = (int32_t)OPT(r, ROUNDS).i;
    cfg->min_rounds = (int32_t)OPT(r, MIN_ROUNDS).i;
    cfg->early_stopping = (int32_t)OPT(r, EARLY_STOPPING).i;
    cfg->folds = (int32_t)OPT(r, FOLDS).i;
    cfg->valid_fraction = OPT(r, VALID_FRACTION).f;
    /* every fold, or the single split, holds out at least 2 rows */
    if (cfg->folds >= 2 && fit < 2 * (int64_t)cfg->folds)
        cfg->folds = (int32_t)(fit / 2);
    if (cfg->folds == 0 && cfg->valid_fraction > 0 && fit > 0 &&
        cfg->valid_fraction * (double)fit < 2)
        cfg->valid_fraction = 2.0 / (double)fit;
    cfg->nthread = 1;
}

/* The training settings, so that a resumed run with other settings trains again. */
static uint64_t cfg_hash(const ranker_config *cfg)
{
    uint64_t lr, vf, h = UINT64_C(0x72616e6b6572);
    memcpy(&lr, &cfg->learning_rate, sizeof lr);
    memcpy(&vf, &cfg->valid_fraction, sizeof vf);
    const uint64_t v[] = {(uint64_t)cfg->objective, (uint64_t)cfg->max_depth, lr,
                          (uint64_t)cfg->rounds, (uint64_t)cfg->min_rounds,
                          (uint64_t)cfg->early_stopping, (uint64_t)cfg->folds, vf};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        h = et_rng_mix64(h ^ v[i]);
    return h;
}

/* "0.2140 ± 0.0810 (5-fold cross-validation)" or "0.2140 (4 validation
 * rows)" (or "-" when unknown): the ranker's own held-out tau. */
static void describe_valid_tau(const ranker *rk, char *out, size_t n)
{
    double tau = ranker_valid_tau(rk), se = ranker_valid_tau_se(rk);
    int32_t folds = ranker_folds(rk);
    if (isnan(tau))
        snprintf(out, n, "-");
    else if (folds >= 2 && !isnan(se))
        snprintf(out, n, "%.4f ± %.4f (%d-fold cross-validation)", tau, se, (int)folds);
    else if (folds >= 2)
        snprintf(out, n, "%.4f (%d-fold cross-validation)", tau, (int)folds);
    else
        snprintf(out, n, "%.4f (%lld validation rows)", tau, (long long)ranker_valid_rows(rk));
}

/* Loads the ranker `name` from the store, or trains it on d's training rows
 * and stores it; logs its held-out tau and notes it for the report. */
static int fit_ranker(ranknas *r, const char *name, const dataset *d, ranker **out,
                      ranker_note *note, char **err)
{
    const et_host *h = r->host;
    ranker_config cfg;
    ranker_cfg(r, d->fit, &cfg);
    char key[192];
    snprintf(key, sizeof key, "%s/%s_ranker-%016llx", r->key, name,
             (unsigned long long)cfg_hash(&cfg));
    void *data = NULL;
    size_t bytes = 0;
    int rc = h->blob_get(h->ctx, key, &data, &bytes, err);
    if (rc == 1) {
        rc = ranker_load(data, bytes, 1, out, err);
        free(data);
        if (rc)
            return rc;
        h->log(h->ctx, ET_LOG_LEVEL_INFO, "ranknas: %s ranker from the store", name);
    } else if (rc < 0) {
        return rc;
    } else {
        if (d->fit < 4) {
            *err = h->errorf("ranknas: %lld usable %s rows are too few to train a ranker: "
                             "raise the samples", (long long)d->fit, name);
            return ET_STATUS_ERR_USAGE;
        }
        cfg.seed = et_rng_mix64(h->seed ^ (uint64_t)strlen(name));
        uint8_t *buf = NULL;
        size_t len = 0;
        if ((rc = ranker_train(&cfg, d->x, d->y, d->fit, r->f, out, err)) ||
            (rc = ranker_save(*out, &buf, &len, err)) ||
            (rc = h->blob_put(h->ctx, key, buf, len, err))) {
            free(buf);
            return rc;
        }
        free(buf);
    }
    double tau = NAN;
    int64_t held = d->n - d->fit;
    if (held >= 2) {
        float *s = malloc(sizeof *s * (size_t)held);
        double *a = malloc(sizeof *a * (size_t)held), *b = malloc(sizeof *b * (size_t)held);
        if (!s || !a || !b) {
            free(s);
            free(a);
            free(b);
            return nomem(r, err);
        }
        rc = ranker_predict(*out, d->x + d->fit * r->f, held, s, err);
        for (int64_t i = 0; !rc && i < held; i++) {
            a[i] = s[i];
            b[i] = d->y[d->fit + i];
        }
        if (!rc)
            tau = et_kendall_tau(a, b, (size_t)held);
        free(s);
        free(a);
        free(b);
        if (rc)
            return rc;
    }
    *note = (ranker_note){name, d->fit, held, tau};
    char valid[128], test[96] = "";
    describe_valid_tau(*out, valid, sizeof valid);
    if (held >= 2)
        snprintf(test, sizeof test, ", %.4f on %lld held-out rows", tau, (long long)held);
    h->log(h->ctx, ET_LOG_LEVEL_INFO,
           "ranknas: %s ranker: %d rounds on %lld rows; Kendall tau %s%s", name,
           ranker_rounds(*out), (long long)d->fit, valid, test);
    return 0;
}

/* ---------------------------------------------------------------- 4. importance */

static int importance(ranknas *r, const dataset *d, const ranker *rk, double *tau, double *gain,
                      char **err)
{
    int rc = ranker_tau_importance(d->x, d->y, d->fit, r->f, tau, err);
    return rc ? rc : ranker_gain(rk, gain, err);
}

/* The report's bar chart of feature importance: |Kendall tau| of each
 * feature with the target (and with latency), one row per feature. */
static int importance_svg(ranknas *r, int with_latency, char **err)
{
    const et_host *h = r->host;
    size_t cap = 1024 + (size_t)r->f * 600, o = 0;
    char *svg = malloc(cap), name[64];
    if (!svg)
        return nomem(r, err);
    const double row = 16, left = 170, bar = 300;
    int series = with_latency ? 2 : 1;
    o += (size_t)snprintf(svg + o, cap - o,
                          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
                          "height=\"%.0f\" font-family=\"sans-serif\" font-size=\"11\">\n"
                          "<text x=\"5\" y=\"14\">RankNAS feature importance: |Kendall tau| "
                          "with the target%s</text>\n",
                          left + bar + 60, 30 + row * r->f + 20,
                          with_latency ? " (dark) and with latency (light)" : "");
    for (int32_t j = 0; j < r->f && o < cap; j++) {
        prune_feature_name(h->space, j, name, sizeof name);
        double y = 26 + row * j;
        o += (size_t)snprintf(svg + o, cap - o, "<text x=\"5\" y=\"%.0f\">%s</text>\n",
                              y + 11, name);
        for (int k = 0; k < series && o < cap; k++) {
            double v = fabs(r->importance[2 * k][j]);
            o += (size_t)snprintf(svg + o, cap - o,
                                  "<rect x=\"%.0f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                                  "fill=\"%s\"/>\n",
                                  left, y + k * (row - 2) / series, bar * (v > 1 ? 1 : v),
                                  (row - 2) / series, k ? "#9cc3e6" : "#1f5f9e");
        }
        o += (size_t)snprintf(svg + o, cap - o, "<text x=\"%.0f\" y=\"%.0f\">%.2f</text>\n",
                              left + bar + 5, y + 11, fabs(r->importance[0][j]));
    }
    if (o < cap)
        o += (size_t)snprintf(svg + o, cap - o, "</svg>\n");
    int rc = 0;
    if (o >= cap) {
        rc = nomem(r, err);
    } else {
        char key[128];
        snprintf(key, sizeof key, "artifact/ranknas-%016llx-importance.svg",
                 (unsigned long long)h->seed);
        rc = h->blob_put(h->ctx, key, svg, o, err);
    }
    free(svg);
    return rc;
}

/* Logs the importance and keeps it in the store as tab-separated text. */
static int keep_importance(ranknas *r, int with_latency, char **err)
{
    const et_host *h = r->host;
    size_t cap = 128 + (size_t)r->f * 160, o = 0;
    char *text = malloc(cap), name[64];
    if (!text)
        return nomem(r, err);
    o += (size_t)snprintf(text + o, cap - o, "feature\ttarget_tau\ttarget_gain%s\n",
                          with_latency ? "\tlatency_tau\tlatency_gain" : "");
    for (int32_t j = 0; j < r->f; j++) {
        prune_feature_name(h->space, j, name, sizeof name);
        o += (size_t)snprintf(text + o, cap - o, "%s\t%.6g\t%.6g", name, r->importance[0][j],
                              r->importance[1][j]);
        if (with_latency)
            o += (size_t)snprintf(text + o, cap - o, "\t%.6g\t%.6g", r->importance[2][j],
                                  r->importance[3][j]);
        o += (size_t)snprintf(text + o, cap - o, "\n");
    }
    for (int k = 0; k < (with_latency ? 4 : 2); k++) {
        static const char *const what[] = {"target |tau|", "target gain", "latency |tau|",
                                           "latency gain"};
        int64_t idx[5];
        int64_t m = ranker_top_k(r->importance[k], r->f, 5, idx);
        char line[512];
        size_t lo = 0;
        for (int64_t i = 0; i < m; i++) {
            prune_feature_name(h->space, (int32_t)idx[i], name, sizeof name);
            lo += (size_t)snprintf(line + lo, sizeof line - lo, "%s%s %.3g", i ? ", " : "", name,
                                   r->importance[k][idx[i]]);
        }
        h->log(h->ctx, ET_LOG_LEVEL_INFO, "ranknas: most important by %s: %s", what[k], line);
    }
    char key[128];
    snprintf(key, sizeof key, "%s/importance", r->key);
    int rc = h->blob_put(h->ctx, key, text, o, err);
    if (!rc) { /* the report's copy */
        snprintf(key, sizeof key, "artifact/ranknas-%016llx-importance.tsv",
                 (unsigned long long)h->seed);
        rc = h->blob_put(h->ctx, key, text, o, err);
    }
    free(text);
    if (!rc)
        rc = importance_svg(r, with_latency, err);
    return rc;
}

/* ---------------------------------------------------------------- 5. search */

static int predict(const ranker *rk, ranknas *r, const et_arch *a, float *score, char **err)
{
    r->host->arch_features(r->host->space, a, r->row);
    return ranker_predict(rk, r->row, 1, score, err);
}

/* The latency ranker's estimate in ms (see the top of the file). */
static double latency_estimate(const ranknas *r, float score)
{
    if (OPT(r, OBJECTIVE).i != 0)
        return score;
    const float *s = r->lat_scores, *ms = r->lat_ms;
    int64_t n = r->n_lat;
    if (score <= s[0])
        return ms[0];
    if (score >= s[n - 1])
        return ms[n - 1];
    int64_t lo = 0, hi = n - 1; /* s[lo] < score <= s[hi] */
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        if (s[mid] < score)
            lo = mid;
        else
            hi = mid;
    }
    double t = s[hi] > s[lo] ? (score - s[lo]) / (s[hi] - s[lo]) : 1.0;
    return ms[lo] + t * (ms[hi] - ms[lo]);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static int accept(void *arg, const et_arch *a, int32_t *ok, char **err)
{
    ranknas *r = arg;
    const et_host *h = r->host;
    char *verr = NULL;
    *ok = 0;
    if (h->arch_validate(h->space, a, &verr)) { /* a fixed gene may not fit a searched one */
        free(verr);
        return 0;
    }
    int rc = h->satisfies(h->ctx, a, ok, err);
    if (rc || !*ok || !r->latency_ranker || OPT(r, LATENCY_LIMIT).f <= 0)
        return rc;
    float s;
    if ((rc = predict(r->latency_ranker, r, a, &s, err)))
        return rc;
    *ok = latency_estimate(r, s) <= OPT(r, LATENCY_LIMIT).f;
    return 0;
}

static int score_ranker(void *arg, const et_arch *archs, int64_t n, double *values, char **err)
{
    ranknas *r = arg;
    for (int64_t i = 0; i < n; i++) {
        float s;
        int rc = predict(r->metric_ranker, r, &archs[i], &s, err);
        if (rc)
            return rc;
        values[i] = s;
    }
    return 0;
}

static void fix(void *arg, et_arch *a)
{
    ranknas *r = arg;
    if (r->pruned)
        prune_apply(&r->searched, &r->reference, a);
}

/* The searched genes (those of the top_k features) and the reference arch:
 * the collected sample the target ranker scores best among those accepted. */
static int prune(ranknas *r, const et_arch *archs, int64_t n, char **err)
{
    const et_host *h = r->host;
    int64_t k = OPT(r, TOP_K).i;
    if (k == 0 || k >= r->f)
        return 0;
    int64_t *idx = malloc(sizeof *idx * (size_t)k);
    if (!idx)
        return nomem(r, err);
    const double *imp = r->importance[OPT(r, IMPORTANCE).i == IMPORTANCE_TAU ? 0 : 1];
    int64_t m = ranker_top_k(imp, r->f, k, idx);
    memset(&r->searched, 0, sizeof r->searched);
    char names[1024], name[64];
    size_t o = 0;
    for (int64_t i = 0; i < m; i++) {
        prune_feature_genes(h->space, (int32_t)idx[i], &r->searched);
        prune_feature_name(h->space, (int32_t)idx[i], name, sizeof name);
        if (o < sizeof names)
            o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", i ? ", " : "", name);
    }
    free(idx);
    int64_t best = -1, best_any = 0;
    float best_s = -INFINITY, best_any_s = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        float s;
        int32_t ok;
        int rc = predict(r->metric_ranker, r, &archs[i], &s, err);
        if (!rc)
            rc = accept(r, &archs[i], &ok, err);
        if (rc)
            return rc;
        if (s > best_any_s) {
            best_any_s = s;
            best_any = i;
        }
        if (ok && s > best_s) {
            best_s = s;
            best = i;
        }
    }
    r->reference = archs[best >= 0 ? best : best_any];
    r->pruned = 1;
    char text[16384];
    if (h->arch_format(h->space, &r->reference, text, sizeof text) < 0)
        snprintf(text, sizeof text, "?");
    h->log(h->ctx, ET_LOG_LEVEL_INFO, "ranknas: searching the genes of %s; the rest fixed as in %s",
           names, text);
    return 0;
}

/* ---------------------------------------------------------------- report */

typedef struct page {
    char *s;
    size_t len, cap;
    int nomem;
} page;

__attribute__((format(printf, 2, 3))) static void tadd(page *t, const char *fmt, ...)
{
    for (int pass = 0; pass < 2 && !t->nomem; pass++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->nomem = 1;
        } else if (t->s && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        } else {
            size_t cap = 2 * (t->cap + (size_t)n) + 256;
            char *s = realloc(t->s, cap);
            if (!s)
                t->nomem = 1;
            else
                t->s = s, t->cap = cap;
        }
    }
}

/* The report's page on the rankers (blob artifact/ranknas-<seed>-rankers.md):
 * each one's held-out Kendall tau, cross-validated and on the test rows,
 * and the candidates with their ranker scores (res: their supernet scores,
 * NULL when there are none). */
static int rankers_md(ranknas *r, const et_arch *cand, const double *cand_s,
                      const et_eval_result *res, int64_t got, char **err)
{
    const et_host *h = r->host;
    page t = {0};
    tadd(&t, "# RankNAS rankers\n\nKendall tau between a ranker's scores and the measured "
             "values on rows it was not trained on: the mean (± standard error) over the "
             "cross-validation folds of its training rows, which also chose its boosting "
             "rounds (so it leans optimistic), and on the test rows that no ranker saw "
             "(test_fraction; few rows make it noisy).\n\n| ranker | objective | training "
             "rows | rounds | cross-validated tau (± s.e.) | test rows | test tau |\n"
             "|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < 2; k++) {
        const ranker_note *n = &r->notes[k];
        const ranker *rk = k ? r->latency_ranker : r->metric_ranker;
        if (!n->name || !rk)
            continue;
        char valid[128];
        describe_valid_tau(rk, valid, sizeof valid);
        tadd(&t, "| %s | %s | %lld | %d | %s | %lld | ", n->name,
             OPT(r, OBJECTIVE).i == 0 ? "rank:pairwise" : "reg:squarederror", (long long)n->fit,
             (int)ranker_rounds(rk), valid, (long long)n->held);
        if (isnan(n->test_tau))
            tadd(&t, "- |\n");
        else
            tadd(&t, "%.4f |\n", n->test_tau);
    }
    int with_latency = r->latency_ranker != NULL;
    const char *what = OPT(r, TARGET).i == TARGET_LOSS ? "loss" : r->target_name;
    if (got > 0) {
        tadd(&t, "\nCandidates, in the ranker's order:\n\n| # | ranker score | %s"
                 "supernet %s | architecture |\n|---|---|%s---|---|\n",
             with_latency ? "latency ranker's estimate (ms) | " : "", what,
             with_latency ? "---|" : "");
        for (int64_t i = 0; i < got; i++) {
            char arch[16384];
            if (h->arch_format(h->space, &cand[i], arch, sizeof arch) < 0)
                snprintf(arch, sizeof arch, "?");
            tadd(&t, "| %lld | %.6g | ", (long long)i + 1, cand_s[i]);
            if (with_latency) {
                float ls;
                int rc = predict(r->latency_ranker, r, &cand[i], &ls, err);
                if (rc) {
                    free(t.s);
                    return rc;
                }
                tadd(&t, "%.4g | ", latency_estimate(r, ls));
            }
            tadd(&t, "%.6g | `%s` |\n",
                 OPT(r, TARGET).i == TARGET_LOSS ? res[i].loss : res[i].metric, arch);
        }
    }
    if (t.nomem) {
        free(t.s);
        return nomem(r, err);
    }
    char key[128];
    snprintf(key, sizeof key, "artifact/ranknas-%016llx-rankers.md", (unsigned long long)h->seed);
    int rc = h->blob_put(h->ctx, key, t.s, t.len, err);
    free(t.s);
    return rc;
}

/* ---------------------------------------------------------------- run */

static int ranknas_run(void *state, char **err)
{
    ranknas *r = state;
    const et_host *h = r->host;
    int rc = train_supernet(r, err);
    if (rc)
        return rc;

    int64_t ns = OPT(r, SAMPLES).i, nl = OPT(r, LATENCY_SAMPLES).i;
    int64_t k = OPT(r, CANDIDATES).i;
    et_arch *archs = malloc(sizeof *archs * (size_t)(ns > nl ? ns : nl));
    et_arch *cand = malloc(sizeof *cand * (size_t)k);
    double *y = malloc(sizeof *y * (size_t)(ns > nl ? ns : nl)), *cand_s = malloc(sizeof *cand_s * (size_t)k);
    lat_sample *lat = malloc(sizeof *lat * (size_t)(nl ? nl : 1));
    uint8_t *keep = malloc((size_t)(nl ? nl : 1));
    dataset dm = {0}, dl = {0};
    if (!archs || !cand || !y || !cand_s || !lat || !keep) {
        rc = nomem(r, err);
        goto done;
    }

    /* 2. data and 3. rankers: latency first, so the metric samples stay in archs */
    int with_latency = nl > 0;
    if (with_latency) {
        if ((rc = draw_distinct(r, STREAM_LATENCY, nl, archs, err)) ||
            (rc = measure_latencies(r, archs, nl, lat, err)))
            goto done;
        int64_t dropped = 0;
        for (int64_t i = 0; i < nl; i++) {
            y[i] = lat[i].mean_ms;
            keep[i] = lat[i].mean_ms > 0 && lat[i].std_ms / lat[i].mean_ms <= OPT(r, LATENCY_MAX_CV).f;
            dropped += !keep[i];
        }
        if (dropped)
            h->log(h->ctx, ET_LOG_LEVEL_INFO, "ranknas: %lld of %lld latency samples dropped "
                   "(std/mean over %g)", (long long)dropped, (long long)nl,
                   OPT(r, LATENCY_MAX_CV).f);
        if ((rc = build(r, archs, y, keep, nl, STREAM_LATENCY_SPLIT, &dl, err)) ||
            (rc = fit_ranker(r, "latency", &dl, &r->latency_ranker, &r->notes[1], err)) ||
            (rc = importance(r, &dl, r->latency_ranker, r->importance[2], r->importance[3], err)))
            goto done;
        r->n_lat = dl.fit;
        r->lat_scores = malloc(sizeof *r->lat_scores * (size_t)dl.fit);
        r->lat_ms = malloc(sizeof *r->lat_ms * (size_t)dl.fit);
        if (!r->lat_scores || !r->lat_ms) {
            rc = nomem(r, err);
            goto done;
        }
        if ((rc = ranker_predict(r->latency_ranker, dl.x, dl.fit, r->lat_scores, err)))
            goto done;
        memcpy(r->lat_ms, dl.y, sizeof *r->lat_ms * (size_t)dl.fit);
        qsort(r->lat_scores, (size_t)dl.fit, sizeof *r->lat_scores, cmp_float);
        qsort(r->lat_ms, (size_t)dl.fit, sizeof *r->lat_ms, cmp_float);
    }
    if ((rc = draw_distinct(r, STREAM_SAMPLES, ns, archs, err)) ||
        (rc = score_archs(r, archs, ns, y, "ranknas samples", err)) ||
        (rc = build(r, archs, y, NULL, ns, STREAM_SPLIT, &dm, err)) ||
        (rc = fit_ranker(r, r->target_name, &dm, &r->metric_ranker, &r->notes[0], err)) ||
        (rc = importance(r, &dm, r->metric_ranker, r->importance[0], r->importance[1], err)) ||
        (rc = keep_importance(r, with_latency, err)) || (rc = prune(r, archs, ns, err)))
        goto done;

    /* 5. evolution on the ranker's score */
    et_rng base = et_rng_from_seed(h->seed);
    evo_config cfg = {
        .name = "ranknas",
        .fitness_name = "ranker score",
        .phase = "ranknas search",
        .scored = "ranker scores",
        .population = OPT(r, POPULATION).i,
        .parents = OPT(r, PARENTS).i,
        .mutations = OPT(r, MUTATIONS).i,
        .crossovers = OPT(r, CROSSOVERS).i,
        .iterations = OPT(r, ITERATIONS).i,
        .max_draws = OPT(r, MAX_DRAWS).i,
        .mutation_prob = OPT(r, MUTATION_PROB).f,
        .crossover_prob = OPT(r, CROSSOVER_PROB).f,
        .sign = 1,
        .rng = et_rng_split(&base, STREAM_SEARCH),
    };
    evo_ops ops = {.arg = r, .score = score_ranker, .accept = accept, .fix = fix};
    int64_t got = 0;
    if ((rc = evo_run(h, &cfg, &ops, k, cand, cand_s, &got, err)))
        goto done;

    /* 6. the candidates, scored by the supernet for the runner and [final] */
    if (got == 0) {
        h->log(h->ctx, ET_LOG_LEVEL_WARN, "ranknas: the search found no candidate under the "
               "constraints");
        rc = rankers_md(r, cand, cand_s, NULL, 0, err);
        goto done;
    }
    et_eval_result *res = malloc(sizeof *res * (size_t)got);
    if (!res) {
        rc = nomem(r, err);
        goto done;
    }
    if (!(rc = h->evaluate(h->ctx, cand, (int32_t)got, res, err)) &&
        ET_HOST_HAS(h, propose) && h->propose)
        rc = h->propose(h->ctx, cand, (int32_t)got, err);
    if (!rc)
        for (int64_t i = 0; i < got; i++) {
            char text[16384];
            if (h->arch_format(h->space, &cand[i], text, sizeof text) < 0)
                snprintf(text, sizeof text, "?");
            h->log(h->ctx, ET_LOG_LEVEL_INFO,
                   "ranknas: candidate %lld: ranker score %.6g, supernet %s %.6g: %s",
                   (long long)i + 1, cand_s[i],
                   OPT(r, TARGET).i == TARGET_LOSS ? "loss" : r->target_name,
                   OPT(r, TARGET).i == TARGET_LOSS ? res[i].loss : res[i].metric, text);
        }
    if (!rc)
        rc = rankers_md(r, cand, cand_s, res, got, err);
    free(res);
done:
    dataset_free(&dm);
    dataset_free(&dl);
    free(archs);
    free(cand);
    free(y);
    free(cand_s);
    free(lat);
    free(keep);
    return rc;
}

static const et_search_vtable ranknas_vtable = {ranknas_create, ranknas_destroy, ranknas_run};

static const et_plugin_descriptor ranknas_descriptor = {
    ET_ABI_VERSION,
    ET_PLUGIN_KIND_SEARCH,
    "ranknas",
    "RankNAS: supernet stopped by ranking stability, XGBoost rankers of performance and latency, "
    "feature pruning, evolution on the ranker's score",
    ranknas_options,
    &ranknas_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &ranknas_descriptor;
}
