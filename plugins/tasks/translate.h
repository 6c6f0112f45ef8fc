/* What the engine needs from a loaded translate task beyond the task ABI,
 * to score decoded output with BLEU: target ids back to detokenised text,
 * each example's reference, and which examples a batch holds (batches come
 * in length order, not file order).
 *
 * `state` is the instance the plugin's create made, after a successful
 * load. Examples of a split are numbered 0 .. split_size - 1 in file order
 * among the pairs the task kept (empty and over-long pairs are dropped). */
#ifndef ETNAS_PLUGINS_TRANSLATE_H
#define ETNAS_PLUGINS_TRANSLATE_H

#include <stddef.h>
#include <stdint.h>

/* Target ids to text, getline-style into *buf (of *cap bytes, grown with
 * realloc): the tokens up to the first eos, bos and pad left out, joined by
 * spaces, BPE "@@ " joins removed. For the target ids of a reference without
 * unknown tokens this gives translate_reference's text. Returns the length,
 * or ET_STATUS_ERR_USAGE for an id outside the target vocabulary,
 * ET_STATUS_ERR_NOMEM. */
int64_t translate_detokenize(const void *state, const int32_t *ids, int64_t n, char **buf,
                             size_t *cap);

/* The reference translation of a validation or test example as BLEU should
 * see it: the target line with its words separated by single spaces (BPE
 * removed for format = bpe). NULL for the training split or a bad index. */
const char *translate_reference(const void *state, int32_t split, int64_t example);

/* The examples of batch `index`, in the order of the batch's rows, for the
 * same (split, epoch, batch_size) as the task's batch(); *examples stays
 * valid until the next call of batch or of this function. */
int translate_batch_examples(void *state, int32_t split, int64_t epoch, int32_t batch_size,
                             int64_t index, const int32_t **examples, int32_t *size, char **err);

#endif
