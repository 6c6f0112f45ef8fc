/* Geometry and checks shared by the params and flops proxies (geometry.h). */
#include "geometry.h"

#include <stdlib.h>
#include <string.h>

static const char *kind_name(int32_t kind)
{
    switch (kind) {
    case ET_MODEL_KIND_ENCODER: return "an encoder classifier";
    case ET_MODEL_KIND_SEQ2SEQ: return "an encoder-decoder (seq2seq)";
    case ET_MODEL_KIND_DECODER: return "a decoder-only";
    default: return "an unknown";
    }
}

static int64_t q_width(const et_space *space, int64_t heads)
{
    return space->heads_rule == ET_HEADS_RULE_QKV_DIM ? space->qkv_dim
                                                      : (int64_t)space->head_dim * heads;
}

void geom_layer_get(const et_space *space, const et_arch *arch, int stack, int32_t l,
                    geom_layer *out)
{
    const et_layer_arch *g = stack == GEOM_STACK_ENC ? &arch->enc.layer[l] : &arch->dec.layer[l];
    memset(out, 0, sizeof *out);
    out->attn = g->block == ET_BLOCK_STANDARD || g->block == ET_BLOCK_ATTENTION_ONLY;
    out->ffn = g->block == ET_BLOCK_STANDARD || g->block == ET_BLOCK_FFN_ONLY ||
               g->block == ET_BLOCK_CONV;
    out->conv = g->block == ET_BLOCK_CONV;
    out->kernel = out->conv ? g->conv_kernel : 0;
    out->cross = out->attn && stack == GEOM_STACK_DEC && space->kind == ET_MODEL_KIND_SEQ2SEQ;
    out->heads = g->heads;
    out->q = q_width(space, g->heads);
    out->d = out->q / g->heads;
    out->choice = g->attention;
    if (out->cross) {
        out->xheads = g->cross_heads;
        out->qx = q_width(space, g->cross_heads);
        out->dx = out->qx / g->cross_heads;
        out->xchoice = g->cross_attention;
        out->connect = g->connect;
    }
    out->ffn_dim = g->ffn_dim;
}

const et_task_info *geom_task(const et_host *host)
{
    return ET_HOST_HAS(host, task) ? host->task : NULL;
}

int geom_has_cls(const et_space *space, int64_t pooling_option)
{
    if (space->kind != ET_MODEL_KIND_ENCODER)
        return 0;
    if (pooling_option == GEOM_POOLING_SPACE)
        return space->pooling == ET_POOLING_CLS;
    return pooling_option == GEOM_POOLING_CLS;
}

int geom_encoder_tokens(const et_space *space, const et_task_info *task)
{
    if (space->kind != ET_MODEL_KIND_ENCODER)
        return 1;
    return task && task->input_dim == 0 && task->src_vocab > 0;
}

int geom_check_space(const et_host *host, const char *who, int64_t pooling_option, char **err)
{
    if (!host->space) {
        *err = host->errorf("%s: no search space to measure (host->space is NULL); run the proxy "
                            "inside an experiment with a [space] section",
                            who);
        return ET_STATUS_ERR_USAGE;
    }
    if (pooling_option != GEOM_POOLING_SPACE && host->space->kind != ET_MODEL_KIND_ENCODER) {
        *err = host->errorf("%s: pooling applies to encoder classifiers, and the space is %s "
                            "model; remove the pooling key",
                            who, kind_name(host->space->kind));
        return ET_STATUS_ERR_USAGE;
    }
    return 0;
}

int geom_check_task(const et_host *host, const char *who, const char *why, char **err)
{
    const et_task_info *t = geom_task(host);
    const et_space *s = host->space;
    if (!t) {
        *err = host->errorf("%s: needs the experiment's task for %s (host->task is NULL); run it "
                            "inside an experiment, or use convention = hat",
                            who, why);
        return ET_STATUS_ERR_USAGE;
    }
    if (t->model_kind != s->kind) {
        *err = host->errorf("%s: the task needs %s model but the space describes %s model", who,
                            kind_name(t->model_kind), kind_name(s->kind));
        return ET_STATUS_ERR_USAGE;
    }
    const char *missing = NULL;
    switch (s->kind) {
    case ET_MODEL_KIND_ENCODER:
        if (t->num_classes < 1)
            missing = "num_classes >= 1";
        else if (t->input_dim < 1 && t->src_vocab < 1)
            missing = "input_dim or src_vocab >= 1";
        else if (t->max_src_len < 1)
            missing = "max_src_len >= 1";
        break;
    case ET_MODEL_KIND_SEQ2SEQ:
        if (t->src_vocab < 1 || t->tgt_vocab < 1)
            missing = "src_vocab and tgt_vocab >= 1";
        else if (t->max_src_len < 1 || t->max_tgt_len < 1)
            missing = "max_src_len and max_tgt_len >= 1";
        break;
    default:
        if (t->src_vocab < 1 && t->tgt_vocab < 1)
            missing = "src_vocab or tgt_vocab >= 1";
        else if (t->max_src_len < 1)
            missing = "max_src_len >= 1";
        break;
    }
    if (missing) {
        *err = host->errorf("%s: the task describes %s model without %s", who, kind_name(s->kind),
                            missing);
        return ET_STATUS_ERR_USAGE;
    }
    return 0;
}

int geom_check_arch(const et_host *host, const char *who, const et_arch *arch, char **err)
{
    if (!host->arch_validate)
        return 0;
    char *verr = NULL;
    int rc = host->arch_validate(host->space, arch, &verr);
    if (rc) {
        *err = host->errorf("%s: %s", who, verr ? verr : "the architecture is not in the space");
        free(verr);
    }
    return rc;
}
