/* Byte-pair encoding for the translate task, as subword-nmt learns and
 * applies it (spec/data.md): joint merges learned from word counts, applied
 * word by word into "@@ " continuation format, undone exactly by
 * bpe_remove; and a cache file of learned merges keyed by the training data.
 *
 * Words are whitespace-separated runs of bytes (space, tab, CR, LF, VT, FF),
 * split into UTF-8 characters (a byte that is not a continuation byte,
 * followed by up to three continuation bytes); the last character carries
 * the end-of-word marker "</w>". Learning repeatedly merges the most frequent
 * adjacent symbol pair (counts weighted by word frequency) while one occurs
 * at least twice. Ties go to the pair whose left symbol, then right symbol,
 * is greatest in byte order (code point order for UTF-8): the order of
 * subword-nmt's max over (count, pair), and independent of the order in
 * which words were counted. A merge joins every occurrence of the pair in a
 * word, left to right, without overlap. */
#ifndef ETNAS_PLUGINS_BPE_H
#define ETNAS_PLUGINS_BPE_H

#include <stddef.h>
#include <stdint.h>

#include <etnas/host.h>

#include "vocab.h"

#define BPE_END_OF_WORD "</w>"

/* The bytes that separate words. */
static inline int bpe_is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* A merge of symbols left and right (ids in bpe_model.symbols) into merged. */
typedef struct bpe_merge {
    int32_t left, right, merged;
} bpe_merge;

/* An open-addressing map of symbol pairs to int32 values. */
typedef struct bpe_pair_map {
    uint64_t *key; /* left << 32 | right; UINT64_MAX = empty */
    int32_t *value;
    uint32_t nslots, n;
} bpe_pair_map;

typedef struct bpe_model {
    vocab symbols;      /* every symbol text; final symbols end in "</w>" */
    bpe_merge *merges;  /* in learned order: lower index = applied first */
    int32_t n_merges, cap_merges;
    bpe_pair_map rank;  /* (left, right) -> index in merges */
    /* Segmentations already computed by bpe_apply_line, per distinct word:
     * piece ends (byte offsets) memo_cut[memo_at[id] .. memo_at[id + 1]). */
    vocab memo;
    int64_t *memo_at, memo_at_cap;
    uint32_t *memo_cut;
    int64_t memo_cuts, memo_cut_cap;
    /* scratch of one word's symbols while it is segmented */
    int32_t *work_id;
    uint32_t *work_end;
    size_t work_cap;
} bpe_model;

void bpe_init(bpe_model *m);
void bpe_free(bpe_model *m);

/* Add each word of a line to a count table (count += 1 per occurrence). */
int bpe_count_words(vocab *words, const char *line, size_t len);

/* Learn up to `merges` merges from word counts into m (bpe_init'ed, empty).
 * Fewer are learned when no pair occurs twice. 0 or ET_STATUS_ERR_NOMEM. */
int bpe_learn(const vocab *words, int32_t merges, bpe_model *m);

/* Add one merge (left + right) after the existing ones. */
int bpe_add_merge(bpe_model *m, const char *left, size_t left_len, const char *right,
                  size_t right_len);

/* BPE of a line, getline-style into *buf (of *cap bytes, grown with
 * realloc): words joined by single spaces, every piece but a word's last
 * followed by "@@". Returns the length or ET_STATUS_ERR_NOMEM. Remembers
 * each word's segmentation, so it is not safe to call concurrently. */
int64_t bpe_apply_line(bpe_model *m, const char *line, size_t len, char **buf, size_t *cap);

/* Undo BPE in place, exactly as the core's et_bleu_remove_bpe (src/bleu.h):
 * every "@@ " and a final "@@" go away. Returns the new length. For a line of
 * single-space-separated words, bpe_remove(bpe_apply_line(line)) == line
 * unless a word itself ends in "@@", which the format cannot tell from a
 * join. */
size_t bpe_remove(char *line);

/* Where the merges came from in bpe_learn_files. */
typedef enum bpe_source {
    BPE_SOURCE_CACHE = 0,   /* read from the cache file */
    BPE_SOURCE_LEARNED = 1, /* learned; there was no cache file */
    BPE_SOURCE_REBUILT = 2  /* learned; the cache file was unusable (a warning was logged) */
} bpe_source;

/* Merges for the words of text files (joint BPE over all of them), through
 * a cache file when cache_path is not NULL. The cache is keyed by a hash of
 * the files' bytes (independent of their order) and `merges`; it is used
 * only when its key and checksum match, and otherwise relearned and
 * rewritten atomically (temporary file, fsync, rename) with a logged
 * warning. A cache that cannot be written is a warning, not an error. */
int bpe_learn_files(const et_host *host, const char *const *paths, int npaths, int32_t merges,
                    const char *cache_path, bpe_model *m, bpe_source *source, char **err);

#endif
