/* Strict option checking: every key of a section against the options its
 * owner declares, typed values, "did you mean", and visible defaults. */
#ifndef ETNAS_CORE_OPTIONS_H
#define ETNAS_CORE_OPTIONS_H

#include <stddef.h>

#include <etnas/plugin.h>

#include "inifile.h"

/* Where an entry came from: "FILE:LINE" or "--set" (static buffer per call site use). */
void et_where(const et_config_entry *e, char *buf, size_t n);

/* Where a section starts: "FILE:LINE", or the file alone for sections made
 * by --set or by default. */
void et_section_where(const et_config_section *s, char *buf, size_t n);

size_t et_options_count(const et_option_decl *decls);

/* Parse one value text for decl. On failure returns a negative code and puts
 * the expectation ("an integer in [1, 64]") in why. */
int et_option_parse(const et_option_decl *decl, const char *text, et_option_value *out, char *why,
                    size_t why_n);

/* "an integer in [1, 64]", "one of relu|gelu", ... */
void et_option_expect(const et_option_decl *decl, char *buf, size_t n);

/* Check every entry of sec against decls; keys listed in `reserved` (NULL-
 * terminated, may be NULL) are allowed and skipped. Fills out[i] for every
 * declared option (the default when absent; a missing required option is an
 * error). With verbose, logs each default applied. String values point into
 * sec or decls. */
int et_options_bind(const et_option_decl *decls, const et_config_section *sec,
                    const char *const *reserved, int verbose, et_option_value *out, char **err);

/* The declared key closest to `key` (edit distance <= 3 or a shared prefix),
 * or NULL. Also considers `reserved`. */
const char *et_options_closest(const et_option_decl *decls, const char *const *reserved,
                               const char *key);

#endif
