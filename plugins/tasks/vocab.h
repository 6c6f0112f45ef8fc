/* Token tables for the translate task: strings <-> dense int32 ids with
 * counts. One type serves three uses: the vocabulary a model sees (special
 * tokens first, at fixed ids), the count table built while reading text, and
 * the BPE learner's symbol table. Vocabularies come from counted training
 * text or from fairseq's dict.txt ("TOKEN COUNT" per line). */
#ifndef ETNAS_PLUGINS_VOCAB_H
#define ETNAS_PLUGINS_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include <etnas/host.h>

/* Special tokens at fairseq's ids, so a vocabulary read from a fairseq
 * dict.txt numbers its tokens as fairseq does (dict.txt leaves them out;
 * its first line gets id VOCAB_SPECIALS). */
enum {
    VOCAB_BOS = 0, /* "<s>": first decoder input */
    VOCAB_PAD = 1, /* "<pad>": fills batches past each sequence's length */
    VOCAB_EOS = 2, /* "</s>": last decoder target */
    VOCAB_UNK = 3, /* "<unk>": any token the vocabulary lacks */
    VOCAB_SPECIALS = 4
};

typedef struct vocab {
    int32_t n, cap;   /* tokens, and room for them */
    char *text;       /* every token, NUL-terminated, back to back */
    size_t text_len, text_cap;
    size_t *offset;   /* (cap) where token i starts in text */
    uint32_t *length; /* (cap) bytes of token i */
    int64_t *count;   /* (cap) occurrences (from text or dict.txt) */
    int32_t *slot;    /* open-addressing table of ids, -1 = empty */
    uint32_t nslots;  /* a power of two, at least twice n */
} vocab;

/* An empty table (no special tokens). */
void vocab_init(vocab *v);
void vocab_free(vocab *v);

/* The id of the len bytes at s, or -1. */
int32_t vocab_find(const vocab *v, const char *s, size_t len);
/* The id of the len bytes at s, added with count 0 when new. 0 or
 * ET_STATUS_ERR_NOMEM. */
int vocab_intern(vocab *v, const char *s, size_t len, int32_t *id);
/* Token text, NUL-terminated; valid until the table grows. */
static inline const char *vocab_token(const vocab *v, int32_t id)
{
    return v->text + v->offset[id];
}

/* An empty table holding only the four special tokens at their ids. */
int vocab_init_specials(vocab *v);

/* A vocabulary from a count table: the specials, then every token of
 * `counts` with a count above zero, most frequent first, ties in byte order
 * of the tokens (as fairseq's dictionary orders them). Tokens that spell a
 * special token keep the special id. out must be uninitialised. */
int vocab_from_counts(vocab *out, const vocab *counts);

/* A vocabulary from a fairseq dict.txt: the specials, then one token per
 * line in file order. A line is "TOKEN COUNT", optionally followed by
 * " #fairseq:overwrite", which lets a line repeat an earlier token (special
 * tokens included) and replace its count; any other repeat is an error. Every
 * error names path:line. out must be uninitialised; it is freed on error. */
int vocab_read_dict(const et_host *host, const char *path, vocab *out, char **err);

/* The id of a token in a vocabulary, VOCAB_UNK when it is missing. */
static inline int32_t vocab_encode(const vocab *v, const char *s, size_t len)
{
    int32_t id = vocab_find(v, s, len);
    return id < 0 ? VOCAB_UNK : id;
}

/* Token ids back to text, getline-style into *buf (of *cap bytes, grown with
 * realloc): tokens up to the first eos joined by single spaces, bos and pad
 * left out. Returns the length, ET_STATUS_ERR_USAGE for an id outside the
 * vocabulary, or ET_STATUS_ERR_NOMEM. */
int64_t vocab_join(const vocab *v, const int32_t *ids, int64_t n, char **buf, size_t *cap);

/* 64-bit FNV-1a of bytes, continuing from h (start with VOCAB_FNV_OFFSET). */
#define VOCAB_FNV_OFFSET UINT64_C(0xcbf29ce484222325)
uint64_t vocab_fnv1a(uint64_t h, const void *data, size_t len);

#endif
