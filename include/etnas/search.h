/* The search strategy ABI: a strategy runs against the host services. It
 * draws every random decision from its own seeded stream (et_host.seed) so a
 * resumed run replays the same decisions. */
#ifndef ETNAS_SEARCH_H
#define ETNAS_SEARCH_H

#include <etnas/host.h>
#include <etnas/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct et_search_vtable {
    int (*create)(const et_host *host, const et_option_value *opts, void **state, char **err);
    void (*destroy)(void *state); /* safe on NULL and after a failed create */
    /* The whole search; results go to the host (store) as they are made. */
    int (*run)(void *state, char **err);
} et_search_vtable;

#ifdef __cplusplus
}
#endif
#endif
