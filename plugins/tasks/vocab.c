/* Token tables (vocab.h): an open-addressing hash of strings to dense ids,
 * the vocabulary orders of fairseq, and its dict.txt reader. */
#include "vocab.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/rng.h>

#define VOCAB_FAIL(code, ...) (*err = host->errorf(__VA_ARGS__), (code))

static const char *const special_text[VOCAB_SPECIALS] = {"<s>", "<pad>", "</s>", "<unk>"};

uint64_t vocab_fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

/* FNV-1a alone clusters in the low bits that pick a slot; the SplitMix
 * finaliser spreads them. */
static uint32_t hash_of(const char *s, size_t len)
{
    return (uint32_t)et_rng_mix64(vocab_fnv1a(VOCAB_FNV_OFFSET, s, len));
}

void vocab_init(vocab *v)
{
    memset(v, 0, sizeof *v);
}

void vocab_free(vocab *v)
{
    free(v->text);
    free(v->offset);
    free(v->length);
    free(v->count);
    free(v->slot);
    vocab_init(v);
}

/* The slot holding s, or the empty slot where it would go. */
static uint32_t probe(const vocab *v, const char *s, size_t len, uint32_t h)
{
    uint32_t mask = v->nslots - 1, i = h & mask;
    for (;;) {
        int32_t id = v->slot[i];
        if (id < 0 || (v->length[id] == len && !memcmp(v->text + v->offset[id], s, len)))
            return i;
        i = (i + 1) & mask;
    }
}

int32_t vocab_find(const vocab *v, const char *s, size_t len)
{
    if (!v->nslots)
        return -1;
    return v->slot[probe(v, s, len, hash_of(s, len))];
}

static int grow_slots(vocab *v)
{
    uint32_t nslots = v->nslots ? v->nslots * 2 : 64;
    int32_t *slot = malloc(sizeof *slot * nslots);
    if (!slot)
        return ET_STATUS_ERR_NOMEM;
    for (uint32_t i = 0; i < nslots; i++)
        slot[i] = -1;
    free(v->slot);
    v->slot = slot;
    v->nslots = nslots;
    for (int32_t id = 0; id < v->n; id++)
        v->slot[probe(v, vocab_token(v, id), v->length[id],
                      hash_of(vocab_token(v, id), v->length[id]))] = id;
    return 0;
}

static int grow_tokens(vocab *v)
{
    int32_t cap = v->cap ? v->cap * 2 : 64;
    size_t *offset = realloc(v->offset, sizeof *offset * (size_t)cap);
    if (!offset)
        return ET_STATUS_ERR_NOMEM;
    v->offset = offset;
    uint32_t *length = realloc(v->length, sizeof *length * (size_t)cap);
    if (!length)
        return ET_STATUS_ERR_NOMEM;
    v->length = length;
    int64_t *count = realloc(v->count, sizeof *count * (size_t)cap);
    if (!count)
        return ET_STATUS_ERR_NOMEM;
    v->count = count;
    v->cap = cap;
    return 0;
}

int vocab_intern(vocab *v, const char *s, size_t len, int32_t *id)
{
    if ((uint64_t)(v->n + 1) * 2 > v->nslots && grow_slots(v))
        return ET_STATUS_ERR_NOMEM;
    uint32_t h = hash_of(s, len), at = probe(v, s, len, h);
    if (v->slot[at] >= 0) {
        *id = v->slot[at];
        return 0;
    }
    if (len > UINT32_MAX || v->n == INT32_MAX)
        return ET_STATUS_ERR_NOMEM;
    if (v->n == v->cap && grow_tokens(v))
        return ET_STATUS_ERR_NOMEM;
    if (v->text_len + len + 1 > v->text_cap) {
        size_t cap = v->text_cap ? v->text_cap : 1024;
        while (cap < v->text_len + len + 1)
            cap *= 2;
        char *text = realloc(v->text, cap);
        if (!text)
            return ET_STATUS_ERR_NOMEM;
        v->text = text;
        v->text_cap = cap;
    }
    memcpy(v->text + v->text_len, s, len);
    v->text[v->text_len + len] = 0;
    v->offset[v->n] = v->text_len;
    v->length[v->n] = (uint32_t)len;
    v->count[v->n] = 0;
    v->text_len += len + 1;
    v->slot[at] = v->n;
    *id = v->n++;
    return 0;
}

int vocab_init_specials(vocab *v)
{
    vocab_init(v);
    for (int32_t i = 0; i < VOCAB_SPECIALS; i++) {
        int32_t id;
        if (vocab_intern(v, special_text[i], strlen(special_text[i]), &id)) {
            vocab_free(v);
            return ET_STATUS_ERR_NOMEM;
        }
    }
    return 0;
}

/* A token to sort: its count and text, so qsort needs no context. */
typedef struct ranked {
    int64_t count;
    const char *text;
    uint32_t length;
} ranked;

static int by_count_then_bytes(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    /* token text holds no NUL (it comes from lines split at whitespace) */
    return strcmp(a->text, b->text);
}

int vocab_from_counts(vocab *out, const vocab *counts)
{
    if (vocab_init_specials(out))
        return ET_STATUS_ERR_NOMEM;
    ranked *r = malloc(sizeof *r * (size_t)(counts->n ? counts->n : 1));
    if (!r) {
        vocab_free(out);
        return ET_STATUS_ERR_NOMEM;
    }
    int32_t m = 0;
    for (int32_t i = 0; i < counts->n; i++)
        if (counts->count[i] > 0)
            r[m++] = (ranked){counts->count[i], vocab_token(counts, i), counts->length[i]};
    qsort(r, (size_t)m, sizeof *r, by_count_then_bytes);
    for (int32_t i = 0; i < m; i++) {
        int32_t id;
        if (vocab_intern(out, r[i].text, r[i].length, &id)) {
            free(r);
            vocab_free(out);
            return ET_STATUS_ERR_NOMEM;
        }
        out->count[id] += r[i].count;
    }
    free(r);
    return 0;
}

/* One dict.txt line (no newline) into out. */
static int dict_line(const et_host *host, const char *path, int64_t lineno, char *line,
                     vocab *out, char **err)
{
    static const char flag[] = "#fairseq:overwrite";
    size_t len = strlen(line);
    if (len && line[len - 1] == '\r')
        line[--len] = 0;
    char *sp = strrchr(line, ' ');
    int overwrite = 0;
    if (sp && !strcmp(sp + 1, flag)) {
        overwrite = 1;
        *sp = 0;
        sp = strrchr(line, ' ');
    }
    if (!sp || sp == line)
        return VOCAB_FAIL(ET_STATUS_ERR_FORMAT,
                          "%s:%" PRId64 ": expected \"TOKEN COUNT\" (fairseq dict.txt format)",
                          path, lineno);
    const char *num = sp + 1;
    char *end;
    errno = 0;
    long long count = strtoll(num, &end, 10);
    if (*num < '0' || *num > '9' || *end || errno)
        return VOCAB_FAIL(ET_STATUS_ERR_FORMAT,
                          "%s:%" PRId64 ": count \"%s\" is not a whole number >= 0", path,
                          lineno, num);
    size_t tlen = (size_t)(sp - line);
    if (strcspn(line, " \t\v\f\r") < tlen)
        return VOCAB_FAIL(ET_STATUS_ERR_FORMAT,
                          "%s:%" PRId64 ": token \"%.*s\" holds whitespace, so no text can "
                          "contain it",
                          path, lineno, (int)tlen, line);
    int32_t before = out->n, id;
    if (vocab_intern(out, line, tlen, &id))
        return VOCAB_FAIL(ET_STATUS_ERR_NOMEM, "%s:%" PRId64 ": out of memory", path, lineno);
    if (id < before && !overwrite)
        return VOCAB_FAIL(ET_STATUS_ERR_FORMAT,
                          "%s:%" PRId64 ": token \"%.*s\" repeats an earlier line%s (add "
                          "\" #fairseq:overwrite\" to the line to replace it)",
                          path, lineno, (int)tlen, line,
                          id < VOCAB_SPECIALS ? " (it is a special token)" : "");
    out->count[id] = count;
    return 0;
}

int vocab_read_dict(const et_host *host, const char *path, vocab *out, char **err)
{
    if (vocab_init_specials(out))
        return VOCAB_FAIL(ET_STATUS_ERR_NOMEM, "%s: out of memory", path);
    FILE *f = fopen(path, "r");
    if (!f) {
        vocab_free(out);
        return VOCAB_FAIL(ET_STATUS_ERR_IO, "%s: %s", path, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    int64_t lineno = 0;
    int rc = 0;
    ssize_t got;
    errno = 0;
    while (!rc && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (got && line[got - 1] == '\n')
            line[--got] = 0;
        if (memchr(line, 0, (size_t)got))
            rc = VOCAB_FAIL(ET_STATUS_ERR_FORMAT, "%s:%" PRId64 ": holds a NUL byte", path,
                            lineno);
        else
            rc = dict_line(host, path, lineno, line, out, err);
    }
    if (!rc && ferror(f))
        rc = VOCAB_FAIL(ET_STATUS_ERR_IO, "%s: read error: %s", path, strerror(errno));
    free(line);
    fclose(f);
    if (rc)
        vocab_free(out);
    return rc;
}

int64_t vocab_join(const vocab *v, const int32_t *ids, int64_t n, char **buf, size_t *cap)
{
    size_t len = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= v->n)
            return ET_STATUS_ERR_USAGE;
        if (id == VOCAB_EOS)
            break;
        if (id == VOCAB_BOS || id == VOCAB_PAD)
            continue;
        size_t tl = v->length[id];
        if (len + tl + 2 > *cap) {
            size_t c = *cap ? *cap : 256;
            while (c < len + tl + 2)
                c *= 2;
            char *p = realloc(*buf, c);
            if (!p)
                return ET_STATUS_ERR_NOMEM;
            *buf = p;
            *cap = c;
        }
        if (len)
            (*buf)[len++] = ' ';
        memcpy(*buf + len, vocab_token(v, id), tl);
        len += tl;
    }
    if (!*cap) {
        char *p = malloc(1);
        if (!p)
            return ET_STATUS_ERR_NOMEM;
        *buf = p;
        *cap = 1;
    }
    (*buf)[len] = 0;
    return (int64_t)len;
}
