/* What the params and flops proxies share: the geometry of a bound
 * architecture (widths of every layer part, read through the space's heads
 * rule), the options both declare, and the checks of the task against the
 * space. Compiled into each of the two plugins; nothing here is exported. */
#ifndef ETNAS_PROXIES_GEOMETRY_H
#define ETNAS_PROXIES_GEOMETRY_H

#include <stdint.h>

#include <etnas/arch.h>
#include <etnas/host.h>
#include <etnas/plugin.h>
#include <etnas/task.h>

typedef enum geom_convention {
    GEOM_CONVENTION_ETNAS = 0,
    GEOM_CONVENTION_HAT = 1
} geom_convention;

/* The `pooling` option: the space's own pooling, or an override. */
typedef enum geom_pooling {
    GEOM_POOLING_SPACE = 0,
    GEOM_POOLING_CLS = 1,
    GEOM_POOLING_MEAN = 2
} geom_pooling;

#define GEOM_OPTION_CONVENTION                                                              \
    {"convention", ET_OPTION_TYPE_CHOICE, "etnas", 0, -1, "etnas|hat",                      \
     "etnas: everything the model has or computes (spec/costs.md 1); hat: the HAT / "       \
     "torchprofile count without embeddings and output projection (spec/costs.md 2)"}
#define GEOM_OPTION_POOLING                                                                 \
    {"pooling", ET_OPTION_TYPE_CHOICE, "space", 0, -1, "space|cls|mean",                    \
     "encoder classifiers: the space's pooling, or a class token (one more position) or "   \
     "mean pooling instead"}

/* Which stack an attention reads from and which host stack index it has. */
enum { GEOM_STACK_ENC = 0, GEOM_STACK_DEC = 1, GEOM_STACK_CROSS = 2 };

/* One active layer, resolved. Widths: q = q/k/v width of the self-attention
 * (d = q / heads per head), qx and dx the same for the cross-attention. */
typedef struct geom_layer {
    int attn, ffn, cross; /* which parts the block has (cross: seq2seq decoders) */
    int conv;             /* a conv block's convolution part (then the FFN) */
    int64_t kernel;       /* its kernel size */
    int64_t heads, q, d, choice;
    int64_t xheads, qx, dx, xchoice, connect;
    int64_t ffn_dim;
} geom_layer;

/* Layer l of stack (GEOM_STACK_ENC or GEOM_STACK_DEC) of arch. A decoder's
 * attention-only block keeps both its attentions, ffn-only keeps neither. */
void geom_layer_get(const et_space *space, const et_arch *arch, int stack, int32_t l,
                    geom_layer *out);

/* The host's task, NULL when there is none or the host predates it. */
const et_task_info *geom_task(const et_host *host);

/* Whether an encoder classifier reads a class token under the option. */
int geom_has_cls(const et_space *space, int64_t pooling_option);

/* Whether the encoder's inputs are token ids (an embedding table, scaled by
 * sqrt(E) like every token embedding here) rather than vectors (a linear
 * patch embedding). A missing task means vectors, the engine's classifiers. */
int geom_encoder_tokens(const et_space *space, const et_task_info *task);

/* Checks at create: a space, and options that fit its kind. `who` prefixes
 * messages. */
int geom_check_space(const et_host *host, const char *who, int64_t pooling_option,
                     char **err);

/* Checks at measure: the host's task exists, has the space's model kind and
 * the sizes that kind needs. `why` says what the task is needed for. */
int geom_check_task(const et_host *host, const char *who, const char *why, char **err);

/* The arch is a point of the host's space (validated when the host can). */
int geom_check_arch(const et_host *host, const char *who, const et_arch *arch, char **err);

#endif
