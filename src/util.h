/* Small shared helpers of the core: formatted allocation, logging, files. */
#ifndef ETNAS_CORE_UTIL_H
#define ETNAS_CORE_UTIL_H

#include <stdarg.h>
#include <stddef.h>

#include <etnas/plugin.h>

/* malloc'd printf; NULL only when memory runs out. */
char *et_strdupf(const char *fmt, ...) ET_PRINTF(1, 2);
char *et_vstrdupf(const char *fmt, va_list ap) ET_PRINTF(1, 0);
char *et_strdup(const char *s);

/* Set *err (if err is non-NULL) to a formatted message and return code. */
int et_fail(char **err, int code, const char *fmt, ...) ET_PRINTF(3, 4);

/* Global log verbosity for et_log (et_log_level); default INFO. */
extern int et_log_verbosity;
void et_log(int level, const char *fmt, ...) ET_PRINTF(2, 3);

/* Whole file into a malloc'd NUL-terminated buffer; *len gets its size. */
int et_read_file(const char *path, char **out, size_t *len, char **err);

/* Levenshtein distance, for "did you mean". */
int et_edit_distance(const char *a, const char *b);

/* Trim leading/trailing whitespace in place; returns s moved past leading space. */
char *et_trim(char *s);

#endif
