/* Host services: everything a plugin may ask of the core, handed to it at
 * create. Plugins never link against libetnas; they call through this struct.
 *
 * Append-only: new members go at the end and never change the meaning of old
 * ones. A plugin that needs a member added after the first release checks
 * `ET_HOST_HAS(host, member)` before calling it. */
#ifndef ETNAS_HOST_H
#define ETNAS_HOST_H

#include <stddef.h>
#include <stdint.h>

#include <etnas/arch.h>
#include <etnas/plugin.h>
#include <etnas/rng.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum et_log_level {
    ET_LOG_LEVEL_ERROR = 0,
    ET_LOG_LEVEL_WARN = 1,
    ET_LOG_LEVEL_INFO = 2,
    ET_LOG_LEVEL_DEBUG = 3
} et_log_level;

/* A parallel loop body: handles indices [begin, end) on worker `worker`. */
typedef void (*et_parallel_fn)(void *arg, int64_t begin, int64_t end, int32_t worker);

typedef struct et_host et_host;
struct et_attn_shape;
struct et_task_info;

/* What an evaluation of one architecture gave. */
typedef struct et_eval_result {
    double metric;      /* the task's metric (accuracy, BLEU, ...) on the split */
    double loss;        /* mean loss per example (per token for sequences) */
    double seconds;     /* wall time of the evaluation (0 when it came from the store) */
    int32_t from_store; /* 1: an earlier identical evaluation was reused */
} et_eval_result;

struct et_host {
    uint32_t abi_version; /* ET_ABI_VERSION of the host */
    uint32_t size;        /* sizeof(et_host) as the host was built */
    void *ctx;            /* the host's own state: pass it back, never touch it */

    /* Seed of this plugin instance's random stream: et_rng_from_seed(seed).
     * Derived from the experiment seed and the plugin's section, so it repeats
     * run to run and differs between sections. */
    uint64_t seed;
    /* Worker threads the experiment allows (>= 1). */
    int32_t threads;

    /* Log a line (no trailing newline needed). */
    void (*log)(void *ctx, int32_t level, const char *fmt, ...) ET_PRINTF(3, 4);
    /* A malloc'd formatted message, for `char **err` out-parameters. */
    char *(*errorf)(const char *fmt, ...) ET_PRINTF(1, 2);
    /* Progress of a long phase: `done` of `total` units (total 0 = unknown). */
    void (*progress)(void *ctx, const char *phase, int64_t done, int64_t total);
    /* Run fn over [0, n) split into at most `threads` contiguous ranges, the
     * same split every run; returns when all ranges are done. */
    void (*parallel_for)(void *ctx, int64_t n, et_parallel_fn fn, void *arg);

    /* The experiment's search space (NULL when the plugin runs outside an
     * experiment) and the arch services over it. */
    const et_space *space;
    /* Canonical text into buf (size n); returns its length or a negative code. */
    int (*arch_format)(const et_space *space, const et_arch *arch, char *buf, size_t n);
    int (*arch_parse)(const et_space *space, const char *text, et_arch *out, char **err);
    uint64_t (*arch_hash)(const et_space *space, const et_arch *arch);
    int (*arch_validate)(const et_space *space, const et_arch *arch, char **err);
    void (*arch_sample)(const et_space *space, et_rng *rng, et_arch *out);
    void (*arch_mutate)(const et_space *space, et_rng *rng, const et_arch *parent, double p,
                        et_arch *out);
    void (*arch_crossover)(const et_space *space, et_rng *rng, const et_arch *a,
                           const et_arch *b, double p, et_arch *out);
    int32_t (*arch_feature_count)(const et_space *space);
    void (*arch_features)(const et_space *space, const et_arch *arch, float *out);

    /* ---- appended with the engine and the runner ---- */

    /* The experiment's task as loaded (NULL outside an experiment): model
     * kind, input geometry, vocabularies, metric and its direction. */
    const struct et_task_info *task;
    /* MACs of one forward of an attention choice for shape s; stack is 0 for
     * encoder self-attention, 1 decoder self-attention, 2 decoder cross. */
    double (*attention_macs)(void *ctx, int32_t stack, int32_t choice,
                             const struct et_attn_shape *s);
    /* Train the shared supernet until it has had `steps` updates in total
     * (a no-op when it already has). */
    int (*train_supernet)(void *ctx, int64_t steps, char **err);
    /* Score archs with inherited supernet weights on the validation split.
     * Results are stored before this returns; an arch scored before under the
     * same conditions is not evaluated again (from_store = 1). */
    int (*evaluate)(void *ctx, const et_arch *archs, int32_t n, et_eval_result *results,
                    char **err);
    /* Train arch from scratch for `steps` updates (0: the [train] steps) and
     * score it on the validation split. */
    int (*train_standalone)(void *ctx, const et_arch *arch, int64_t steps,
                            et_eval_result *result, char **err);
    /* A cost figure of the experiment's proxies ("params_m", "flops_g", ...). */
    int (*cost)(void *ctx, const et_arch *arch, const char *figure, double *value, char **err);
    /* Whether arch satisfies every [constraints] line (*ok = 1 or 0). */
    int (*satisfies)(void *ctx, const et_arch *arch, int32_t *ok, char **err);
    /* Measured forward latency of arch on this host: batch 1 at the task's
     * reference length, `warmup` untimed runs then `runs` timed ones; the
     * fastest and slowest 10 % dropped; mean and standard deviation in ms. */
    int (*measure_latency)(void *ctx, const et_arch *arch, int32_t warmup, int32_t runs,
                           double *mean_ms, double *std_ms, char **err);
    /* Bytes one training step of arch needs at `batch` examples: the bound
     * parameters with their gradients and AdamW moments, and the activation
     * arena (attention workspace included), as the engine sizes them. */
    int (*training_bytes)(void *ctx, const et_arch *arch, int32_t batch, double *bytes,
                          char **err);

    /* ---- appended with the predictors ---- */

    /* Bytes a plugin keeps with the run in the result store (trained
     * predictors, measured samples), so a resumed run finds them instead of
     * redoing the work. Keys are shared by all plugins of the run: start
     * them with the plugin's name. A second put of a key replaces it. */
    int (*blob_put)(void *ctx, const char *key, const void *data, size_t n, char **err);
    /* 1 and a malloc'd copy in *data (the plugin frees it) when the key is
     * there, 0 when it is not, or a negative code. */
    int (*blob_get)(void *ctx, const char *key, void **data, size_t *n, char **err);

    /* ---- appended with differentiable search (soft choices) ---- */

    /* A supernet private to the calling strategy whose layers run soft
     * mixtures (the engine's soft choices): every layer of every stack at
     * the space's maxima mixes its attention-only block, FFN-only block and
     * identity, with weights w; with ops = 1 the attention block also mixes
     * the stack's attention operators. Weight layout, stack by stack
     * (encoder, then decoder), layer by layer: 3 block weights (attention,
     * FFN, identity), then with ops one per attention choice. Created on
     * the first call, trained with the experiment's [train] recipe.
     * soft_weight_count: floats in that layout. */
    int32_t (*soft_weight_count)(void *ctx, int32_t ops);
    /* One step with mixture weights w: update = 1 trains the supernet on
     * the next training batch; update = 0 only measures, on the next
     * validation batch. *loss gets the loss per unit; dw (may be NULL) the
     * gradient of that loss with respect to w. */
    int (*soft_step)(void *ctx, int32_t ops, const float *w, int32_t update, double *loss,
                     float *dw, char **err);
    /* Save the soft supernet with `state` (the strategy's own bytes: logits,
     * their optimizer, ...), and get both back on resume: soft_resume
     * returns 1 with a malloc'd copy of the state saved with the newest
     * checkpoint (and restores the supernet to it), 0 when there is none. */
    int (*soft_checkpoint)(void *ctx, const void *state, size_t n, char **err);
    int (*soft_resume)(void *ctx, int32_t ops, void **state, size_t *n, char **err);
    /* Score a discrete arch with the soft supernet's weights (validation
     * split), stored and remembered as one of the strategy's evaluations. */
    int (*soft_evaluate)(void *ctx, const et_arch *arch, et_eval_result *result, char **err);
    /* The space's largest arch: every numeric gene at its maximum, block
     * and activation at their first listed choice, operators at choice 0
     * (the arch the soft supernet binds). */
    void (*arch_largest)(const et_space *space, et_arch *out);

    /* ---- appended with the zero-cost proxies ---- */

    /* Zero-cost scores of arch from one training batch of up to `batch`
     * examples at initialisation (seeded by `seed`, the same for every arch
     * so scores compare): values[0..4] = grad_norm, snip, synflow,
     * jacob_cov (spec/search.md) and LTS's non-embedding parameters in
     * millions (decoder only when there is a decoder). */
    int (*zerocost)(void *ctx, const et_arch *arch, int32_t batch, uint64_t seed,
                    double *values, char **err);

    /* ---- appended with graph search (OP-NAS) ---- */

    /* Train arch for `steps` updates with the self-attention operators of
     * stack `stack` (0 encoder, 1 decoder) given per layer as operator
     * texts, ops[l] for each layer l < the stack's depth ("opgraph(graph=
     * ...)" or any attention plugin with options; ignored for layers
     * without attention), instead of the space's list; start from `init`
     * (init_n floats: the parameters an earlier call returned, which
     * BIWS-style inheritance passes from parent to child; NULL: a fresh
     * initialisation seeded by the experiment), and score on `split`
     * (ET_SPLIT_VALID or ET_SPLIT_TEST). The result is stored under the arch
     * text with those operators, the steps and a hash of init (an identical
     * call is answered from the store) and remembered as one of the
     * strategy's evaluations; with final_rank >= 0 it is also recorded as
     * the strategy's final result of that rank. *weights (may be NULL) gets
     * a malloc'd copy of the trained parameters (*weights_n floats), kept in
     * the store too, so a resumed run gets them back without training. */
    int (*train_custom)(void *ctx, const et_arch *arch, int32_t stack, const char *const *ops,
                        const float *init, int64_t init_n, int64_t steps, int32_t split,
                        int32_t final_rank, et_eval_result *result, float **weights,
                        int64_t *weights_n, char **err);

    /* ---- appended with RankNAS ---- */

    /* The strategy's own final candidates, best first (e.g. by a ranker):
     * [final] takes its `top` winners from these, in this order, skipping
     * any that break a constraint, instead of the best of the strategy's
     * evaluations. A later call replaces the list. */
    int (*propose)(void *ctx, const et_arch *archs, int32_t n, char **err);

    /* ---- appended with the costs of graph architectures (OP-NAS) ---- */

    /* cost and satisfies for an arch whose stack `stack` runs the
     * self-attention operators ops, as train_custom takes them: the
     * experiment's proxies measure that arch with those operators (their
     * own MAC counts, a model built with them for latency, memory and
     * zero-cost scores), once per run like any arch, and train_custom's
     * stored results carry the same figures. cost_custom gives NAN when no
     * [proxy] gives the figure. Figures a proxy predicts from the arch's
     * features (latency_mlp's latency_pred_ms) cannot see the operators:
     * they are the prediction for the space's choice, and a predictor
     * first trained inside such a call samples the custom space. Use
     * measured figures for graph architectures. */
    int (*cost_custom)(void *ctx, const et_arch *arch, int32_t stack, const char *const *ops,
                       const char *figure, double *value, char **err);
    int (*satisfies_custom)(void *ctx, const et_arch *arch, int32_t stack,
                            const char *const *ops, int32_t *ok, char **err);
};

#define ET_HOST_HAS(host, member) \
    ((host)->size >= offsetof(et_host, member) + sizeof(((et_host *)0)->member))

#ifdef __cplusplus
}
#endif
#endif
