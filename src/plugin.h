/* The plugin loader and registry: search path, dlopen, ABI and descriptor
 * checks, lookup by kind and name. */
#ifndef ETNAS_CORE_PLUGIN_H
#define ETNAS_CORE_PLUGIN_H

#include <stddef.h>

#include <etnas/plugin.h>

typedef struct et_plugin {
    char *path;
    void *handle;
    const et_plugin_descriptor *desc;
} et_plugin;

typedef struct et_registry {
    et_plugin *items;
    size_t n, cap;
} et_registry;

/* The search path, in order: the built-in plugin directory (or, when etnas
 * runs from its build tree, that tree's plugin directories), then
 * ETNAS_PLUGIN_PATH (colon-separated), then `extra` (colon-separated, the
 * INI's plugin_path; may be NULL). Returns a malloc'd NULL-terminated array
 * of malloc'd strings. */
char **et_plugin_path(const char *extra);
void et_plugin_path_free(char **dirs);

/* Load every "*.so" of each directory (in name order; missing directories are
 * skipped). Any bad plugin stops the scan with a one-line error naming it. */
int et_registry_scan(et_registry *reg, char *const *dirs, char **err);
/* Load one plugin file. */
int et_registry_load(et_registry *reg, const char *path, char **err);
void et_registry_free(et_registry *reg);

/* Lookup by kind and name; NULL when absent. */
const et_plugin *et_registry_find(const et_registry *reg, int kind, const char *name);
/* Lookup by name for a use that needs `kind`: refuses a missing plugin (with
 * the closest name) and a plugin of another kind. `where` prefixes errors. */
int et_registry_get(const et_registry *reg, int kind, const char *name, const char *where,
                    const et_plugin **out, char **err);

const char *et_plugin_kind_name(int kind);

#endif
