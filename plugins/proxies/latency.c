/* latency: forward latency measured on this host with the engine, never
 * guessed (spec/costs.md): batch 1 at the task's reference length, warm-up
 * runs, then timed runs with the fastest and slowest 10 % dropped. A
 * measurement whose std/mean is over max_cv is taken again (up to `retries`
 * times) and flagged in the log if it stays noisy. */
#include <math.h>
#include <stdlib.h>

#include <etnas/etnas.h>

typedef struct latency {
    const et_host *host;
    int32_t warmup, runs, retries;
    double max_cv;
} latency;

static const et_option_decl latency_options[] = {
    {"warmup", ET_OPTION_TYPE_INT, "5", 0, 1e6, NULL, "untimed runs first"},
    {"runs", ET_OPTION_TYPE_INT, "30", 1, 1e6, NULL, "timed runs"},
    {"max_cv", ET_OPTION_TYPE_FLOAT, "0.05", 0, 10, NULL,
     "largest std/mean accepted before measuring again (RankNAS used 0.015)"},
    {"retries", ET_OPTION_TYPE_INT, "2", 0, 100, NULL, "measurements again when too noisy"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const char *const latency_figures[] = {"latency_ms", "latency_std_ms", NULL};

static int latency_create(const et_host *host, const et_option_value *opts, void **state,
                          char **err)
{
    *state = NULL;
    if (!ET_HOST_HAS(host, measure_latency) || !host->measure_latency) {
        *err = host->errorf("latency: this host cannot run the model (use it inside etnas run)");
        return ET_STATUS_ERR_UNSUPPORTED;
    }
    latency *l = calloc(1, sizeof *l);
    if (!l) {
        *err = host->errorf("latency: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    *l = (latency){host, (int32_t)opts[0].i, (int32_t)opts[1].i, (int32_t)opts[3].i, opts[2].f};
    *state = l;
    return 0;
}

static void latency_destroy(void *state)
{
    free(state);
}

static int latency_measure(void *state, const et_arch *arch, double *values, char **err)
{
    latency *l = state;
    const et_host *h = l->host;
    double mean = NAN, std = NAN;
    for (int32_t attempt = 0; attempt <= l->retries; attempt++) {
        int rc = h->measure_latency(h->ctx, arch, l->warmup, l->runs, &mean, &std, err);
        if (rc)
            return rc;
        if (mean > 0 && std / mean <= l->max_cv)
            break;
        if (attempt == l->retries)
            h->log(h->ctx, ET_LOG_LEVEL_WARN,
                   "latency: noisy measurement kept (std/mean %.3f > %.3f after %d tries)",
                   mean > 0 ? std / mean : 0.0, l->max_cv, attempt + 1);
    }
    values[0] = mean;
    values[1] = std;
    return 0;
}

static const et_proxy_vtable latency_vtable = {latency_create, latency_destroy, latency_figures,
                                               latency_measure};

static const et_plugin_descriptor latency_descriptor = {
    ET_ABI_VERSION, ET_PLUGIN_KIND_PROXY, "latency",
    "measured forward latency in ms on this host (batch 1, trimmed mean of timed runs)",
    latency_options, &latency_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &latency_descriptor;
}
