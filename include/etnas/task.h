/* The task ABI: data splits, the model kind and geometry a task needs, and
 * its metric. Batches are the engine's input; formats: spec/data.md. */
#ifndef ETNAS_TASK_H
#define ETNAS_TASK_H

#include <stdint.h>

#include <etnas/arch.h>
#include <etnas/host.h>
#include <etnas/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum et_split {
    ET_SPLIT_TRAIN = 0,
    ET_SPLIT_VALID = 1,
    ET_SPLIT_TEST = 2
} et_split;

typedef struct et_task_info {
    int32_t model_kind;     /* et_model_kind the task needs */
    int32_t num_classes;    /* classification; 0 otherwise */
    int32_t src_vocab;      /* token inputs; 0 when inputs are vectors */
    int32_t tgt_vocab;      /* seq2seq / LM targets; 0 otherwise */
    int32_t input_dim;      /* features per input position (e.g. P*P*C pixels); 0 for tokens */
    int32_t max_src_len;    /* positions per input sequence at most */
    int32_t max_tgt_len;
    int64_t split_size[3];  /* examples per et_split */
    const char *metric;     /* "accuracy", "bleu", "perplexity" */
    int32_t higher_is_better;
    /* token tasks: ids of the special tokens (decoder start, end, padding) */
    int32_t bos, eos, pad;
} et_task_info;

/* One batch. Arrays belong to the task and stay valid until the next call of
 * `batch` on the same instance. Unused members are NULL. */
typedef struct et_batch {
    int32_t size;            /* examples */
    int32_t src_len;         /* padded source length */
    int32_t tgt_len;         /* padded target length */
    const float *src_vec;    /* (size, src_len, input_dim) */
    const int32_t *src_tok;  /* (size, src_len) */
    const int32_t *src_lens; /* (size) valid source positions */
    const int32_t *tgt_in;   /* (size, tgt_len) decoder inputs (bos-shifted) */
    const int32_t *tgt_out;  /* (size, tgt_len) decoder targets */
    const int32_t *tgt_lens; /* (size) */
    const int32_t *labels;   /* (size) class labels */
    const int32_t *examples; /* (size) each row's example number in its split (token tasks) */
} et_batch;

typedef struct et_task_vtable {
    int (*create)(const et_host *host, const et_option_value *opts, void **state, char **err);
    void (*destroy)(void *state); /* safe on NULL and after a failed create */
    /* Load data (may take time), then describe it. */
    int (*load)(void *state, et_task_info *info, char **err);
    /* Batches of a split for an epoch: batch_count, then batch(i) for i in
     * [0, count). Training batches are shuffled by (seed, epoch). */
    int64_t (*batch_count)(void *state, int32_t split, int32_t batch_size);
    int (*batch)(void *state, int32_t split, int64_t epoch, int32_t batch_size, int64_t index,
                 et_batch *out, char **err);

    /* ---- sequence tasks; NULL for the others ---- */
    /* Target ids (up to the first eos) to the text the metric scores,
     * getline-style into *buf (of *cap bytes, grown with realloc). Returns
     * its length or a negative code. */
    int64_t (*detokenize)(const void *state, const int32_t *ids, int64_t n, char **buf,
                          size_t *cap);
    /* The reference text of example `example` of a validation or test split
     * (NULL for a bad index), as the metric sees it. */
    const char *(*reference)(const void *state, int32_t split, int64_t example);
} et_task_vtable;

#ifdef __cplusplus
}
#endif
#endif
