/* Helpers shared by the core tests: temporary files and the test plugins. */
#ifndef ETNAS_TESTS_TESTUTIL_H
#define ETNAS_TESTS_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Write text to a fresh temporary file; returns its malloc'd path. */
static inline char *tu_write_temp(const char *text)
{
    char tmpl[] = "/tmp/etnas-test-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return NULL;
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n) {
        close(fd);
        return NULL;
    }
    close(fd);
    char *p = malloc(sizeof tmpl);
    if (p)
        memcpy(p, tmpl, sizeof tmpl);
    return p;
}

/* Path of a test plugin built in tests/plugins (static buffer). */
static inline const char *tu_fake(const char *name)
{
    static char buf[4096];
    const char *b = getenv("ET_BUILDDIR");
    snprintf(buf, sizeof buf, "%s/tests/plugins/.libs/%s.so", b ? b : ".", name);
    return buf;
}

/* A space from [space] keys (the body of the section), asserting success. */
#ifdef ETNAS_CORE_SPACE_H
static inline et_space tu_space(const char *body)
{
    et_config cfg;
    et_space s;
    char *err = NULL, text[4096];
    snprintf(text, sizeof text, "[space]\n%s", body);
    cr_assert_eq(et_config_parse(text, "s.ini", &cfg, &err), 0, "%s", err);
    cr_assert_eq(et_space_from_section(&cfg.sections[0], &s, &err), 0, "%s", err);
    et_config_free(&cfg);
    return s;
}
#endif

/* A host for a plugin under test: errorf formats, progress is silent, log
 * is the test's own. */
#ifdef ETNAS_HOST_H
#include <stdarg.h>

static inline char *tu_errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static inline void tu_quiet_progress(void *ctx, const char *phase, int64_t done, int64_t total)
{
    (void)ctx;
    (void)phase;
    (void)done;
    (void)total;
}

static inline et_host tu_host(uint64_t seed, void (*log)(void *, int32_t, const char *, ...))
{
    et_host h;
    memset(&h, 0, sizeof h);
    h.abi_version = ET_ABI_VERSION;
    h.size = sizeof h;
    h.seed = seed;
    h.threads = 1;
    h.log = log;
    h.errorf = tu_errorf;
    h.progress = tu_quiet_progress;
    return h;
}
#endif

#endif
