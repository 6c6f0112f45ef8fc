/* Search spaces (sets of architectures) and architectures (points of a space).
 *
 * An et_arch holds gene values: numeric genes (embedding dim, layer count,
 * FFN dim, heads, En-De Connect) as their values, categorical genes as enum
 * values (block type, activation) or as an index into the space's list
 * (attention operators). Layers past a stack's depth are inactive: they keep
 * genes (HAT pads them so that mutation and crossover act on fixed-length
 * genomes) but take no part in the canonical text, the hash or the model. */
#ifndef ETNAS_ARCH_H
#define ETNAS_ARCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ET_MAX_LAYERS 32
#define ET_MAX_CHOICES 32
#define ET_MAX_CHOICE_TEXT 256

typedef enum et_model_kind {
    ET_MODEL_KIND_ENCODER = 1, /* encoder only (classifier) */
    ET_MODEL_KIND_SEQ2SEQ = 2, /* encoder-decoder */
    ET_MODEL_KIND_DECODER = 3  /* decoder only (language model) */
} et_model_kind;

typedef enum et_block {
    ET_BLOCK_STANDARD = 0,       /* attention then FFN */
    ET_BLOCK_ATTENTION_ONLY = 1,
    ET_BLOCK_FFN_ONLY = 2,
    ET_BLOCK_IDENTITY = 3,
    ET_BLOCK_CONV = 4            /* light convolution (GLU, depthwise along time) then FFN */
} et_block;

typedef enum et_activation {
    ET_ACTIVATION_RELU = 0,
    ET_ACTIVATION_GELU = 1,
    ET_ACTIVATION_SQUARED_RELU = 2,
    ET_ACTIVATION_GELU_ERF = 3   /* exact GELU, x * Phi(x) (PyTorch's nn.GELU default) */
} et_activation;

typedef enum et_norm {
    ET_NORM_PRE = 0,
    ET_NORM_POST = 1
} et_norm;

/* How heads map to projection widths (spec/search.md). */
/* How an encoder classifier reads its final states (fixed per space). */
typedef enum et_pooling {
    ET_POOLING_CLS = 0,  /* a learned class token at position 0 */
    ET_POOLING_MEAN = 1  /* mean over the input positions */
} et_pooling;

typedef enum et_heads_rule {
    ET_HEADS_RULE_HEAD_DIM = 0, /* head dim fixed; q/k/v width = head_dim * heads */
    ET_HEADS_RULE_QKV_DIM = 1   /* q/k/v width fixed; head dim = qkv_dim / heads */
} et_heads_rule;

typedef struct et_int_choices {
    int32_t n;
    int32_t v[ET_MAX_CHOICES];
} et_int_choices;

/* Attention choices: "name" or "name(key=value,...)", whitespace removed. */
typedef struct et_text_choices {
    int32_t n;
    char v[ET_MAX_CHOICES][ET_MAX_CHOICE_TEXT];
} et_text_choices;

typedef struct et_stack_space {
    int32_t present;
    et_int_choices embed_dim;
    et_int_choices layers;
    et_int_choices ffn_dim;
    et_int_choices heads;
    et_text_choices attention;
    et_int_choices block;      /* et_block values */
    et_int_choices activation; /* et_activation values */
    /* decoder stacks of seq2seq models only */
    et_int_choices cross_heads;
    et_text_choices cross_attention;
    et_int_choices connect;    /* attend to the last 1..3 encoder layers */
    et_int_choices conv_kernel; /* kernel sizes of conv blocks (odd) */
} et_stack_space;

typedef struct et_space {
    int32_t kind;       /* et_model_kind */
    int32_t heads_rule; /* et_heads_rule */
    int32_t head_dim;   /* with ET_HEADS_RULE_HEAD_DIM */
    int32_t qkv_dim;    /* with ET_HEADS_RULE_QKV_DIM */
    int32_t norm;       /* et_norm */
    int32_t pooling;    /* et_pooling, encoder classifiers */
    et_stack_space enc, dec;
    int32_t positions;        /* token models: 0 sinusoidal, 1 learned */
    int32_t share_embeddings; /* seq2seq: one source/target token table */
    int32_t primer_dconv;     /* Primer's depthwise convolution (width 3) after Q, K, V */
} et_space;

typedef struct et_layer_arch {
    int32_t ffn_dim;
    int32_t heads;
    int32_t attention;       /* index into the stack's attention choices */
    int32_t block;           /* et_block */
    int32_t activation;      /* et_activation */
    int32_t cross_heads;     /* seq2seq decoder layers only, else 0 */
    int32_t cross_attention; /* index, seq2seq decoder layers only */
    int32_t connect;         /* seq2seq decoder layers only, else 0 */
    int32_t conv_kernel;     /* kernel size when block = conv, else 0 */
} et_layer_arch;

typedef struct et_stack_arch {
    int32_t embed_dim;
    int32_t layers;
    et_layer_arch layer[ET_MAX_LAYERS];
} et_stack_arch;

typedef struct et_arch {
    et_stack_arch enc, dec;
} et_arch;

#ifdef __cplusplus
}
#endif
#endif
