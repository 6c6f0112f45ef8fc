/* Corpus BLEU as sacreBLEU 2.6.0 computes it (one reference, up to 4-grams,
 * "exp" smoothing, mixed case, tokenizers "13a" and "none"), its one-line
 * report, and the removal of BPE continuation markers before scoring. */
#ifndef ETNAS_CORE_BLEU_H
#define ETNAS_CORE_BLEU_H

#include <stddef.h>
#include <stdint.h>

#define ET_BLEU_MAX_ORDER 4

typedef enum et_bleu_tokenize {
    ET_BLEU_TOKENIZE_13A = 0, /* mteval-v13a rules, sacreBLEU's default */
    ET_BLEU_TOKENIZE_NONE = 1 /* split on whitespace only (tokenised BLEU) */
} et_bleu_tokenize;

typedef struct et_bleu_result {
    double score;                         /* 0..100 */
    int64_t counts[ET_BLEU_MAX_ORDER];    /* clipped n-gram matches per order */
    int64_t totals[ET_BLEU_MAX_ORDER];    /* hypothesis n-grams per order */
    double precisions[ET_BLEU_MAX_ORDER]; /* percent, after smoothing */
    double bp;                            /* brevity penalty */
    double ratio;                         /* sys_len / ref_len; 0 when ref_len is 0 */
    int64_t sys_len, ref_len;             /* tokens in hypotheses and references */
} et_bleu_result;

/* "13a" or "none" to the enum; ET_STATUS_ERR_USAGE with a message otherwise. */
int et_bleu_tokenize_parse(const char *name, et_bleu_tokenize *out, char **err);
const char *et_bleu_tokenize_name(et_bleu_tokenize tok);

/* One segment as the scorer sees it: trailing whitespace stripped, tokenized,
 * tokens joined by single spaces. malloc'd; NULL when memory runs out. */
char *et_bleu_tokenize_line(const char *line, et_bleu_tokenize tok);

/* Corpus BLEU of n hypotheses against n references (segment i against
 * reference i). Like sacreBLEU, an empty reference string is an error. */
int et_bleu_corpus(const char *const *hyps, const char *const *refs, size_t n,
                   et_bleu_tokenize tok, et_bleu_result *out, char **err);

/* The score from summed statistics (counts, totals, sys_len and ref_len of
 * *r must be set); fills score, precisions, bp and ratio. */
void et_bleu_compute(et_bleu_result *r);

/* Corpus BLEU of two parallel UTF-8 text files, one segment per line, read
 * as sacreBLEU's command line reads them. Differing line counts are an error
 * that names both files and both counts. */
int et_bleu_files(const char *hyp_path, const char *ref_path, et_bleu_tokenize tok,
                  et_bleu_result *out, char **err);

/* sacreBLEU's score line, e.g. "BLEU = 32.99 60.7/41.7/25.0/18.8 (BP = 1.000
 * ratio = 1.400 hyp_len = 28 ref_len = 20)"; snprintf semantics. */
int et_bleu_format(const et_bleu_result *r, char *buf, size_t size);

/* Undo subword-nmt BPE in place: every "@@ " join and a final "@@" go away.
 * Returns the new length. */
size_t et_bleu_remove_bpe(char *line);

#endif
