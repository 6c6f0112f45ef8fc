/* Beam search (and greedy decoding, beam 1) over the engine's incremental
 * decoding, as fairseq scores it: hypotheses ranked by summed
 * log-probability, finished ones (those that chose eos, or reached the
 * length limit) normalised by length^lenpen (length counts the eos), a
 * sentence done once it has `beam` finished hypotheses; the maximum length
 * of example b is max_len_a * src_len[b] + max_len_b, capped by the
 * model's decoder positions. */
#ifndef ETNAS_CORE_BEAM_H
#define ETNAS_CORE_BEAM_H

#include <stdint.h>

#include "model.h"

typedef struct et_beam_config {
    int32_t beam;     /* hypotheses per sentence (1: greedy) */
    float lenpen;     /* length penalty exponent */
    float max_len_a;  /* length limit a * source length + b */
    int32_t max_len_b;
    int32_t max_len;  /* hard cap (the decoder's positions) */
    int32_t bos, eos;
    int32_t vocab;    /* target tokens (rows of the log-probabilities) */
} et_beam_config;

/* Scratch of a search, grown by et_beam_search as batches need. */
typedef struct et_beam {
    void *mem;
    int64_t cap;
} et_beam;

/* Decode a source batch with the bound arch: the best hypothesis of
 * example b (tokens without bos and eos) goes to out + b * out_stride,
 * its length to out_len[b] (at most out_stride). */
int et_beam_search(et_beam *bs, et_model *m, const et_batch *src, const et_beam_config *cfg,
                   int32_t *out, int32_t out_stride, int32_t *out_len, char **err);
void et_beam_free(et_beam *bs);

#endif
