/* The plugin loader and registry: search path, dlopen, ABI and descriptor
 * checks, lookup by kind and name. */
#include "plugin.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <etnas/etnas.h>

#include "options.h"
#include "util.h"

#ifndef ET_PKGLIBDIR
#define ET_PKGLIBDIR "/usr/local/lib/etnas"
#endif

static const char *const build_tree_dirs[] = {"plugins/attention/.libs", "plugins/search/.libs",
                                              "plugins/tasks/.libs", "plugins/proxies/.libs", NULL};

const char *et_plugin_kind_name(int kind)
{
    switch (kind) {
    case ET_PLUGIN_KIND_ATTENTION:
        return "attention";
    case ET_PLUGIN_KIND_SEARCH:
        return "search";
    case ET_PLUGIN_KIND_TASK:
        return "task";
    case ET_PLUGIN_KIND_PROXY:
        return "proxy";
    default:
        return "unknown";
    }
}

static int push(char ***v, size_t *n, const char *s, size_t len)
{
    if (len == 0)
        return 0;
    char **nv = realloc(*v, (*n + 2) * sizeof **v);
    if (!nv)
        return -1;
    *v = nv;
    nv[*n] = strndup(s, len);
    if (!nv[*n])
        return -1;
    nv[++*n] = NULL;
    return 0;
}

static int push_list(char ***v, size_t *n, const char *list)
{
    for (const char *s = list; s && *s;) {
        const char *colon = strchr(s, ':');
        size_t len = colon ? (size_t)(colon - s) : strlen(s);
        if (push(v, n, s, len))
            return -1;
        s = colon ? colon + 1 : s + len;
    }
    return 0;
}

/* The directory of the running executable when it is etnas's build tree
 * (libetnas.la beside it), else NULL. */
static char *build_tree(void)
{
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return NULL;
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = 0;
    char probe[PATH_MAX + 16];
    snprintf(probe, sizeof probe, "%s/libetnas.la", exe);
    return access(probe, F_OK) == 0 ? et_strdup(exe) : NULL;
}

char **et_plugin_path(const char *extra)
{
    char **v = calloc(1, sizeof *v);
    size_t n = 0;
    if (!v)
        return NULL;
    char *tree = build_tree();
    int bad = 0;
    if (tree) {
        for (int i = 0; build_tree_dirs[i] && !bad; i++) {
            char *d = et_strdupf("%s/%s", tree, build_tree_dirs[i]);
            bad = !d || push(&v, &n, d, strlen(d));
            free(d);
        }
        free(tree);
    } else {
        bad = push(&v, &n, ET_PKGLIBDIR, strlen(ET_PKGLIBDIR));
    }
    if (bad || push_list(&v, &n, getenv("ETNAS_PLUGIN_PATH")) || push_list(&v, &n, extra)) {
        et_plugin_path_free(v);
        return NULL;
    }
    return v;
}

void et_plugin_path_free(char **dirs)
{
    for (size_t i = 0; dirs && dirs[i]; i++)
        free(dirs[i]);
    free(dirs);
}

static int valid_name(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

/* The first required vtable member a plugin leaves NULL, or NULL. Members
 * documented as NULL-able (incremental decoding, set_step) are not checked. */
static const char *missing_member(const et_plugin_descriptor *d)
{
    switch (d->kind) {
    case ET_PLUGIN_KIND_ATTENTION: {
        const et_attention_vtable *v = d->vtable;
        return !v->create ? "create" : !v->destroy ? "destroy" : !v->prepare ? "prepare"
             : !v->saved_floats ? "saved_floats" : !v->work_floats ? "work_floats"
             : !v->forward ? "forward" : !v->backward ? "backward" : !v->macs ? "macs" : NULL;
    }
    case ET_PLUGIN_KIND_SEARCH: {
        const et_search_vtable *v = d->vtable;
        return !v->create ? "create" : !v->destroy ? "destroy" : !v->run ? "run" : NULL;
    }
    case ET_PLUGIN_KIND_TASK: {
        const et_task_vtable *v = d->vtable;
        return !v->create ? "create" : !v->destroy ? "destroy" : !v->load ? "load"
             : !v->batch_count ? "batch_count" : !v->batch ? "batch" : NULL;
    }
    default: {
        const et_proxy_vtable *v = d->vtable;
        return !v->create ? "create" : !v->destroy ? "destroy" : !v->figures ? "figures"
             : !v->measure ? "measure" : NULL;
    }
    }
}

static int check_descriptor(const char *path, const et_plugin_descriptor *d, char **err)
{
    if (d->abi_version != ET_ABI_VERSION)
        return et_fail(err, ET_STATUS_ERR_FORMAT,
                       "%s: plugin ABI version %u, but this etnas speaks version %d; rebuild the "
                       "plugin against this etnas's headers",
                       path, d->abi_version, ET_ABI_VERSION);
    if (d->kind < ET_PLUGIN_KIND_ATTENTION || d->kind > ET_PLUGIN_KIND_PROXY)
        return et_fail(err, ET_STATUS_ERR_FORMAT, "%s: unknown plugin kind %u", path, d->kind);
    if (!valid_name(d->name))
        return et_fail(err, ET_STATUS_ERR_FORMAT,
                       "%s: plugin name '%s' is not made of [a-z0-9_-]", path,
                       d->name ? d->name : "(null)");
    if (!d->vtable)
        return et_fail(err, ET_STATUS_ERR_FORMAT, "%s: plugin '%s' has no vtable", path, d->name);
    const char *missing = missing_member(d);
    if (missing)
        return et_fail(err, ET_STATUS_ERR_FORMAT,
                       "%s: %s plugin '%s' lacks the required vtable member '%s'", path,
                       et_plugin_kind_name((int)d->kind), d->name, missing);
    char why[256];
    for (size_t i = 0; d->options && d->options[i].key; i++) {
        const et_option_decl *o = &d->options[i];
        et_option_value v;
        if (o->default_value && et_option_parse(o, o->default_value, &v, why, sizeof why))
            return et_fail(err, ET_STATUS_ERR_FORMAT,
                           "%s: plugin '%s' option '%s': default '%s' is not %s", path, d->name,
                           o->key, o->default_value, why);
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->options[j].key, o->key) == 0)
                return et_fail(err, ET_STATUS_ERR_FORMAT,
                               "%s: plugin '%s' declares option '%s' twice", path, d->name, o->key);
    }
    return 0;
}

int et_registry_load(et_registry *reg, const char *path, char **err)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return et_fail(err, ET_STATUS_ERR_IO, "%s: %s", path, strerror(errno));
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->items[i].path, real) == 0)
            return 0; /* the same file reached twice through the path */
    dlerror();
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return et_fail(err, ET_STATUS_ERR_FORMAT, "%s: cannot load: %s (missing libraries? run ldd %s)",
                       path, dlerror(), path);
    dlerror();
    void *sym = dlsym(h, ET_PLUGIN_SYMBOL);
    const char *derr = dlerror();
    if (!sym || derr) {
        int rc = et_fail(err, ET_STATUS_ERR_FORMAT,
                         "%s: no '%s' symbol, so not an etnas plugin (%s; check its exports with "
                         "nm -D and its libraries with ldd)",
                         path, ET_PLUGIN_SYMBOL, derr ? derr : "symbol is NULL");
        dlclose(h);
        return rc;
    }
    et_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const et_plugin_descriptor *d = entry();
    int rc = d ? check_descriptor(path, d, err)
               : et_fail(err, ET_STATUS_ERR_FORMAT, "%s: %s() returned NULL", path,
                         ET_PLUGIN_SYMBOL);
    if (!rc)
        for (size_t i = 0; i < reg->n; i++) {
            const et_plugin *o = &reg->items[i];
            if (o->desc->kind == d->kind && strcmp(o->desc->name, d->name) == 0) {
                rc = et_fail(err, ET_STATUS_ERR_FORMAT,
                             "%s: %s plugin '%s' is also provided by %s; remove one of the two",
                             path, et_plugin_kind_name((int)d->kind), d->name, o->path);
                break;
            }
        }
    if (!rc && reg->n == reg->cap) {
        size_t nc = reg->cap ? reg->cap * 2 : 16;
        et_plugin *ni = realloc(reg->items, nc * sizeof *ni);
        if (!ni)
            rc = et_fail(err, ET_STATUS_ERR_NOMEM, "%s: out of memory", path);
        else {
            reg->items = ni;
            reg->cap = nc;
        }
    }
    char *p = rc ? NULL : et_strdup(real);
    if (!rc && !p)
        rc = et_fail(err, ET_STATUS_ERR_NOMEM, "%s: out of memory", path);
    if (rc) {
        dlclose(h);
        return rc;
    }
    reg->items[reg->n++] = (et_plugin){p, h, d};
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int et_registry_scan(et_registry *reg, char *const *dirs, char **err)
{
    for (size_t i = 0; dirs && dirs[i]; i++) {
        DIR *d = opendir(dirs[i]);
        if (!d)
            continue;
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        int rc = 0;
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 4 || strcmp(e->d_name + l - 3, ".so") != 0)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                char **nn = realloc(names, cap * sizeof *nn);
                if (!nn) {
                    rc = et_fail(err, ET_STATUS_ERR_NOMEM, "%s: out of memory", dirs[i]);
                    break;
                }
                names = nn;
            }
            names[n] = et_strdupf("%s/%s", dirs[i], e->d_name);
            if (!names[n]) {
                rc = et_fail(err, ET_STATUS_ERR_NOMEM, "%s: out of memory", dirs[i]);
                break;
            }
            n++;
        }
        closedir(d);
        if (!rc)
            qsort(names, n, sizeof *names, by_name);
        for (size_t k = 0; k < n; k++) {
            if (!rc)
                rc = et_registry_load(reg, names[k], err);
            free(names[k]);
        }
        free(names);
        if (rc)
            return rc;
    }
    return 0;
}

void et_registry_free(et_registry *reg)
{
    for (size_t i = 0; i < reg->n; i++) {
        free(reg->items[i].path);
        dlclose(reg->items[i].handle);
    }
    free(reg->items);
    memset(reg, 0, sizeof *reg);
}

const et_plugin *et_registry_find(const et_registry *reg, int kind, const char *name)
{
    for (size_t i = 0; i < reg->n; i++)
        if ((int)reg->items[i].desc->kind == kind && strcmp(reg->items[i].desc->name, name) == 0)
            return &reg->items[i];
    return NULL;
}

int et_registry_get(const et_registry *reg, int kind, const char *name, const char *where,
                    const et_plugin **out, char **err)
{
    *out = et_registry_find(reg, kind, name);
    if (*out)
        return 0;
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->items[i].desc->name, name) == 0)
            return et_fail(err, ET_STATUS_ERR_USAGE, "%s: '%s' is a %s plugin (%s), not the %s plugin needed here",
                           where, name, et_plugin_kind_name((int)reg->items[i].desc->kind),
                           reg->items[i].path, et_plugin_kind_name(kind));
    const char *best = NULL;
    int best_d = 4;
    char list[1024];
    size_t o = 0;
    list[0] = 0;
    for (size_t i = 0; i < reg->n; i++) {
        const et_plugin_descriptor *d = reg->items[i].desc;
        if ((int)d->kind != kind)
            continue;
        int dist = et_edit_distance(name, d->name);
        if (dist < best_d) {
            best_d = dist;
            best = d->name;
        }
        if (o < sizeof list)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "", d->name);
    }
    if (best)
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: no %s plugin '%s' (did you mean '%s'?)",
                       where, et_plugin_kind_name(kind), name, best);
    return et_fail(err, ET_STATUS_ERR_USAGE,
                   "%s: no %s plugin '%s' (available: %s; see 'etnas plugins' and "
                   "ETNAS_PLUGIN_PATH)",
                   where, et_plugin_kind_name(kind), name, o ? list : "none");
}
