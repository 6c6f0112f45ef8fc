/* The cost proxy ABI: figures of an architecture (parameters, FLOPs, latency,
 * memory, zero-cost scores). Each proxy names its figures; a constraint such
 * as `params_m <= 5` refers to a figure by name. Conventions: spec/costs.md. */
#ifndef ETNAS_PROXY_H
#define ETNAS_PROXY_H

#include <etnas/arch.h>
#include <etnas/host.h>
#include <etnas/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct et_proxy_vtable {
    int (*create)(const et_host *host, const et_option_value *opts, void **state, char **err);
    void (*destroy)(void *state); /* safe on NULL and after a failed create */
    /* NULL-terminated figure names, e.g. {"params_m", "embed_params_m", NULL}. */
    const char *const *figures;
    /* One value per figure for `arch` of host->space. */
    int (*measure)(void *state, const et_arch *arch, double *values, char **err);
} et_proxy_vtable;

#ifdef __cplusplus
}
#endif
#endif
