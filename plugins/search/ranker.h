/* Architecture rankers for RankNAS (spec/search.md): gradient-boosted trees
 * through XGBoost's C API that learn to order feature vectors by a target
 * (a metric, a negated loss, a latency), plus the feature importance that
 * the search-space pruning rests on. Compiled into the plugins that use it
 * (with src/stats.c for Kendall's tau); nothing here is exported.
 *
 * Training chooses the number of boosting rounds on held-out rows: by
 * default k-fold cross-validation (every row held out once; a round's score
 * is the mean of the k held-out scores), then one model on every row for the
 * chosen count; or one seeded held-out share, the model being that split's
 * cut at its best round. The boosting stops when the held-out score has not
 * improved for `early_stopping` rounds, but never before `min_rounds`: on a
 * few dozen rows the first rounds' held-out score is mostly noise (a
 * 4-row split stopped RankNAS's quickstart ranker at its first tree). The
 * held-out score is Kendall's tau-b of the predictions with the targets for
 * rank:pairwise, minus the RMSE for reg:squarederror. Scores order rows like
 * the targets: a higher target earns a higher score (for reg:squarederror
 * the score estimates the target).
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
    int32_t min_rounds;     /* at least this many (or rounds, if fewer), whatever the
                               held-out score: 50 (at learning rate 0.1, a pairwise ranker
                               of a few dozen synthetic rows ranks fresh rows better and
                               better up to about 50 rounds, and hardly worse after) */
    int32_t early_stopping; /* rounds without a better held-out score before stopping: 5;
                               0 = run every round, still keeping those up to the best */
    int32_t folds;          /* k >= 2: k-fold cross-validation chooses the rounds: 5;
                               0: one held-out share of valid_fraction */
    double valid_fraction;  /* with folds = 0, share of rows held out, [0, 0.9]: 0.1;
                               0 = none (every round kept, tau NAN) */
    uint64_t seed;          /* the held-out draw and XGBoost's seed */
    int32_t nthread;        /* XGBoost threads, >= 1: 1 (OpenMP threads spin: more than
                               the idle cores slows training down many times) */
} ranker_config;

typedef struct ranker ranker;

/* Fills cfg with the defaults above. */
void ranker_config_default(ranker_config *cfg);

/* Trains on x (n, f) and y (n); every value finite. Needs at least 2
 * training rows, at least 2 held-out rows when valid_fraction > 0, and
 * n >= 2 folds with folds >= 2. */
int ranker_train(const ranker_config *cfg, const float *x, const float *y, int64_t n, int64_t f,
                 ranker **out, char **err);

/* scores (n) of the rows x (n, f) with f = ranker_features(r). */
int ranker_predict(const ranker *r, const float *x, int64_t n, float *scores, char **err);

int64_t ranker_features(const ranker *r);
/* Boosting rounds the model keeps (the best held-out round, 1-based). */
int32_t ranker_rounds(const ranker *r);
/* Held-out Kendall tau-b of the scores with the targets at the kept round
 * count: with folds, the mean over the folds of each fold model's tau on its
 * held-out rows; NAN when no rows were held out or one side is constant.
 * The count was chosen on the same rows, so it leans optimistic; a test
 * split that training never saw is the unbiased check. */
double ranker_valid_tau(const ranker *r);
/* Standard error of that mean over the folds (NAN without folds). */
double ranker_valid_tau_se(const ranker *r);
/* Folds of the cross-validation, 0 for one held-out share. */
int32_t ranker_folds(const ranker *r);
/* Rows held out by training (every row with folds). */
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
