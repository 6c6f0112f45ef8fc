/* Strict option checking: every key of a section against the options its
 * owner declares, typed values, "did you mean", and visible defaults. */
#include "options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <etnas/host.h>

#include "util.h"

void et_where(const et_config_entry *e, char *buf, size_t n)
{
    if (e->line > 0)
        snprintf(buf, n, "%s:%d", e->file, e->line);
    else
        snprintf(buf, n, "%s", e->file);
}

void et_section_where(const et_config_section *s, char *buf, size_t n)
{
    if (s->line > 0)
        snprintf(buf, n, "%s:%d", s->file, s->line);
    else
        snprintf(buf, n, "%s", s->file);
}

size_t et_options_count(const et_option_decl *decls)
{
    size_t n = 0;
    while (decls && decls[n].key)
        n++;
    return n;
}

static int has_range(const et_option_decl *d)
{
    return d->min <= d->max;
}

void et_option_expect(const et_option_decl *d, char *buf, size_t n)
{
    switch (d->type) {
    case ET_OPTION_TYPE_INT:
        if (has_range(d))
            snprintf(buf, n, "an integer in [%.0f, %.0f]", d->min, d->max);
        else
            snprintf(buf, n, "an integer");
        break;
    case ET_OPTION_TYPE_FLOAT:
        if (has_range(d))
            snprintf(buf, n, "a number in [%g, %g]", d->min, d->max);
        else
            snprintf(buf, n, "a number");
        break;
    case ET_OPTION_TYPE_BOOL:
        snprintf(buf, n, "true or false");
        break;
    case ET_OPTION_TYPE_CHOICE:
        snprintf(buf, n, "one of %s", d->choices ? d->choices : "");
        break;
    case ET_OPTION_TYPE_PATH:
        snprintf(buf, n, "a path");
        break;
    default:
        snprintf(buf, n, "text");
        break;
    }
}

static int choice_index(const char *choices, const char *text)
{
    size_t tl = strlen(text);
    int idx = 0;
    for (const char *c = choices; c && *c; idx++) {
        const char *bar = strchr(c, '|');
        size_t cl = bar ? (size_t)(bar - c) : strlen(c);
        if (cl == tl && strncmp(c, text, tl) == 0)
            return idx;
        if (!bar)
            break;
        c = bar + 1;
    }
    return -1;
}

int et_option_parse(const et_option_decl *d, const char *text, et_option_value *out, char *why,
                    size_t why_n)
{
    memset(out, 0, sizeof *out);
    char *end;
    switch (d->type) {
    case ET_OPTION_TYPE_INT: {
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (!*text || *end || errno || (has_range(d) && (v < d->min || v > d->max)))
            break;
        out->i = v;
        out->f = (double)v;
        return 0;
    }
    case ET_OPTION_TYPE_FLOAT: {
        errno = 0;
        double v = strtod(text, &end);
        if (!*text || *end || errno || !isfinite(v) || (has_range(d) && (v < d->min || v > d->max)))
            break;
        out->f = v;
        return 0;
    }
    case ET_OPTION_TYPE_BOOL:
        if (!strcasecmp(text, "true") || !strcasecmp(text, "yes") || !strcasecmp(text, "on") ||
            !strcmp(text, "1")) {
            out->i = 1;
            return 0;
        }
        if (!strcasecmp(text, "false") || !strcasecmp(text, "no") || !strcasecmp(text, "off") ||
            !strcmp(text, "0")) {
            out->i = 0;
            return 0;
        }
        break;
    case ET_OPTION_TYPE_CHOICE: {
        int idx = choice_index(d->choices, text);
        if (idx < 0)
            break;
        out->i = idx;
        out->s = text;
        return 0;
    }
    case ET_OPTION_TYPE_PATH:
        if (!*text)
            break;
        out->s = text;
        return 0;
    case ET_OPTION_TYPE_STRING:
        out->s = text;
        return 0;
    default:
        break;
    }
    et_option_expect(d, why, why_n);
    return ET_STATUS_ERR_USAGE;
}

const char *et_options_closest(const et_option_decl *decls, const char *const *reserved,
                               const char *key)
{
    const char *best = NULL;
    int best_d = 1 << 30;
    size_t kl = strlen(key);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0;; i++) {
            const char *cand = pass == 0 ? (decls ? decls[i].key : NULL)
                                         : (reserved ? reserved[i] : NULL);
            if (!cand)
                break;
            int dist = et_edit_distance(key, cand);
            size_t cl = strlen(cand);
            int prefix = kl >= 3 && cl >= 3 && strncmp(key, cand, kl < cl ? kl : cl) == 0;
            int limit = kl <= 4 ? 2 : 3;
            if ((dist <= limit || prefix) && dist < best_d) {
                best = cand;
                best_d = dist;
            }
        }
    }
    return best;
}

int et_options_bind(const et_option_decl *decls, const et_config_section *sec,
                    const char *const *reserved, int verbose, et_option_value *out, char **err)
{
    char where[512], why[256];
    for (size_t j = 0; sec && j < sec->n; j++) {
        const et_config_entry *e = &sec->entries[j];
        int known = 0;
        for (size_t i = 0; decls && decls[i].key; i++)
            known |= strcmp(decls[i].key, e->key) == 0;
        for (size_t i = 0; reserved && reserved[i]; i++)
            known |= strcmp(reserved[i], e->key) == 0;
        if (known)
            continue;
        et_where(e, where, sizeof where);
        const char *near = et_options_closest(decls, reserved, e->key);
        if (near)
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "%s: [%s] unknown key '%s' (did you mean '%s'?)", where, sec->name,
                           e->key, near);
        char list[1024];
        size_t o = 0;
        list[0] = 0;
        for (size_t i = 0; decls && decls[i].key && o < sizeof list; i++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", decls[i].key);
        return et_fail(err, ET_STATUS_ERR_USAGE, "%s: [%s] unknown key '%s' (valid keys: %s)",
                       where, sec->name, e->key, o ? list : "none");
    }
    for (size_t i = 0; decls && decls[i].key; i++) {
        const et_option_decl *d = &decls[i];
        const et_config_entry *e = sec ? et_config_entry_find(sec, d->key) : NULL;
        if (e) {
            if (et_option_parse(d, e->value, &out[i], why, sizeof why)) {
                et_where(e, where, sizeof where);
                return et_fail(err, ET_STATUS_ERR_USAGE, "%s: [%s] %s = '%s': expected %s", where,
                               sec->name, d->key, e->value, why);
            }
            continue;
        }
        if (!d->default_value) {
            if (sec)
                et_section_where(sec, where, sizeof where);
            else
                snprintf(where, sizeof where, "experiment");
            return et_fail(err, ET_STATUS_ERR_USAGE, "%s: [%s] required key '%s' is missing (%s)",
                           where, sec ? sec->name : "?", d->key, d->help ? d->help : "");
        }
        if (et_option_parse(d, d->default_value, &out[i], why, sizeof why))
            return et_fail(err, ET_STATUS_ERR_INTERNAL,
                           "option '%s': its declared default '%s' is not %s", d->key,
                           d->default_value, why);
        if (verbose)
            et_log(ET_LOG_LEVEL_INFO, "[%s] %s = %s (default)", sec ? sec->name : "?", d->key,
                   d->default_value);
    }
    return 0;
}
