/* The supernet's internals, shared by model.c (create, bind, forward,
 * backward) and model_decode.c (incremental decoding). Nothing outside
 * those two files includes this. */
#ifndef ETNAS_CORE_MODEL_IMPL_H
#define ETNAS_CORE_MODEL_IMPL_H

#include <stdint.h>

#include "model.h"

/* Per-layer tensors. Encoder layers have the first P_SELF_COUNT; decoder
 * layers of seq2seq models add the cross-attention part. */
enum {
    P_LN1_G, P_LN1_B, P_QKV_W, P_QKV_B, P_PROJ_W, P_PROJ_B, P_LN2_G, P_LN2_B,
    P_FC1_W, P_FC1_B, P_FC2_W, P_FC2_B,
    P_LNC_G, P_LNC_B, P_CQ_W, P_CQ_B, P_CKV_W, P_CKV_B, P_CPROJ_W, P_CPROJ_B,
    P_DCONV_W, /* Primer's depthwise convolution after Q, K, V (3 taps, 3Q channels) */
    /* conv blocks: LN, GLU input projection (2E x E), depthwise kernel (Kmax x E), output */
    P_LNV_G, P_LNV_B, P_CIN_W, P_CIN_B, P_CDW_W, P_COUT_W, P_COUT_B,
    P_PER_LAYER
};
#define P_SELF_COUNT P_LNC_G

/* The residual parts of a layer, in order of computation. */
enum { PART_ATTN = 0, PART_CROSS = 1, PART_CONV = 2, PART_FFN = 3, PARTS = 4 };

typedef struct part_act {
    float *in, *out;    /* (N,e) streams */
    float *s;           /* post-norm: in + drop(sub) before the LN (N,e) */
    float *z;           /* pre-norm: LN(in), the sub-layer input (N,e) */
    float *mean, *rstd; /* (N) */
} part_act;

typedef struct layer_act {
    part_act part[PARTS]; /* out == NULL: the part is absent */
    float *qkv;           /* (N,3q) */
    float *qkv_pre;       /* (N,3q) before Primer's convolution (NULL without it) */
    float *att;           /* (N,q) */
    float *saved;         /* the self-attention operator's saved state */
    float *cq, *catt;     /* (N,qc) cross queries and outputs */
    float *ckv;           /* (B*Sk,2qc) cross keys and values */
    float *csaved;
    float *h, *g;         /* (N,f) FFN pre- and post-activation */
    float *cin;           /* (N,2e) conv block: GLU input */
    float *cglu, *cconv;  /* (N,e) GLU output, depthwise convolution output */
    /* soft layers */
    float *soft_out;                     /* (N,e) the mixture */
    float *att_op[ET_MAX_CHOICES];       /* (N,q) each operator's output */
    part_act std_ffn;                    /* the `standard` candidate: FFN after A */
    float *std_h, *std_g;                /* (N,f) its activations */
    float *saved_op[ET_MAX_CHOICES];
} layer_act;

/* One stack of layers: the encoder (id 0) or the decoder (id 1). */
typedef struct et_stack {
    int32_t id, present;
    int32_t E, Q, QC, F, L; /* maxima: embed, q width, cross q width, FFN, layers */
    int32_t n_attn, n_cross, n_inst; /* choices; n_inst = n_attn + n_cross per layer */
    const et_attn_impl *impl, *cross_impl;
    et_host *hosts;
    void **states; /* (L, n_inst): self-attention choices, then cross */
    int32_t t_layer[ET_MAX_LAYERS][P_PER_LAYER];
    int32_t t_tok, t_pos, t_lnf_g, t_lnf_b; /* -1 when absent */
    int32_t pos_rows;                       /* rows of the learned position table */
    /* bound */
    const et_stack_arch *arch;
    int32_t T_cap, T; /* positions bound, and of the current batch */
    layer_act la[ET_MAX_LAYERS];
    float *x0;        /* (N,e) embedded input */
    float *fz, *fmean, *frstd; /* final norm of the decoder */
    float *out;       /* the stream leaving the last layer (current batch) */
    float *lout[ET_MAX_LAYERS]; /* each layer's output stream (current batch) */
    const int32_t *key_len;
    /* soft choices (model.h): block weights (attention, FFN, identity) and
     * operator weights per layer, and their gradients */
    int soft, soft_ops, soft_std;
    /* (attention, FFN, identity, standard); standard only with soft_std */
    float soft_w[ET_MAX_LAYERS][4], soft_g[ET_MAX_LAYERS][4];
    float op_w[ET_MAX_LAYERS][ET_MAX_CHOICES], op_g[ET_MAX_LAYERS][ET_MAX_CHOICES];
} et_stack;

/* What incremental decoding keeps (model_decode.c). */
typedef struct et_decode {
    int active;
    int32_t B, beams, rows, max_len, S; /* examples, beams, B*beams, steps, source length */
    float *arena;
    int64_t cap;
    float *x, *sub, *lnz, *mean, *rstd, *qkv, *att, *cq, *catt, *h, *g, *logits, *pos, *work;
    float *csaved;
    float *ckv[ET_MAX_LAYERS];    /* (B,Sk,2qc) per decoder layer */
    float *dstate[ET_MAX_LAYERS]; /* rows blocks of dstate_floats[l] */
    float *spare[ET_MAX_LAYERS];  /* the same, for reorder */
    int64_t dstate_floats[ET_MAX_LAYERS];
    float *dconv[ET_MAX_LAYERS], *dconv_spare[ET_MAX_LAYERS]; /* (rows, 2, 3q) past inputs */
    float *cstate[ET_MAX_LAYERS], *cstate_spare[ET_MAX_LAYERS]; /* conv blocks: (rows, k-1, e) */
    float *cin, *cglu, *cconv;
    float *qkv_pre;
    int32_t *cross_len;           /* (3, rows) key lengths per connect */
    int32_t cross_rows;           /* rows cross_len has room for */
} et_decode;

struct et_model {
    et_space space;
    et_model_config cfg;
    et_host host;
    int32_t kind, C, in_dim, V_src, V_tgt;
    et_stack st[2];
    et_tensor *tensors;
    char (*names)[48];
    int32_t n_tensors, cap_tensors;
    float *arena; /* params then grads */
    int64_t n_params;
    int32_t t_patch_w, t_patch_b, t_cls, t_head_w, t_head_b;

    /* bound */
    int bound;
    et_arch arch;
    int32_t B;
    float *act;
    int64_t act_cap, act_need;
    float *emb, *pooled, *logits, *dlogits, *dpool;
    int32_t n_conn;                /* encoder segments the decoder reads (0..3) */
    int has_conv;                  /* some bound layer is a conv block */
    int32_t conn_used[4];          /* conn_used[k]: some layer has connect k */
    float *seg[3], *segmean[3], *segrstd[3]; /* (B*S,Ee) segment j+1 (normed) */
    float *mem[4], *dmem[4];       /* (B,k*S,Ee) for connect k */
    float *dseg[3];
    float *dx, *dsub, *dqkv, *datt, *dh, *dg, *dcq, *dckv, *dcatt, *work;
    float *dsoft_g, *dsoft_acc, *dqkv_op, *datt_op; /* soft layers' scratch */
    float *dqkv_pre; /* Primer's convolution: gradient of its input */
    float *dcin, *dcglu, *dcconv; /* conv blocks' scratch */
    int want_input_grad;
    float *dinput; /* gradient of the inputs (zero-cost proxies) */
    int64_t dinput_per_example;
    int64_t work_floats;
    int32_t *ibuf; /* targets (B*Tdec), key lengths */
    int32_t *targets, *key_len_buf, *mem_len[4];
    int64_t ibuf_cap;

    /* the last forward, for backward */
    int32_t b_now;
    const float *src;
    const int32_t *labels, *src_tok, *tgt_in, *src_lens, *key_len;
    int64_t units;
    int training;
    uint64_t seed;
    int64_t step;

    et_decode dec;
};

/* Shared by model.c and model_decode.c. */
int32_t et_model_q_width(const et_space *s, int32_t heads);
void *et_model_attn_state(const et_model *m, const et_stack *s, int32_t l, int cross);
const et_attention_vtable *et_model_attn_vt(const et_model *m, const et_stack *s, int32_t l,
                                            int cross);
float *et_model_param(const et_model *m, int32_t t);
/* Fairseq-style sinusoidal position row t of width e into out. */
void et_model_sinusoid(float *out, int64_t t, int32_t e);
/* Encoder forward on the batch and the decoder's memory built from it. */
int et_model_encode(et_model *m, const et_batch *b, char **err);
float et_model_embed_scale(const et_model *m, int32_t e);

#endif
