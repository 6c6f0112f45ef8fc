/* BLEU against sacreBLEU 2.6.0: every fixture in tests/data/bleu for both
 * tokenizers, the 13a rules on hand-written lines, smoothing and the zero
 * cases, the report line, file errors and BPE removal. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bleu.h"
#include "util.h"

static const char *srcdir(void)
{
    const char *d = getenv("ET_SRCDIR");
    return d && *d ? d : ".";
}

/* The object that follows "name": in the expected JSON, as [begin, end). */
static const char *json_section(const char *json, const char *name, const char **end)
{
    char key[32];
    snprintf(key, sizeof key, "\"%s\"", name);
    const char *p = strstr(json, key);
    cr_assert(p, "no section %s", key);
    p = strchr(p, '{');
    cr_assert(p);
    *end = strchr(p, '}');
    cr_assert(*end);
    return p;
}

static double json_number(const char *sec, const char *end, const char *key)
{
    char k[32];
    snprintf(k, sizeof k, "\"%s\"", key);
    const char *p = strstr(sec, k);
    cr_assert(p && p < end, "no key %s", k);
    p = strchr(p, ':') + 1;
    return strtod(p, NULL);
}

static void json_array4(const char *sec, const char *end, const char *key, int64_t v[4])
{
    char k[32];
    snprintf(k, sizeof k, "\"%s\"", key);
    const char *p = strstr(sec, k);
    cr_assert(p && p < end, "no key %s", k);
    p = strchr(p, '[');
    cr_assert(p);
    for (int i = 0; i < 4; i++) {
        char *next;
        v[i] = strtoll(p + 1, &next, 10);
        cr_assert(next != p + 1, "bad number in %s", k);
        p = strpbrk(next, ",]");
        cr_assert(p);
    }
}

static char *path_in_data(const char *name, const char *ext)
{
    char *p = et_strdupf("%s/tests/data/bleu/%s%s", srcdir(), name, ext);
    cr_assert(p);
    return p;
}

static void check_fixture(const char *name)
{
    char *hyp = path_in_data(name, ".hyp"), *ref = path_in_data(name, ".ref");
    char *exp_path = path_in_data(name, ".expected.json"), *json = NULL, *err = NULL;
    cr_assert_eq(et_read_file(exp_path, &json, NULL, &err), 0, "%s", err);
    static const char *const toks[] = {"13a", "none"};
    for (int t = 0; t < 2; t++) {
        et_bleu_tokenize tok;
        cr_assert_eq(et_bleu_tokenize_parse(toks[t], &tok, &err), 0);
        et_bleu_result r;
        cr_assert_eq(et_bleu_files(hyp, ref, tok, &r, &err), 0, "%s: %s", name, err);
        const char *end, *sec = json_section(json, toks[t], &end);
        int64_t counts[4], totals[4];
        json_array4(sec, end, "counts", counts);
        json_array4(sec, end, "totals", totals);
        for (int i = 0; i < 4; i++) {
            cr_expect_eq(r.counts[i], counts[i], "%s/%s counts[%d]: %lld, sacreBLEU %lld", name,
                         toks[t], i, (long long)r.counts[i], (long long)counts[i]);
            cr_expect_eq(r.totals[i], totals[i], "%s/%s totals[%d]: %lld, sacreBLEU %lld", name,
                         toks[t], i, (long long)r.totals[i], (long long)totals[i]);
        }
        double score = json_number(sec, end, "score"), bp = json_number(sec, end, "bp");
        cr_expect(fabs(r.score - score) <= 0.01, "%s/%s score %.4f, sacreBLEU %.4f", name, toks[t],
                  r.score, score);
        cr_expect(fabs(r.bp - bp) <= 1e-5, "%s/%s bp %.6f, sacreBLEU %.6f", name, toks[t], r.bp, bp);
        cr_expect_eq(r.sys_len, (int64_t)json_number(sec, end, "sys_len"), "%s/%s sys_len", name,
                     toks[t]);
        cr_expect_eq(r.ref_len, (int64_t)json_number(sec, end, "ref_len"), "%s/%s ref_len", name,
                     toks[t]);
    }
    free(json);
    free(hyp);
    free(ref);
    free(exp_path);
}

Test(bleu, matches_sacrebleu_fixtures)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/data/bleu", srcdir());
    DIR *d = opendir(dir);
    cr_assert(d, "cannot open %s (is ET_SRCDIR the source top directory?)", dir);
    int found = 0;
    const char *suffix = ".expected.json";
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name), k = strlen(suffix);
        if (n <= k || strcmp(e->d_name + n - k, suffix) != 0)
            continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(n - k), e->d_name);
        check_fixture(name);
        found++;
    }
    closedir(d);
    cr_assert_geq(found, 3, "only %d fixtures in %s", found, dir);
}

static void expect_tok(const char *in, et_bleu_tokenize tok, const char *want)
{
    char *got = et_bleu_tokenize_line(in, tok);
    cr_assert(got);
    cr_expect_str_eq(got, want, "tokenize(\"%s\", %s) = \"%s\", want \"%s\"", in,
                     et_bleu_tokenize_name(tok), got, want);
    free(got);
}

Test(bleu, tokenizer_13a_rules)
{
    et_bleu_tokenize t = ET_BLEU_TOKENIZE_13A;
    expect_tok("Hello, world!", t, "Hello , world !");
    /* a period or comma stays attached only between two digits */
    expect_tok("It costs 3.5 €, i.e. 3,50 Euro.", t, "It costs 3.5 € , i . e . 3,50 Euro .");
    expect_tok("Pi is 3.14, or 3,14.", t, "Pi is 3.14 , or 3,14 .");
    expect_tok("Go to .5 or 5. then", t, "Go to . 5 or 5 . then");
    expect_tok("wait...", t, "wait . . .");
    expect_tok("U.S.A.", t, "U . S . A .");
    /* a dash splits only after a digit; apostrophes never split */
    expect_tok("1990-2000 well-known -5 don't", t, "1990 - 2000 well-known -5 don't");
    expect_tok("a (b) [c] {d} <e> f/g h:i \"j\" k@l m#n 5% $3 x+y=z ~_^`\\|", t,
               "a ( b ) [ c ] { d } < e > f / g h : i \" j \" k @ l m # n 5 % $ 3 x + y = z ~ _ ^ ` \\ |");
    /* language-independent part: skipped tags, hyphen-newline joins, entities */
    expect_tok("a<skipped>b", t, "ab");
    expect_tok("data-\nbase and line\nbreak", t, "database and line break");
    expect_tok("&quot;Hi&quot; &amp; &lt;b&gt;", t, "\" Hi \" & < b >");
    expect_tok("&amp;lt; &amp;quot; &AMP;", t, "< & quot ; & AMP ;");
    /* Python's whitespace: tabs, no-break and other Unicode spaces separate */
    expect_tok("  a\tb\xc2\xa0" "c\xe2\x80\x89" "d\xe3\x80\x80" "e \xe2\x80\x8b f  \t", t,
               "a b c d e \xe2\x80\x8b f");
    expect_tok("", t, "");
    expect_tok(" \t ", t, "");
    expect_tok("Don’t be so picky!", t, "Don’t be so picky !");
}

Test(bleu, tokenizer_none_splits_whitespace_only)
{
    et_bleu_tokenize t = ET_BLEU_TOKENIZE_NONE;
    expect_tok("Hello, world!", t, "Hello, world!");
    expect_tok("  a \t b\xc2\xa0" "c &amp; d<skipped>  ", t, "a b c &amp; d<skipped>");
}

Test(bleu, tokenizer_names)
{
    et_bleu_tokenize t;
    char *err = NULL;
    cr_assert_eq(et_bleu_tokenize_parse("none", &t, &err), 0);
    cr_assert_eq(t, ET_BLEU_TOKENIZE_NONE);
    cr_assert_eq(et_bleu_tokenize_parse("13a", &t, &err), 0);
    cr_assert_eq(t, ET_BLEU_TOKENIZE_13A);
    cr_assert_eq(et_bleu_tokenize_parse("intl", &t, &err), ET_STATUS_ERR_USAGE);
    cr_assert(err && strstr(err, "intl"), "%s", err);
    free(err);
}

static et_bleu_result stats(int64_t c0, int64_t c1, int64_t c2, int64_t c3, int64_t t0, int64_t t1,
                            int64_t t2, int64_t t3, int64_t sys, int64_t ref)
{
    et_bleu_result r = {.counts = {c0, c1, c2, c3}, .totals = {t0, t1, t2, t3}, .sys_len = sys,
                        .ref_len = ref};
    et_bleu_compute(&r);
    return r;
}

Test(bleu, exp_smoothing)
{
    /* orders 2..4 have no match: the k-th such order gets 100 / (2^k total) */
    et_bleu_result r = stats(5, 0, 0, 0, 10, 8, 6, 4, 10, 10);
    cr_expect_float_eq(r.precisions[0], 50.0, 1e-12);
    cr_expect_float_eq(r.precisions[1], 100.0 / 16, 1e-12);
    cr_expect_float_eq(r.precisions[2], 100.0 / 24, 1e-12);
    cr_expect_float_eq(r.precisions[3], 100.0 / 32, 1e-12);
    double want = exp((log(50.0) + log(6.25) + log(100.0 / 24) + log(3.125)) / 4);
    cr_expect_float_eq(r.score, want, 1e-9);
    cr_expect_float_eq(r.bp, 1.0, 0);

    /* a gap: order 2 has no match but order 3 does, so order 4 is the 2nd zero */
    r = stats(6, 0, 2, 0, 10, 9, 8, 7, 10, 10);
    cr_expect_float_eq(r.precisions[1], 100.0 / 18, 1e-12);
    cr_expect_float_eq(r.precisions[2], 25.0, 1e-12);
    cr_expect_float_eq(r.precisions[3], 100.0 / 28, 1e-12);
}

Test(bleu, zero_cases)
{
    /* nothing matches at any order: 0 and no smoothing */
    et_bleu_result r = stats(0, 0, 0, 0, 10, 9, 8, 7, 10, 12);
    cr_expect_eq(r.score, 0.0);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(r.precisions[i], 0.0);
    cr_expect_float_eq(r.bp, exp(1.0 - 12.0 / 10.0), 1e-15);

    /* an order without hypothesis n-grams gives 0 even with matches below it */
    r = stats(3, 2, 1, 0, 3, 2, 1, 0, 3, 3);
    cr_expect_eq(r.score, 0.0);
    cr_expect_float_eq(r.precisions[2], 100.0, 1e-12);
    cr_expect_eq(r.precisions[3], 0.0);

    /* no hypothesis tokens: brevity penalty 0, ratio 0 */
    r = stats(0, 0, 0, 0, 0, 0, 0, 0, 0, 5);
    cr_expect_eq(r.bp, 0.0);
    cr_expect_eq(r.ratio, 0.0);
    cr_expect_eq(r.score, 0.0);
}

Test(bleu, corpus_api)
{
    const char *same[] = {"The cat sat on the mat.", "A dog barked at the mailman today."};
    et_bleu_result r;
    char *err = NULL;
    cr_assert_eq(et_bleu_corpus(same, same, 2, ET_BLEU_TOKENIZE_13A, &r, &err), 0, "%s", err);
    cr_expect_float_eq(r.score, 100.0, 1e-9);
    cr_expect_eq(r.sys_len, 15);
    cr_expect_eq(r.totals[3], 9);

    /* clipping: "the" six times against two in the reference counts twice */
    const char *h[] = {"the the the the the the"}, *ref[] = {"the cat is on the mat"};
    cr_assert_eq(et_bleu_corpus(h, ref, 1, ET_BLEU_TOKENIZE_NONE, &r, &err), 0, "%s", err);
    cr_expect_eq(r.counts[0], 2);
    cr_expect_eq(r.totals[0], 6);
    cr_expect_eq(r.counts[1], 0);

    /* an empty hypothesis scores 0 with bp 0 */
    const char *e[] = {""}, *r1[] = {"a b c"};
    cr_assert_eq(et_bleu_corpus(e, r1, 1, ET_BLEU_TOKENIZE_13A, &r, &err), 0, "%s", err);
    cr_expect_eq(r.score, 0.0);
    cr_expect_eq(r.sys_len, 0);
    cr_expect_eq(r.ref_len, 3);

    /* sacreBLEU refuses an empty reference and an empty corpus */
    cr_expect_eq(et_bleu_corpus(r1, e, 1, ET_BLEU_TOKENIZE_13A, &r, &err), ET_STATUS_ERR_FORMAT);
    cr_expect(err && strstr(err, "segment 1") && strstr(err, "empty reference"), "%s", err);
    cr_expect_eq(et_bleu_corpus(r1, r1, 0, ET_BLEU_TOKENIZE_13A, &r, &err), ET_STATUS_ERR_USAGE);
    free(err);
}

Test(bleu, report_line)
{
    et_bleu_result r = stats(17, 10, 5, 3, 28, 24, 20, 16, 28, 20);
    char line[200];
    int n = et_bleu_format(&r, line, sizeof line);
    cr_assert_str_eq(line,
                     "BLEU = 33.00 60.7/41.7/25.0/18.8 (BP = 1.000 ratio = 1.400 hyp_len = 28 "
                     "ref_len = 20)");
    cr_expect_eq(n, (int)strlen(line));
    r = stats(1, 0, 0, 0, 1, 0, 0, 0, 1, 5);
    et_bleu_format(&r, line, sizeof line);
    cr_expect_str_eq(line,
                     "BLEU = 0.00 100.0/0.0/0.0/0.0 (BP = 0.018 ratio = 0.200 hyp_len = 1 "
                     "ref_len = 5)");
}

static char *write_temp(const char *dir, const char *name, const char *text)
{
    char *p = et_strdupf("%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert(f, "cannot write %s", p);
    fputs(text, f);
    fclose(f);
    return p;
}

Test(bleu, file_errors)
{
    const char *base = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/et_bleu_XXXXXX", base && *base ? base : "/tmp");
    cr_assert(mkdtemp(dir), "cannot create a directory under %s", base ? base : "/tmp");
    char *hyp = write_temp(dir, "h.txt", "a b\nc d\ne f\n");
    char *ref3 = write_temp(dir, "r3.txt", "a b\r\nc d\ne f"); /* CRLF, no final newline */
    char *ref4 = write_temp(dir, "r4.txt", "a b\nc d\ne f\ng h\n");
    char *blank = write_temp(dir, "blank.txt", "a b\n \t\ne f\n");
    char *latin1 = write_temp(dir, "latin1.txt", "a b\nc \xe9\ne f\n");
    et_bleu_result r;
    char *err = NULL;

    cr_assert_eq(et_bleu_files(hyp, ref3, ET_BLEU_TOKENIZE_13A, &r, &err), 0, "%s", err);
    cr_expect_float_eq(r.score, 0.0, 0, "three 2-token lines have no 4-grams");
    cr_expect_eq(r.counts[0], 6);
    cr_expect_eq(r.counts[1], 3);

    cr_assert_eq(et_bleu_files(hyp, ref4, ET_BLEU_TOKENIZE_13A, &r, &err), ET_STATUS_ERR_FORMAT);
    cr_expect(strstr(err, hyp) && strstr(err, ref4) && strstr(err, " 3 ") && strstr(err, " 4:"),
              "%s", err);

    cr_assert_eq(et_bleu_files(hyp, blank, ET_BLEU_TOKENIZE_NONE, &r, &err), ET_STATUS_ERR_FORMAT);
    cr_expect(strstr(err, blank) && strstr(err, ":2:"), "%s", err);

    cr_assert_eq(et_bleu_files(latin1, ref3, ET_BLEU_TOKENIZE_13A, &r, &err), ET_STATUS_ERR_FORMAT);
    cr_expect(strstr(err, latin1) && strstr(err, ":2:") && strstr(err, "UTF-8"), "%s", err);

    char *missing = et_strdupf("%s/missing.txt", dir);
    cr_assert_eq(et_bleu_files(missing, ref3, ET_BLEU_TOKENIZE_13A, &r, &err), ET_STATUS_ERR_IO);
    cr_expect(strstr(err, missing), "%s", err);

    const char *files[] = {hyp, ref3, ref4, blank, latin1};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        unlink(files[i]);
        free((char *)files[i]);
    }
    rmdir(dir);
    free(missing);
    free(err);
}

/* Cut every word longer than 3 bytes into 3-byte pieces joined by "@@ ", as
 * subword-nmt writes BPE. */
static char *bpe_split(const char *s)
{
    char *out = malloc(strlen(s) * 3 + 1), *w = out;
    size_t run = 0;
    for (const char *p = s; *p; p++) {
        if (*p == ' ') {
            run = 0;
        } else if (run == 3 && p[1] && p[1] != ' ') {
            w += sprintf(w, "@@ ");
            run = 0;
        }
        if (*p != ' ')
            run++;
        *w++ = *p;
    }
    *w = 0;
    return out;
}

Test(bleu, bpe_removal)
{
    char a[] = "the un@@ believ@@ able story@@";
    cr_expect_eq(et_bleu_remove_bpe(a), strlen("the unbelievable story"));
    cr_expect_str_eq(a, "the unbelievable story");
    char b[] = "e@@mail @@@@ x@@ @@ y";
    et_bleu_remove_bpe(b);
    cr_expect_str_eq(b, "e@@mail @@xy");
    char c[] = "";
    cr_expect_eq(et_bleu_remove_bpe(c), 0);

    const char *texts[] = {"Once the camera has been cleaned, it’ll be like new.",
                           "We both know how this goes, don’t we?", "a bc def ghij klmnopqrstu"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char *bpe = bpe_split(texts[i]);
        cr_expect(strstr(bpe, "@@ "), "%s", bpe);
        et_bleu_remove_bpe(bpe);
        cr_expect_str_eq(bpe, texts[i]);
        free(bpe);
    }
}
