/* The translate task plugin: parallel text (train/valid/test .SRC and .TGT
 * files, one sentence per line) as token batches for an encoder-decoder,
 * scored with BLEU (spec/data.md).
 *
 * Tokens: format = raw learns a joint BPE on both training files (cached as
 * DATA/bpe.MERGES.codes) and counts a vocabulary from the BPE'd training
 * text, joint or one per language. format = bpe reads "@@ " text as it is,
 * with the vocabulary of DATA/dict.txt (joint), of DATA/dict.SRC.txt and
 * DATA/dict.TGT.txt (fairseq's --joined-dictionary writes the two alike),
 * or, with no dictionary, counted from the training text. Vocabularies
 * count the training pairs before the length filter, as fairseq's do.
 *
 * Examples: a pair is dropped when either side is empty, or when its source
 * has more than max_len tokens or its target plus eos does. Special token
 * ids (vocab.h): bos 0, pad 1, eos 2, unk 3; the source carries neither bos
 * nor eos, tgt_in is bos + target and tgt_out is target + eos, padded with
 * pad; src_lens and tgt_lens count each row's real positions (tgt_lens
 * includes the bos/eos one).
 *
 * Batches: a split's examples sorted by width = max(source length, target
 * length + 1), then source length, target length and index, are cut
 * greedily into batches whose size x width stays within max_tokens (so the
 * padded source and the padded decoder rows each hold at most max_tokens
 * ids) and whose size stays within the ABI's batch_size when it is > 0
 * (batch_size 0 means max_tokens alone decides). The engine sizes its model
 * for batch_size examples, so honouring it as a cap is what keeps a batch
 * inside what the engine allocated. Where the cuts fall depends only on the
 * lengths, so batch_count needs no epoch. Each training epoch shuffles the
 * examples within each run of equal lengths and then the order of the
 * batches, both from (seed, epoch); validation and test batches come
 * shortest first, always the same. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <etnas/etnas.h>

#include "bpe.h"
#include "translate.h"
#include "vocab.h"

#define TRANSLATE_FAIL(code, ...) (*err = host->errorf(__VA_ARGS__), (code))

#define TRANSLATE_DEFAULT_DATA "data/deen"

/* Child streams of the instance's seed, one per use. */
enum { STREAM_SHUFFLE = 1 };

enum { FORMAT_RAW = 0, FORMAT_BPE = 1 };

/* Option indices: the order of translate_options. */
enum {
    OPT_DATA,
    OPT_SRC,
    OPT_TGT,
    OPT_FORMAT,
    OPT_MERGES,
    OPT_JOINT,
    OPT_MAX_LEN,
    OPT_MAX_TOKENS
};

static const et_option_decl translate_options[] = {
    {"data", ET_OPTION_TYPE_PATH, TRANSLATE_DEFAULT_DATA, 1, 0, NULL,
     "directory of train/valid/test.SRC and .TGT (default: what scripts/prepare-deen makes)"},
    {"src", ET_OPTION_TYPE_STRING, "de", 1, 0, NULL, "source language: the file suffix"},
    {"tgt", ET_OPTION_TYPE_STRING, "en", 1, 0, NULL, "target language: the file suffix"},
    {"format", ET_OPTION_TYPE_CHOICE, "raw", 1, 0, "raw|bpe",
     "raw: plain text, BPE learned here; bpe: \"@@ \" BPE text, fairseq dict.*.txt optional"},
    {"merges", ET_OPTION_TYPE_INT, "8000", 0, 1000000, NULL,
     "BPE merges to learn (format = raw), cached in DATA/bpe.MERGES.codes"},
    {"joint", ET_OPTION_TYPE_BOOL, "true", 1, 0, NULL,
     "one vocabulary for both languages (else one each)"},
    {"max_len", ET_OPTION_TYPE_INT, "64", 1, 65536, NULL,
     "drop pairs whose source, or target plus eos, has more tokens than this"},
    {"max_tokens", ET_OPTION_TYPE_INT, "4096", 1, 1 << 30, NULL,
     "tokens per batch at most, padding included (examples x longer padded side)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const char *const split_names[3] = {"train", "valid", "test"};

/* One split's kept examples and its batch layout. */
typedef struct tr_split {
    int64_t n;
    int64_t *src_at, *tgt_at; /* (n + 1) offsets into the id pools */
    int32_t *src, *tgt;       /* token ids, examples back to back */
    int64_t src_cap, tgt_cap, at_cap;
    char *ref;                /* valid/test: reference lines, NUL-separated */
    int64_t *ref_at;          /* (n) where each starts */
    int64_t ref_len, ref_cap;
    int32_t *sorted;          /* (n) examples by width, lengths, index */
    int64_t *cut;             /* (n + 1) batch starts in sorted order, then n */
    int64_t batches;
    int32_t layout_size;      /* batch_size the cuts were made for; -1 = none */
} tr_split;

typedef struct translate_state {
    const et_host *host;
    const char *data, *src_lang, *tgt_lang;
    int32_t format, merges, joint, max_len, max_tokens;

    int load_called, loaded;
    vocab vocab_src, vocab_tgt; /* joint: vocab_tgt stays empty, tgt uses vocab_src */
    const vocab *tgt_vocab;
    tr_split split[3];
    int32_t max_src, max_tgt; /* longest source; longest target + 1 */

    et_rng shuffle;
    int32_t *order, *perm; /* training: examples of epoch order_epoch, batch order */
    int64_t order_epoch;
    int32_t order_size;    /* layout_size the order was made for; -1 = none */

    /* batch buffers, sized at load for the largest batch any layout makes */
    int32_t *b_src, *b_in, *b_out, *b_src_lens, *b_tgt_lens;
} translate_state;

static void split_free(tr_split *t)
{
    free(t->src_at);
    free(t->tgt_at);
    free(t->src);
    free(t->tgt);
    free(t->ref);
    free(t->ref_at);
    free(t->sorted);
    free(t->cut);
}

static void translate_destroy(void *state)
{
    translate_state *s = state;
    if (!s)
        return;
    vocab_free(&s->vocab_src);
    vocab_free(&s->vocab_tgt);
    for (int i = 0; i < 3; i++)
        split_free(&s->split[i]);
    free(s->order);
    free(s->perm);
    free(s->b_src);
    free(s->b_in);
    free(s->b_out);
    free(s->b_src_lens);
    free(s->b_tgt_lens);
    free(s);
}

/* A language suffix becomes part of file names: keep it to [A-Za-z0-9_-]. */
static int valid_lang(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') && !(*s >= '0' && *s <= '9') &&
            *s != '_' && *s != '-')
            return 0;
    return 1;
}

static int translate_create(const et_host *host, const et_option_value *opts, void **state,
                            char **err)
{
    *state = NULL;
    if (!opts[OPT_DATA].s || !*opts[OPT_DATA].s)
        return TRANSLATE_FAIL(ET_STATUS_ERR_USAGE, "translate: data must name a directory");
    if (!valid_lang(opts[OPT_SRC].s) || !valid_lang(opts[OPT_TGT].s) ||
        !strcmp(opts[OPT_SRC].s, opts[OPT_TGT].s))
        return TRANSLATE_FAIL(ET_STATUS_ERR_USAGE,
                              "translate: src = %s, tgt = %s: the languages are file suffixes of "
                              "letters, digits, '_' or '-', and must differ",
                              opts[OPT_SRC].s ? opts[OPT_SRC].s : "",
                              opts[OPT_TGT].s ? opts[OPT_TGT].s : "");
    /* The host checks declared ranges; these guard hand-built option arrays. */
    if (opts[OPT_FORMAT].i < FORMAT_RAW || opts[OPT_FORMAT].i > FORMAT_BPE ||
        opts[OPT_MERGES].i < 0 || opts[OPT_MERGES].i > 1000000 || opts[OPT_MAX_LEN].i < 1 ||
        opts[OPT_MAX_LEN].i > 65536 || opts[OPT_MAX_TOKENS].i < 1 ||
        opts[OPT_MAX_TOKENS].i > (1 << 30))
        return TRANSLATE_FAIL(ET_STATUS_ERR_USAGE,
                              "translate: an option is out of its declared range (format raw|bpe, "
                              "merges 0..1000000, max_len 1..65536, max_tokens 1..2^30)");
    if (opts[OPT_MAX_TOKENS].i < opts[OPT_MAX_LEN].i)
        return TRANSLATE_FAIL(ET_STATUS_ERR_USAGE,
                              "translate: max_tokens = %" PRId64 " is below max_len = %" PRId64
                              ", so a batch could not hold the longest example; raise max_tokens "
                              "or lower max_len",
                              opts[OPT_MAX_TOKENS].i, opts[OPT_MAX_LEN].i);
    translate_state *s = calloc(1, sizeof *s);
    if (!s)
        return TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory");
    s->host = host;
    s->data = opts[OPT_DATA].s;
    s->src_lang = opts[OPT_SRC].s;
    s->tgt_lang = opts[OPT_TGT].s;
    s->format = (int32_t)opts[OPT_FORMAT].i;
    s->merges = (int32_t)opts[OPT_MERGES].i;
    s->joint = opts[OPT_JOINT].i != 0;
    s->max_len = (int32_t)opts[OPT_MAX_LEN].i;
    s->max_tokens = (int32_t)opts[OPT_MAX_TOKENS].i;
    et_rng base = et_rng_from_seed(host->seed);
    s->shuffle = et_rng_split(&base, STREAM_SHUFFLE);
    for (int i = 0; i < 3; i++)
        s->split[i].layout_size = -1;
    s->order_size = -1;
    vocab_init(&s->vocab_src);
    vocab_init(&s->vocab_tgt);
    *state = s;
    return 0;
}

/* ------------------------------------------------------------ reading */

/* DATA/ followed by printf-formatted text, malloc'd; NULL when out of memory. */
static char *data_path(const translate_state *s, const char *fmt, ...) ET_PRINTF(2, 3);
static char *data_path(const translate_state *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    size_t dl = strlen(s->data);
    char *p = n < 0 ? NULL : malloc(dl + (size_t)n + 2);
    if (!p)
        return NULL;
    memcpy(p, s->data, dl);
    p[dl] = '/';
    va_start(ap, fmt);
    vsnprintf(p + dl + 1, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int grow(void **p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int64_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q)
        return ET_STATUS_ERR_NOMEM;
    *p = q;
    *cap = c;
    return 0;
}

/* What reading a split needs beyond the state: scratch and tallies. */
typedef struct reader {
    bpe_model *bpe;          /* format = raw */
    vocab *count_src, *count_tgt; /* temporary ids; the same table when joint */
    char *line[2], *text[2], *norm;
    size_t line_cap[2], text_cap[2], norm_cap;
    int64_t empty, long_pairs, lines;
} reader;

/* Tokens of a (BPE) text line as temporary ids appended to ids[*len ..];
 * counted in the table when `count`. Returns the token count or an error. */
static int64_t add_tokens(vocab *table, const char *text, size_t n, int count, int32_t **ids,
                          int64_t *len, int64_t *cap)
{
    int64_t k = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && bpe_is_space((unsigned char)text[i]))
            i++;
        size_t start = i;
        while (i < n && !bpe_is_space((unsigned char)text[i]))
            i++;
        if (i == start)
            continue;
        int32_t id;
        if (vocab_intern(table, text + start, i - start, &id) ||
            grow((void **)ids, cap, *len + 1, sizeof **ids))
            return ET_STATUS_ERR_NOMEM;
        if (count)
            table->count[id]++;
        (*ids)[(*len)++] = id;
        k++;
    }
    return k;
}

/* The words of a line joined by single spaces into r->norm; its length. */
static int64_t normalise(reader *r, const char *text, size_t n)
{
    if (n + 1 > r->norm_cap) {
        char *p = realloc(r->norm, n + 1);
        if (!p)
            return ET_STATUS_ERR_NOMEM;
        r->norm = p;
        r->norm_cap = n + 1;
    }
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && bpe_is_space((unsigned char)text[i]))
            i++;
        if (i == n)
            break;
        if (out)
            r->norm[out++] = ' ';
        while (i < n && !bpe_is_space((unsigned char)text[i]))
            r->norm[out++] = text[i++];
    }
    r->norm[out] = 0;
    return (int64_t)out;
}

static int keep_reference(tr_split *t, const char *text, int64_t len)
{
    if (grow((void **)&t->ref, &t->ref_cap, t->ref_len + len + 1, 1))
        return ET_STATUS_ERR_NOMEM;
    memcpy(t->ref + t->ref_len, text, (size_t)len + 1);
    t->ref_at[t->n] = t->ref_len;
    t->ref_len += len + 1;
    return 0;
}

/* Room for example n + 1 in the per-example arrays (references are kept
 * for validation and test only). */
static int reserve_example(tr_split *t, int references)
{
    if (t->n + 2 <= t->at_cap)
        return 0;
    int64_t cap = t->at_cap ? t->at_cap * 2 : 1024;
    int64_t *src_at = realloc(t->src_at, sizeof *src_at * (size_t)cap);
    if (!src_at)
        return ET_STATUS_ERR_NOMEM;
    t->src_at = src_at;
    int64_t *tgt_at = realloc(t->tgt_at, sizeof *tgt_at * (size_t)cap);
    if (!tgt_at)
        return ET_STATUS_ERR_NOMEM;
    t->tgt_at = tgt_at;
    if (references) {
        int64_t *ref_at = realloc(t->ref_at, sizeof *ref_at * (size_t)cap);
        if (!ref_at)
            return ET_STATUS_ERR_NOMEM;
        t->ref_at = ref_at;
    }
    if (!t->at_cap)
        t->src_at[0] = t->tgt_at[0] = 0;
    t->at_cap = cap;
    return 0;
}

/* One line pair: dropped when a side is empty or too long, else appended to
 * the split (with temporary ids) and counted when training. */
static int take_pair(translate_state *s, reader *r, int split, char **err)
{
    const et_host *host = s->host;
    tr_split *t = &s->split[split];
    const char *text[2];
    size_t len[2];
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(r->line[k]), i = 0;
        while (i < n && bpe_is_space((unsigned char)r->line[k][i]))
            i++;
        if (i == n) {
            r->empty++;
            return 0;
        }
        if (s->format == FORMAT_RAW) {
            int64_t got = bpe_apply_line(r->bpe, r->line[k], n, &r->text[k], &r->text_cap[k]);
            if (got < 0)
                return TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory applying BPE");
            text[k] = r->text[k];
            len[k] = (size_t)got;
        } else {
            text[k] = r->line[k];
            len[k] = n;
        }
    }
    if (t->n == INT32_MAX)
        return TRANSLATE_FAIL(ET_STATUS_ERR_USAGE,
                              "translate: %s holds more than %" PRId32 " pairs, the most a split "
                              "can number",
                              split_names[split], INT32_MAX);
    if (reserve_example(t, split != ET_SPLIT_TRAIN))
        return TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory reading %s",
                              split_names[split]);
    /* a dropped pair's ids are overwritten by the next pair's */
    int64_t src_len = t->src_at[t->n], tgt_len = t->tgt_at[t->n];
    int count = split == ET_SPLIT_TRAIN;
    int64_t ns = add_tokens(r->count_src, text[0], len[0], count, &t->src, &src_len, &t->src_cap);
    int64_t nt = add_tokens(r->count_tgt, text[1], len[1], count, &t->tgt, &tgt_len, &t->tgt_cap);
    if (ns < 0 || nt < 0)
        return TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory reading %s",
                              split_names[split]);
    if (ns > s->max_len || nt + 1 > s->max_len) {
        r->long_pairs++;
        return 0;
    }
    if (split != ET_SPLIT_TRAIN) {
        /* raw: the line itself; bpe: the line with its joins removed */
        int64_t n = normalise(r, r->line[1], strlen(r->line[1]));
        if (n < 0)
            return TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory");
        if (s->format == FORMAT_BPE)
            n = (int64_t)bpe_remove(r->norm);
        if (keep_reference(t, r->norm, n))
            return TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory");
    }
    t->n++;
    t->src_at[t->n] = src_len;
    t->tgt_at[t->n] = tgt_len;
    return 0;
}

/* Read one line of f into r->line[k]: 1 when there was one, 0 at the end. */
static int next_line(const et_host *host, FILE *f, const char *path, reader *r, int k,
                     int64_t lineno, char **err)
{
    errno = 0;
    ssize_t got = getline(&r->line[k], &r->line_cap[k], f);
    if (got < 0) {
        if (ferror(f))
            return TRANSLATE_FAIL(ET_STATUS_ERR_IO, "%s: read error: %s", path, strerror(errno));
        return 0;
    }
    if (memchr(r->line[k], 0, (size_t)got))
        return TRANSLATE_FAIL(ET_STATUS_ERR_FORMAT, "%s:%" PRId64 ": holds a NUL byte", path,
                              lineno);
    return 1;
}

static int read_split(translate_state *s, reader *r, int split, char **err)
{
    const et_host *host = s->host;
    char *path[2] = {data_path(s, "%s.%s", split_names[split], s->src_lang),
                     data_path(s, "%s.%s", split_names[split], s->tgt_lang)};
    FILE *f[2] = {NULL, NULL};
    int rc = 0;
    if (!path[0] || !path[1])
        rc = TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory");
    for (int k = 0; k < 2 && !rc; k++)
        if (!(f[k] = fopen(path[k], "rb")))
            rc = TRANSLATE_FAIL(ET_STATUS_ERR_IO, "%s: cannot open: %s", path[k], strerror(errno));
    int64_t lines[2] = {0, 0};
    r->empty = r->long_pairs = 0;
    while (!rc) {
        int more[2];
        for (int k = 0; k < 2 && !rc; k++) {
            more[k] = next_line(host, f[k], path[k], r, k, lines[k] + 1, err);
            if (more[k] < 0)
                rc = more[k];
            else
                lines[k] += more[k];
        }
        if (rc || (!more[0] && !more[1]))
            break;
        if (more[0] != more[1]) {
            /* count the rest of the longer file for the message */
            int k = more[0] ? 0 : 1, got;
            while ((got = next_line(host, f[k], path[k], r, k, lines[k] + 1, err)) > 0)
                lines[k]++;
            if (got < 0)
                rc = got;
            else
                rc = TRANSLATE_FAIL(ET_STATUS_ERR_FORMAT,
                                    "translate: %s has %" PRId64 " lines but %s has %" PRId64
                                    "; parallel files need the same number of lines",
                                    path[0], lines[0], path[1], lines[1]);
            break;
        }
        rc = take_pair(s, r, split, err);
    }
    r->lines = lines[0];
    for (int k = 0; k < 2; k++) {
        if (f[k])
            fclose(f[k]);
        free(path[k]);
    }
    return rc;
}

/* ------------------------------------------------------------ vocabularies */

/* The vocabularies for format = bpe: dict.txt when joint and present, else
 * dict.SRC.txt and dict.TGT.txt; *found = 0 when there is neither. */
static int read_dicts(translate_state *s, int *found, char **err)
{
    const et_host *host = s->host;
    *found = 0;
    char *joint = data_path(s, "dict.txt"), *srct = data_path(s, "dict.%s.txt", s->src_lang),
         *tgtt = data_path(s, "dict.%s.txt", s->tgt_lang);
    int rc = 0;
    if (!joint || !srct || !tgtt) {
        rc = TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory");
        goto out;
    }
    if (s->joint && file_exists(joint)) {
        *found = 1;
        rc = vocab_read_dict(host, joint, &s->vocab_src, err);
        goto out;
    }
    int have_src = file_exists(srct), have_tgt = file_exists(tgtt);
    if (!have_src && !have_tgt)
        goto out;
    if (have_src != have_tgt) {
        rc = TRANSLATE_FAIL(ET_STATUS_ERR_IO,
                            "translate: %s exists but %s does not; format = bpe takes both "
                            "dictionaries%s or neither (then the vocabulary is counted from the "
                            "training text)",
                            have_src ? srct : tgtt, have_src ? tgtt : srct,
                            s->joint ? ", or a joint dict.txt," : "");
        goto out;
    }
    *found = 1;
    if ((rc = vocab_read_dict(host, srct, &s->vocab_src, err)) ||
        (rc = vocab_read_dict(host, tgtt, &s->vocab_tgt, err)))
        goto out;
    if (s->joint) {
        /* fairseq's --joined-dictionary writes the same file twice */
        const vocab *a = &s->vocab_src, *b = &s->vocab_tgt;
        int32_t i = VOCAB_SPECIALS;
        while (i < a->n && i < b->n && !strcmp(vocab_token(a, i), vocab_token(b, i)))
            i++;
        if (i < a->n || i < b->n)
            rc = TRANSLATE_FAIL(ET_STATUS_ERR_FORMAT,
                                "translate: joint = true but %s and %s differ (from their "
                                "token %" PRId32 " on); give one dict.txt or set joint = false",
                                srct, tgtt, i - VOCAB_SPECIALS + 1);
        vocab_free(&s->vocab_tgt);
    }
out:
    free(joint);
    free(srct);
    free(tgtt);
    return rc;
}

/* Temporary ids of a split's side to vocabulary ids; unknown tokens become
 * unk and are tallied. */
static int remap(const vocab *table, const vocab *v, int32_t *ids, int64_t n, int32_t **map,
                 int64_t *unknown)
{
    if (!*map) {
        *map = malloc(sizeof **map * (size_t)(table->n ? table->n : 1));
        if (!*map)
            return ET_STATUS_ERR_NOMEM;
        for (int32_t i = 0; i < table->n; i++)
            (*map)[i] = vocab_encode(v, vocab_token(table, i), table->length[i]);
    }
    for (int64_t i = 0; i < n; i++) {
        ids[i] = (*map)[ids[i]];
        *unknown += ids[i] == VOCAB_UNK;
    }
    return 0;
}

/* ------------------------------------------------------------ batches */

typedef struct sort_key {
    int32_t width, src, tgt, index;
} sort_key;

static int by_key(const void *pa, const void *pb)
{
    const sort_key *a = pa, *b = pb;
    if (a->width != b->width)
        return a->width < b->width ? -1 : 1;
    if (a->src != b->src)
        return a->src < b->src ? -1 : 1;
    if (a->tgt != b->tgt)
        return a->tgt < b->tgt ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

static int32_t src_len_of(const tr_split *t, int32_t e)
{
    return (int32_t)(t->src_at[e + 1] - t->src_at[e]);
}

static int32_t tgt_len_of(const tr_split *t, int32_t e)
{
    return (int32_t)(t->tgt_at[e + 1] - t->tgt_at[e]);
}

static int32_t width_of(const tr_split *t, int32_t e)
{
    int32_t a = src_len_of(t, e), b = tgt_len_of(t, e) + 1;
    return a > b ? a : b;
}

static int sort_split(tr_split *t)
{
    size_t n = (size_t)(t->n ? t->n : 1);
    sort_key *k = malloc(sizeof *k * n);
    t->sorted = malloc(sizeof *t->sorted * n);
    t->cut = malloc(sizeof *t->cut * (n + 1));
    if (!k || !t->sorted || !t->cut) {
        free(k);
        return ET_STATUS_ERR_NOMEM;
    }
    for (int32_t e = 0; e < t->n; e++)
        k[e] = (sort_key){width_of(t, e), src_len_of(t, e), tgt_len_of(t, e), e};
    qsort(k, (size_t)t->n, sizeof *k, by_key);
    for (int64_t i = 0; i < t->n; i++)
        t->sorted[i] = k[i].index;
    free(k);
    return 0;
}

/* Cut a split's sorted examples into batches for batch_size (see the top). */
static void layout(translate_state *s, int32_t split, int32_t batch_size)
{
    tr_split *t = &s->split[split];
    if (t->layout_size == batch_size)
        return;
    int64_t cap = batch_size > 0 ? batch_size : INT64_MAX, start = 0;
    t->batches = 0;
    for (int64_t i = 0; i < t->n; i++) {
        int64_t size = i - start, w = width_of(t, t->sorted[i]);
        if (size > 0 && (size == cap || (size + 1) * w > s->max_tokens)) {
            t->cut[t->batches++] = start;
            start = i;
        }
    }
    if (t->n > 0)
        t->cut[t->batches++] = start;
    t->cut[t->batches] = t->n;
    t->layout_size = batch_size;
}

/* The training order of an epoch: examples shuffled within runs of equal
 * (source, target) lengths, so every batch keeps its lengths, then the
 * batches shuffled; both from (seed, epoch) alone. */
static void order_for_epoch(translate_state *s, int64_t epoch)
{
    tr_split *t = &s->split[ET_SPLIT_TRAIN];
    if (s->order_size == t->layout_size && s->order_epoch == epoch)
        return;
    et_rng rng = et_rng_split(&s->shuffle, (uint64_t)epoch);
    memcpy(s->order, t->sorted, sizeof *s->order * (size_t)t->n);
    for (int64_t a = 0; a < t->n;) {
        int32_t e = s->order[a];
        int64_t b = a + 1;
        while (b < t->n && src_len_of(t, s->order[b]) == src_len_of(t, e) &&
               tgt_len_of(t, s->order[b]) == tgt_len_of(t, e))
            b++;
        for (int64_t i = b - 1; i > a; i--) {
            int64_t j = a + (int64_t)et_rng_below(&rng, (uint64_t)(i - a + 1));
            int32_t x = s->order[i];
            s->order[i] = s->order[j];
            s->order[j] = x;
        }
        a = b;
    }
    for (int64_t i = 0; i < t->batches; i++)
        s->perm[i] = (int32_t)i;
    for (int64_t i = t->batches - 1; i > 0; i--) {
        int64_t j = (int64_t)et_rng_below(&rng, (uint64_t)(i + 1));
        int32_t x = s->perm[i];
        s->perm[i] = s->perm[j];
        s->perm[j] = x;
    }
    s->order_epoch = epoch;
    s->order_size = t->layout_size;
}

/* The examples of a batch (see batch()). */
static int locate(translate_state *s, int32_t split, int64_t epoch, int32_t batch_size,
                  int64_t index, const int32_t **examples, int32_t *size, char **err)
{
    const et_host *host = s->host;
    if (!s->loaded)
        return TRANSLATE_FAIL(ET_STATUS_ERR_USAGE, "translate: batch called before load");
    if (split < ET_SPLIT_TRAIN || split > ET_SPLIT_TEST || batch_size < 0)
        return TRANSLATE_FAIL(ET_STATUS_ERR_USAGE,
                              "translate: batch of split %" PRId32 " with batch_size %" PRId32
                              " (splits 0..2, batch_size >= 0)",
                              split, batch_size);
    layout(s, split, batch_size);
    tr_split *t = &s->split[split];
    if (index < 0 || index >= t->batches)
        return TRANSLATE_FAIL(ET_STATUS_ERR_USAGE,
                              "translate: batch %" PRId64 " of split %s does not exist (%" PRId64
                              " batches for batch_size %" PRId32 ")",
                              index, split_names[split], t->batches, batch_size);
    int64_t b = index;
    const int32_t *order = t->sorted;
    if (split == ET_SPLIT_TRAIN) {
        order_for_epoch(s, epoch);
        b = s->perm[index];
        order = s->order;
    }
    *examples = order + t->cut[b];
    *size = (int32_t)(t->cut[b + 1] - t->cut[b]);
    return 0;
}

static int64_t translate_batch_count(void *state, int32_t split, int32_t batch_size)
{
    translate_state *s = state;
    if (!s || !s->loaded || split < ET_SPLIT_TRAIN || split > ET_SPLIT_TEST || batch_size < 0)
        return ET_STATUS_ERR_USAGE;
    layout(s, split, batch_size);
    return s->split[split].batches;
}

static int translate_batch(void *state, int32_t split, int64_t epoch, int32_t batch_size,
                           int64_t index, et_batch *out, char **err)
{
    translate_state *s = state;
    const int32_t *ex;
    int32_t size;
    int rc = locate(s, split, epoch, batch_size, index, &ex, &size, err);
    if (rc)
        return rc;
    const tr_split *t = &s->split[split];
    int32_t sl = 0, tl = 0;
    for (int32_t j = 0; j < size; j++) {
        int32_t a = src_len_of(t, ex[j]), b = tgt_len_of(t, ex[j]) + 1;
        sl = a > sl ? a : sl;
        tl = b > tl ? b : tl;
    }
    for (int32_t j = 0; j < size; j++) {
        int32_t e = ex[j], ns = src_len_of(t, e), nt = tgt_len_of(t, e);
        int32_t *src = s->b_src + (int64_t)j * sl, *in = s->b_in + (int64_t)j * tl,
                *outp = s->b_out + (int64_t)j * tl;
        memcpy(src, t->src + t->src_at[e], sizeof *src * (size_t)ns);
        for (int32_t i = ns; i < sl; i++)
            src[i] = VOCAB_PAD;
        in[0] = VOCAB_BOS;
        memcpy(in + 1, t->tgt + t->tgt_at[e], sizeof *in * (size_t)nt);
        memcpy(outp, t->tgt + t->tgt_at[e], sizeof *outp * (size_t)nt);
        outp[nt] = VOCAB_EOS;
        for (int32_t i = nt + 1; i < tl; i++)
            in[i] = outp[i] = VOCAB_PAD;
        s->b_src_lens[j] = ns;
        s->b_tgt_lens[j] = nt + 1;
    }
    memset(out, 0, sizeof *out);
    out->size = size;
    out->src_len = sl;
    out->tgt_len = tl;
    out->src_tok = s->b_src;
    out->src_lens = s->b_src_lens;
    out->tgt_in = s->b_in;
    out->tgt_out = s->b_out;
    out->tgt_lens = s->b_tgt_lens;
    out->examples = ex;
    return 0;
}

/* ------------------------------------------------------------ load */

static int learn_bpe(translate_state *s, bpe_model *bpe, char **err)
{
    const et_host *host = s->host;
    char *train[2] = {data_path(s, "train.%s", s->src_lang), data_path(s, "train.%s", s->tgt_lang)};
    char *cache = data_path(s, "bpe.%" PRId32 ".codes", s->merges);
    int rc;
    bpe_source source;
    if (!train[0] || !train[1] || !cache)
        rc = TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory");
    else
        rc = bpe_learn_files(host, (const char *const *)train, 2, s->merges, cache, bpe, &source,
                             err);
    if (!rc)
        host->log(host->ctx, ET_LOG_LEVEL_INFO, "translate: BPE: %" PRId32 " merges %s %s",
                  bpe->n_merges, source == BPE_SOURCE_CACHE ? "read from" : "learned and cached in",
                  cache);
    free(train[0]);
    free(train[1]);
    free(cache);
    return rc;
}

/* Vocabularies, and every split's temporary ids turned into their ids. */
static int build_vocab(translate_state *s, vocab *count_src, vocab *count_tgt, int64_t unk[3][2],
                       char **err)
{
    const et_host *host = s->host;
    int found = 0, rc = 0;
    if (s->format == FORMAT_BPE && (rc = read_dicts(s, &found, err)))
        return rc;
    if (!found && (vocab_from_counts(&s->vocab_src, count_src) ||
                   (!s->joint && vocab_from_counts(&s->vocab_tgt, count_tgt))))
        return TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory");
    s->tgt_vocab = s->joint ? &s->vocab_src : &s->vocab_tgt;
    int32_t *map_src = NULL, *map_tgt = NULL;
    for (int i = 0; i < 3 && !rc; i++) {
        tr_split *t = &s->split[i];
        if (remap(count_src, &s->vocab_src, t->src, t->src_at[t->n], &map_src, &unk[i][0]) ||
            remap(count_tgt, s->tgt_vocab, t->tgt, t->tgt_at[t->n],
                  s->joint ? &map_src : &map_tgt, &unk[i][1]))
            rc = TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory");
    }
    free(map_src);
    free(map_tgt);
    return rc;
}

/* Batch buffers for the largest batch any layout can make: size x width
 * stays within max_tokens and within every split's examples x width. */
static int alloc_batches(translate_state *s)
{
    int64_t rows = 0, tokens = 0;
    for (int i = 0; i < 3; i++) {
        int64_t n = s->split[i].n;
        rows = n > rows ? n : rows;
    }
    int32_t width = s->max_src > s->max_tgt ? s->max_src : s->max_tgt;
    tokens = rows * width < s->max_tokens ? rows * width : s->max_tokens;
    rows = rows < s->max_tokens ? rows : s->max_tokens;
    size_t nt = (size_t)(tokens ? tokens : 1), nr = (size_t)(rows ? rows : 1);
    int64_t ntrain = s->split[ET_SPLIT_TRAIN].n;
    s->b_src = malloc(sizeof *s->b_src * nt);
    s->b_in = malloc(sizeof *s->b_in * nt);
    s->b_out = malloc(sizeof *s->b_out * nt);
    s->b_src_lens = malloc(sizeof *s->b_src_lens * nr);
    s->b_tgt_lens = malloc(sizeof *s->b_tgt_lens * nr);
    s->order = malloc(sizeof *s->order * (size_t)(ntrain ? ntrain : 1));
    s->perm = malloc(sizeof *s->perm * (size_t)(ntrain ? ntrain : 1));
    return s->b_src && s->b_in && s->b_out && s->b_src_lens && s->b_tgt_lens && s->order &&
                   s->perm
               ? 0
               : ET_STATUS_ERR_NOMEM;
}

static int translate_load(void *state, et_task_info *info, char **err)
{
    translate_state *s = state;
    const et_host *host = s->host;
    /* A failed load leaves partial data behind: no second attempt on it. */
    if (s->load_called)
        return TRANSLATE_FAIL(ET_STATUS_ERR_USAGE, "translate: load called twice");
    s->load_called = 1;
    const char *hint = !strcmp(s->data, TRANSLATE_DEFAULT_DATA)
                           ? " (make it with scripts/prepare-deen, from Debian's dict-de-en, or "
                             "set data = DIR)"
                           : "";
    struct stat st;
    if (stat(s->data, &st) != 0)
        return TRANSLATE_FAIL(ET_STATUS_ERR_IO, "translate: data = %s: %s%s", s->data,
                              strerror(errno), hint);
    if (!S_ISDIR(st.st_mode))
        return TRANSLATE_FAIL(ET_STATUS_ERR_IO, "translate: data = %s: not a directory%s", s->data,
                              hint);
    bpe_model bpe;
    bpe_init(&bpe);
    vocab count_src, count_tgt;
    vocab_init(&count_src);
    vocab_init(&count_tgt);
    reader r;
    memset(&r, 0, sizeof r);
    r.bpe = &bpe;
    r.count_src = &count_src;
    r.count_tgt = s->joint ? &count_src : &count_tgt;
    int64_t lines[3] = {0, 0, 0}, empty[3] = {0, 0, 0}, long_pairs[3] = {0, 0, 0},
            unk[3][2] = {{0, 0}, {0, 0}, {0, 0}};
    int rc = 0;
    if (s->format == FORMAT_RAW)
        rc = learn_bpe(s, &bpe, err);
    for (int i = 0; i < 3 && !rc; i++) {
        host->progress(host->ctx, "translate: reading", i, 3);
        rc = read_split(s, &r, i, err);
        lines[i] = r.lines;
        empty[i] = r.empty;
        long_pairs[i] = r.long_pairs;
    }
    if (!rc && s->split[ET_SPLIT_TRAIN].n == 0)
        rc = TRANSLATE_FAIL(ET_STATUS_ERR_FORMAT,
                            "translate: %s: no training pair left of %" PRId64
                            " lines (%" PRId64 " with an empty side, %" PRId64
                            " longer than max_len = %" PRId32 ")",
                            s->data, lines[0], empty[0], long_pairs[0], s->max_len);
    if (!rc)
        rc = build_vocab(s, &count_src, r.count_tgt, unk, err);
    bpe_free(&bpe);
    vocab_free(&count_src);
    vocab_free(&count_tgt);
    for (int k = 0; k < 2; k++) {
        free(r.line[k]);
        free(r.text[k]);
    }
    free(r.norm);
    if (rc)
        return rc;
    for (int i = 0; i < 3; i++) {
        tr_split *t = &s->split[i];
        for (int32_t e = 0; e < t->n; e++) {
            s->max_src = src_len_of(t, e) > s->max_src ? src_len_of(t, e) : s->max_src;
            s->max_tgt = tgt_len_of(t, e) + 1 > s->max_tgt ? tgt_len_of(t, e) + 1 : s->max_tgt;
        }
        if (sort_split(t))
            return TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory");
    }
    if (alloc_batches(s))
        return TRANSLATE_FAIL(ET_STATUS_ERR_NOMEM, "translate: out of memory for batches");

    for (int i = 0; i < 3; i++)
        host->log(host->ctx, ET_LOG_LEVEL_INFO,
                  "translate: %s: %" PRId64 " pairs of %" PRId64 " lines (dropped %" PRId64
                  " with an empty side, %" PRId64 " longer than max_len = %" PRId32
                  "); unknown tokens %" PRId64 " source, %" PRId64 " target",
                  split_names[i], s->split[i].n, lines[i], empty[i], long_pairs[i], s->max_len,
                  unk[i][0], unk[i][1]);
    char vocab_text[96];
    if (s->joint)
        snprintf(vocab_text, sizeof vocab_text, "a joint vocabulary of %" PRId32 " tokens",
                 s->vocab_src.n);
    else
        snprintf(vocab_text, sizeof vocab_text,
                 "vocabularies of %" PRId32 " source and %" PRId32 " target tokens",
                 s->vocab_src.n, s->vocab_tgt.n);
    host->log(host->ctx, ET_LOG_LEVEL_INFO,
              "translate: %s %s->%s: %s; longest source %" PRId32 ", target %" PRId32
              " (with eos)",
              s->data, s->src_lang, s->tgt_lang, vocab_text, s->max_src, s->max_tgt);

    memset(info, 0, sizeof *info);
    info->model_kind = ET_MODEL_KIND_SEQ2SEQ;
    info->src_vocab = s->vocab_src.n;
    info->tgt_vocab = s->tgt_vocab->n;
    info->max_src_len = s->max_src;
    info->max_tgt_len = s->max_tgt;
    for (int i = 0; i < 3; i++)
        info->split_size[i] = s->split[i].n;
    info->metric = "bleu";
    info->bos = VOCAB_BOS;
    info->eos = VOCAB_EOS;
    info->pad = VOCAB_PAD;
    info->higher_is_better = 1;
    s->loaded = 1;
    return 0;
}

/* ------------------------------------------------------------ translate.h */

int64_t translate_detokenize(const void *state, const int32_t *ids, int64_t n, char **buf,
                             size_t *cap)
{
    const translate_state *s = state;
    if (!s || !s->loaded)
        return ET_STATUS_ERR_USAGE;
    int64_t len = vocab_join(s->tgt_vocab, ids, n, buf, cap);
    return len < 0 ? len : (int64_t)bpe_remove(*buf);
}

const char *translate_reference(const void *state, int32_t split, int64_t example)
{
    const translate_state *s = state;
    if (!s || !s->loaded || (split != ET_SPLIT_VALID && split != ET_SPLIT_TEST) || example < 0 ||
        example >= s->split[split].n)
        return NULL;
    return s->split[split].ref + s->split[split].ref_at[example];
}

int translate_batch_examples(void *state, int32_t split, int64_t epoch, int32_t batch_size,
                             int64_t index, const int32_t **examples, int32_t *size, char **err)
{
    return locate(state, split, epoch, batch_size, index, examples, size, err);
}

static const et_task_vtable translate_vtable = {
    .create = translate_create,
    .destroy = translate_destroy,
    .load = translate_load,
    .batch_count = translate_batch_count,
    .batch = translate_batch,
    .detokenize = translate_detokenize,
    .reference = translate_reference,
};

static const et_plugin_descriptor translate_descriptor = {
    ET_ABI_VERSION,
    ET_PLUGIN_KIND_TASK,
    "translate",
    "machine translation on parallel text (raw with joint BPE, or fairseq BPE) for "
    "encoder-decoders, scored with BLEU",
    translate_options,
    &translate_vtable,
};

ET_EXPORT const et_plugin_descriptor *etnas_plugin(void)
{
    return &translate_descriptor;
}
