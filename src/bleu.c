/* Corpus BLEU that reproduces sacreBLEU 2.6.0 number for number: its 13a and
 * none tokenizers, clipped n-gram counts up to 4-grams against one reference,
 * "exp" smoothing, the brevity penalty, and its one-line report. Text is
 * handled as UTF-8 bytes; where Python's str methods know Unicode (whitespace
 * in split() and rstrip()) the Unicode rule is followed. */
#include "bleu.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/plugin.h>

#include "util.h"

/* A growable byte string, always NUL-terminated once anything is put. */
typedef struct bleu_buf {
    char *p;
    size_t n, cap;
} bleu_buf;

static int buf_reserve(bleu_buf *b, size_t extra)
{
    if (b->n + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(bleu_buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n))
        return -1;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

/* Length of the character at p if Python's str.isspace() holds for it, else
 * 0. sacreBLEU splits tokens with str.split() and strips with rstrip(), so
 * no-break and other Unicode spaces separate tokens too. */
static size_t py_space_len(const unsigned char *p, size_t rem)
{
    unsigned c = p[0];
    if ((c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20))
        return 1;
    if (c == 0xc2 && rem >= 2 && (p[1] == 0x85 || p[1] == 0xa0))
        return 2; /* U+0085, U+00A0 */
    if (rem < 3)
        return 0;
    if (c == 0xe1 && p[1] == 0x9a && p[2] == 0x80)
        return 3; /* U+1680 */
    if (c == 0xe2 && p[1] == 0x80
        && (p[2] <= 0x8a || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf))
        return 3; /* U+2000..U+200A, U+2028, U+2029, U+202F */
    if (c == 0xe2 && p[1] == 0x81 && p[2] == 0x9f)
        return 3; /* U+205F */
    if (c == 0xe3 && p[1] == 0x80 && p[2] == 0x80)
        return 3; /* U+3000 */
    return 0;
}

/* Length of s[0..n) after Python's rstrip(). */
static size_t py_rstrip_len(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    while (n > 0) {
        size_t k = 0;
        if (py_space_len(u + n - 1, 1) == 1)
            k = 1;
        else if (n >= 2 && py_space_len(u + n - 2, 2) == 2)
            k = 2;
        else if (n >= 3 && py_space_len(u + n - 3, 3) == 3)
            k = 3;
        if (!k)
            break;
        n -= k;
    }
    return n;
}

/* dst = src with every pat replaced by rep, scanning left to right without
 * overlaps as Python's str.replace() does. */
static int replace_all(bleu_buf *dst, const bleu_buf *src, const char *pat, const char *rep)
{
    size_t pl = strlen(pat), rl = strlen(rep);
    dst->n = 0;
    if (buf_reserve(dst, src->n))
        return -1;
    for (size_t i = 0; i < src->n;) {
        if (src->n - i >= pl && memcmp(src->p + i, pat, pl) == 0) {
            if (buf_put(dst, rep, rl))
                return -1;
            i += pl;
        } else {
            if (buf_put(dst, src->p + i, 1))
                return -1;
            i++;
        }
    }
    dst->p[dst->n] = 0;
    return 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The characters of tokenizer_13a's first regex, ([\{-\~\[-\` -\&\(-\+\:-\@\/]):
 * ASCII punctuation and symbols, space included, but not ' , - . or digits. */
static int is_13a_symbol(char c)
{
    return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&')
        || (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

/* The four regexes of sacreBLEU's TokenizerRegexp, each a full left-to-right
 * pass like re.sub. Every pattern is one or two ASCII characters and "not a
 * digit" also holds for any byte of a multi-byte character, so working on
 * bytes finds exactly the matches Python finds on code points. */
enum { RULE_SYMBOL, RULE_PUNCT_AFTER_NONDIGIT, RULE_PUNCT_BEFORE_NONDIGIT, RULE_DASH_AFTER_DIGIT };

static int regex_pass(bleu_buf *dst, const bleu_buf *src, int rule)
{
    const char *s = src->p;
    size_t n = src->n;
    dst->n = 0;
    if (buf_reserve(dst, n))
        return -1;
    for (size_t i = 0; i < n;) {
        char out[4];
        size_t k = 0, used = 1;
        char c = s[i], d = i + 1 < n ? s[i + 1] : 0;
        int two = i + 1 < n;
        if (rule == RULE_SYMBOL && is_13a_symbol(c)) {
            out[0] = ' ', out[1] = c, out[2] = ' ', k = 3;
        } else if (rule == RULE_PUNCT_AFTER_NONDIGIT && two && !is_digit(c) && (d == '.' || d == ',')) {
            out[0] = c, out[1] = ' ', out[2] = d, out[3] = ' ', k = 4, used = 2;
        } else if (rule == RULE_PUNCT_BEFORE_NONDIGIT && two && (c == '.' || c == ',') && !is_digit(d)) {
            out[0] = ' ', out[1] = c, out[2] = ' ', out[3] = d, k = 4, used = 2;
        } else if (rule == RULE_DASH_AFTER_DIGIT && two && is_digit(c) && d == '-') {
            out[0] = c, out[1] = ' ', out[2] = '-', out[3] = ' ', k = 4, used = 2;
        } else {
            out[0] = c, k = 1;
        }
        if (buf_put(dst, out, k))
            return -1;
        i += used;
    }
    return 0;
}

typedef struct bleu_tok {
    const char *s;
    size_t len;
    uint64_t h;
} bleu_tok;

/* One side (hypothesis or reference) of a segment: scratch strings and the
 * tokens, which point into whichever scratch string holds the final text. */
typedef struct bleu_side {
    bleu_buf a, b;
    bleu_tok *tok;
    size_t ntok, cap;
} bleu_side;

static void side_free(bleu_side *sd)
{
    free(sd->a.p);
    free(sd->b.p);
    free(sd->tok);
}

static void swap_bufs(bleu_side *sd)
{
    bleu_buf t = sd->a;
    sd->a = sd->b;
    sd->b = t;
}

/* mteval-v13a's language-independent part, in sacreBLEU's order: drop
 * <skipped>, join words hyphenated across a line break, turn line breaks into
 * spaces, and undo four HTML entities (one full pass each, so "&amp;lt;"
 * becomes "<" as it does there). Then the surrounding spaces and the four
 * regex passes. Result in sd->a. */
static int tokenize_13a(bleu_side *sd)
{
    static const char *const steps[][2] = {
        {"<skipped>", ""}, {"-\n", ""}, {"\n", " "},
        {"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (i == 3 && !memchr(sd->a.p, '&', sd->a.n))
            break;
        if (replace_all(&sd->b, &sd->a, steps[i][0], steps[i][1]))
            return -1;
        swap_bufs(sd);
    }
    sd->b.n = 0;
    if (buf_put(&sd->b, " ", 1) || buf_put(&sd->b, sd->a.p, sd->a.n) || buf_put(&sd->b, " ", 1))
        return -1;
    swap_bufs(sd);
    for (int rule = RULE_SYMBOL; rule <= RULE_DASH_AFTER_DIGIT; rule++) {
        if (regex_pass(&sd->b, &sd->a, rule))
            return -1;
        swap_bufs(sd);
    }
    return 0;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3u;
    return h;
}

/* Preprocess one segment as sacreBLEU's BLEU._preprocess_segment does (rstrip,
 * then the tokenizer) and split it with str.split(). */
static int side_tokenize(bleu_side *sd, const char *line, et_bleu_tokenize tok)
{
    sd->a.n = 0;
    sd->ntok = 0;
    if (buf_put(&sd->a, line, py_rstrip_len(line, strlen(line))))
        return -1;
    if (tok == ET_BLEU_TOKENIZE_13A && tokenize_13a(sd))
        return -1;
    const unsigned char *u = (const unsigned char *)sd->a.p;
    size_t n = sd->a.n;
    for (size_t i = 0; i < n;) {
        size_t sp = py_space_len(u + i, n - i);
        if (sp) {
            i += sp;
            continue;
        }
        size_t j = i + 1;
        while (j < n && !py_space_len(u + j, n - j))
            j++;
        if (sd->ntok == sd->cap) {
            size_t cap = sd->cap ? 2 * sd->cap : 32;
            bleu_tok *t = realloc(sd->tok, cap * sizeof *t);
            if (!t)
                return -1;
            sd->tok = t;
            sd->cap = cap;
        }
        sd->tok[sd->ntok++] = (bleu_tok){sd->a.p + i, j - i, hash_bytes(sd->a.p + i, j - i)};
        i = j;
    }
    return 0;
}

/* An n-gram of one segment with its count in the hypothesis and in the
 * reference; `first` is NULL in an empty slot. */
typedef struct bleu_gram {
    const bleu_tok *first;
    uint64_t h;
    int order;
    int64_t hyp, ref;
} bleu_gram;

/* cap slots are in use for the current segment, alloc are allocated, so a
 * long segment does not make every later reset pay for its size. */
typedef struct bleu_table {
    bleu_gram *slot;
    size_t cap, alloc;
} bleu_table;

static uint64_t gram_hash(const bleu_tok *t, int order)
{
    uint64_t h = (uint64_t)order * 0x9e3779b97f4a7c15u;
    for (int k = 0; k < order; k++)
        h ^= t[k].h + 0x9e3779b97f4a7c15u + (h << 6) + (h >> 2);
    return h ^ (h >> 29);
}

static int gram_equal(const bleu_tok *a, const bleu_tok *b, int order)
{
    for (int k = 0; k < order; k++)
        if (a[k].len != b[k].len || memcmp(a[k].s, b[k].s, a[k].len) != 0)
            return 0;
    return 1;
}

static int table_reset(bleu_table *t, size_t ngrams)
{
    size_t cap = 16;
    while (cap < 2 * ngrams)
        cap *= 2;
    if (cap > t->alloc) {
        bleu_gram *s = realloc(t->slot, cap * sizeof *s);
        if (!s)
            return -1;
        t->slot = s;
        t->alloc = cap;
    }
    t->cap = cap;
    memset(t->slot, 0, cap * sizeof *t->slot);
    return 0;
}

static void table_add(bleu_table *t, const bleu_tok *first, int order, int is_hyp)
{
    uint64_t h = gram_hash(first, order);
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        bleu_gram *g = &t->slot[i];
        if (!g->first) {
            *g = (bleu_gram){first, h, order, 0, 0};
        } else if (g->h != h || g->order != order || !gram_equal(g->first, first, order)) {
            continue;
        }
        if (is_hyp)
            g->hyp++;
        else
            g->ref++;
        return;
    }
}

static size_t ngram_count(size_t ntok)
{
    size_t c = 0;
    for (size_t n = 1; n <= ET_BLEU_MAX_ORDER; n++)
        c += ntok >= n ? ntok - n + 1 : 0;
    return c;
}

/* Add one segment's clipped matches, totals and lengths to *r. */
static int segment_stats(bleu_table *t, const bleu_side *hyp, const bleu_side *ref, et_bleu_result *r)
{
    if (table_reset(t, ngram_count(hyp->ntok) + ngram_count(ref->ntok)))
        return -1;
    for (int side = 0; side < 2; side++) {
        const bleu_side *sd = side ? hyp : ref;
        for (int order = 1; order <= ET_BLEU_MAX_ORDER; order++)
            for (size_t i = 0; i + (size_t)order <= sd->ntok; i++)
                table_add(t, sd->tok + i, order, side);
    }
    for (size_t i = 0; i < t->cap; i++) {
        const bleu_gram *g = &t->slot[i];
        if (!g->first || !g->hyp)
            continue;
        r->totals[g->order - 1] += g->hyp;
        r->counts[g->order - 1] += g->hyp < g->ref ? g->hyp : g->ref;
    }
    r->sys_len += (int64_t)hyp->ntok;
    r->ref_len += (int64_t)ref->ntok;
    return 0;
}

int et_bleu_tokenize_parse(const char *name, et_bleu_tokenize *out, char **err)
{
    if (name && strcmp(name, "13a") == 0)
        *out = ET_BLEU_TOKENIZE_13A;
    else if (name && strcmp(name, "none") == 0)
        *out = ET_BLEU_TOKENIZE_NONE;
    else
        return et_fail(err, ET_STATUS_ERR_USAGE, "unknown BLEU tokenizer '%s' (use 13a or none)",
                       name ? name : "(null)");
    return 0;
}

const char *et_bleu_tokenize_name(et_bleu_tokenize tok)
{
    return tok == ET_BLEU_TOKENIZE_NONE ? "none" : "13a";
}

char *et_bleu_tokenize_line(const char *line, et_bleu_tokenize tok)
{
    bleu_side sd = {0};
    bleu_buf out = {0};
    char *res = NULL;
    if (side_tokenize(&sd, line, tok) == 0 && buf_reserve(&out, 0) == 0) {
        int bad = 0;
        for (size_t i = 0; i < sd.ntok && !bad; i++)
            bad = (i && buf_put(&out, " ", 1)) || buf_put(&out, sd.tok[i].s, sd.tok[i].len);
        out.p[out.n] = 0;
        if (!bad) {
            res = out.p;
            out.p = NULL;
        }
    }
    free(out.p);
    side_free(&sd);
    return res;
}

void et_bleu_compute(et_bleu_result *r)
{
    if (r->sys_len < r->ref_len)
        r->bp = r->sys_len > 0 ? exp(1.0 - (double)r->ref_len / (double)r->sys_len) : 0.0;
    else
        r->bp = 1.0;
    r->ratio = r->ref_len ? (double)r->sys_len / (double)r->ref_len : 0.0;
    r->score = 0.0;
    int any = 0;
    for (int n = 0; n < ET_BLEU_MAX_ORDER; n++) {
        r->precisions[n] = 0.0;
        any |= r->counts[n] != 0;
    }
    /* sacreBLEU stops early when nothing matches at any order (its #141),
     * so smoothing never turns an all-zero match into a positive score. */
    if (!any)
        return;
    double smooth = 1.0;
    for (int n = 0; n < ET_BLEU_MAX_ORDER; n++) {
        if (r->totals[n] == 0)
            break; /* this and higher orders keep precision 0, so the score is 0 */
        if (r->counts[n] == 0) {
            smooth *= 2.0;
            r->precisions[n] = 100.0 / (smooth * (double)r->totals[n]);
        } else {
            r->precisions[n] = 100.0 * (double)r->counts[n] / (double)r->totals[n];
        }
    }
    /* Summed in order with sacreBLEU's stand-in for log(0), so the rounding
     * matches its result and a zero precision gives exactly 0. */
    double sum = 0.0;
    for (int n = 0; n < ET_BLEU_MAX_ORDER; n++)
        sum += r->precisions[n] > 0.0 ? log(r->precisions[n]) : -9999999999.0;
    r->score = r->bp * exp(sum / ET_BLEU_MAX_ORDER);
}

int et_bleu_corpus(const char *const *hyps, const char *const *refs, size_t n,
                   et_bleu_tokenize tok, et_bleu_result *out, char **err)
{
    if (!out || (n && (!hyps || !refs)))
        return et_fail(err, ET_STATUS_ERR_USAGE, "et_bleu_corpus: NULL argument");
    if (tok != ET_BLEU_TOKENIZE_13A && tok != ET_BLEU_TOKENIZE_NONE)
        return et_fail(err, ET_STATUS_ERR_USAGE, "et_bleu_corpus: unknown tokenizer %d", (int)tok);
    if (n == 0)
        return et_fail(err, ET_STATUS_ERR_USAGE, "BLEU needs at least one segment, got none");
    for (size_t i = 0; i < n; i++) {
        if (!hyps[i] || !refs[i])
            return et_fail(err, ET_STATUS_ERR_USAGE, "segment %zu: NULL %s", i + 1,
                           hyps[i] ? "reference" : "hypothesis");
        if (!refs[i][0])
            return et_fail(err, ET_STATUS_ERR_FORMAT,
                           "segment %zu: empty reference (sacreBLEU refuses to score against one)",
                           i + 1);
    }
    et_bleu_result r = {0};
    bleu_side hyp = {0}, ref = {0};
    bleu_table table = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (side_tokenize(&hyp, hyps[i], tok) || side_tokenize(&ref, refs[i], tok)
            || segment_stats(&table, &hyp, &ref, &r))
            rc = et_fail(err, ET_STATUS_ERR_NOMEM, "out of memory computing BLEU at segment %zu", i + 1);
    }
    side_free(&hyp);
    side_free(&ref);
    free(table.slot);
    if (rc)
        return rc;
    et_bleu_compute(&r);
    *out = r;
    return 0;
}

/* Python decodes the files as strict UTF-8; 0 if s[0..n) is valid, else the
 * 1-based offset of the first bad byte. */
static size_t utf8_bad_offset(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            if (c == 0xe0)
                lo = 0xa0; /* no overlong forms */
            if (c == 0xed)
                hi = 0x9f; /* no surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            if (c == 0xf0)
                lo = 0x90;
            if (c == 0xf4)
                hi = 0x8f; /* nothing above U+10FFFF */
        } else {
            return i + 1;
        }
        if (n - i <= k)
            return i + 1;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return i + 2;
        for (size_t j = 2; j <= k; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xbf)
                return i + j + 1;
        i += k + 1;
    }
    return 0;
}

/* Lines as Python iterates a file opened with newline="\n" (sacreBLEU's
 * smart_open): split at '\n' only, no empty line after a final '\n'. The
 * buffer is cut in place; *lines points into it. */
static int split_lines(const char *path, char *text, size_t len, char ***lines, size_t *count,
                       char **err)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += text[i] == '\n';
    if (len && text[len - 1] != '\n')
        n++;
    char **v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return et_fail(err, ET_STATUS_ERR_NOMEM, "%s: out of memory splitting lines", path);
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= len && k < n; i++) {
        if (i < len && text[i] != '\n')
            continue;
        size_t bad = utf8_bad_offset((const unsigned char *)text + start, i - start);
        if (memchr(text + start, '\0', i - start) || bad) {
            free(v);
            if (bad)
                return et_fail(err, ET_STATUS_ERR_FORMAT,
                               "%s:%zu: not valid UTF-8 (byte %zu of the line)", path, k + 1, bad);
            return et_fail(err, ET_STATUS_ERR_FORMAT, "%s:%zu: contains a NUL byte", path, k + 1);
        }
        text[i < len ? i : len] = 0;
        v[k++] = text + start;
        start = i + 1;
    }
    *lines = v;
    *count = n;
    return 0;
}

int et_bleu_files(const char *hyp_path, const char *ref_path, et_bleu_tokenize tok,
                  et_bleu_result *out, char **err)
{
    char *htext = NULL, *rtext = NULL, **hl = NULL, **rl = NULL;
    size_t hlen = 0, rlen = 0, hn = 0, rn = 0;
    int rc = et_read_file(hyp_path, &htext, &hlen, err);
    if (rc == 0)
        rc = et_read_file(ref_path, &rtext, &rlen, err);
    if (rc == 0)
        rc = split_lines(hyp_path, htext, hlen, &hl, &hn, err);
    if (rc == 0)
        rc = split_lines(ref_path, rtext, rlen, &rl, &rn, err);
    if (rc == 0 && hn != rn)
        rc = et_fail(err, ET_STATUS_ERR_FORMAT,
                     "%s has %zu lines but %s has %zu: hypotheses and references must be "
                     "parallel, one segment per line",
                     hyp_path, hn, ref_path, rn);
    if (rc == 0 && hn == 0)
        rc = et_fail(err, ET_STATUS_ERR_FORMAT, "%s and %s have no lines to score", hyp_path,
                     ref_path);
    /* sacreBLEU's command line strips each line before its empty-reference
     * check, so a blank reference line is refused here too. */
    for (size_t i = 0; rc == 0 && i < rn; i++)
        if (py_rstrip_len(rl[i], strlen(rl[i])) == 0)
            rc = et_fail(err, ET_STATUS_ERR_FORMAT,
                         "%s:%zu: empty reference line (sacreBLEU refuses to score against one)",
                         ref_path, i + 1);
    if (rc == 0)
        rc = et_bleu_corpus((const char *const *)hl, (const char *const *)rl, hn, tok, out, err);
    free(hl);
    free(rl);
    free(htext);
    free(rtext);
    return rc;
}

int et_bleu_format(const et_bleu_result *r, char *buf, size_t size)
{
    return snprintf(buf, size,
                    "BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %" PRId64
                    " ref_len = %" PRId64 ")",
                    r->score, r->precisions[0], r->precisions[1], r->precisions[2],
                    r->precisions[3], r->bp, r->ratio, r->sys_len, r->ref_len);
}

size_t et_bleu_remove_bpe(char *line)
{
    /* Same as fairseq's (line + " ").replace("@@ ", "") without its rstrip:
     * a final "@@" is a join whose space fell off the end. */
    size_t r = 0, w = 0;
    while (line[r]) {
        if (line[r] == '@' && line[r + 1] == '@' && (line[r + 2] == ' ' || line[r + 2] == 0)) {
            r += line[r + 2] ? 3 : 2;
            continue;
        }
        line[w++] = line[r++];
    }
    line[w] = 0;
    return w;
}
