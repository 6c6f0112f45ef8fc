/* Experiments: an INI file checked as a whole (every section, every key,
 * every plugin and its options, the space, the constraints) before anything
 * runs. */
#ifndef ETNAS_CORE_EXPERIMENT_H
#define ETNAS_CORE_EXPERIMENT_H

#include <stdint.h>
#include <stdio.h>

#include <etnas/arch.h>

#include "inifile.h"
#include "plugin.h"

typedef struct et_section_plugin {
    const et_config_section *sec;
    const et_plugin *plugin;
    et_option_value *opts; /* one per declared option */
} et_section_plugin;

typedef enum et_cmp {
    ET_CMP_LE = 0,
    ET_CMP_GE = 1
} et_cmp;

typedef struct et_constraint {
    char *figure;
    int32_t cmp; /* et_cmp */
    double bound;
    const et_config_entry *entry;
} et_constraint;

/* An attention choice of the space resolved to its plugin and options. */
typedef struct et_attn_choice {
    const et_plugin *plugin;
    char *text;            /* holds the option strings the values point into */
    et_option_value *opts; /* one per declared option of the plugin */
} et_attn_choice;

/* Resolve "name" or "name(key=value,...)" (values may hold parentheses
 * and commas) to an attention plugin of reg and its bound options; errors
 * name where/key. Free with et_attn_choice_free, also after a failure. */
int et_attn_choice_resolve(const et_registry *reg, const char *text, const char *where,
                           const char *key, const char *file, int line, et_attn_choice *c,
                           char **err);
void et_attn_choice_free(et_attn_choice *c);

enum { ET_STACK_ENC_SELF = 0, ET_STACK_DEC_SELF = 1, ET_STACK_DEC_CROSS = 2 };

/* Core-owned sections: [experiment], [train], [final]. */
extern const et_option_decl et_experiment_options[];
extern const et_option_decl et_train_options[];
extern const et_option_decl et_final_options[];

typedef struct et_experiment {
    et_config cfg;
    et_registry reg;
    char **plugin_dirs;
    et_option_value exp[8], train[32], final[8];
    const char *name;
    int64_t seed;
    int32_t threads;
    const char *output, *store;
    et_space space;
    et_section_plugin task;
    et_section_plugin *searches, *proxies;
    size_t n_searches, n_proxies;
    et_constraint *constraints;
    size_t n_constraints;
    /* the space's attention choices per ET_STACK_* */
    et_attn_choice attn[3][ET_MAX_CHOICES];
    int32_t n_attn[3];
} et_experiment;

/* Read, override ("section.key=value" each) and check an experiment. */
int et_experiment_load(const char *path, char *const *overrides, int n_overrides, int verbose,
                       et_experiment *out, char **err);
void et_experiment_free(et_experiment *exp);

/* Seed of the plugin instance of a section: a function of the experiment
 * seed and the section name only. */
uint64_t et_experiment_section_seed(const et_experiment *exp, const char *section);

/* A few lines describing the checked experiment. */
void et_experiment_print(const et_experiment *exp, FILE *f);

/* Find an option value of a core-owned section by key. */
const et_option_value *et_option_find(const et_option_decl *decls, const et_option_value *vals,
                                      const char *key);

#endif
