/* The elastic Transformer supernet. Weights live at the space's maxima in one
 * arena; binding an architecture selects top-left slices of every weight
 * (HAT) that the kernels use in place through leading dimensions. A
 * standalone model is a supernet over a one-point space: one code path.
 *
 * This version builds encoder classifiers (vector inputs such as image
 * patches, class token or mean pooling, learned positions); the
 * encoder-decoder and decoder-only kinds come next on the same layer code. */
#ifndef ETNAS_CORE_MODEL_H
#define ETNAS_CORE_MODEL_H

#include <stdint.h>

#include <etnas/etnas.h>

/* One attention choice of the space, resolved to its plugin. */
typedef struct et_attn_impl {
    const et_attention_vtable *vt;
    const et_option_value *opts;
} et_attn_impl;

typedef struct et_model_config {
    int32_t input_dim;   /* features per input position (e.g. P*P*C) */
    int32_t max_len;     /* input positions at most (class token not counted) */
    int32_t num_classes;
    int32_t max_batch;   /* examples per forward at most */
    float dropout;       /* residual dropout */
    float label_smoothing;
    /* one per attention choice of the encoder stack, in the space's order */
    const et_attn_impl *enc_attention;
} et_model_config;

typedef struct et_model et_model;

/* The parameter tensors, in arena order, for checkpoints and optimizers. */
typedef struct et_tensor {
    const char *name;
    int64_t offset;  /* floats from the start of the parameter arena */
    int32_t rows, cols;        /* at the maxima; vectors have rows = 1 */
    int32_t bound_rows, bound_cols; /* the slice the bound arch uses */
    int32_t decay;   /* 1: weight decay applies (matrices), 0: norms, biases, embeddings */
} et_tensor;

int et_model_create(const et_space *space, const et_model_config *cfg, const et_host *host,
                    et_model **out, char **err);
void et_model_destroy(et_model *m);

/* Bind an architecture of the space for batches of up to `batch` examples
 * of `len` positions: sizes the activation arena (grows it if needed) and
 * prepares the attention operators. Outside hot loops. */
int et_model_bind(et_model *m, const et_arch *arch, int32_t batch, int32_t len, char **err);

/* Forward on a batch (src_vec, src_lens, labels). Returns the summed loss
 * over examples; *correct (may be NULL) gets the number of right argmaxes.
 * With training = 1, dropout is active (seeded by seed and step) and the
 * activations needed by et_model_backward are kept. */
int et_model_forward(et_model *m, const et_batch *b, int training, uint64_t seed, int64_t step,
                     double *loss, int64_t *correct, char **err);
/* Gradients of loss * scale into the gradient arena (accumulating). */
int et_model_backward(et_model *m, float scale, char **err);

/* Arenas: parameters and their gradients, n floats each. */
float *et_model_params(et_model *m, int64_t *n);
float *et_model_grads(et_model *m, int64_t *n);
const et_tensor *et_model_tensors(const et_model *m, int32_t *n);
/* Zero the gradients of the bound slices. */
void et_model_zero_grads(et_model *m);
/* Initialise every parameter (truncated normal 0.02 for matrices, zeros and
 * ones for biases and norms), seeded. */
void et_model_init(et_model *m, uint64_t seed);

/* The model's space, and the bound architecture (NULL before any bind). */
const et_space *et_model_space(const et_model *m);
const et_arch *et_model_arch(const et_model *m);

/* The logits of the last forward (B, num_classes). */
const float *et_model_logits(const et_model *m);
/* Bytes of the activation arena for the bound arch and batch. */
int64_t et_model_activation_bytes(const et_model *m);

#endif
