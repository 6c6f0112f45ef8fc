/* INI reading on top of inih. inih as Debian builds it caps lines at 200
 * bytes and reports no line numbers, so a line reader sits in front of it:
 * it counts lines, registers section headers (also empty sections, which inih
 * never reports), strips leading whitespace (so no line is taken as a
 * continuation) and hands values too long for inih over by reference. */
#include "inifile.h"

#include <ctype.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/plugin.h>

#include "util.h"

/* inih's buffer is 200 bytes including "\r\n\0". */
#define INIH_LINE_ROOM 190
#define LONG_VALUE_TAG "\x01long:"

typedef struct reader {
    const char *p;       /* next unread byte of the text */
    const char *name;
    int line;            /* line number of the line last handed to inih */
    char *err;           /* first error found by the reader or the handler */
    et_config *cfg;
    char **long_values;  /* values passed by reference */
    size_t n_long, cap_long;
} reader;

static void *grow(void *p, size_t *cap, size_t elem)
{
    size_t nc = *cap ? *cap * 2 : 8;
    void *q = realloc(p, nc * elem);
    if (q)
        *cap = nc;
    return q;
}

static int add_section(reader *r, const char *header)
{
    et_config *cfg = r->cfg;
    char *norm = malloc(strlen(header) + 1), *o = norm;
    if (!norm)
        return -1;
    /* collapse internal whitespace runs to one space */
    for (const char *s = header; *s;) {
        if (isspace((unsigned char)*s)) {
            while (isspace((unsigned char)*s))
                s++;
            if (*s && o != norm)
                *o++ = ' ';
        } else {
            *o++ = *s++;
        }
    }
    *o = 0;
    if (!*norm) {
        free(norm);
        r->err = et_strdupf("%s:%d: empty section name", r->name, r->line);
        return -1;
    }
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->sections[i].name, norm) == 0) {
            r->err = et_strdupf("%s:%d: section [%s] appears twice (first at line %d)", r->name,
                                r->line, norm, cfg->sections[i].line);
            free(norm);
            return -1;
        }
    if (cfg->n == cfg->cap) {
        void *q = grow(cfg->sections, &cfg->cap, sizeof *cfg->sections);
        if (!q) {
            free(norm);
            return -1;
        }
        cfg->sections = q;
    }
    et_config_section *sec = &cfg->sections[cfg->n++];
    memset(sec, 0, sizeof *sec);
    sec->name = norm;
    char *sp = strchr(norm, ' ');
    sec->kind = sp ? strndup(norm, (size_t)(sp - norm)) : et_strdup(norm);
    sec->label = et_strdup(sp ? sp + 1 : "");
    sec->file = cfg->path;
    sec->line = r->line;
    return (sec->kind && sec->label) ? 0 : -1;
}

static int add_entry(et_config_section *sec, const char *key, const char *value, const char *file,
                     int line)
{
    if (sec->n == sec->cap) {
        void *q = grow(sec->entries, &sec->cap, sizeof *sec->entries);
        if (!q)
            return -1;
        sec->entries = q;
    }
    et_config_entry *e = &sec->entries[sec->n];
    e->key = et_strdup(key);
    e->value = et_strdup(value);
    e->file = file;
    e->line = line;
    e->used = 0;
    if (!e->key || !e->value) {
        free(e->key);
        free(e->value);
        return -1;
    }
    sec->n++;
    return 0;
}

/* Strip an inline comment the way inih does (';' after whitespace) and trim. */
static void strip_value(char *v)
{
    for (char *s = v; *s; s++)
        if (*s == ';' && (s == v || isspace((unsigned char)s[-1]))) {
            *s = 0;
            break;
        }
    char *t = et_trim(v);
    memmove(v, t, strlen(t) + 1);
}

/* Hands inih one line at a time (fgets contract: at most num-1 bytes). */
static char *read_line(char *str, int num, void *stream)
{
    reader *r = stream;
    if (r->err || !*r->p)
        return NULL;
    const char *end = strchr(r->p, '\n');
    size_t len = end ? (size_t)(end - r->p) : strlen(r->p);
    const char *next = end ? end + 1 : r->p + len;
    r->line++;
    const char *s = r->p;
    r->p = next;
    if (r->line == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;
        len -= 3;
    }
    while (len > 0 && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    if (memchr(s, 0, len)) {
        r->err = et_strdupf("%s:%d: NUL byte in line", r->name, r->line);
        return NULL;
    }
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close) {
            r->err = et_strdupf("%s:%d: section header without ']'", r->name, r->line);
            return NULL;
        }
        char *hdr = strndup(s + 1, (size_t)(close - s - 1));
        int rc = hdr ? add_section(r, hdr) : -1;
        free(hdr);
        if (rc) {
            if (!r->err)
                r->err = et_strdupf("%s:%d: out of memory", r->name, r->line);
            return NULL;
        }
    }
    if (len <= INIH_LINE_ROOM && (int)len < num - 2) {
        memcpy(str, s, len);
        str[len] = '\n';
        str[len + 1] = 0;
        return str;
    }
    /* Too long for inih: pass "key=<tag><index>" and keep the value aside. */
    const char *eq = memchr(s, '=', len);
    const char *colon = memchr(s, ':', len);
    if (!eq || (colon && colon < eq))
        eq = colon;
    if (s[0] == '[' || s[0] == ';' || s[0] == '#' || !eq || (size_t)(eq - s) > INIH_LINE_ROOM - 40) {
        if (s[0] == ';' || s[0] == '#') {
            str[0] = '\n';
            str[1] = 0;
            return str;
        }
        r->err = et_strdupf("%s:%d: line too long (%zu bytes) for a section header or key", r->name,
                            r->line, len);
        return NULL;
    }
    char *value = strndup(eq + 1, len - (size_t)(eq + 1 - s));
    if (!value || (r->n_long == r->cap_long &&
                   !(r->long_values = grow(r->long_values, &r->cap_long, sizeof(char *))))) {
        free(value);
        r->err = et_strdupf("%s:%d: out of memory", r->name, r->line);
        return NULL;
    }
    strip_value(value);
    r->long_values[r->n_long] = value;
    int n = snprintf(str, (size_t)num, "%.*s=%s%zu\n", (int)(eq - s), s, LONG_VALUE_TAG, r->n_long);
    r->n_long++;
    return n < num ? str : NULL;
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
    reader *r = user;
    if (r->err)
        return 0;
    if (!*section || r->cfg->n == 0) {
        r->err = et_strdupf("%s:%d: key '%s' before any [section]", r->name, r->line, name);
        return 0;
    }
    et_config_section *sec = &r->cfg->sections[r->cfg->n - 1];
    if (strncmp(value, LONG_VALUE_TAG, strlen(LONG_VALUE_TAG)) == 0)
        value = r->long_values[strtoul(value + strlen(LONG_VALUE_TAG), NULL, 10)];
    et_config_entry *prev = et_config_entry_find(sec, name);
    if (prev) {
        r->err = et_strdupf("%s:%d: key '%s' appears twice in [%s] (first at line %d)", r->name,
                            r->line, name, sec->name, prev->line);
        return 0;
    }
    if (add_entry(sec, name, value, r->cfg->path, r->line)) {
        r->err = et_strdupf("%s:%d: out of memory", r->name, r->line);
        return 0;
    }
    return 1;
}

int et_config_parse(const char *text, const char *name, et_config *out, char **err)
{
    memset(out, 0, sizeof *out);
    out->path = et_strdup(name);
    out->text = et_strdup(text);
    if (!out->path || !out->text)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "%s: out of memory", name);
    reader r = {.p = text, .name = name, .cfg = out};
    int rc = ini_parse_stream(read_line, &r, on_entry, &r);
    for (size_t i = 0; i < r.n_long; i++)
        free(r.long_values[i]);
    free(r.long_values);
    if (r.err) {
        et_fail(err, ET_STATUS_ERR_FORMAT, "%s", r.err);
        free(r.err);
        et_config_free(out);
        return ET_STATUS_ERR_FORMAT;
    }
    if (rc != 0) {
        et_config_free(out);
        return et_fail(err, ET_STATUS_ERR_FORMAT,
                       "%s:%d: not a 'key = value' line or '[section]' header", name, rc);
    }
    return 0;
}

int et_config_load(const char *path, et_config *out, char **err)
{
    char *text;
    int rc = et_read_file(path, &text, NULL, err);
    if (rc) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    rc = et_config_parse(text, path, out, err);
    free(text);
    return rc;
}

void et_config_free(et_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n; i++) {
        et_config_section *s = &cfg->sections[i];
        for (size_t j = 0; j < s->n; j++) {
            free(s->entries[j].key);
            free(s->entries[j].value);
        }
        free(s->entries);
        free(s->name);
        free(s->kind);
        free(s->label);
    }
    free(cfg->sections);
    free(cfg->path);
    free(cfg->text);
    memset(cfg, 0, sizeof *cfg);
}

et_config_section *et_config_find(const et_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->sections[i].name, name) == 0)
            return &cfg->sections[i];
    return NULL;
}

et_config_entry *et_config_entry_find(const et_config_section *sec, const char *key)
{
    for (size_t i = 0; i < sec->n; i++)
        if (strcmp(sec->entries[i].key, key) == 0)
            return &sec->entries[i];
    return NULL;
}

int et_config_override(et_config *cfg, const char *assignment, char **err)
{
    const char *eq = strchr(assignment, '=');
    const char *dot = eq ? memchr(assignment, '.', (size_t)(eq - assignment)) : NULL;
    /* the key is after the last '.' before '=' (section labels may hold dots) */
    for (const char *d = dot; d && d < eq; d = memchr(d + 1, '.', (size_t)(eq - d - 1)))
        dot = d;
    if (!eq || !dot || dot == assignment || dot + 1 == eq)
        return et_fail(err, ET_STATUS_ERR_USAGE,
                       "--set %s: expected SECTION.KEY=VALUE (e.g. experiment.seed=3)", assignment);
    char *sname = strndup(assignment, (size_t)(dot - assignment));
    char *key = strndup(dot + 1, (size_t)(eq - dot - 1));
    char *value = et_strdup(eq + 1);
    int rc = 0;
    if (!sname || !key || !value) {
        rc = et_fail(err, ET_STATUS_ERR_NOMEM, "--set: out of memory");
        goto done;
    }
    char *st = et_trim(sname), *kt = et_trim(key), *vt = et_trim(value);
    et_config_section *sec = et_config_find(cfg, st);
    if (!sec) {
        reader r = {.name = "--set", .cfg = cfg};
        if (add_section(&r, st)) {
            rc = et_fail(err, ET_STATUS_ERR_USAGE, "--set %s: %s", assignment,
                         r.err ? r.err : "out of memory");
            free(r.err);
            goto done;
        }
        sec = &cfg->sections[cfg->n - 1];
        sec->file = "--set";
    }
    et_config_entry *e = et_config_entry_find(sec, kt);
    if (e) {
        char *nv = et_strdup(vt);
        if (!nv) {
            rc = et_fail(err, ET_STATUS_ERR_NOMEM, "--set: out of memory");
            goto done;
        }
        free(e->value);
        e->value = nv;
        e->file = "--set";
        e->line = 0;
    } else if (add_entry(sec, kt, vt, "--set", 0)) {
        rc = et_fail(err, ET_STATUS_ERR_NOMEM, "--set: out of memory");
    }
done:
    free(sname);
    free(key);
    free(value);
    return rc;
}
