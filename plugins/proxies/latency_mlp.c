/* latency_mlp: HAT's latency predictor as a proxy (spec/search.md). Its
 * figure is a prediction, and named so: latency_pred_ms.
 *
 * On first use it draws `samples` distinct archs from its own seeded stream,
 * measures each on this host with host->measure_latency (batch 1 at the
 * task's reference length, `warmup` untimed and `runs` timed runs, trimmed
 * mean), holds out a seeded `holdout` share, trains the MLP of mlp.h on the
 * rest (features from host->arch_features, which divides each by its
 * maximum in the space, as HAT does), and logs the held-out RMSE and
 * Kendall tau, which also go to the report (blob
 * artifact/latency_mlp-<seed>.md; the report sets each final model's
 * predicted latency beside the one a [proxy latency] measures). The
 * measurements (kept every `save_every` samples, so a
 * killed run loses few) and the trained model go to the run's store
 * (host->blob_put), so a resumed run neither measures nor trains again.
 *
 * Features: `hat` takes the leading summary features (HAT's ten for seq2seq
 * spaces; embedding dim, depth, mean FFN, mean heads and mean attention
 * choice for one-stack spaces), `all` adds every per-layer gene. HAT's ten
 * know nothing of the attention operator, which is what an mFormer space
 * chooses, so with `hat` a seq2seq space whose encoder or decoder offers
 * more than one operator also gets that stack's mean attention choice
 * (0 = every layer on the first operator listed, 1 = every layer on the
 * last). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

#include "mlp.h"

enum { FEATURES_HAT = 0, FEATURES_ALL = 1 };

typedef struct latency_mlp {
    const et_host *host;
    int64_t samples, steps, batch, hidden, hidden_layers, save_every;
    int32_t warmup, runs, features;
    double lr, holdout;
    int64_t f; /* features the model reads */
    int32_t attn_means[2]; /* hat on seq2seq: append the encoder's / decoder's mean attention */
    mlp *model;
    float *feat, *in; /* all features of one arch, and the model's input (f) */
} latency_mlp;

static const et_option_decl latency_mlp_options[] = {
    {"samples", ET_OPTION_TYPE_INT, "200", 4, 1e7, NULL,
     "architectures measured to train the predictor (HAT: 2000)"},
    {"warmup", ET_OPTION_TYPE_INT, "5", 0, 1e6, NULL, "untimed runs before each measurement"},
    {"runs", ET_OPTION_TYPE_INT, "30", 1, 1e6, NULL, "timed runs per measurement"},
    {"holdout", ET_OPTION_TYPE_FLOAT, "0.2", 0, 0.9, NULL,
     "share of the samples held out to report RMSE and Kendall tau (HAT: 0.2)"},
    {"features", ET_OPTION_TYPE_CHOICE, "hat", 0, -1, "hat|all",
     "model input: HAT's summary features, or those and every per-layer gene"},
    {"hidden", ET_OPTION_TYPE_INT, "400", 1, 100000, NULL, "units of every hidden layer"},
    {"hidden_layers", ET_OPTION_TYPE_INT, "3", 0, 100, NULL,
     "hidden-to-hidden layers after the first"},
    {"lr", ET_OPTION_TYPE_FLOAT, "1e-5", 1e-12, 10, NULL, "Adam learning rate"},
    {"batch", ET_OPTION_TYPE_INT, "128", 1, 1e6, NULL, "samples per update"},
    {"steps", ET_OPTION_TYPE_INT, "5000", 1, 1e9, NULL, "Adam updates"},
    {"save_every", ET_OPTION_TYPE_INT, "20", 1, 1e7, NULL,
     "measurements between saves to the store while sampling"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const char *const latency_mlp_figures[] = {"latency_pred_ms", NULL};

static void latency_mlp_destroy(void *state)
{
    latency_mlp *l = state;
    if (!l)
        return;
    mlp_destroy(l->model);
    free(l->feat);
    free(l->in);
    free(l);
}

static int latency_mlp_create(const et_host *host, const et_option_value *opts, void **state,
                              char **err)
{
    *state = NULL;
    if (!ET_HOST_HAS(host, blob_get) || !host->measure_latency || !host->space) {
        *err = host->errorf("latency_mlp: this host cannot measure the model (use it inside "
                            "etnas run)");
        return ET_STATUS_ERR_UNSUPPORTED;
    }
    latency_mlp *l = calloc(1, sizeof *l);
    if (!l) {
        *err = host->errorf("latency_mlp: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    l->host = host;
    l->samples = opts[0].i;
    l->warmup = (int32_t)opts[1].i;
    l->runs = (int32_t)opts[2].i;
    l->holdout = opts[3].f;
    l->features = (int32_t)opts[4].i;
    l->hidden = opts[5].i;
    l->hidden_layers = opts[6].i;
    l->lr = opts[7].f;
    l->batch = opts[8].i;
    l->steps = opts[9].i;
    l->save_every = opts[10].i;
    int64_t all = host->arch_feature_count(host->space);
    int64_t summary = host->space->kind == ET_MODEL_KIND_SEQ2SEQ ? 10 : 5;
    l->f = l->features == FEATURES_ALL || summary > all ? all : summary;
    if (l->features == FEATURES_HAT && host->space->kind == ET_MODEL_KIND_SEQ2SEQ) {
        l->attn_means[0] = host->space->enc.attention.n > 1;
        l->attn_means[1] = host->space->dec.attention.n > 1;
        l->f += l->attn_means[0] + l->attn_means[1];
    }
    l->feat = malloc(sizeof *l->feat * (size_t)all);
    l->in = malloc(sizeof *l->in * (size_t)l->f);
    if (!l->feat || !l->in) {
        latency_mlp_destroy(l);
        *err = host->errorf("latency_mlp: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    if (l->samples - (int64_t)floor(l->holdout * (double)l->samples) < 2) {
        latency_mlp_destroy(l);
        *err = host->errorf("latency_mlp: samples = %lld leaves fewer than 2 to train on after "
                            "the holdout share: raise samples or lower holdout",
                            (long long)opts[0].i);
        return ET_STATUS_ERR_USAGE;
    }
    *state = l;
    return 0;
}

/* ---------------------------------------------------------------- samples */

/* One measured sample as the store keeps it (native byte order: measured
 * latencies only mean something on the host that measured them). */
typedef struct sample {
    uint64_t hash;
    double mean_ms, std_ms;
} sample;

static void blob_key(const latency_mlp *l, const char *what, char *key, size_t n)
{
    snprintf(key, n, "latency_mlp/%016llx/%s/n%lld-w%d-r%d", (unsigned long long)l->host->seed,
             what, (long long)l->samples, l->warmup, l->runs);
}

static int save_samples(latency_mlp *l, const sample *s, int64_t n, char **err)
{
    char key[160];
    blob_key(l, "samples", key, sizeof key);
    return l->host->blob_put(l->host->ctx, key, s, sizeof *s * (size_t)n, err);
}

/* A stack's mean attention choice over its layers, in [0, 1]; 0 when the
 * space it is read against offers one operator (as a custom-operator
 * space seen while costing a graph arch may). */
static float attention_mean(const et_stack_space *ss, const et_stack_arch *sa)
{
    double sum = 0;
    for (int32_t i = 0; i < sa->layers && ss->attention.n > 1; i++)
        sum += (double)sa->layer[i].attention / (double)(ss->attention.n - 1);
    return sa->layers > 0 ? (float)(sum / sa->layers) : 0.0f;
}

/* The features of arch that the model reads, into out (l->f floats). */
static void model_input(latency_mlp *l, const et_arch *arch, float *out)
{
    const et_space *sp = l->host->space;
    int64_t n = l->f - l->attn_means[0] - l->attn_means[1];
    l->host->arch_features(sp, arch, l->feat);
    memcpy(out, l->feat, sizeof *out * (size_t)n);
    if (l->attn_means[0])
        out[n++] = attention_mean(&sp->enc, &arch->enc);
    if (l->attn_means[1])
        out[n++] = attention_mean(&sp->dec, &arch->dec);
}

/* Draws the sample archs in their fixed order, measures those the store
 * does not have yet, and fills x (samples, f) and y (samples). */
static int collect(latency_mlp *l, float *x, float *y, char **err)
{
    const et_host *h = l->host;
    sample *s = malloc(sizeof *s * (size_t)l->samples);
    uint64_t *seen = malloc(sizeof *seen * (size_t)l->samples);
    if (!s || !seen) {
        free(s);
        free(seen);
        *err = h->errorf("latency_mlp: out of memory for %lld samples", (long long)l->samples);
        return ET_STATUS_ERR_NOMEM;
    }
    char key[160];
    blob_key(l, "samples", key, sizeof key);
    void *data = NULL;
    size_t bytes = 0;
    int64_t have = 0;
    int rc = h->blob_get(h->ctx, key, &data, &bytes, err);
    if (rc == 1) {
        have = (int64_t)(bytes / sizeof *s);
        if (have > l->samples)
            have = l->samples;
        memcpy(s, data, sizeof *s * (size_t)have);
        rc = 0;
    }
    free(data);
    if (rc < 0)
        goto done;
    if (have > 0)
        h->log(h->ctx, ET_LOG_LEVEL_INFO, "latency_mlp: %lld of %lld latency samples from the "
               "store", (long long)have, (long long)l->samples);

    et_rng rng = et_rng_from_seed(h->seed);
    int64_t draws = 0, limit = 1000 * l->samples;
    for (int64_t i = 0; i < l->samples; i++) {
        et_arch a;
        uint64_t hash = 0;
        int fresh = 0;
        while (!fresh && draws < limit) {
            h->arch_sample(h->space, &rng, &a);
            draws++;
            hash = h->arch_hash(h->space, &a);
            fresh = 1;
            for (int64_t j = 0; j < i && fresh; j++)
                fresh = seen[j] != hash;
        }
        if (!fresh) {
            *err = h->errorf("latency_mlp: the space has fewer than samples = %lld distinct "
                             "architectures: lower samples", (long long)l->samples);
            rc = ET_STATUS_ERR_USAGE;
            goto done;
        }
        seen[i] = hash;
        if (i < have && s[i].hash != hash) {
            *err = h->errorf("latency_mlp: the stored latency samples belong to another space "
                             "or seed: start a new run");
            rc = ET_STATUS_ERR_FORMAT;
            goto done;
        }
        if (i >= have) {
            s[i].hash = hash;
            if ((rc = h->measure_latency(h->ctx, &a, l->warmup, l->runs, &s[i].mean_ms,
                                         &s[i].std_ms, err)))
                goto done;
            if ((i + 1) % l->save_every == 0 || i + 1 == l->samples)
                if ((rc = save_samples(l, s, i + 1, err)))
                    goto done;
            h->progress(h->ctx, "latency samples", i + 1, l->samples);
        }
        model_input(l, &a, x + (size_t)i * (size_t)l->f);
        y[i] = (float)s[i].mean_ms;
    }
done:
    free(s);
    free(seen);
    return rc;
}

/* ---------------------------------------------------------------- training */

static void model_key(const latency_mlp *l, char *key, size_t n)
{
    char base[160];
    blob_key(l, "model", base, sizeof base);
    snprintf(key, n, "%s-f%d-i%lld-h%lldx%lld-lr%g-b%lld-s%lld-o%g", base, l->features,
             (long long)l->f, (long long)l->hidden, (long long)l->hidden_layers, l->lr, (long long)l->batch,
             (long long)l->steps, l->holdout);
}

/* The report's page on the predictor: its held-out RMSE and Kendall tau
 * (held_y: the held-out measured latencies; NAN figures when held < 2). */
static int report_page(latency_mlp *l, int64_t fit, int64_t held, const float *held_y,
                       double rmse, double tau, char **err)
{
    const et_host *h = l->host;
    double mean = 0;
    for (int64_t i = 0; i < held; i++)
        mean += held_y[i] / (double)held;
    char page[1024];
    int n = snprintf(page, sizeof page,
                     "# latency_mlp: the latency predictor\n\nHAT's MLP (%lld inputs, %lld "
                     "hidden layers of %lld, ReLU; Adam, lr %g, %lld steps of %lld) trained on "
                     "%lld latencies measured on this host, %lld more held out. Its figure, "
                     "latency_pred_ms, is a prediction.\n\n| held-out samples | RMSE (ms) | "
                     "mean measured (ms) | Kendall tau |\n|---|---|---|---|\n",
                     (long long)l->f, (long long)l->hidden_layers + 1, (long long)l->hidden,
                     l->lr, (long long)l->steps, (long long)l->batch, (long long)fit,
                     (long long)held);
    size_t o = n < 0 ? 0 : (size_t)n < sizeof page ? (size_t)n : sizeof page - 1;
    if (held >= 2)
        n = snprintf(page + o, sizeof page - o, "| %lld | %.4g | %.4g | %.4f |\n",
                     (long long)held, rmse, mean, tau);
    else
        n = snprintf(page + o, sizeof page - o, "| %lld | - | - | - |\n", (long long)held);
    o += n < 0 ? 0 : (size_t)n < sizeof page - o ? (size_t)n : sizeof page - o - 1;
    char key[96];
    snprintf(key, sizeof key, "artifact/latency_mlp-%016llx.md", (unsigned long long)h->seed);
    return h->blob_put(h->ctx, key, page, o, err);
}

static int train(latency_mlp *l, char **err)
{
    const et_host *h = l->host;
    char key[320];
    model_key(l, key, sizeof key);
    void *data = NULL;
    size_t bytes = 0;
    int rc = h->blob_get(h->ctx, key, &data, &bytes, err);
    if (rc == 1) {
        rc = mlp_load(data, bytes, &l->model, err);
        free(data);
        if (!rc)
            h->log(h->ctx, ET_LOG_LEVEL_INFO, "latency_mlp: predictor from the store");
        return rc;
    }
    if (rc < 0)
        return rc;

    int64_t n = l->samples, f = l->f;
    float *x = malloc(sizeof *x * (size_t)(n * f)), *y = malloc(sizeof *y * (size_t)n);
    float *xs = malloc(sizeof *xs * (size_t)(n * f)), *ys = malloc(sizeof *ys * (size_t)n);
    float *ones = malloc(sizeof *ones * (size_t)f);
    int64_t *order = malloc(sizeof *order * (size_t)n);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!x || !y || !xs || !ys || !ones || !order) {
        *err = h->errorf("latency_mlp: out of memory for %lld samples", (long long)n);
        rc = ET_STATUS_ERR_NOMEM;
        goto done;
    }
    if ((rc = collect(l, x, y, err)))
        goto done;

    /* a seeded shuffle; the last `holdout` share is held out */
    et_rng base = et_rng_from_seed(h->seed), rng = et_rng_split(&base, 1);
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)et_rng_below(&rng, (uint64_t)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int64_t i = 0; i < n; i++) {
        memcpy(xs + i * f, x + order[i] * f, sizeof *xs * (size_t)f);
        ys[i] = y[order[i]];
    }
    for (int64_t j = 0; j < f; j++)
        ones[j] = 1.0f; /* host->arch_features already divides by the space's maxima */
    int64_t held = (int64_t)floor(l->holdout * (double)n), fit = n - held;
    double rmse = NAN, tau = NAN;
    mlp_config cfg;
    mlp_config_default(&cfg);
    cfg.hidden = (int32_t)l->hidden;
    cfg.hidden_layers = (int32_t)l->hidden_layers;
    cfg.lr = l->lr;
    cfg.batch = (int32_t)l->batch;
    cfg.steps = l->steps;
    cfg.seed = et_rng_mix64(h->seed ^ UINT64_C(0x6c6174656e6379));
    if ((rc = mlp_train(&cfg, xs, ys, fit, f, ones, &l->model, err)))
        goto done;
    if (held >= 2) {
        if ((rc = mlp_evaluate(l->model, xs + fit * f, ys + fit, held, &rmse, &tau, err)))
            goto done;
        h->log(h->ctx, ET_LOG_LEVEL_INFO,
               "latency_mlp: predicted latency on %lld held-out samples: RMSE %.4g ms, "
               "Kendall tau %.3f (trained on %lld)",
               (long long)held, rmse, tau, (long long)fit);
    } else {
        h->log(h->ctx, ET_LOG_LEVEL_INFO,
               "latency_mlp: trained on %lld samples; none held out, so no RMSE or tau",
               (long long)fit);
    }
    if (!(rc = mlp_save(l->model, &buf, &len, err)))
        rc = h->blob_put(h->ctx, key, buf, len, err);
    if (!rc)
        rc = report_page(l, fit, held, ys + fit, rmse, tau, err);
done:
    free(x);
    free(y);
    free(xs);
    free(ys);
    free(ones);
    free(order);
    free(buf);
    if (rc) {
        mlp_destroy(l->model);
        l->model = NULL;
    }
    return rc;
}

static int latency_mlp_measure(void *state, const et_arch *arch, double *values, char **err)
{
    latency_mlp *l = state;
    int rc;
    if (!l->model && (rc = train(l, err)))
        return rc;
    float out;
    model_input(l, arch, l->in);
    if ((rc = mlp_predict(l->model, l->in, 1, &out, err)))
        return rc;
    values[0] = out;
    return 0;
}

static const et_proxy_vtable latency_mlp_vtable = {latency_mlp_create, latency_mlp_destroy,
                                                   latency_mlp_figures, latency_mlp_measure};

static const et_plugin_descriptor latency_mlp_descriptor = {
    ET_ABI_VERSION, ET_PLUGIN_KIND_PROXY, "latency_mlp",
    "predicted forward latency in ms (HAT's MLP trained on latencies measured on this host)",
    latency_mlp_options, &latency_mlp_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &latency_mlp_descriptor;
}
