/* Architecture rankers on XGBoost's C API (ranker.h). */
#include "ranker.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xgboost/c_api.h>

#include <etnas/plugin.h>
#include <etnas/rng.h>

#include "fit_input.h"
#include "stats.h"

struct ranker {
    BoosterHandle booster;
    int64_t features, valid_rows;
    int32_t objective, rounds, folds;
    double valid_tau, valid_tau_se;
};

/* Saved form: magic, version, objective, rounds, folds, 4 zero bytes,
 * features, valid rows, tau, tau's standard error, the model's length, then
 * the XGBoost model. */
static const uint8_t ranker_magic[4] = {'E', 'T', 'R', 'K'};
enum { RANKER_FORMAT_VERSION = 2, RANKER_HEADER_BYTES = 6 * 4 + 5 * 8 };

#define fail et_fit_fail /* the shared message builder, under this file's short name */

static int check_shape(int64_t n, int64_t f, char **err)
{
    return et_fit_check_shape("ranker", n, f, INT32_MAX, err);
}

static int check_finite(const float *v, int64_t count, int64_t row_len, const char *what,
                        char **err)
{
    return et_fit_check_finite("ranker", v, count, row_len, what, err);
}

/* An XGBoost call failed: its own message says why. */
static int fail_xgb(char **err, const char *call)
{
    return fail(err, ET_STATUS_ERR_INTERNAL, "ranker: XGBoost %s failed: %s", call,
                XGBGetLastError());
}

void ranker_config_default(ranker_config *cfg)
{
    cfg->objective = RANKER_OBJECTIVE_PAIRWISE;
    cfg->max_depth = 6;
    cfg->learning_rate = 0.1;
    cfg->rounds = 1000;
    cfg->min_rounds = 50;
    cfg->early_stopping = 5;
    cfg->folds = 5;
    cfg->valid_fraction = 0.1;
    cfg->seed = 0;
    cfg->nthread = 1;
}

static int check_config(const ranker_config *cfg, char **err)
{
    if (cfg->objective != RANKER_OBJECTIVE_PAIRWISE &&
        cfg->objective != RANKER_OBJECTIVE_SQUARED_ERROR)
        return fail(err, ET_STATUS_ERR_USAGE,
                    "ranker: objective %d is neither pairwise (0) nor squared error (1)",
                    (int)cfg->objective);
    if (cfg->max_depth < 1 || cfg->max_depth > 64)
        return fail(err, ET_STATUS_ERR_USAGE, "ranker: max_depth %d is outside 1..64",
                    (int)cfg->max_depth);
    if (!(cfg->learning_rate > 0 && cfg->learning_rate <= 1))
        return fail(err, ET_STATUS_ERR_USAGE, "ranker: learning rate %g is outside (0, 1]",
                    cfg->learning_rate);
    if (cfg->rounds < 1)
        return fail(err, ET_STATUS_ERR_USAGE, "ranker: rounds %d must be at least 1",
                    (int)cfg->rounds);
    if (cfg->min_rounds < 1)
        return fail(err, ET_STATUS_ERR_USAGE, "ranker: min_rounds %d must be at least 1",
                    (int)cfg->min_rounds);
    if (cfg->folds < 0 || cfg->folds == 1)
        return fail(err, ET_STATUS_ERR_USAGE,
                    "ranker: folds %d must be 0 (one held-out share) or at least 2",
                    (int)cfg->folds);
    if (cfg->early_stopping < 0)
        return fail(err, ET_STATUS_ERR_USAGE, "ranker: early_stopping %d must be 0 or more",
                    (int)cfg->early_stopping);
    if (!(cfg->valid_fraction >= 0 && cfg->valid_fraction <= 0.9))
        return fail(err, ET_STATUS_ERR_USAGE, "ranker: valid_fraction %g is outside [0, 0.9]",
                    cfg->valid_fraction);
    if (cfg->nthread < 1)
        return fail(err, ET_STATUS_ERR_USAGE, "ranker: nthread %d must be at least 1",
                    (int)cfg->nthread);
    return 0;
}

static int set_param(BoosterHandle b, const char *name, const char *value, char **err)
{
    if (XGBoosterSetParam(b, name, value) != 0)
        return fail(err, ET_STATUS_ERR_INTERNAL, "ranker: XGBoost rejected %s = %s: %s", name,
                    value, XGBGetLastError());
    return 0;
}

static int set_threads(BoosterHandle b, int32_t nthread, char **err)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%d", (int)nthread);
    int rc = set_param(b, "verbosity", "0", err);
    return rc ? rc : set_param(b, "nthread", buf, err);
}

static int set_params(BoosterHandle b, const ranker_config *cfg, char **err)
{
    char depth[32], eta[40], seed[32];
    snprintf(depth, sizeof depth, "%d", (int)cfg->max_depth);
    snprintf(eta, sizeof eta, "%.17g", cfg->learning_rate);
    /* XGBoost's seed is a signed integer; keep 31 bits of the mixed seed */
    snprintf(seed, sizeof seed, "%d", (int)(et_rng_mix64(cfg->seed) & 0x7fffffff));
    const char *objective =
        cfg->objective == RANKER_OBJECTIVE_PAIRWISE ? "rank:pairwise" : "reg:squarederror";
    int rc = set_threads(b, cfg->nthread, err);
    if (!rc)
        rc = set_param(b, "objective", objective, err);
    if (!rc)
        rc = set_param(b, "booster", "gbtree", err);
    /* exact greedy splits: deterministic, and fast at RankNAS's few thousand rows */
    if (!rc)
        rc = set_param(b, "tree_method", "exact", err);
    if (!rc)
        rc = set_param(b, "max_depth", depth, err);
    if (!rc)
        rc = set_param(b, "eta", eta, err);
    if (!rc)
        rc = set_param(b, "seed", seed, err);
    return rc;
}

/* d gets the rows x[idx[i]] (x's first n rows when idx is NULL), with the
 * labels y[idx[i]] when y is not NULL. */
static int make_dmatrix(const float *x, const float *y, const int64_t *idx, int64_t n, int64_t f,
                        DMatrixHandle *d, char **err)
{
    float *rows = NULL, *labels = NULL;
    if (idx) {
        rows = calloc((size_t)n * (size_t)f, sizeof *rows);
        labels = y ? calloc((size_t)n, sizeof *labels) : NULL;
        if (!rows || (y && !labels)) {
            free(rows);
            free(labels);
            return fail(err, ET_STATUS_ERR_NOMEM, "ranker: out of memory for %lld rows",
                        (long long)n);
        }
        for (int64_t i = 0; i < n; i++) {
            memcpy(rows + i * f, x + idx[i] * f, (size_t)f * sizeof *rows);
            if (y)
                labels[i] = y[idx[i]];
        }
    }
    int rc = 0;
    *d = NULL;
    if (XGDMatrixCreateFromMat(idx ? rows : x, (bst_ulong)n, (bst_ulong)f, NAN, d) != 0)
        rc = fail_xgb(err, "XGDMatrixCreateFromMat");
    else if (y && XGDMatrixSetFloatInfo(*d, "label", idx ? labels : y, (bst_ulong)n) != 0)
        rc = fail_xgb(err, "XGDMatrixSetFloatInfo(label)");
    if (rc && *d) {
        XGDMatrixFree(*d);
        *d = NULL;
    }
    free(rows);
    free(labels);
    return rc;
}

/* out (n) gets b's scores of d's n rows from its first `rounds` rounds
 * (0 = every round). */
static int predict_dmatrix(BoosterHandle b, DMatrixHandle d, int64_t n, int32_t rounds,
                           float *out, char **err)
{
    char config[160];
    snprintf(config, sizeof config,
             "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, "
             "\"iteration_end\": %d, \"strict_shape\": false}",
             (int)rounds);
    const bst_ulong *shape;
    bst_ulong dim;
    const float *res;
    if (XGBoosterPredictFromDMatrix(b, d, config, &shape, &dim, &res) != 0)
        return fail_xgb(err, "XGBoosterPredictFromDMatrix");
    bst_ulong total = 1;
    for (bst_ulong i = 0; i < dim; i++)
        total *= shape[i];
    if (total != (bst_ulong)n)
        return fail(err, ET_STATUS_ERR_INTERNAL,
                    "ranker: XGBoost returned %llu scores for %lld rows",
                    (unsigned long long)total, (long long)n);
    memcpy(out, res, (size_t)n * sizeof *out);
    return 0;
}

static double tau_of(const float *a, const float *b, int64_t n, double *work)
{
    for (int64_t i = 0; i < n; i++) {
        work[i] = a[i];
        work[n + i] = b[i];
    }
    return et_kendall_tau(work, work + n, (size_t)n);
}

static double rmse_of(const float *pred, const float *y, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += ((double)pred[i] - y[i]) * ((double)pred[i] - y[i]);
    return sqrt(s / (double)n);
}

/* A fresh booster holding b's first `rounds` rounds, through the saved bytes,
 * so a trained ranker is exactly what ranker_load would rebuild. */
static int detach_model(BoosterHandle b, int32_t rounds, int32_t total, int32_t nthread,
                        BoosterHandle *out, char **err)
{
    BoosterHandle src = b, sliced = NULL;
    *out = NULL;
    if (rounds < total) {
        if (XGBoosterSlice(b, 0, rounds, 1, &sliced) != 0)
            return fail_xgb(err, "XGBoosterSlice");
        src = sliced;
    }
    bst_ulong len;
    const char *bytes;
    int rc = 0;
    if (XGBoosterSaveModelToBuffer(src, "{\"format\": \"ubj\"}", &len, &bytes) != 0)
        rc = fail_xgb(err, "XGBoosterSaveModelToBuffer");
    else if (XGBoosterCreate(NULL, 0, out) != 0)
        rc = fail_xgb(err, "XGBoosterCreate");
    else if (XGBoosterLoadModelFromBuffer(*out, bytes, len) != 0)
        rc = fail_xgb(err, "XGBoosterLoadModelFromBuffer");
    else
        rc = set_threads(*out, nthread, err);
    if (rc && *out) {
        XGBoosterFree(*out);
        *out = NULL;
    }
    if (sliced)
        XGBoosterFree(sliced);
    return rc;
}

/* One split of the rows: a booster trained on some, scored on the others
 * (none when n_valid = 0). */
typedef struct fold {
    DMatrixHandle dtrain, dvalid;
    BoosterHandle b;
    float *valid_y, *pred; /* the held-out rows' targets and scores (n_valid) */
    double *work;          /* 2 n_valid, for tau */
    int64_t n_valid;
} fold;

static void fold_free(fold *s)
{
    if (s->b)
        XGBoosterFree(s->b);
    if (s->dtrain)
        XGDMatrixFree(s->dtrain);
    if (s->dvalid)
        XGDMatrixFree(s->dvalid);
    free(s->valid_y);
    free(s->pred);
    free(s->work);
}

/* A booster with cfg's parameters on the rows train[0, n_train) (every row
 * when train is NULL), scored on the rows valid[0, n_valid). */
static int fold_init(fold *s, const ranker_config *cfg, const float *x, const float *y,
                     int64_t f, const int64_t *train, int64_t n_train, const int64_t *valid,
                     int64_t n_valid, char **err)
{
    memset(s, 0, sizeof *s);
    s->n_valid = n_valid;
    int rc = make_dmatrix(x, y, train, n_train, f, &s->dtrain, err);
    if (!rc && n_valid > 0) {
        s->valid_y = malloc((size_t)n_valid * sizeof *s->valid_y);
        s->pred = malloc((size_t)n_valid * sizeof *s->pred);
        s->work = malloc(2 * (size_t)n_valid * sizeof *s->work);
        if (!s->valid_y || !s->pred || !s->work)
            return fail(err, ET_STATUS_ERR_NOMEM, "ranker: out of memory");
        for (int64_t i = 0; i < n_valid; i++)
            s->valid_y[i] = y[valid[i]];
        rc = make_dmatrix(x, NULL, valid, n_valid, f, &s->dvalid, err);
    }
    /* rank:pairwise: every training row in one query group, so every pair
     * of architectures is comparable */
    if (!rc && cfg->objective == RANKER_OBJECTIVE_PAIRWISE) {
        unsigned group = (unsigned)n_train;
        if (XGDMatrixSetUIntInfo(s->dtrain, "group", &group, 1) != 0)
            rc = fail_xgb(err, "XGDMatrixSetUIntInfo(group)");
    }
    if (!rc && XGBoosterCreate(&s->dtrain, 1, &s->b) != 0) {
        s->b = NULL;
        rc = fail_xgb(err, "XGBoosterCreate");
    }
    return rc ? rc : set_params(s->b, cfg, err);
}

/* s's held-out score of its booster's first `rounds` rounds (0 = all):
 * tau for rank:pairwise, -RMSE for reg:squarederror, or tau either way
 * when want_tau. NAN when undefined (a constant side). */
static int fold_score(fold *s, const ranker_config *cfg, int32_t rounds, int want_tau,
                      double *score, char **err)
{
    int rc = predict_dmatrix(s->b, s->dvalid, s->n_valid, rounds, s->pred, err);
    if (rc)
        return rc;
    *score = want_tau || cfg->objective == RANKER_OBJECTIVE_PAIRWISE
                 ? tau_of(s->pred, s->valid_y, s->n_valid, s->work)
                 : -rmse_of(s->pred, s->valid_y, s->n_valid);
    return 0;
}

/* Boosts the k folds' boosters together, up to cfg->rounds rounds; a
 * round's score is the mean of the folds' held-out scores (those defined),
 * looked at from min_rounds on. *done gets the rounds run, *keep those to
 * keep: the best-scoring count, or every round when none was scored. */
static int boost(const ranker_config *cfg, fold *folds, int32_t k, int32_t *done, int32_t *keep,
                 char **err)
{
    int32_t min = cfg->min_rounds < cfg->rounds ? cfg->min_rounds : cfg->rounds;
    int scored = folds[0].n_valid > 0;
    double best = -INFINITY;
    int32_t best_it = -1, it = 0;
    int rc = 0;
    for (; it < cfg->rounds && !rc; it++) {
        for (int32_t i = 0; i < k && !rc; i++)
            if (XGBoosterUpdateOneIter(folds[i].b, it, folds[i].dtrain) != 0)
                rc = fail_xgb(err, "XGBoosterUpdateOneIter");
        if (rc || !scored || it + 1 < min)
            continue;
        double sum = 0;
        int32_t defined = 0;
        for (int32_t i = 0; i < k && !rc; i++) {
            double s;
            if ((rc = fold_score(&folds[i], cfg, 0, 0, &s, err)) == 0 && !isnan(s)) {
                sum += s;
                defined++;
            }
        }
        double score = defined ? sum / defined : NAN;
        /* patience counts from the best round, or from the first one scored */
        int32_t since = best_it >= 0 ? best_it : min - 2;
        if (score > best) {
            best = score;
            best_it = it;
        } else if (cfg->early_stopping > 0 && it - since >= cfg->early_stopping) {
            it++;
            break;
        }
    }
    *done = it;
    *keep = best_it >= 0 ? best_it + 1 : it;
    return rc;
}

/* Mean and standard error of the folds' held-out tau at `rounds` rounds. */
static int folds_tau(const ranker_config *cfg, fold *folds, int32_t k, int32_t rounds,
                     double *mean, double *se, char **err)
{
    double sum = 0, sq = 0;
    int32_t m = 0;
    for (int32_t i = 0; i < k; i++) {
        double t;
        int rc = fold_score(&folds[i], cfg, rounds, 1, &t, err);
        if (rc)
            return rc;
        if (!isnan(t)) {
            sum += t;
            sq += t * t;
            m++;
        }
    }
    *mean = m ? sum / m : NAN;
    *se = m > 1 ? sqrt(fmax(0.0, (sq - sum * sum / m) / (m - 1)) / m) : NAN;
    return 0;
}

/* The model on every row for exactly `rounds` rounds. */
static int train_all(const ranker_config *cfg, const float *x, const float *y, int64_t n,
                     int64_t f, int32_t rounds, BoosterHandle *out, char **err)
{
    fold all;
    int rc = fold_init(&all, cfg, x, y, f, NULL, n, NULL, 0, err);
    for (int32_t it = 0; !rc && it < rounds; it++)
        if (XGBoosterUpdateOneIter(all.b, it, all.dtrain) != 0)
            rc = fail_xgb(err, "XGBoosterUpdateOneIter");
    if (!rc)
        rc = detach_model(all.b, rounds, rounds, cfg->nthread, out, err);
    fold_free(&all);
    return rc;
}

int ranker_train(const ranker_config *cfg, const float *x, const float *y, int64_t n, int64_t f,
                 ranker **out, char **err)
{
    *out = NULL;
    int rc = check_config(cfg, err);
    if (!rc)
        rc = check_shape(n, f, err);
    if (!rc)
        rc = check_finite(x, n * f, f, "the feature matrix", err);
    if (!rc)
        rc = check_finite(y, n, 1, "the target vector", err);
    if (rc)
        return rc;
    int32_t k = cfg->folds;
    int64_t n_valid = k >= 2 ? 0 : (int64_t)floor((double)n * cfg->valid_fraction + 0.5);
    if (k >= 2 && n < 2 * (int64_t)k)
        return fail(err, ET_STATUS_ERR_USAGE,
                    "ranker: %lld rows for %d folds; every fold needs at least 2 held-out rows "
                    "(more rows, or fewer folds)",
                    (long long)n, (int)k);
    if (k < 2 && cfg->valid_fraction > 0 && n_valid < 2)
        return fail(err, ET_STATUS_ERR_USAGE,
                    "ranker: %lld rows x valid_fraction %g hold out %lld; need at least 2 "
                    "(more rows, a larger fraction, or 0 for none)",
                    (long long)n, cfg->valid_fraction, (long long)n_valid);
    if (n - n_valid < 2)
        return fail(err, ET_STATUS_ERR_USAGE, "ranker: %lld training rows; need at least 2",
                    (long long)(n - n_valid));
    if ((uint64_t)n > UINT32_MAX)
        return fail(err, ET_STATUS_ERR_USAGE, "ranker: %lld rows is more than a query group holds",
                    (long long)n);

    /* seeded shuffle: fold i holds out perm[i n / k, (i + 1) n / k); the
     * single split holds out the first n_valid */
    int32_t nf = k >= 2 ? k : 1;
    int64_t *perm = malloc((size_t)n * sizeof *perm), *idx = malloc((size_t)n * sizeof *idx);
    fold *folds = calloc((size_t)nf, sizeof *folds);
    ranker *r = calloc(1, sizeof *r);
    if (!perm || !idx || !folds || !r) {
        free(perm);
        free(idx);
        free(folds);
        free(r);
        return fail(err, ET_STATUS_ERR_NOMEM, "ranker: out of memory for %lld rows",
                    (long long)n);
    }
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    et_rng rng = et_rng_from_seed(cfg->seed);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)et_rng_below(&rng, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int32_t ready = 0, done = 0, keep = 0;
    for (; !rc && ready < nf; ready++) {
        int64_t lo = k >= 2 ? ready * n / k : 0, hi = k >= 2 ? (ready + 1) * n / k : n_valid;
        memcpy(idx, perm, (size_t)lo * sizeof *idx);
        memcpy(idx + lo, perm + hi, (size_t)(n - hi) * sizeof *idx);
        rc = fold_init(&folds[ready], cfg, x, y, f, idx, n - (hi - lo), perm + lo, hi - lo, err);
    }
    if (!rc)
        rc = boost(cfg, folds, nf, &done, &keep, err);
    r->features = f;
    r->objective = cfg->objective;
    r->rounds = keep;
    r->folds = k >= 2 ? k : 0;
    r->valid_rows = k >= 2 ? n : n_valid;
    r->valid_tau = r->valid_tau_se = NAN;
    if (!rc && k >= 2) {
        rc = folds_tau(cfg, folds, k, keep, &r->valid_tau, &r->valid_tau_se, err);
        if (!rc)
            rc = train_all(cfg, x, y, n, f, keep, &r->booster, err);
    } else if (!rc) {
        rc = detach_model(folds[0].b, keep, done, cfg->nthread, &r->booster, err);
        if (!rc && n_valid > 0) {
            XGBoosterFree(folds[0].b);
            folds[0].b = r->booster; /* score the kept model itself */
            rc = fold_score(&folds[0], cfg, 0, 1, &r->valid_tau, err);
            folds[0].b = NULL;
        }
    }
    for (int32_t i = 0; i < ready; i++)
        fold_free(&folds[i]);
    free(folds);
    free(perm);
    free(idx);
    if (rc) {
        ranker_destroy(r);
        return rc;
    }
    *out = r;
    return 0;
}

int ranker_predict(const ranker *r, const float *x, int64_t n, float *scores, char **err)
{
    int rc = check_shape(n, r->features, err);
    if (!rc)
        rc = check_finite(x, n * r->features, r->features, "the feature matrix", err);
    if (rc)
        return rc;
    DMatrixHandle d;
    if ((rc = make_dmatrix(x, NULL, NULL, n, r->features, &d, err)) != 0)
        return rc;
    rc = predict_dmatrix(r->booster, d, n, 0, scores, err);
    XGDMatrixFree(d);
    return rc;
}

int64_t ranker_features(const ranker *r)
{
    return r->features;
}

int32_t ranker_rounds(const ranker *r)
{
    return r->rounds;
}

double ranker_valid_tau(const ranker *r)
{
    return r->valid_tau;
}

double ranker_valid_tau_se(const ranker *r)
{
    return r->valid_tau_se;
}

int32_t ranker_folds(const ranker *r)
{
    return r->folds;
}

int64_t ranker_valid_rows(const ranker *r)
{
    return r->valid_rows;
}

int ranker_gain(const ranker *r, double *gain, char **err)
{
    for (int64_t j = 0; j < r->features; j++)
        gain[j] = 0;
    bst_ulong n_names, dim;
    const char **names;
    const bst_ulong *shape;
    const float *scores;
    if (XGBoosterFeatureScore(r->booster, "{\"importance_type\": \"total_gain\"}", &n_names,
                              &names, &dim, &shape, &scores) != 0)
        return fail_xgb(err, "XGBoosterFeatureScore");
    /* only the features some split uses are listed, by XGBoost's default
     * names f0, f1, ... */
    for (bst_ulong i = 0; i < n_names; i++) {
        char *end;
        long long j = names[i][0] == 'f' ? strtoll(names[i] + 1, &end, 10) : -1;
        if (j < 0 || j >= r->features || *end != '\0')
            return fail(err, ET_STATUS_ERR_INTERNAL,
                        "ranker: XGBoost named a feature \"%s\"; expected f0..f%lld", names[i],
                        (long long)r->features - 1);
        gain[j] = scores[i];
    }
    return 0;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

int ranker_save(const ranker *r, uint8_t **buf, size_t *len, char **err)
{
    *buf = NULL;
    *len = 0;
    bst_ulong model_len;
    const char *model;
    if (XGBoosterSaveModelToBuffer(r->booster, "{\"format\": \"ubj\"}", &model_len, &model) != 0)
        return fail_xgb(err, "XGBoosterSaveModelToBuffer");
    size_t total = RANKER_HEADER_BYTES + (size_t)model_len;
    uint8_t *p = malloc(total);
    if (!p)
        return fail(err, ET_STATUS_ERR_NOMEM, "ranker: out of memory for a %zu-byte model",
                    total);
    uint64_t tau_bits, se_bits;
    memcpy(&tau_bits, &r->valid_tau, sizeof tau_bits);
    memcpy(&se_bits, &r->valid_tau_se, sizeof se_bits);
    memcpy(p, ranker_magic, 4);
    put_u32(p + 4, RANKER_FORMAT_VERSION);
    put_u32(p + 8, (uint32_t)r->objective);
    put_u32(p + 12, (uint32_t)r->rounds);
    put_u32(p + 16, (uint32_t)r->folds);
    put_u32(p + 20, 0);
    put_u64(p + 24, (uint64_t)r->features);
    put_u64(p + 32, (uint64_t)r->valid_rows);
    put_u64(p + 40, tau_bits);
    put_u64(p + 48, se_bits);
    put_u64(p + 56, (uint64_t)model_len);
    memcpy(p + RANKER_HEADER_BYTES, model, (size_t)model_len);
    *buf = p;
    *len = total;
    return 0;
}

/* r->booster from XGBoost's model bytes, checked against the header. */
static int load_booster(ranker *r, const uint8_t *model, uint64_t model_len, int32_t nthread,
                        uint64_t features, uint32_t rounds, char **err)
{
    if (XGBoosterCreate(NULL, 0, &r->booster) != 0) {
        r->booster = NULL;
        return fail_xgb(err, "XGBoosterCreate");
    }
    if (XGBoosterLoadModelFromBuffer(r->booster, model, (bst_ulong)model_len) != 0)
        return fail(err, ET_STATUS_ERR_FORMAT, "ranker: XGBoost could not read the model: %s",
                    XGBGetLastError());
    int rc = set_threads(r->booster, nthread, err);
    if (rc)
        return rc;
    bst_ulong model_features = 0;
    int model_rounds = 0;
    if (XGBoosterGetNumFeature(r->booster, &model_features) != 0)
        return fail_xgb(err, "XGBoosterGetNumFeature");
    if (XGBoosterBoostedRounds(r->booster, &model_rounds) != 0)
        return fail_xgb(err, "XGBoosterBoostedRounds");
    if (model_features != features || model_rounds != (int)rounds)
        return fail(err, ET_STATUS_ERR_FORMAT,
                    "ranker: the model has %llu features and %d rounds; the header says %llu "
                    "and %u",
                    (unsigned long long)model_features, model_rounds,
                    (unsigned long long)features, (unsigned)rounds);
    return 0;
}

int ranker_load(const uint8_t *buf, size_t len, int32_t nthread, ranker **out, char **err)
{
    *out = NULL;
    if (nthread < 1)
        return fail(err, ET_STATUS_ERR_USAGE, "ranker: nthread %d must be at least 1",
                    (int)nthread);
    if (len < RANKER_HEADER_BYTES || memcmp(buf, ranker_magic, 4) != 0)
        return fail(err, ET_STATUS_ERR_FORMAT, "ranker: not a saved ranker (%zu bytes)", len);
    uint32_t version = get_u32(buf + 4);
    if (version != RANKER_FORMAT_VERSION)
        return fail(err, ET_STATUS_ERR_FORMAT,
                    "ranker: saved format version %u; this build reads %d (train it again)",
                    (unsigned)version, RANKER_FORMAT_VERSION);
    uint32_t objective = get_u32(buf + 8), rounds = get_u32(buf + 12), folds = get_u32(buf + 16);
    uint64_t features = get_u64(buf + 24), valid_rows = get_u64(buf + 32);
    uint64_t tau_bits = get_u64(buf + 40), se_bits = get_u64(buf + 48);
    uint64_t model_len = get_u64(buf + 56);
    if (model_len != len - RANKER_HEADER_BYTES)
        return fail(err, ET_STATUS_ERR_FORMAT,
                    "ranker: the header announces a %llu-byte model but %zu bytes follow "
                    "(truncated?)",
                    (unsigned long long)model_len, len - RANKER_HEADER_BYTES);
    if (objective > RANKER_OBJECTIVE_SQUARED_ERROR || rounds < 1 || rounds > INT32_MAX ||
        folds == 1 || folds > INT32_MAX || features < 1 || features > INT32_MAX ||
        valid_rows > INT64_MAX)
        return fail(err, ET_STATUS_ERR_FORMAT, "ranker: the saved header is corrupt");
    ranker *r = calloc(1, sizeof *r);
    if (!r)
        return fail(err, ET_STATUS_ERR_NOMEM, "ranker: out of memory");
    int rc = load_booster(r, buf + RANKER_HEADER_BYTES, model_len, nthread, features, rounds, err);
    if (rc) {
        ranker_destroy(r);
        return rc;
    }
    r->objective = (int32_t)objective;
    r->rounds = (int32_t)rounds;
    r->features = (int64_t)features;
    r->folds = (int32_t)folds;
    r->valid_rows = (int64_t)valid_rows;
    memcpy(&r->valid_tau, &tau_bits, sizeof r->valid_tau);
    memcpy(&r->valid_tau_se, &se_bits, sizeof r->valid_tau_se);
    *out = r;
    return 0;
}

void ranker_destroy(ranker *r)
{
    if (!r)
        return;
    if (r->booster)
        XGBoosterFree(r->booster);
    free(r);
}

int ranker_tau_importance(const float *x, const float *y, int64_t n, int64_t f,
                          double *importance, char **err)
{
    int rc = check_shape(n, f, err);
    if (!rc)
        rc = check_finite(x, n * f, f, "the feature matrix", err);
    if (!rc)
        rc = check_finite(y, n, 1, "the target vector", err);
    if (rc)
        return rc;
    double *col = malloc(2 * (size_t)n * sizeof *col);
    if (!col)
        return fail(err, ET_STATUS_ERR_NOMEM, "ranker: out of memory for %lld rows",
                    (long long)n);
    double *target = col + n;
    for (int64_t i = 0; i < n; i++)
        target[i] = y[i];
    for (int64_t j = 0; j < f; j++) {
        for (int64_t i = 0; i < n; i++)
            col[i] = x[i * f + j];
        double tau = et_kendall_tau(col, target, (size_t)n);
        importance[j] = isnan(tau) ? 0.0 : fabs(tau);
    }
    free(col);
    return 0;
}

int64_t ranker_top_k(const double *importance, int64_t f, int64_t k, int64_t *index)
{
    if (k > f)
        k = f;
    if (k <= 0)
        return 0;
    /* selection by insertion into the first k slots: f is a few dozen */
    int64_t count = 0;
    for (int64_t j = 0; j < f; j++) {
        double v = isnan(importance[j]) ? -INFINITY : importance[j];
        int64_t pos = count;
        while (pos > 0) {
            double u = importance[index[pos - 1]];
            if (isnan(u))
                u = -INFINITY;
            /* only strictly greater moves up, so equal importances stay in index order */
            if (!(v > u))
                break;
            pos--;
        }
        if (pos >= k)
            continue;
        int64_t last = count < k ? count : k - 1;
        for (int64_t t = last; t > pos; t--)
            index[t] = index[t - 1];
        index[pos] = j;
        if (count < k)
            count++;
    }
    return count;
}
