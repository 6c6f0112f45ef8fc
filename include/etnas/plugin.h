/* The plugin ABI: the one descriptor every etnas plugin exports, the option
 * declarations the host checks INI keys against, and the error convention. */
#ifndef ETNAS_PLUGIN_H
#define ETNAS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to a descriptor, a vtable or et_host's
 * existing members. Appending members to et_host does not bump it. */
#define ET_ABI_VERSION 1

/* The one symbol a plugin exports: `const et_plugin_descriptor *etnas_plugin(void)`. */
#define ET_PLUGIN_SYMBOL "etnas_plugin"

#if defined(__GNUC__)
#define ET_EXPORT __attribute__((visibility("default")))
#define ET_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define ET_EXPORT
#define ET_PRINTF(fmt, args)
#endif

typedef enum et_plugin_kind {
    ET_PLUGIN_KIND_ATTENTION = 1,
    ET_PLUGIN_KIND_SEARCH = 2,
    ET_PLUGIN_KIND_TASK = 3,
    ET_PLUGIN_KIND_PROXY = 4
} et_plugin_kind;

/* Error codes: 0 is success, every failure is negative. */
typedef enum et_status {
    ET_STATUS_OK = 0,
    ET_STATUS_ERR_USAGE = -1,   /* bad option, bad shape, bad call */
    ET_STATUS_ERR_IO = -2,      /* a file could not be read or written */
    ET_STATUS_ERR_FORMAT = -3,  /* a file's contents are wrong */
    ET_STATUS_ERR_NOMEM = -4,
    ET_STATUS_ERR_UNSUPPORTED = -5, /* the plugin does not do this (e.g. causal cross) */
    ET_STATUS_ERR_NUMERIC = -6, /* non-finite values */
    ET_STATUS_ERR_INTERNAL = -7
} et_status;

typedef enum et_option_type {
    ET_OPTION_TYPE_INT = 1,    /* int64, range [min, max] when min <= max */
    ET_OPTION_TYPE_FLOAT = 2,  /* double, range [min, max] when min <= max */
    ET_OPTION_TYPE_BOOL = 3,   /* true/false/yes/no/on/off/1/0 */
    ET_OPTION_TYPE_STRING = 4, /* any text */
    ET_OPTION_TYPE_CHOICE = 5, /* one of `choices`, a '|'-separated list */
    ET_OPTION_TYPE_PATH = 6    /* a file or directory path (checked by the plugin) */
} et_option_type;

/* One declared option. Arrays of these end with an entry whose key is NULL. */
typedef struct et_option_decl {
    const char *key;
    et_option_type type;
    const char *default_value; /* text, parsed like an INI value; NULL = required */
    double min, max;           /* INT/FLOAT range; ignored when min > max */
    const char *choices;       /* CHOICE: "a|b|c" */
    const char *help;          /* one line */
} et_option_decl;

/* A checked option value, one per declaration and in declaration order.
 * INT and BOOL fill i, FLOAT fills f, STRING and PATH fill s, CHOICE fills
 * both s (the chosen text) and i (its index in `choices`). Strings stay valid
 * until the plugin instance is destroyed. */
typedef struct et_option_value {
    int64_t i;
    double f;
    const char *s;
} et_option_value;

/* The descriptor: abi_version comes first so any future layout can be
 * refused safely. `vtable` points at et_attention_vtable, et_search_vtable,
 * et_task_vtable or et_proxy_vtable according to `kind`. */
typedef struct et_plugin_descriptor {
    uint32_t abi_version;
    uint32_t kind;          /* et_plugin_kind */
    const char *name;       /* [a-z0-9_-]+, unique per kind */
    const char *summary;    /* one line */
    const et_option_decl *options; /* NULL-terminated, may be NULL for none */
    const void *vtable;
} et_plugin_descriptor;

typedef const et_plugin_descriptor *(*et_plugin_entry_fn)(void);

/* Messages handed back through `char **err` are allocated with malloc (or
 * et_host.errorf) and freed by the host with free(). */

#ifdef __cplusplus
}
#endif
#endif
