/* Architecture rankers for RankNAS (spec/search.md): gradient-boosted trees
 * through XGBoost's C API that learn to order feature vectors by a target
 * (a metric, a negated loss, a latency), plus the feature importance that
 * the search-space pruning rests on. Compiled into the plugins that use it
 * (with src/stats.c for Kendall's tau); nothing here is exported.
 *
 * Training holds out a seeded share of the rows: the boosting stops when the
 * held-out score has not improved for `early_stopping` rounds, and the model
 * keeps the rounds up to the best one. The held-out score is Kendall's tau-b
 * of the predictions with the targets for rank:pairwise, minus the RMSE for
 * reg:squarederror. Scores order rows like the targets: a higher target
 * earns a higher score (for reg:squarederror the score estimates the target).
 *
 * Same data, config, seed and thread count give the same model, bit for bit.
 *
 * Matrices are row-major floats: x (n, f). Every function that can fail
 * returns 0 or a negative et_status and, when err is not NULL, puts a
 * malloc'd one-line message in *err. */
#ifndef ETNAS_PLUGINS_RANKER_H
#define ETNAS_PLUGINS_RANKER_H

#include <stddef.h>
#include <stdint.h>

typedef enum ranker_objective {
    /* rank:pairwise with one query group of every training row (the paper) */
    RANKER_OBJECTIVE_PAIRWISE = 0,
    /* reg:squarederror (RankNAS's released code) */
    RANKER_OBJECTIVE_SQUARED_ERROR = 1
} ranker_objective;

typedef struct ranker_config {
    int32_t objective;      /* ranker_objective */
    int32_t max_depth;      /* 6 */
    double learning_rate;   /* eta: 0.1 */
    int32_t rounds;         /* at most this many boosting rounds: 1000 */
    int32_t early_stopping; /* rounds without a better held-out score before stopping: 5;
                               0 = run every round, still keeping those up to the best */
    double valid_fraction;  /* share of rows held out, [0, 0.9]: 0.1;
                               0 = none (every round kept, tau NAN) */
    uint64_t seed;          /* the held-out draw and XGBoost's seed */
    int32_t nthread;        /* XGBoost threads, >= 1: 1 (OpenMP threads spin: more than
                               the idle cores slows training down many times) */
} ranker_config;

typedef struct ranker ranker;

/* Fills cfg with the defaults above. */
void ranker_config_default(ranker_config *cfg);

/* Trains on x (n, f) and y (n); every value finite. Needs at least 2
 * training rows, and at least 2 held-out rows when valid_fraction > 0. */
int ranker_train(const ranker_config *cfg, const float *x, const float *y, int64_t n, int64_t f,
                 ranker **out, char **err);

/* scores (n) of the rows x (n, f) with f = ranker_features(r). */
int ranker_predict(const ranker *r, const float *x, int64_t n, float *scores, char **err);

int64_t ranker_features(const ranker *r);
/* Boosting rounds the model keeps (the best held-out round, 1-based). */
int32_t ranker_rounds(const ranker *r);
/* Held-out Kendall tau-b of the kept model's scores with the targets; NAN
 * when no rows were held out or one side is constant. */
double ranker_valid_tau(const ranker *r);
/* Rows held out by training. */
int64_t ranker_valid_rows(const ranker *r);

/* XGBoost's total gain of each feature over all splits: gain (f), 0 for a
 * feature that no split uses. */
int ranker_gain(const ranker *r, double *gain, char **err);

/* The model as bytes (a small little-endian header and XGBoost's UBJSON
 * model) in a malloc'd *buf of *len bytes, for the caller to store. */
int ranker_save(const ranker *r, uint8_t **buf, size_t *len, char **err);
/* A ranker from ranker_save's bytes, predicting with nthread threads; its
 * scores equal the saved one's. */
int ranker_load(const uint8_t *buf, size_t len, int32_t nthread, ranker **out, char **err);

/* Safe on NULL. */
void ranker_destroy(ranker *r);

/* importance (f): |Kendall tau-b| of each column of x (n, f) with y (n),
 * 0 for a constant column (RankNAS's released code skips those). */
int ranker_tau_importance(const float *x, const float *y, int64_t n, int64_t f,
                          double *importance, char **err);

/* Writes to index the min(k, f) features of highest importance, best first
 * (NAN counts as lowest, equal importances in index order); returns how
 * many. */
int64_t ranker_top_k(const double *importance, int64_t f, int64_t k, int64_t *index);

#endif
