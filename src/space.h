/* Search spaces and architectures: parsing a space from [space] keys, and the
 * operations on architectures (text, hash, validation, sampling, mutation,
 * crossover, features, space size). */
#ifndef ETNAS_CORE_SPACE_H
#define ETNAS_CORE_SPACE_H

#include <stddef.h>
#include <stdint.h>

#include <etnas/arch.h>
#include <etnas/plugin.h>
#include <etnas/rng.h>

#include "inifile.h"

/* The declared [space] keys (for strict checking and `etnas plugins`). */
extern const struct et_option_decl et_space_options[];

/* Build a space from a config section (keys already checked against
 * et_space_options). Errors name file:line of the offending key. */
int et_space_from_section(const et_config_section *sec, et_space *out, char **err);

/* Space from an INI file's [space] section (a whole experiment file works too). */
int et_space_load(const char *path, et_space *out, char **err);

/* Canonical text of a space ("key = values" lines in a fixed order); equal
 * spaces give equal text. Returns the length or a negative code. */
int et_space_format(const et_space *space, char *buf, size_t n);

/* Exact number of distinct architectures (canonical forms), in decimal. */
int et_space_count(const et_space *space, char *buf, size_t n);

int et_arch_format(const et_space *space, const et_arch *arch, char *buf, size_t n);
int et_arch_parse(const et_space *space, const char *text, et_arch *out, char **err);
uint64_t et_arch_hash(const et_space *space, const et_arch *arch);
int et_arch_validate(const et_space *space, const et_arch *arch, char **err);
void et_arch_sample(const et_space *space, et_rng *rng, et_arch *out);
void et_arch_mutate(const et_space *space, et_rng *rng, const et_arch *parent, double p,
                    et_arch *out);
void et_arch_crossover(const et_space *space, et_rng *rng, const et_arch *a, const et_arch *b,
                       double p, et_arch *out);
int32_t et_arch_feature_count(const et_space *space);
void et_arch_features(const et_space *space, const et_arch *arch, float *out);
/* Name of feature i (static storage until the next call). */
const char *et_arch_feature_name(const et_space *space, int32_t i);

/* The deepest choice of a stack's layer count (0 when the stack is absent). */
int32_t et_stack_max_layers(const et_stack_space *ss);

/* Largest arch of the space (the supernet's maxima), and the smallest. */
void et_arch_largest(const et_space *space, et_arch *out);
void et_arch_smallest(const et_space *space, et_arch *out);

#endif
