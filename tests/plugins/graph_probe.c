/* graph_probe: a search plugin for the tests of what custom attention
 * operators cost (tests/test_opnas_costs.c). On the space's largest arch it
 * scores the space's own operator once with the supernet's weights, then
 * trains three operator sets of the encoder through host->train_custom --
 * the standard-attention graph in every layer, a cheaper graph in every
 * layer, and the two alternating -- and records the last as its final
 * result. What host->satisfies_custom and host->cost_custom say of each
 * set goes to the store as doubles, blobs "graph_probe/SET/ok",
 * "graph_probe/SET/flops_g" and "graph_probe/SET/unknown" (a figure no
 * proxy gives). Not shipped: built only for `make check`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/etnas.h>

#define STANDARD "opgraph(graph=matmul(softmax(scale(matmul(Q,transpose(K)))),V))"
#define CHEAP "opgraph(graph=matmul(Q,matmul(transpose(K),V)))"

enum { SETS = 3 };
static const char *const set_name[SETS] = {"standard", "cheap", "mixed"};

typedef struct probe {
    const et_host *host;
    int64_t steps;
} probe;

static const et_option_decl probe_options[] = {
    {"steps", ET_OPTION_TYPE_INT, "2", 1, 1e9, NULL, "updates of each operator set"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* The name of the first host member probe_run uses that host lacks, or
 * NULL when it has them all. satisfies_custom is the newest of them: a host
 * struct that reaches it holds the older ones too (host.h only appends),
 * though any of them may still be NULL, e.g. outside an experiment. */
static const char *missing_service(const et_host *host)
{
    if (!ET_HOST_HAS(host, satisfies_custom))
        return "satisfies_custom";
    const struct {
        const char *name;
        int present;
    } need[] = {
        {"space", host->space != NULL},
        {"arch_largest", host->arch_largest != NULL},
        {"evaluate", host->evaluate != NULL},
        {"train_custom", host->train_custom != NULL},
        {"cost_custom", host->cost_custom != NULL},
        {"satisfies_custom", host->satisfies_custom != NULL},
        {"blob_put", host->blob_put != NULL},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!need[i].present)
            return need[i].name;
    return NULL;
}

static int probe_create(const et_host *host, const et_option_value *opts, void **state,
                        char **err)
{
    *state = NULL;
    const char *missing = missing_service(host);
    if (missing) {
        *err = host->errorf("graph_probe: the host has no %s; the probe runs only as the "
                            "search of an experiment (tests/test_opnas_costs.c) on an etnas "
                            "with custom attention costs", missing);
        return ET_STATUS_ERR_UNSUPPORTED;
    }
    probe *p = calloc(1, sizeof *p);
    if (!p) {
        *err = host->errorf("graph_probe: out of memory");
        return ET_STATUS_ERR_NOMEM;
    }
    *p = (probe){host, opts[0].i};
    *state = p;
    return 0;
}

static void probe_destroy(void *state)
{
    free(state);
}

static int put(const et_host *h, const char *set, const char *what, double v, char **err)
{
    char key[96];
    snprintf(key, sizeof key, "graph_probe/%s/%s", set, what);
    return h->blob_put(h->ctx, key, &v, sizeof v, err);
}

static int probe_run(void *state, char **err)
{
    const probe *p = state;
    const et_host *h = p->host;
    et_arch a;
    h->arch_largest(h->space, &a);
    et_eval_result res;
    int rc = h->evaluate(h->ctx, &a, 1, &res, err);
    const char *ops[SETS][ET_MAX_LAYERS];
    for (int32_t l = 0; l < ET_MAX_LAYERS; l++) {
        ops[0][l] = STANDARD;
        ops[1][l] = CHEAP;
        ops[2][l] = l % 2 ? CHEAP : STANDARD;
    }
    for (int k = 0; k < SETS && !rc; k++) {
        int32_t ok;
        double flops, unknown;
        if ((rc = h->train_custom(h->ctx, &a, 0, ops[k], NULL, 0, p->steps, ET_SPLIT_VALID, -1,
                                  &res, NULL, NULL, err)) ||
            (rc = h->satisfies_custom(h->ctx, &a, 0, ops[k], &ok, err)) ||
            (rc = h->cost_custom(h->ctx, &a, 0, ops[k], "flops_g", &flops, err)) ||
            (rc = h->cost_custom(h->ctx, &a, 0, ops[k], "no_such_figure", &unknown, err)) ||
            (rc = put(h, set_name[k], "ok", ok, err)) ||
            (rc = put(h, set_name[k], "flops_g", flops, err)))
            break;
        rc = put(h, set_name[k], "unknown", unknown, err);
    }
    if (!rc)
        rc = h->train_custom(h->ctx, &a, 0, ops[2], NULL, 0, p->steps, ET_SPLIT_TEST, 0, &res,
                             NULL, NULL, err);
    return rc;
}

static const et_search_vtable probe_vtable = {probe_create, probe_destroy, probe_run};

static const et_plugin_descriptor probe_descriptor = {
    ET_ABI_VERSION, ET_PLUGIN_KIND_SEARCH, "graph_probe",
    "test search: custom attention operators' costs and constraints", probe_options,
    &probe_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &probe_descriptor;
}
