/* INI files as etnas reads them: sections with their kind and label
 * ("[search evo]" is kind "search", label "evo"), key/value entries, and the
 * file and line of everything, so every later check can name where it is. */
#ifndef ETNAS_CORE_INIFILE_H
#define ETNAS_CORE_INIFILE_H

#include <stddef.h>

typedef struct et_config_entry {
    char *key;
    char *value;
    const char *file; /* the INI path, or "--set" for command-line overrides */
    int line;         /* 1-based; 0 for overrides */
    int used;         /* set by whoever consumes the key */
} et_config_entry;

typedef struct et_config_section {
    char *name;  /* full header text, whitespace-normalised: "search evo" */
    char *kind;  /* first word: "search" */
    char *label; /* the rest, "" when absent: "evo" */
    const char *file;
    int line;
    et_config_entry *entries;
    size_t n, cap;
} et_config_section;

typedef struct et_config {
    char *path;
    char *text; /* the file as read, kept for provenance */
    et_config_section *sections;
    size_t n, cap;
} et_config;

/* Parse a file. Errors: "FILE:LINE: cause". */
int et_config_load(const char *path, et_config *out, char **err);
/* Parse text that came from `name` (used for error messages). */
int et_config_parse(const char *text, const char *name, et_config *out, char **err);
void et_config_free(et_config *cfg);

et_config_section *et_config_find(const et_config *cfg, const char *name);
et_config_entry *et_config_entry_find(const et_config_section *sec, const char *key);

/* Apply "section.key=value" (the section may contain spaces:
 * "search evo.population=50"). Creates the section or key when missing;
 * replaces an existing value. */
int et_config_override(et_config *cfg, const char *assignment, char **err);

#endif
