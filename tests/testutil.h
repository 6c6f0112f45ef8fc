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

#endif
