/* The translate task's data side: BPE learned on hand-checked text and its
 * tie-break, application and exact removal (against the core's
 * et_bleu_remove_bpe), the merges cache (reuse, corruption, mismatch),
 * fairseq dict.txt parsing and its errors, parallel files that disagree,
 * length-bucketed batches (token budget, coverage, shuffling by seed and
 * epoch, bos/eos shifting), ids back to text, and the real De-En data made
 * from Debian's dict-de-en (a declared dependency: its absence fails).
 * Each test works in its own directory under /tmp and removes it. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <etnas/etnas.h>

#include "../plugins/tasks/bpe.h"
#include "../plugins/tasks/translate.h"
#include "../plugins/tasks/vocab.h"
#include "bleu.h"
#include "testutil.h"

const et_plugin_descriptor *etnas_plugin(void);

#define DEEN_DICT "/usr/share/dictd/german-english.dict.dz"

static char tdir[64];

static void setup(void)
{
    snprintf(tdir, sizeof tdir, "/tmp/etnas-translate-XXXXXX");
    cr_assert_not_null(mkdtemp(tdir));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    nftw(tdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(translate, .init = setup, .fini = teardown);

/* ------------------------------------------------------------ a host by hand */

/* Everything logged, one message per line, and the warnings counted. */
static char logged[1 << 16];
static int warnings;

static void record_log(void *ctx, int32_t level, const char *fmt, ...)
{
    (void)ctx;
    size_t at = strlen(logged);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(logged + at, sizeof logged - at, fmt, ap);
    va_end(ap);
    at = strlen(logged);
    if (at + 1 < sizeof logged)
        strcpy(logged + at, "\n");
    warnings += level == ET_LOG_LEVEL_WARN;
}

static et_host test_host(uint64_t seed)
{
    return tu_host(seed, record_log);
}

static void clear_log(void)
{
    logged[0] = 0;
    warnings = 0;
}

/* ------------------------------------------------------------ files */

static char *path_in(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tdir, name);
    return p[k];
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(path_in(name), "wb");
    cr_assert_not_null(f, "%s", path_in(name));
    cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    cr_assert_eq(fclose(f), 0);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    char *t = NULL;
    size_t n = 0, cap = 0;
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (n + 2 > cap) {
            cap = cap ? cap * 2 : 4096;
            t = realloc(t, cap);
            cr_assert_not_null(t);
        }
        t[n++] = (char)c;
    }
    fclose(f);
    if (!t)
        t = malloc(1);
    t[n] = 0;
    return t;
}

/* A growing text. */
typedef struct text {
    char *p;
    size_t n, cap;
} text;

static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (t->n + (size_t)k + 1 > t->cap) {
        t->cap = (t->n + (size_t)k + 1) * 2;
        t->p = realloc(t->p, t->cap);
        cr_assert_not_null(t->p);
    }
    va_start(ap, fmt);
    vsnprintf(t->p + t->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    t->n += (size_t)k;
}

/* ------------------------------------------------------------ a made-up corpus */

/* Letters of the made-up languages: ASCII, two-byte UTF-8 and '@', so BPE
 * meets multibyte characters and "@@" look-alikes. */
static const char *const letters[] = {"a", "b", "c", "d", "e", "n", "\xc3\xa4", "\xc3\x9f", "@",
                                      "\xe2\x82\xac"};

/* A random word of 1..3 letters that does not end in "@@" (which the BPE
 * format cannot tell from a join). */
static void random_word(et_rng *r, text *t)
{
    int n = 1 + (int)et_rng_below(r, 3);
    int at_run = 0;
    for (int i = 0; i < n; i++) {
        const char *l = letters[et_rng_below(r, sizeof letters / sizeof *letters)];
        if (i == n - 1 && at_run && !strcmp(l, "@"))
            l = "e";
        at_run = !strcmp(l, "@");
        put(t, "%s", l);
    }
}

static void random_line(et_rng *r, text *t, int words)
{
    for (int w = 0; w < words; w++) {
        if (w)
            put(t, " ");
        random_word(r, t);
    }
    put(t, "\n");
}

/* What make_corpus wrote: lines per split, and the pairs a task must keep. */
typedef struct corpus {
    int64_t lines[3], kept[3], empty[3], too_long[3];
} corpus;

/* train/valid/test .de/.en in tdir: random lines of 1..10 words (at most 30
 * BPE tokens, under max_len = 32); every 37th pair has an empty side and
 * every 41st a source of 40 words (over max_len). Valid and test lines are
 * training lines, so none of their tokens is unknown. */
static corpus make_corpus(int64_t n_train, int64_t n_eval)
{
    corpus c;
    memset(&c, 0, sizeof c);
    et_rng r = et_rng_from_seed(77);
    text src[3] = {{0}}, tgt[3] = {{0}};
    text keep_src = {0}, keep_tgt = {0};
    int64_t keep_n = 0;
    for (int64_t i = 0; i < n_train; i++) {
        c.lines[0]++;
        if (i % 37 == 5) {
            put(&src[0], i % 2 ? "   \n" : "\n");
            random_line(&r, &tgt[0], 3);
            c.empty[0]++;
            continue;
        }
        if (i % 41 == 7) {
            random_line(&r, &src[0], 40);
            random_line(&r, &tgt[0], 4);
            c.too_long[0]++;
            continue;
        }
        size_t s0 = src[0].n, t0 = tgt[0].n;
        random_line(&r, &src[0], 1 + (int)et_rng_below(&r, 10));
        random_line(&r, &tgt[0], 1 + (int)et_rng_below(&r, 10));
        c.kept[0]++;
        if (keep_n < 2 * n_eval) {
            put(&keep_src, "%.*s", (int)(src[0].n - s0), src[0].p + s0);
            put(&keep_tgt, "%.*s", (int)(tgt[0].n - t0), tgt[0].p + t0);
            keep_n++;
        }
    }
    cr_assert_eq(keep_n, 2 * n_eval);
    /* valid and test: the kept training lines, one empty pair, one long */
    const char *ps = keep_src.p, *pt = keep_tgt.p;
    for (int split = 1; split < 3; split++) {
        for (int64_t i = 0; i < n_eval; i++) {
            const char *es = strchr(ps, '\n') + 1, *et = strchr(pt, '\n') + 1;
            put(&src[split], "%.*s", (int)(es - ps), ps);
            put(&tgt[split], "%.*s", (int)(et - pt), pt);
            ps = es;
            pt = et;
        }
        put(&src[split], "e a\n");
        put(&tgt[split], "\n");
        random_line(&r, &src[split], 2);
        random_line(&r, &tgt[split], 60);
        c.lines[split] = n_eval + 2;
        c.kept[split] = n_eval;
        c.empty[split] = 1;
        c.too_long[split] = 1;
    }
    static const char *const names[3] = {"train", "valid", "test"};
    for (int split = 0; split < 3; split++) {
        char name[32];
        snprintf(name, sizeof name, "%s.de", names[split]);
        write_text(name, src[split].p);
        snprintf(name, sizeof name, "%s.en", names[split]);
        write_text(name, tgt[split].p);
        free(src[split].p);
        free(tgt[split].p);
    }
    free(keep_src.p);
    free(keep_tgt.p);
    return c;
}

/* ------------------------------------------------------------ BPE by hand */

static void count_lines(vocab *words, const char *const *lines)
{
    for (int i = 0; lines[i]; i++)
        cr_assert_eq(bpe_count_words(words, lines[i], strlen(lines[i])), 0);
}

/* "LEFT RIGHT" of merge i. */
static const char *merge_text(const bpe_model *m, int32_t i)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s %s", vocab_token(&m->symbols, m->merges[i].left),
             vocab_token(&m->symbols, m->merges[i].right));
    return buf;
}

static void expect_merges(const bpe_model *m, const char *const *want, int n)
{
    for (int i = 0; i < n && i < m->n_merges; i++)
        cr_expect_str_eq(merge_text(m, i), want[i], "merge %d", i + 1);
    cr_assert_eq(m->n_merges, n, "%" PRId32 " merges, want %d", m->n_merges, n);
}

/* low x5, lower x2, newest x6, widest x3 (the BPE paper's example), checked
 * by hand: at each step the most frequent pair; on a tie the greatest left
 * symbol, then right symbol, in byte order ("w" > "n" > "e"). */
static const char *const paper_lines[] = {
    "low low low low low", "lower lower", "newest newest newest newest newest newest",
    "widest widest widest", NULL};
static const char *const paper_merges[] = {
    "s t</w>",     /* 9, tied with "e s" (9): "s" > "e" */
    "e st</w>",    /* 9 */
    "l o",         /* 7 */
    "w est</w>",   /* 6, tied with "n e" and "e w": "w" > "n" > "e" */
    "n e",         /* 6, tied with "e west</w>" */
    "ne west</w>", /* 6 */
    "lo w</w>",    /* 5 */
    "w i",         /* 3, tied with "i d" and "d est</w>" */
    "wi d",        /* 3 */
    "wid est</w>", /* 3 */
    "w e",         /* 2, tied with "lo w" and "e r</w>": "w" > "lo" > "e" */
    "we r</w>",    /* 2, tied with "lo we" */
    "lo wer</w>",  /* 2; then every word is one symbol */
};

Test(translate, bpe_learns_the_hand_checked_merges)
{
    vocab words;
    vocab_init(&words);
    count_lines(&words, paper_lines);
    bpe_model m;
    bpe_init(&m);
    cr_assert_eq(bpe_learn(&words, 100, &m), 0);
    expect_merges(&m, paper_merges, 13);
    bpe_free(&m);

    /* a smaller budget takes the same first merges */
    bpe_init(&m);
    cr_assert_eq(bpe_learn(&words, 5, &m), 0);
    expect_merges(&m, paper_merges, 5);
    bpe_free(&m);
    vocab_free(&words);
}

Test(translate, bpe_ties_go_to_the_greater_right_symbol_whatever_the_order)
{
    /* (a, b</w>) and (a, c</w>) both occur twice: "c</w>" > "b</w>" */
    static const char *const fwd[] = {"ab ac", "ac ab", NULL};
    static const char *const rev[] = {"ac ab", "ab", "ac", NULL};
    static const char *const want[] = {"a c</w>", "a b</w>"};
    for (int k = 0; k < 2; k++) {
        vocab words;
        vocab_init(&words);
        count_lines(&words, k ? rev : fwd);
        bpe_model m;
        bpe_init(&m);
        cr_assert_eq(bpe_learn(&words, 10, &m), 0);
        expect_merges(&m, want, 2);
        bpe_free(&m);
        vocab_free(&words);
    }
}

static void expect_same_merges(const bpe_model *a, const bpe_model *b)
{
    cr_assert_eq(a->n_merges, b->n_merges);
    for (int32_t i = 0; i < a->n_merges; i++) {
        char x[256];
        strcpy(x, merge_text(a, i));
        cr_assert_str_eq(x, merge_text(b, i), "merge %" PRId32, i + 1);
    }
}

/* The learner the plain way, for comparison: every step recounts every
 * pair of every word (words as arrays of symbol strings) and takes the
 * greatest (count, left, right). */
typedef struct naive_word {
    char **sym;
    int n;
    int64_t freq;
} naive_word;

static int naive_better(int64_t c, const char *l, const char *r, int64_t bc, const char *bl,
                        const char *br)
{
    if (c != bc)
        return c > bc;
    int k = strcmp(l, bl);
    return k ? k > 0 : strcmp(r, br) > 0;
}

static void naive_learn(const vocab *words, int merges, bpe_model *want)
{
    naive_word *w = calloc((size_t)words->n, sizeof *w);
    for (int32_t i = 0; i < words->n; i++) {
        const char *t = vocab_token(words, i);
        size_t len = strlen(t);
        w[i].sym = calloc(len, sizeof(char *));
        w[i].freq = words->count[i];
        for (size_t a = 0; a < len;) {
            size_t b = a + 1;
            while (b < len && b - a < 4 && ((unsigned char)t[b] & 0xC0) == 0x80)
                b++;
            char *s = malloc(b - a + 5);
            snprintf(s, b - a + 5, "%.*s%s", (int)(b - a), t + a, b == len ? "</w>" : "");
            w[i].sym[w[i].n++] = s;
            a = b;
        }
    }
    for (int k = 0; k < merges; k++) {
        /* pairs and their counts, by brute force over a flat list */
        int64_t best = 0;
        const char *bl = "", *br = "";
        for (int32_t i = 0; i < words->n; i++)
            for (int j = 0; j + 1 < w[i].n; j++) {
                const char *l = w[i].sym[j], *r = w[i].sym[j + 1];
                int64_t c = 0;
                for (int32_t i2 = 0; i2 < words->n; i2++)
                    for (int j2 = 0; j2 + 1 < w[i2].n; j2++)
                        if (!strcmp(w[i2].sym[j2], l) && !strcmp(w[i2].sym[j2 + 1], r))
                            c += w[i2].freq;
                if (naive_better(c, l, r, best, bl, br)) {
                    best = c;
                    bl = l;
                    br = r;
                }
            }
        if (best < 2)
            break;
        cr_assert_eq(bpe_add_merge(want, bl, strlen(bl), br, strlen(br)), 0);
        char *l = strdup(bl), *r = strdup(br);
        for (int32_t i = 0; i < words->n; i++) {
            int out = 0;
            for (int j = 0; j < w[i].n;) {
                if (j + 1 < w[i].n && !strcmp(w[i].sym[j], l) && !strcmp(w[i].sym[j + 1], r)) {
                    char *m = malloc(strlen(l) + strlen(r) + 1);
                    sprintf(m, "%s%s", l, r);
                    free(w[i].sym[j]);
                    free(w[i].sym[j + 1]);
                    w[i].sym[out++] = m;
                    j += 2;
                } else {
                    w[i].sym[out++] = w[i].sym[j++];
                }
            }
            w[i].n = out;
        }
        free(l);
        free(r);
    }
    for (int32_t i = 0; i < words->n; i++) {
        for (int j = 0; j < w[i].n; j++)
            free(w[i].sym[j]);
        free(w[i].sym);
    }
    free(w);
}

Test(translate, bpe_learns_what_the_plain_recount_learns)
{
    /* 300 made-up words of 1..8 letters, drawn with a heavy head so counts
     * spread from one to hundreds and many ties arise */
    static const char *const abc[] = {"a", "b", "e", "n", "r", "\xc3\xa4"};
    et_rng r = et_rng_from_seed(9);
    text dict[300];
    memset(dict, 0, sizeof dict);
    for (int i = 0; i < 300; i++) {
        int n = 1 + (int)et_rng_below(&r, 8);
        for (int j = 0; j < n; j++)
            put(&dict[i], "%s", abc[et_rng_below(&r, 6)]);
    }
    vocab words;
    vocab_init(&words);
    for (int i = 0; i < 6000; i++) {
        double u = et_rng_uniform(&r);
        const text *t = &dict[(int)(300 * u * u * u)];
        cr_assert_eq(bpe_count_words(&words, t->p, t->n), 0);
    }
    bpe_model got, want;
    bpe_init(&got);
    bpe_init(&want);
    cr_assert_eq(bpe_learn(&words, 250, &got), 0);
    naive_learn(&words, 250, &want);
    cr_assert_gt(want.n_merges, 150);
    expect_same_merges(&got, &want);
    bpe_free(&got);
    bpe_free(&want);
    vocab_free(&words);
    for (int i = 0; i < 300; i++)
        free(dict[i].p);
}

/* BPE of a line with m as text. */
static const char *apply(bpe_model *m, const char *line)
{
    static char *buf;
    static size_t cap;
    int64_t n = bpe_apply_line(m, line, strlen(line), &buf, &cap);
    cr_assert_geq(n, 0);
    cr_assert_eq((size_t)n, strlen(buf));
    return buf;
}

Test(translate, bpe_applies_merges_in_learned_order)
{
    vocab words;
    vocab_init(&words);
    count_lines(&words, paper_lines);
    bpe_model m;
    bpe_init(&m);
    cr_assert_eq(bpe_learn(&words, 100, &m), 0);
    /* lowest: s t</w> (1), e st</w> (2), l o (3), w est</w> (4); lo west</w>
     * has no merge */
    cr_assert_str_eq(apply(&m, "lowest"), "lo@@ west");
    /* newer: n e (5), w e (11), we r</w> (12); ne wer</w> has none */
    cr_assert_str_eq(apply(&m, "newer"), "ne@@ wer");
    cr_assert_str_eq(apply(&m, "  low\tlower \r\n widest  "), "low lower widest");
    /* the memo gives the same answer the second time */
    cr_assert_str_eq(apply(&m, "lowest newer lowest"), "lo@@ west ne@@ wer lo@@ west");
    /* unseen characters stay single, multibyte ones whole */
    cr_assert_str_eq(apply(&m, "x\xc3\xbc" "ber"), "x@@ \xc3\xbc@@ b@@ e@@ r");
    cr_assert_str_eq(apply(&m, ""), "");
    cr_assert_str_eq(apply(&m, " \t "), "");
    bpe_free(&m);

    /* no merges: characters */
    bpe_init(&m);
    cr_assert_eq(bpe_learn(&words, 0, &m), 0);
    cr_assert_eq(m.n_merges, 0);
    cr_assert_str_eq(apply(&m, "low"), "l@@ o@@ w");
    bpe_free(&m);
    vocab_free(&words);
}

Test(translate, bpe_remove_is_the_cores_and_undoes_apply_exactly)
{
    /* removal alone, on the strings where "@@" is text and where it joins */
    static const char *const cases[] = {
        "",        "a",       "a@@ b",   "a@@ b@@ c d", "a@@",     "a@@@ b", "@@ x",
        "x @@",    "a@b",     "a@@b",    "@@",          "@@ @@ @", "a @@@",  "a@@  b",
        "a@ @@ b", "@@@@ a@", "a@@\tb",  "e@@ @@@ e",   " @@ ",    "@",      "ab@@ ",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char a[64], b[64];
        strcpy(a, cases[i]);
        strcpy(b, cases[i]);
        size_t na = bpe_remove(a), nb = et_bleu_remove_bpe(b);
        cr_expect_str_eq(a, b, "case \"%s\"", cases[i]);
        cr_expect_eq(na, nb);
    }

    /* learn on random lines, then apply + remove gives each line back */
    et_rng r = et_rng_from_seed(5);
    text lines = {0};
    for (int i = 0; i < 2000; i++)
        random_line(&r, &lines, 1 + (int)et_rng_below(&r, 12));
    vocab words;
    vocab_init(&words);
    cr_assert_eq(bpe_count_words(&words, lines.p, lines.n), 0);
    bpe_model m;
    bpe_init(&m);
    cr_assert_eq(bpe_learn(&words, 150, &m), 0);
    cr_assert_eq(m.n_merges, 150);
    int joined = 0;
    for (char *line = lines.p, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = 0;
        char *bpe = strdup(apply(&m, line)), *core = strdup(bpe);
        joined += strstr(bpe, "@@ ") != NULL;
        cr_assert_eq(bpe_remove(bpe), strlen(line));
        cr_assert_str_eq(bpe, line);
        et_bleu_remove_bpe(core);
        cr_assert_str_eq(core, line);
        free(bpe);
        free(core);
    }
    cr_assert_gt(joined, 1000, "only %d lines had a join: the test would prove little", joined);
    bpe_free(&m);
    vocab_free(&words);
    free(lines.p);
}

/* ------------------------------------------------------------ the cache */

static int learn_cached(const char *a, const char *b, int32_t merges, bpe_model *m,
                        bpe_source *source)
{
    et_host h = test_host(1);
    const char *paths[2] = {path_in(a), path_in(b)};
    char *err = NULL;
    bpe_init(m);
    int rc = bpe_learn_files(&h, paths, 2, merges, path_in("bpe.codes"), m, source, &err);
    cr_assert_eq(rc, 0, "%s", err ? err : "");
    return rc;
}

static void overwrite_cache(const char *t)
{
    write_text("bpe.codes", t);
}

Test(translate, bpe_cache_is_reused_and_bad_caches_are_rebuilt)
{
    make_corpus(400, 10);
    bpe_model first, m;
    bpe_source src;
    clear_log();
    learn_cached("train.de", "train.en", 120, &first, &src);
    cr_assert_eq(src, BPE_SOURCE_LEARNED);
    cr_assert_eq(first.n_merges, 120);
    cr_assert_eq(warnings, 0, "%s", logged);
    struct stat st0, st1;
    cr_assert_eq(stat(path_in("bpe.codes"), &st0), 0);
    char *good = read_text(path_in("bpe.codes"));
    cr_assert_eq(strncmp(good, "#etnas-bpe-cache 1 key=", 23), 0, "%s", good);

    /* the second run reads the file, unchanged; so does en-de */
    learn_cached("train.de", "train.en", 120, &m, &src);
    cr_assert_eq(src, BPE_SOURCE_CACHE);
    expect_same_merges(&first, &m);
    bpe_free(&m);
    learn_cached("train.en", "train.de", 120, &m, &src);
    cr_assert_eq(src, BPE_SOURCE_CACHE);
    bpe_free(&m);
    cr_assert_eq(stat(path_in("bpe.codes"), &st1), 0);
    cr_assert_eq(st0.st_ino, st1.st_ino);
    cr_assert_eq(st0.st_mtime, st1.st_mtime);
    cr_assert_eq(warnings, 0, "%s", logged);

    /* a valid file is trusted: merges written by hand, with their checksum */
    const char *body = "a b\nab c</w>\n";
    char hand[512], *nl = strchr(good, '\n');
    char *count = strstr(good, " count=");
    cr_assert(count && count < nl);
    snprintf(hand, sizeof hand, "%.*s count=2\n%s#checksum %016" PRIx64 "\n", (int)(count - good),
             good, body, vocab_fnv1a(VOCAB_FNV_OFFSET, body, strlen(body)));
    overwrite_cache(hand);
    learn_cached("train.de", "train.en", 120, &m, &src);
    cr_assert_eq(src, BPE_SOURCE_CACHE);
    cr_assert_eq(m.n_merges, 2);
    cr_assert_str_eq(merge_text(&m, 1), "ab c</w>");
    bpe_free(&m);

    /* corrupt: a flipped byte, a cut, garbage, another data set's key, a
     * line that is not a merge; each is rebuilt with a warning */
    char *flipped = strdup(good), *letter = flipped + strlen(flipped) / 2;
    while (*letter < 'a' || *letter > 'e')
        letter++;
    *letter ^= 1; /* another letter of the corpus: still two symbols a line */
    char *cut = strdup(good);
    cut[strlen(cut) * 2 / 3] = 0;
    char *other_key = strdup(good);
    other_key[23] = other_key[23] == '0' ? '1' : '0';
    char *not_merge = strdup(good);
    *strchr(strchr(not_merge, '\n') + 1, ' ') = '_';
    struct {
        const char *text, *why;
    } bad[] = {
        {flipped, "checksum"},
        {cut, "truncated"},
        {"hello\n", "does not start with"},
        {"", "does not start with"},
        {other_key, "other training data"},
        {not_merge, "line 2 is not"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        overwrite_cache(bad[i].text);
        clear_log();
        learn_cached("train.de", "train.en", 120, &m, &src);
        cr_assert_eq(src, BPE_SOURCE_REBUILT, "case %zu", i);
        cr_assert_eq(warnings, 1, "case %zu: %s", i, logged);
        cr_assert_not_null(strstr(logged, path_in("bpe.codes")), "%s", logged);
        cr_assert_not_null(strstr(logged, bad[i].why), "case %zu: %s", i, logged);
        expect_same_merges(&first, &m);
        bpe_free(&m);
        char *now = read_text(path_in("bpe.codes"));
        cr_assert_str_eq(now, good, "case %zu: the cache was not rewritten", i);
        free(now);
    }

    /* another merge count is another key */
    clear_log();
    learn_cached("train.de", "train.en", 60, &m, &src);
    cr_assert_eq(src, BPE_SOURCE_REBUILT);
    cr_assert_not_null(strstr(logged, "another merge count"), "%s", logged);
    cr_assert_eq(m.n_merges, 60);
    for (int32_t i = 0; i < 60; i++) {
        char x[256];
        strcpy(x, merge_text(&m, i));
        cr_assert_str_eq(x, merge_text(&first, i));
    }
    bpe_free(&m);

    /* no temporary files are left behind */
    DIR *d = opendir(tdir);
    cr_assert_not_null(d);
    for (struct dirent *e; (e = readdir(d));)
        cr_assert_neq(strncmp(e->d_name, "bpe.codes.", 10), 0, "%s was left behind", e->d_name);
    closedir(d);

    free(flipped);
    free(cut);
    free(other_key);
    free(not_merge);
    free(good);
    bpe_free(&first);
}

/* ------------------------------------------------------------ dict.txt */

static int read_dict(const char *contents, vocab *v, char **err)
{
    write_text("dict.txt", contents);
    et_host h = test_host(1);
    *err = NULL;
    return vocab_read_dict(&h, path_in("dict.txt"), v, err);
}

static void expect_dict_error(const char *contents, const char *where, const char *why)
{
    vocab v;
    char *err;
    int rc = read_dict(contents, &v, &err);
    cr_assert_eq(rc, ET_STATUS_ERR_FORMAT, "\"%s\" gave %d", contents, rc);
    char at[600];
    snprintf(at, sizeof at, "%s:%s: ", path_in("dict.txt"), where);
    cr_assert_eq(strncmp(err, at, strlen(at)), 0, "\"%s\" (want it to start with %s)", err, at);
    cr_assert_not_null(strstr(err, why), "\"%s\" (want \"%s\" in it)", err, why);
    cr_assert_null(strchr(err, '\n'));
    free(err);
}

Test(translate, dict_txt_gives_fairseq_ids_and_named_errors)
{
    vocab v;
    char *err;
    cr_assert_eq(read_dict("the 120\n, 80\nHaus@@ 7\n\xc3\xa4 0\nx 3 #fairseq:overwrite\n", &v,
                           &err),
                 0, "%s", err);
    cr_assert_eq(v.n, 9);
    cr_assert_str_eq(vocab_token(&v, VOCAB_BOS), "<s>");
    cr_assert_str_eq(vocab_token(&v, VOCAB_PAD), "<pad>");
    cr_assert_str_eq(vocab_token(&v, VOCAB_EOS), "</s>");
    cr_assert_str_eq(vocab_token(&v, VOCAB_UNK), "<unk>");
    cr_assert_eq(vocab_find(&v, "the", 3), 4);
    cr_assert_eq(vocab_find(&v, ",", 1), 5);
    cr_assert_eq(vocab_find(&v, "Haus@@", 6), 6);
    cr_assert_eq(vocab_find(&v, "\xc3\xa4", 2), 7);
    cr_assert_eq(vocab_find(&v, "x", 1), 8);
    cr_assert_eq(v.count[4], 120);
    cr_assert_eq(v.count[6], 7);
    cr_assert_eq(vocab_encode(&v, "Haus", 4), VOCAB_UNK);
    vocab_free(&v);

    /* CRLF line ends, a repeat that overwrites, a special that does */
    cr_assert_eq(read_dict("a 1\r\nb 2\r\na 5 #fairseq:overwrite\n<unk> 9 #fairseq:overwrite\n",
                           &v, &err),
                 0, "%s", err);
    cr_assert_eq(v.n, 6);
    cr_assert_eq(vocab_find(&v, "a", 1), 4);
    cr_assert_eq(v.count[4], 5);
    cr_assert_eq(v.count[VOCAB_UNK], 9);
    vocab_free(&v);

    expect_dict_error("the 1\nword\n", "2", "expected \"TOKEN COUNT\"");
    expect_dict_error("the 1\n\n", "2", "expected \"TOKEN COUNT\"");
    expect_dict_error(" 5\n", "1", "expected \"TOKEN COUNT\"");
    expect_dict_error("a 1\nb x\n", "2", "count \"x\" is not a whole number");
    expect_dict_error("a -1\n", "1", "count \"-1\"");
    expect_dict_error("a 99999999999999999999\n", "1", "is not a whole number");
    expect_dict_error("a 1\nb 2\na 3\n", "3", "token \"a\" repeats an earlier line");
    expect_dict_error("<pad> 3\n", "1", "special token");
    expect_dict_error("a b 3\n", "1", "holds whitespace");

    et_host h = test_host(1);
    err = NULL;
    cr_assert_eq(vocab_read_dict(&h, path_in("missing.txt"), &v, &err), ET_STATUS_ERR_IO);
    cr_assert_not_null(strstr(err, path_in("missing.txt")), "%s", err);
    free(err);
}

/* ------------------------------------------------------------ the task */

static const et_task_vtable *vt(void)
{
    return etnas_plugin()->vtable;
}

/* Options as the host would bind them: kv is "key", "value", ..., NULL;
 * missing keys take their declared defaults. */
static void bind_options(const char *const *kv, et_option_value *vals)
{
    const et_option_decl *d = etnas_plugin()->options;
    for (int i = 0; d[i].key; i++) {
        const char *v = d[i].default_value;
        for (int j = 0; kv && kv[j]; j += 2)
            if (!strcmp(kv[j], d[i].key))
                v = kv[j + 1];
        memset(&vals[i], 0, sizeof vals[i]);
        vals[i].s = v;
        if (d[i].type == ET_OPTION_TYPE_INT)
            vals[i].i = strtoll(v, NULL, 10);
        else if (d[i].type == ET_OPTION_TYPE_BOOL)
            vals[i].i = !strcmp(v, "true");
        else if (d[i].type == ET_OPTION_TYPE_CHOICE) {
            /* the index of v in "a|b|c" */
            const char *c = d[i].choices, *hit = strstr(c, v);
            cr_assert_not_null(hit, "%s is not a choice of %s", v, d[i].key);
            for (vals[i].i = 0; c < hit; c++)
                vals[i].i += *c == '|';
        }
    }
}

typedef struct task {
    et_host host;
    et_option_value vals[16];
    void *st;
    et_task_info info;
} task;

static int task_open(task *t, uint64_t seed, const char *const *kv, char **err)
{
    memset(t, 0, sizeof *t);
    t->host = test_host(seed);
    bind_options(kv, t->vals);
    *err = NULL;
    int rc = vt()->create(&t->host, t->vals, &t->st, err);
    return rc ? rc : vt()->load(t->st, &t->info, err);
}

static void task_open_ok(task *t, uint64_t seed, const char *const *kv)
{
    char *err = NULL;
    int rc = task_open(t, seed, kv, &err);
    cr_assert_eq(rc, 0, "load failed: %s", err ? err : "(no message)");
}

static void task_close(task *t)
{
    vt()->destroy(t->st);
    t->st = NULL;
}

/* Open must fail with `code` and a one-line message holding each of the
 * NULL-terminated strings. */
static void expect_open_error(const char *const *kv, int code, ...)
{
    task t;
    char *err = NULL;
    int rc = task_open(&t, 1, kv, &err);
    cr_assert_eq(rc, code, "status %d (want %d): %s", rc, code, err ? err : "(no message)");
    cr_assert_not_null(err);
    cr_assert_null(strchr(err, '\n'), "%s", err);
    va_list ap;
    va_start(ap, code);
    for (const char *want; (want = va_arg(ap, const char *));)
        cr_assert_not_null(strstr(err, want), "\"%s\" lacks \"%s\"", err, want);
    va_end(ap);
    free(err);
    task_close(&t);
}

Test(translate, descriptor_and_lifecycle)
{
    const et_plugin_descriptor *d = etnas_plugin();
    cr_assert_eq(d->abi_version, ET_ABI_VERSION);
    cr_assert_eq(d->kind, ET_PLUGIN_KIND_TASK);
    cr_assert_str_eq(d->name, "translate");
    static const char *const keys[] = {"data",  "src",     "tgt",        "format",
                                       "merges", "joint", "max_len", "max_tokens"};
    static const char *const defaults[] = {"data/deen", "de", "en", "raw", "8000", "true", "64",
                                           "4096"};
    int n = 0;
    for (; d->options[n].key; n++) {
        cr_assert_lt(n, 8);
        cr_assert_str_eq(d->options[n].key, keys[n]);
        cr_assert_str_eq(d->options[n].default_value, defaults[n]);
    }
    cr_assert_eq(n, 8);
    vt()->destroy(NULL);

    expect_open_error((const char *[]){"max_tokens", "32", "max_len", "64", NULL},
                      ET_STATUS_ERR_USAGE, "max_tokens = 32 is below max_len = 64", NULL);
    expect_open_error((const char *[]){"src", "en", NULL}, ET_STATUS_ERR_USAGE, "must differ",
                      NULL);
    expect_open_error((const char *[]){"tgt", "../x", NULL}, ET_STATUS_ERR_USAGE, "suffixes",
                      NULL);
    /* the default directory is relative: absent from an empty directory */
    cr_assert_eq(chdir(tdir), 0);
    expect_open_error(NULL, ET_STATUS_ERR_IO, "data/deen", "scripts/prepare-deen", NULL);
    expect_open_error((const char *[]){"data", "/nonexistent/dir", NULL}, ET_STATUS_ERR_IO,
                      "/nonexistent/dir", NULL);

    /* load twice, batch before load */
    make_corpus(100, 5);
    task t;
    char *err = NULL;
    memset(&t, 0, sizeof t);
    t.host = test_host(1);
    bind_options((const char *[]){"data", tdir, "merges", "20", "max_len", "32", NULL}, t.vals);
    cr_assert_eq(vt()->create(&t.host, t.vals, &t.st, &err), 0);
    et_batch b;
    cr_assert_eq(vt()->batch_count(t.st, 0, 0), ET_STATUS_ERR_USAGE);
    cr_assert_eq(vt()->batch(t.st, 0, 0, 0, 0, &b, &err), ET_STATUS_ERR_USAGE);
    cr_assert_not_null(strstr(err, "before load"));
    free(err);
    cr_assert_eq(vt()->load(t.st, &t.info, &err), 0, "%s", err);
    cr_assert_eq(vt()->load(t.st, &t.info, &err), ET_STATUS_ERR_USAGE);
    free(err);
    cr_assert_eq(vt()->batch_count(t.st, 3, 0), ET_STATUS_ERR_USAGE);
    cr_assert_eq(vt()->batch_count(t.st, 0, -1), ET_STATUS_ERR_USAGE);
    int64_t count = vt()->batch_count(t.st, 1, 0);
    cr_assert_gt(count, 0);
    cr_assert_eq(vt()->batch(t.st, 1, 0, 0, count, &b, &err), ET_STATUS_ERR_USAGE);
    cr_assert_not_null(strstr(err, "does not exist"), "%s", err);
    free(err);
    task_close(&t);
}

Test(translate, parallel_files_must_have_equal_line_counts)
{
    make_corpus(100, 5);
    write_text("train.de", "a b\nc d\ne\n");
    write_text("train.en", "a b\nc d\n");
    char want[600];
    snprintf(want, sizeof want, "%s has 3 lines but %s has 2", path_in("train.de"),
             path_in("train.en"));
    expect_open_error((const char *[]){"data", tdir, "merges", "10", NULL}, ET_STATUS_ERR_FORMAT,
                      want, NULL);

    /* the longer side may be the target, and the split any split */
    write_text("train.en", "a b\nc d\ne\n");
    write_text("test.en", "x\ny\nz\nw\n");
    write_text("test.de", "x\ny\n");
    snprintf(want, sizeof want, "%s has 2 lines but %s has 4", path_in("test.de"),
             path_in("test.en"));
    expect_open_error((const char *[]){"data", tdir, "merges", "10", NULL}, ET_STATUS_ERR_FORMAT,
                      want, NULL);

    /* a missing file is named */
    unlink(path_in("valid.en"));
    expect_open_error((const char *[]){"data", tdir, "merges", "10", NULL}, ET_STATUS_ERR_IO,
                      path_in("valid.en"), NULL);
}

/* Every batch of a split: the token budget, the padding, bos/eos shifting,
 * and each example exactly once. Returns the examples in batch order. */
static int32_t *check_split(task *t, int32_t split, int64_t epoch, int32_t bs, int32_t max_tokens)
{
    int64_t n = t->info.split_size[split];
    int32_t *seen = calloc((size_t)n + 1, sizeof *seen);
    int32_t *order = malloc(sizeof *order * (size_t)(n + 1));
    int64_t count = vt()->batch_count(t->st, split, bs), at = 0;
    cr_assert_geq(count, n ? 1 : 0);
    int32_t last_width = 0;
    for (int64_t i = 0; i < count; i++) {
        et_batch b;
        char *err = NULL;
        cr_assert_eq(vt()->batch(t->st, split, epoch, bs, i, &b, &err), 0, "%s", err);
        const int32_t *ex;
        int32_t size;
        cr_assert_eq(translate_batch_examples(t->st, split, epoch, bs, i, &ex, &size, &err), 0);
        cr_assert_eq(size, b.size);
        cr_assert_geq(b.size, 1);
        if (bs > 0)
            cr_assert_leq(b.size, bs);
        int32_t wide = b.src_len > b.tgt_len ? b.src_len : b.tgt_len;
        cr_assert_leq((int64_t)b.size * wide, max_tokens, "batch %" PRId64 ": %d x %d", i, b.size,
                      wide);
        cr_assert_leq(b.src_len, t->info.max_src_len);
        cr_assert_leq(b.tgt_len, t->info.max_tgt_len);
        cr_assert_null(b.src_vec);
        cr_assert_null(b.labels);
        if (split != ET_SPLIT_TRAIN) {
            /* fixed order: shortest first */
            cr_assert_geq(wide, last_width);
            last_width = wide;
        }
        int32_t max_s = 0, max_t = 0;
        for (int32_t j = 0; j < b.size; j++) {
            int32_t ls = b.src_lens[j], lt = b.tgt_lens[j];
            max_s = ls > max_s ? ls : max_s;
            max_t = lt > max_t ? lt : max_t;
            cr_assert_geq(ls, 1);
            cr_assert_geq(lt, 2);
            const int32_t *s = b.src_tok + (int64_t)j * b.src_len;
            const int32_t *in = b.tgt_in + (int64_t)j * b.tgt_len;
            const int32_t *out = b.tgt_out + (int64_t)j * b.tgt_len;
            for (int32_t k = 0; k < b.src_len; k++) {
                if (k < ls)
                    cr_assert(s[k] >= VOCAB_UNK && s[k] < t->info.src_vocab, "src id %d", s[k]);
                else
                    cr_assert_eq(s[k], VOCAB_PAD);
            }
            cr_assert_eq(in[0], VOCAB_BOS);
            cr_assert_eq(out[lt - 1], VOCAB_EOS);
            for (int32_t k = 1; k < lt; k++) {
                cr_assert_eq(in[k], out[k - 1], "row %d position %d", j, k);
                cr_assert(in[k] >= VOCAB_UNK && in[k] < t->info.tgt_vocab);
            }
            for (int32_t k = lt; k < b.tgt_len; k++) {
                cr_assert_eq(in[k], VOCAB_PAD);
                cr_assert_eq(out[k], VOCAB_PAD);
            }
            cr_assert(ex[j] >= 0 && ex[j] < n);
            seen[ex[j]]++;
            order[at++] = ex[j];
        }
        cr_assert_eq(max_s, b.src_len);
        cr_assert_eq(max_t, b.tgt_len);
    }
    cr_assert_eq(at, n);
    for (int64_t e = 0; e < n; e++)
        cr_assert_eq(seen[e], 1, "example %" PRId64 " seen %d times", e, seen[e]);
    et_batch b;
    char *err = NULL;
    cr_assert_eq(vt()->batch(t->st, split, epoch, bs, count, &b, &err), ET_STATUS_ERR_USAGE);
    free(err);
    free(seen);
    return order;
}

static const char *const *corpus_opts(void)
{
    static const char *kv[] = {"data",       NULL,  "merges", "60", "max_len", "32",
                               "max_tokens", "200", NULL};
    kv[1] = tdir;
    return kv;
}

Test(translate, batches_keep_the_budget_and_cover_every_example_once)
{
    corpus c = make_corpus(600, 40);
    task t;
    clear_log();
    task_open_ok(&t, 11, corpus_opts());
    cr_assert_eq(t.info.model_kind, ET_MODEL_KIND_SEQ2SEQ);
    cr_assert_str_eq(t.info.metric, "bleu");
    cr_assert_eq(t.info.higher_is_better, 1);
    cr_assert_eq(t.info.src_vocab, t.info.tgt_vocab, "joint by default");
    cr_assert_gt(t.info.src_vocab, VOCAB_SPECIALS + 10);
    cr_assert_leq(t.info.max_src_len, 32);
    cr_assert_leq(t.info.max_tgt_len, 32);
    for (int s = 0; s < 3; s++)
        cr_assert_eq(t.info.split_size[s], c.kept[s], "split %d: %" PRId64 " kept, want %" PRId64,
                     s, t.info.split_size[s], c.kept[s]);
    /* the drops are counted in the log */
    char want[256];
    snprintf(want, sizeof want,
             "translate: train: %" PRId64 " pairs of %" PRId64 " lines (dropped %" PRId64
             " with an empty side, %" PRId64 " longer than max_len = 32)",
             c.kept[0], c.lines[0], c.empty[0], c.too_long[0]);
    cr_assert_not_null(strstr(logged, want), "want \"%s\" in:\n%s", want, logged);
    cr_assert_gt(c.empty[0], 10);
    cr_assert_gt(c.too_long[0], 10);

    for (int32_t split = 0; split < 3; split++)
        for (int32_t bs = 0; bs <= 7; bs += 7) {
            int32_t *o = check_split(&t, split, 0, bs, 200);
            free(o);
        }
    /* batch_size caps the examples: more batches than without it */
    cr_assert_gt(vt()->batch_count(t.st, 0, 3), vt()->batch_count(t.st, 0, 0));
    cr_assert_geq(vt()->batch_count(t.st, 0, 3), (c.kept[0] + 2) / 3);
    task_close(&t);
}

Test(translate, training_order_depends_on_seed_and_epoch_only)
{
    make_corpus(600, 10);
    task a, b, other;
    task_open_ok(&a, 11, corpus_opts());
    task_open_ok(&b, 11, corpus_opts());
    task_open_ok(&other, 12, corpus_opts());
    int64_t n = a.info.split_size[0];
    size_t bytes = sizeof(int32_t) * (size_t)n;
    /* b visits epochs in another order: its cached state must not matter */
    int32_t *b2 = check_split(&b, 0, 2, 0, 200), *b0 = check_split(&b, 0, 0, 0, 200);
    int32_t *a0 = check_split(&a, 0, 0, 0, 200), *a1 = check_split(&a, 0, 1, 0, 200),
            *a2 = check_split(&a, 0, 2, 0, 200), *o0 = check_split(&other, 0, 0, 0, 200);
    cr_assert_eq(memcmp(a0, b0, bytes), 0, "same seed and epoch, another order");
    cr_assert_eq(memcmp(a2, b2, bytes), 0, "same seed and epoch, another order");
    cr_assert_neq(memcmp(a0, a1, bytes), 0, "epochs 0 and 1 gave the same order");
    cr_assert_neq(memcmp(a1, a2, bytes), 0, "epochs 1 and 2 gave the same order");
    cr_assert_neq(memcmp(a0, o0, bytes), 0, "seeds 11 and 12 gave the same order");
    /* the batch contents repeat too, id for id */
    et_batch x, y;
    char *err = NULL;
    int64_t count = vt()->batch_count(a.st, 0, 0);
    for (int64_t i = 0; i < count; i++) {
        cr_assert_eq(vt()->batch(a.st, 0, 4, 0, i, &x, &err), 0);
        int32_t *keep = malloc(sizeof *keep * (size_t)x.size * (size_t)x.tgt_len);
        memcpy(keep, x.tgt_out, sizeof *keep * (size_t)x.size * (size_t)x.tgt_len);
        cr_assert_eq(vt()->batch(b.st, 0, 4, 0, i, &y, &err), 0);
        cr_assert_eq(x.size, y.size);
        cr_assert_eq(x.tgt_len, y.tgt_len);
        cr_assert_eq(memcmp(keep, y.tgt_out, sizeof *keep * (size_t)y.size * (size_t)y.tgt_len),
                     0);
        free(keep);
    }
    /* validation and test never move */
    int32_t *v0 = check_split(&a, 1, 0, 0, 200), *v3 = check_split(&a, 1, 3, 0, 200),
            *w0 = check_split(&other, 1, 0, 0, 200);
    size_t vb = sizeof(int32_t) * (size_t)a.info.split_size[1];
    cr_assert_eq(memcmp(v0, v3, vb), 0);
    cr_assert_eq(memcmp(v0, w0, vb), 0);
    free(a0);
    free(a1);
    free(a2);
    free(b0);
    free(b2);
    free(o0);
    free(v0);
    free(v3);
    free(w0);
    task_close(&a);
    task_close(&b);
    task_close(&other);
}

/* The target ids of row j of a batch, without bos/eos. */
static const char *row_text(task *t, const et_batch *b, int32_t j)
{
    static char *buf;
    static size_t cap;
    int64_t n = translate_detokenize(t->st, b->tgt_out + (int64_t)j * b->tgt_len, b->tgt_len,
                                     &buf, &cap);
    cr_assert_geq(n, 0);
    cr_assert_eq((size_t)n, strlen(buf));
    return buf;
}

Test(translate, target_ids_come_back_as_the_reference_text)
{
    make_corpus(600, 40);
    task t;
    task_open_ok(&t, 3, corpus_opts());
    for (int32_t split = 1; split < 3; split++) {
        int64_t count = vt()->batch_count(t.st, split, 0), checked = 0;
        for (int64_t i = 0; i < count; i++) {
            et_batch b;
            const int32_t *ex;
            int32_t size;
            char *err = NULL;
            cr_assert_eq(vt()->batch(t.st, split, 0, 0, i, &b, &err), 0);
            cr_assert_eq(translate_batch_examples(t.st, split, 0, 0, i, &ex, &size, &err), 0);
            for (int32_t j = 0; j < b.size; j++) {
                const char *ref = translate_reference(t.st, split, ex[j]);
                cr_assert_not_null(ref);
                cr_assert_str_eq(row_text(&t, &b, j), ref);
                checked++;
            }
        }
        cr_assert_eq(checked, 40);
    }
    /* references are the target lines of the kept pairs, in file order */
    char *valid = read_text(path_in("valid.en"));
    *strchr(valid, '\n') = 0;
    cr_assert_str_eq(translate_reference(t.st, 1, 0), valid);
    free(valid);
    cr_assert_null(translate_reference(t.st, 0, 0));
    cr_assert_null(translate_reference(t.st, 1, 40));
    cr_assert_null(translate_reference(t.st, 1, -1));

    /* stop at eos, skip bos and pad, refuse ids out of range */
    et_batch b;
    char *err = NULL;
    cr_assert_eq(vt()->batch(t.st, 1, 0, 0, 0, &b, &err), 0);
    char first[256];
    strcpy(first, row_text(&t, &b, 0));
    int32_t ids[128], n = 0;
    ids[n++] = VOCAB_BOS;
    for (int32_t k = 0; b.tgt_out[k] != VOCAB_EOS; k++) {
        ids[n++] = b.tgt_out[k];
        ids[n++] = VOCAB_PAD;
    }
    ids[n++] = VOCAB_EOS;
    ids[n++] = 4;
    char *buf = NULL;
    size_t cap = 0;
    cr_assert_eq(translate_detokenize(t.st, ids, n, &buf, &cap), (int64_t)strlen(first));
    cr_assert_str_eq(buf, first);
    ids[0] = t.info.tgt_vocab;
    cr_assert_eq(translate_detokenize(t.st, ids, n, &buf, &cap), ET_STATUS_ERR_USAGE);
    ids[0] = VOCAB_UNK;
    cr_assert_geq(translate_detokenize(t.st, ids, 1, &buf, &cap), 0);
    cr_assert_str_eq(buf, "<unk>");
    cr_assert_eq(translate_detokenize(t.st, ids, 0, &buf, &cap), 0);
    cr_assert_str_eq(buf, "");
    free(buf);
    task_close(&t);
}

/* ------------------------------------------------------------ format = bpe */

/* Pre-tokenised BPE text: two pairs per split, the same in each. */
static void make_bpe_corpus(void)
{
    static const char *const names[3] = {"train", "valid", "test"};
    for (int s = 0; s < 3; s++) {
        char de[32], en[32];
        snprintf(de, sizeof de, "%s.de", names[s]);
        snprintf(en, sizeof en, "%s.en", names[s]);
        write_text(de, "das Hau@@ s\nein Hau@@ s ist neu\n");
        write_text(en, "the hou@@ se\na hou@@ se is new\n");
    }
}

/* The target ids of valid example e. */
static void valid_ids(task *t, int64_t e, int32_t *ids, int32_t *n)
{
    int64_t count = vt()->batch_count(t->st, 1, 0);
    for (int64_t i = 0; i < count; i++) {
        et_batch b;
        const int32_t *ex;
        int32_t size;
        char *err = NULL;
        cr_assert_eq(vt()->batch(t->st, 1, 0, 0, i, &b, &err), 0);
        cr_assert_eq(translate_batch_examples(t->st, 1, 0, 0, i, &ex, &size, &err), 0);
        for (int32_t j = 0; j < size; j++)
            if (ex[j] == e) {
                *n = b.tgt_lens[j] - 1;
                memcpy(ids, b.tgt_out + (int64_t)j * b.tgt_len, sizeof *ids * (size_t)*n);
                return;
            }
    }
    cr_assert_fail("example %" PRId64 " is in no batch", e);
}

Test(translate, bpe_format_uses_fairseq_dictionaries)
{
    make_bpe_corpus();
    /* no dictionary: counted from training text, joint by default; "hou@@"
     * and "se" twice each, ties in byte order */
    task t;
    task_open_ok(&t, 1, (const char *[]){"data", tdir, "format", "bpe", NULL});
    cr_assert_eq(t.info.src_vocab, VOCAB_SPECIALS + 12);
    cr_assert_str_eq(translate_reference(t.st, 1, 0), "the house");
    cr_assert_str_eq(translate_reference(t.st, 1, 1), "a house is new");
    int32_t ids[16], n;
    valid_ids(&t, 0, ids, &n);
    cr_assert_eq(n, 3);
    /* counts 2: Hau@@ hou@@ s se; 1: a das ein is ist neu new the */
    cr_assert_eq(ids[1], VOCAB_SPECIALS + 1, "hou@@ is the 2nd most frequent (after Hau@@)");
    task_close(&t);
    cr_assert_neq(access(path_in("bpe.8000.codes"), F_OK), 0, "format = bpe learned BPE");

    /* per-language dictionaries, not joint: ids follow the files */
    write_text("dict.de.txt", "Hau@@ 2\ns 2\ndas 1\n");
    write_text("dict.en.txt", "se 5\nhou@@ 5\nthe 4\na 1\n");
    task_open_ok(&t, 1, (const char *[]){"data", tdir, "format", "bpe", "joint", "false", NULL});
    cr_assert_eq(t.info.src_vocab, VOCAB_SPECIALS + 3);
    cr_assert_eq(t.info.tgt_vocab, VOCAB_SPECIALS + 4);
    valid_ids(&t, 1, ids, &n);
    int32_t want[] = {7, 5, 4, VOCAB_UNK, VOCAB_UNK}; /* a hou@@ se is new */
    cr_assert_eq(n, 5);
    cr_assert_arr_eq(ids, want, sizeof want);
    char *buf = NULL;
    size_t cap = 0;
    cr_assert_geq(translate_detokenize(t.st, ids, n, &buf, &cap), 0);
    cr_assert_str_eq(buf, "a house <unk> <unk>");
    free(buf);
    task_close(&t);

    /* joint with two different dictionaries is refused, naming both */
    expect_open_error((const char *[]){"data", tdir, "format", "bpe", NULL}, ET_STATUS_ERR_FORMAT,
                      path_in("dict.de.txt"), path_in("dict.en.txt"), "differ", NULL);
    /* one dictionary alone is refused */
    unlink(path_in("dict.de.txt"));
    expect_open_error((const char *[]){"data", tdir, "format", "bpe", "joint", "false", NULL},
                      ET_STATUS_ERR_IO, path_in("dict.en.txt"), path_in("dict.de.txt"), NULL);
    /* a joint dict.txt serves both sides; its errors name file and line */
    write_text("dict.txt", "hou@@ 3\nse 3\nthe 1\nbad\n");
    char where[600];
    snprintf(where, sizeof where, "%s:4:", path_in("dict.txt"));
    expect_open_error((const char *[]){"data", tdir, "format", "bpe", NULL}, ET_STATUS_ERR_FORMAT,
                      where, NULL);
    write_text("dict.txt", "hou@@ 3\nse 3\nthe 1\n");
    task_open_ok(&t, 1, (const char *[]){"data", tdir, "format", "bpe", NULL});
    cr_assert_eq(t.info.src_vocab, VOCAB_SPECIALS + 3);
    cr_assert_eq(t.info.tgt_vocab, VOCAB_SPECIALS + 3);
    valid_ids(&t, 0, ids, &n);
    int32_t want_joint[] = {6, 4, 5};
    cr_assert_arr_eq(ids, want_joint, sizeof want_joint);
    task_close(&t);
}

Test(translate, length_filter_and_token_budget_at_their_bounds)
{
    /* max_len = 4: a source of 4 tokens stays, 5 goes; a target of 3 stays
     * (3 + eos = 4), 4 goes */
    static const char *const names[3] = {"train", "valid", "test"};
    for (int s = 0; s < 3; s++) {
        char de[32], en[32];
        snprintf(de, sizeof de, "%s.de", names[s]);
        snprintf(en, sizeof en, "%s.en", names[s]);
        write_text(de, "a b c d\na b c d e\na\na b\nb\nc\n");
        write_text(en, "x y z\nx\nx y z w\nx y\ny\nz\n");
    }
    task t;
    clear_log();
    task_open_ok(&t, 1,
                 (const char *[]){"data", tdir, "format", "bpe", "max_len", "4", "max_tokens", "8",
                                  NULL});
    cr_assert_eq(t.info.split_size[1], 4);
    cr_assert_eq(t.info.max_src_len, 4);
    cr_assert_eq(t.info.max_tgt_len, 4);
    cr_assert_not_null(strstr(logged, "valid: 4 pairs of 6 lines (dropped 0 with an empty side, "
                                      "2 longer than max_len = 4)"),
                       "%s", logged);
    /* widths 2, 2, 3, 4: two of width 2 fill 4 of 8 tokens, a third (width
     * 3) would make 9; then 3 and 4 make 2 x 4 = 8, exactly the budget */
    cr_assert_eq(vt()->batch_count(t.st, 1, 0), 2);
    et_batch b;
    char *err = NULL;
    cr_assert_eq(vt()->batch(t.st, 1, 0, 0, 0, &b, &err), 0);
    cr_assert_eq(b.size, 2);
    cr_assert_eq(b.src_len, 1);
    cr_assert_eq(b.tgt_len, 2);
    cr_assert_eq(vt()->batch(t.st, 1, 0, 0, 1, &b, &err), 0);
    cr_assert_eq(b.size, 2);
    cr_assert_eq(b.src_len, 4);
    cr_assert_eq(b.tgt_len, 4);
    /* and batch_size 1 gives one example a batch */
    cr_assert_eq(vt()->batch_count(t.st, 1, 1), 4);
    task_close(&t);
}

/* ------------------------------------------------------------ real data */

static int64_t count_lines_of(const char *path)
{
    char *t = read_text(path);
    int64_t n = 0;
    for (char *p = t; *p; p++)
        n += *p == '\n';
    free(t);
    return n;
}

Test(translate, real_de_en_from_debian_dict_de_en, .timeout = 120)
{
    /* the data: a copy of the source tree's data/deen, else made here */
    const char *srcdir = getenv("ET_SRCDIR") ? getenv("ET_SRCDIR") : ".";
    char cmd[2048], data[600];
    snprintf(data, sizeof data, "%s/deen", tdir);
    snprintf(cmd, sizeof cmd, "%s/data/deen/train.de", srcdir);
    if (access(cmd, R_OK) == 0) {
        snprintf(cmd, sizeof cmd,
                 "mkdir -p '%s' && cp '%s'/data/deen/*.de '%s'/data/deen/*.en '%s'", data, srcdir,
                 srcdir, data);
    } else {
        cr_assert_eq(access(DEEN_DICT, R_OK), 0,
                     "%s is missing, and there is no data/deen in %s: Debian's dict-de-en is a "
                     "declared dependency (./bootstrap installs it; or apt-get install "
                     "dict-de-en)",
                     DEEN_DICT, srcdir);
        snprintf(cmd, sizeof cmd, "sh '%s/scripts/prepare-deen' '%s' >/dev/null", srcdir, data);
    }
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);

    task t;
    clear_log();
    task_open_ok(&t, 1, (const char *[]){"data", data, NULL});
    char train_de[700];
    snprintf(train_de, sizeof train_de, "%s/train.de", data);
    int64_t lines[3] = {count_lines_of(train_de), 0, 0};
    for (int s = 1; s < 3; s++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s.de", data, s == 1 ? "valid" : "test");
        lines[s] = count_lines_of(p);
    }
    /* about 16 thousand training pairs, 800 each for valid and test; the
     * example sentences are short, so the length filter keeps nearly all */
    cr_assert_gt(lines[0], 15000);
    cr_assert_eq(lines[1], 800);
    cr_assert_eq(lines[2], 800);
    for (int s = 0; s < 3; s++)
        cr_assert_geq(t.info.split_size[s] * 1000, lines[s] * 995, "split %d keeps %" PRId64
                      " of %" PRId64, s, t.info.split_size[s], lines[s]);
    /* a joint vocabulary: 8000 merges and the characters, minus the symbols
     * that only ever occur inside larger ones */
    cr_assert_eq(t.info.src_vocab, t.info.tgt_vocab);
    cr_assert_gt(t.info.src_vocab, 6000);
    cr_assert_lt(t.info.src_vocab, 9000);
    cr_assert_gt(t.info.max_src_len, 20);
    cr_assert_leq(t.info.max_tgt_len, 64);
    cr_assert_not_null(strstr(logged, "8000 merges learned and cached"), "%s", logged);

    /* validation targets come back as their references, and few tokens
     * are unknown */
    int64_t count = vt()->batch_count(t.st, 1, 0), same = 0, rows = 0, unk = 0, tokens = 0;
    for (int64_t i = 0; i < count; i++) {
        et_batch b;
        const int32_t *ex;
        int32_t size;
        char *err = NULL;
        cr_assert_eq(vt()->batch(t.st, 1, 0, 0, i, &b, &err), 0);
        cr_assert_eq(translate_batch_examples(t.st, 1, 0, 0, i, &ex, &size, &err), 0);
        for (int32_t j = 0; j < b.size; j++) {
            same += !strcmp(row_text(&t, &b, j), translate_reference(t.st, 1, ex[j]));
            rows++;
            for (int32_t k = 0; k < b.tgt_lens[j]; k++) {
                unk += b.tgt_out[(int64_t)j * b.tgt_len + k] == VOCAB_UNK;
                tokens++;
            }
        }
    }
    cr_assert_eq(rows, t.info.split_size[1]);
    cr_assert_geq(same * 100, rows * 97, "%" PRId64 " of %" PRId64 " rows round-trip", same, rows);
    cr_assert_leq(unk * 200, tokens, "%" PRId64 " unknown of %" PRId64 " tokens", unk, tokens);
    int32_t *o = check_split(&t, 0, 0, 0, 4096);
    free(o);
    task_close(&t);

    /* a second load reads the cache */
    clear_log();
    task_open_ok(&t, 1, (const char *[]){"data", data, NULL});
    cr_assert_not_null(strstr(logged, "8000 merges read from"), "%s", logged);
    task_close(&t);
}
