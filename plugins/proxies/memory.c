/* memory: bytes one training step needs, as the engine sizes them: the
 * bound parameters with gradients and AdamW state, and the activation arena
 * at the training batch (spec/costs.md, "Memory"). Computed, not measured;
 * bench/engine compares the same figure with peak RSS. */
#include <stdlib.h>

#include <etnas/etnas.h>

typedef struct memory {
    const et_host *host;
    int32_t batch;
} memory;

static const et_option_decl memory_options[] = {
    {"batch", ET_OPTION_TYPE_INT, "0", 0, 1 << 20, NULL, "examples per step (0 = [train] batch_size)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const char *const memory_figures[] = {"memory_mb", NULL};

static int memory_create(const et_host *host, const et_option_value *opts, void **state,
                         char **err)
{
    *state = NULL;
    if (!ET_HOST_HAS(host, training_bytes) || !host->training_bytes) {
        *err = host->errorf("memory: this host cannot size the model (use it inside etnas run)");
        return ET_STATUS_ERR_UNSUPPORTED;
    }
    memory *m = calloc(1, sizeof *m);
    if (!m) {
        *err = host->errorf("memory: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    *m = (memory){host, (int32_t)opts[0].i};
    *state = m;
    return 0;
}

static void memory_destroy(void *state)
{
    free(state);
}

static int memory_measure(void *state, const et_arch *arch, double *values, char **err)
{
    memory *m = state;
    double bytes;
    int rc = m->host->training_bytes(m->host->ctx, arch, m->batch, &bytes, err);
    values[0] = bytes / 1e6;
    return rc;
}

static const et_proxy_vtable memory_vtable = {memory_create, memory_destroy, memory_figures,
                                              memory_measure};

static const et_plugin_descriptor memory_descriptor = {
    ET_ABI_VERSION, ET_PLUGIN_KIND_PROXY, "memory",
    "bytes of one training step (parameters, gradients, AdamW state, activations) in MB",
    memory_options, &memory_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &memory_descriptor;
}
