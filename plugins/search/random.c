/* random: the baseline strategy. Trains the shared supernet, then draws
 * architectures uniformly (per gene, HAT-style) from the space, redraws those
 * that break a constraint or were drawn before, and scores each with
 * inherited supernet weights. The runner keeps every score and picks the
 * best under the constraints. */
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

typedef struct random_search {
    const et_host *host;
    int64_t samples, supernet_steps, max_draws;
} random_search;

static const et_option_decl random_options[] = {
    {"samples", ET_OPTION_TYPE_INT, "100", 1, 1e9, NULL, "architectures to evaluate"},
    {"supernet_steps", ET_OPTION_TYPE_INT, "0", 0, 1e12, NULL,
     "supernet updates before sampling (0 = [train] steps)"},
    {"max_draws", ET_OPTION_TYPE_INT, "0", 0, 1e12, NULL,
     "draws allowed to find the samples (0 = 1000 x samples)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int random_create(const et_host *host, const et_option_value *opts, void **state, char **err)
{
    *state = NULL;
    if (!ET_HOST_HAS(host, satisfies) || !host->space) {
        *err = host->errorf("random: this etnas gives no evaluation services to search plugins");
        return ET_STATUS_ERR_UNSUPPORTED;
    }
    random_search *r = calloc(1, sizeof *r);
    if (!r) {
        *err = host->errorf("random: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    r->host = host;
    r->samples = opts[0].i;
    r->supernet_steps = opts[1].i;
    r->max_draws = opts[2].i ? opts[2].i : 1000 * opts[0].i;
    *state = r;
    return 0;
}

static void random_destroy(void *state)
{
    free(state);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int random_run(void *state, char **err)
{
    random_search *r = state;
    const et_host *h = r->host;
    int rc = h->train_supernet(h->ctx, r->supernet_steps, err);
    if (rc)
        return rc;
    et_arch *archs = malloc(sizeof *archs * (size_t)r->samples);
    uint64_t *seen = malloc(sizeof *seen * (size_t)r->samples);
    et_eval_result *res = malloc(sizeof *res * (size_t)r->samples);
    if (!archs || !seen || !res) {
        free(archs);
        free(seen);
        free(res);
        *err = h->errorf("random: out of memory for %lld samples", (long long)r->samples);
        return ET_STATUS_ERR_NOMEM;
    }
    et_rng rng = et_rng_from_seed(h->seed);
    int64_t n = 0, draws = 0;
    while (n < r->samples && draws < r->max_draws) {
        et_arch a;
        h->arch_sample(h->space, &rng, &a);
        draws++;
        uint64_t hash = h->arch_hash(h->space, &a);
        if (bsearch(&hash, seen, (size_t)n, sizeof *seen, cmp_u64))
            continue;
        int32_t ok;
        if ((rc = h->satisfies(h->ctx, &a, &ok, err)))
            goto done;
        if (!ok)
            continue;
        archs[n] = a;
        seen[n++] = hash;
        qsort(seen, (size_t)n, sizeof *seen, cmp_u64);
    }
    if (n < r->samples)
        h->log(h->ctx, ET_LOG_LEVEL_WARN,
               "random: %lld of %lld samples found in %lld draws (constraints too tight, or a "
               "small space)",
               (long long)n, (long long)r->samples, (long long)draws);
    for (int64_t i = 0; i < n; i++) {
        if ((rc = h->evaluate(h->ctx, &archs[i], 1, &res[i], err)))
            goto done;
        h->progress(h->ctx, "random search", i + 1, n);
    }
    h->log(h->ctx, ET_LOG_LEVEL_INFO, "random: evaluated %lld architectures", (long long)n);
done:
    free(archs);
    free(seen);
    free(res);
    return rc;
}

static const et_search_vtable random_vtable = {random_create, random_destroy, random_run};

static const et_plugin_descriptor random_descriptor = {
    ET_ABI_VERSION,
    ET_PLUGIN_KIND_SEARCH,
    "random",
    "uniform samples under the constraints, scored with inherited supernet weights",
    random_options,
    &random_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &random_descriptor;
}
