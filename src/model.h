/* The elastic Transformer supernet. Weights live at the space's maxima in one
 * arena; binding an architecture selects top-left slices of every weight
 * (HAT) that the kernels use in place through leading dimensions. A
 * standalone model is a supernet over a one-point space: one code path.
 *
 * Three kinds on the same layer code: encoder classifiers (vector inputs
 * such as image patches, class token or mean pooling, learned positions),
 * encoder-decoder translation models and decoder-only language models
 * (token embeddings scaled by sqrt(e), sinusoidal or learned positions,
 * output projection tied to the target embedding, optionally one table for
 * source and target). Decoder layers are causal self-attention, then
 * cross-attention to the last `connect` encoder layers' outputs concatenated
 * along time (HAT's En-De Connect), then the FFN. */
#ifndef ETNAS_CORE_MODEL_H
#define ETNAS_CORE_MODEL_H

#include <stdint.h>

#include <etnas/etnas.h>

/* One attention choice of the space, resolved to its plugin. */
typedef struct et_attn_impl {
    const et_attention_vtable *vt;
    const et_option_value *opts;
} et_attn_impl;

typedef enum et_positions {
    ET_POSITIONS_SINUSOIDAL = 0, /* fixed sin/cos (Vaswani et al.), token models */
    ET_POSITIONS_LEARNED = 1     /* a learned table (always for vector inputs) */
} et_positions;

typedef struct et_model_config {
    int32_t input_dim;   /* features per input position (e.g. P*P*C); 0 for tokens */
    int32_t max_len;     /* source positions at most (class token not counted) */
    int32_t num_classes; /* encoder classifiers; 0 otherwise */
    int32_t max_batch;   /* examples per forward at most */
    float dropout;       /* residual dropout */
    float label_smoothing;
    /* one per attention choice of the encoder stack, in the space's order */
    const et_attn_impl *enc_attention;
    /* token models (seq2seq, decoder-only) */
    int32_t src_vocab, tgt_vocab;  /* tokens; equal with a joint vocabulary */
    int32_t max_tgt_len;           /* decoder positions at most */
    int32_t positions;             /* et_positions */
    int32_t share_embeddings;      /* 1: one table for source and target (equal vocabs) */
    /* one per choice of the decoder's self- and cross-attention lists */
    const et_attn_impl *dec_attention, *cross_attention;
    float activation_dropout; /* dropout on the FFN's hidden activations */
    int32_t init;             /* et_init: how et_model_init draws the parameters */
    double pos_init_std;      /* learned positions and class token: std at init, cut at 2 std
                                 (0: 0.02, as every other normal draw) */
    int32_t qkv_xavier;       /* 1: the attention's q/k/v projections Xavier-uniform as under
                                 ET_INIT_TORCH whatever init says (biases keep init's rule) */
} et_model_config;

/* Parameter initialisation schemes (the [train] option `init`). */
typedef enum et_init {
    ET_INIT_NORMAL = 0, /* every matrix and table N(0, 0.02^2) cut at 2 std (BERT, ViT) */
    ET_INIT_XAVIER = 1, /* matrices Xavier-uniform, token tables N(0, 1/E) (fairseq) */
    ET_INIT_TORCH = 2   /* PyTorch's layer defaults: weights and biases U(+-1/sqrt(fan_in))
                         * (nn.Linear, nn.Conv2d), attention in/out as nn.MultiheadAttention
                         * (Xavier-uniform QKV, zero biases); tables as ET_INIT_NORMAL */
} et_init;

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
/* The same with the decoder's positions as well (token models); `len` is
 * the source length (ignored by decoder-only models). */
int et_model_bind_lengths(et_model *m, const et_arch *arch, int32_t batch, int32_t len,
                          int32_t tgt_len, char **err);

/* Forward on a batch: (src_vec, src_lens, labels) for classifiers,
 * (src_tok, src_lens, tgt_in, tgt_out, tgt_lens) for seq2seq, (tgt_in,
 * tgt_out, tgt_lens) for decoder-only models; batches may be shorter than
 * the bound lengths. Returns the summed loss over the loss units (examples,
 * or target tokens: et_model_units); *correct (may be NULL) gets the number
 * of units whose argmax is right.
 * With training = 1, dropout is active (seeded by seed and step) and the
 * activations needed by et_model_backward are kept. */
int et_model_forward(et_model *m, const et_batch *b, int training, uint64_t seed, int64_t step,
                     double *loss, int64_t *correct, char **err);
/* Gradients of loss * scale into the gradient arena (accumulating). */
int et_model_backward(et_model *m, float scale, char **err);

/* Soft choices for differentiable search (PAR). With soft mode on, every
 * layer l of the stack (0 encoder, 1 decoder) runs, on its input x,
 *   out = w[l][0] * A(x) + w[l][1] * F(x) + w[l][2] * x
 * where A is the attention-only block (self-attention, then cross-attention
 * in seq2seq decoders) and F the FFN-only block, each with its residual
 * (the arch's block gene is ignored). With op_w, A's self-attention output
 * is the mixture sum_o op_w[l][o] * att_o of every operator of the stack's
 * list on the same projections (the arch's attention gene is ignored).
 * block_w is (L, 3) and op_w (L, n_attn) or NULL, L = the stack's layers
 * at the maxima. Set before et_model_bind (it sizes the arena); weights
 * may change between forwards. Backward adds d loss / d weight into the
 * gradients et_model_soft_grads returns (zeroed by each forward). */
int et_model_set_soft(et_model *m, int32_t stack, const float *block_w, const float *op_w,
                      char **err);
/* The same with `blocks` = 4 candidates per layer: block_w (L, 4) adds the
 * standard block (attention then FFN, the FFN's weights shared with the
 * FFN-only candidate): out += w[l][3] * F(A(x)). */
int et_model_set_soft_blocks(et_model *m, int32_t stack, int32_t blocks, const float *block_w,
                             const float *op_w, char **err);
void et_model_clear_soft(et_model *m);
/* Block-weight gradients, rows of 4 floats per layer (attention, FFN,
 * identity, standard); *op_grads (may be NULL) gets (L, n_attn) rows of
 * ET_MAX_CHOICES floats. */
const float *et_model_soft_grads(const et_model *m, int32_t stack, const float **op_grads);

/* Gradients for zero-cost proxies. want_input_grad (before et_model_bind)
 * makes backward also compute the gradient of the inputs: the vector
 * inputs of a classifier, or the embedded (scaled, position-added) tokens
 * of the first stack of a token model; et_model_input_grad returns it,
 * (B, *per_example) floats. et_model_backward_outputs backpropagates a
 * given gradient of the outputs instead of the loss's: dlogits (B, C), or
 * (B, T, V) for token models, NULL for all ones (padded target rows get
 * zero either way). */
void et_model_want_input_grad(et_model *m, int on);
/* Features per input position of a classifier (0 for token models). */
int32_t et_model_input_dim(const et_model *m);
const float *et_model_input_grad(const et_model *m, int64_t *per_example);
int et_model_backward_outputs(et_model *m, const float *dlogits, char **err);

/* Incremental decoding of token models, for greedy and beam search.
 * begin: with an arch bound for at least src->size examples of
 * src->src_len positions, runs the encoder on src (dropout off) and sets up
 * `beams` hypotheses per example (rows b*beams .. b*beams+beams-1) for up
 * to max_len steps; its buffers are sized here, never in step. step: one
 * token per hypothesis at position pos (0, 1, ... in order); *logprobs gets
 * log-softmax rows (size*beams, tgt_vocab), valid until the next call.
 * reorder: hypothesis i continues from what hypothesis from[i] had. Each
 * step equals row pos of the teacher-forced forward (tested to 1e-4). */
int et_model_decode_begin(et_model *m, const et_batch *src, int32_t beams, int32_t max_len,
                          char **err);
int et_model_decode_step(et_model *m, const int32_t *tokens, int32_t pos, const float **logprobs,
                         char **err);
void et_model_decode_reorder(et_model *m, const int32_t *from);

/* Arenas: parameters and their gradients, n floats each. */
float *et_model_params(et_model *m, int64_t *n);
float *et_model_grads(et_model *m, int64_t *n);
const et_tensor *et_model_tensors(const et_model *m, int32_t *n);
/* Zero the gradients of the bound slices. */
void et_model_zero_grads(et_model *m);
/* Initialise every parameter, seeded, by cfg.init (et_init) — zeros and
 * ones for biases and norms, an identity tap for Primer's dconv; the q/k/v
 * matrices as torch's when cfg.qkv_xavier. */
void et_model_init(et_model *m, uint64_t seed);

/* The model's space, and the bound architecture (NULL before any bind). */
const et_space *et_model_space(const et_model *m);
const et_arch *et_model_arch(const et_model *m);

/* The logits of the last forward: (B, num_classes), or (B, T, tgt_vocab)
 * for token models (T the batch's target length). */
const float *et_model_logits(const et_model *m);
/* Loss units of the last forward: examples (classifier) or target tokens. */
int64_t et_model_units(const et_model *m);
/* Bytes of the activation arena for the bound arch and batch. */
int64_t et_model_activation_bytes(const et_model *m);

#endif
