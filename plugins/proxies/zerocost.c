/* zerocost: training-free scores of an architecture (spec/search.md):
 * grad_norm, snip, synflow and jacob_cov from one training minibatch at
 * initialisation (Abdelfattah et al., ICLR 2021), and LTS's non-embedding
 * parameter count (Javaheripi et al., 2022). Every arch is scored from the
 * same seeded initialisation and the same batch, so scores compare; higher
 * is better for all five as the papers use them (synflow may be negative:
 * LayerNorm centres the all-positive signal). The engine computes them
 * (host->zerocost); this plugin names the figures. */
#include <stdlib.h>

#include <etnas/etnas.h>

typedef struct zc_state {
    const et_host *host;
    int32_t batch;
    uint64_t seed;
} zc_state;

static const et_option_decl zc_options[] = {
    {"batch", ET_OPTION_TYPE_INT, "64", 2, 4096, NULL, "examples in the scoring minibatch"},
    {"init_seed", ET_OPTION_TYPE_INT, "0", 0, 9007199254740991.0, NULL,
     "seed of the initialisation every arch is scored from (0: from the experiment seed)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int zc_create(const et_host *host, const et_option_value *opts, void **state, char **err)
{
    *state = NULL;
    if (!ET_HOST_HAS(host, zerocost)) {
        *err = host->errorf("zerocost: this etnas gives no zero-cost scoring to proxies");
        return ET_STATUS_ERR_UNSUPPORTED;
    }
    zc_state *z = calloc(1, sizeof *z);
    if (!z) {
        *err = host->errorf("zerocost: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    z->host = host;
    z->batch = (int32_t)opts[0].i;
    z->seed = opts[1].i ? (uint64_t)opts[1].i : host->seed;
    *state = z;
    return 0;
}

static void zc_destroy(void *state)
{
    free(state);
}

static int zc_measure(void *state, const et_arch *arch, double *values, char **err)
{
    const zc_state *z = state;
    return z->host->zerocost(z->host->ctx, arch, z->batch, z->seed, values, err);
}

static const char *const zc_figures[] = {"zc_grad_norm", "zc_snip", "zc_synflow", "zc_jacob_cov",
                                         "lts_params_m", NULL};

static const et_proxy_vtable zc_vtable = {
    .create = zc_create,
    .destroy = zc_destroy,
    .figures = zc_figures,
    .measure = zc_measure,
};

static const et_plugin_descriptor zc_descriptor = {
    .abi_version = ET_ABI_VERSION,
    .kind = ET_PLUGIN_KIND_PROXY,
    .name = "zerocost",
    .summary = "zero-cost scores at initialisation (zc_grad_norm, zc_snip, zc_synflow, "
               "zc_jacob_cov) and LTS's non-embedding parameters (lts_params_m)",
    .options = zc_options,
    .vtable = &zc_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &zc_descriptor;
}
