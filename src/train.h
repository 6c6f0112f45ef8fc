/* Training and evaluation loops over a task: weight-sharing supernet
 * training (one sampled subnet per update, or the sandwich rule), evaluation
 * of any arch with inherited weights, and standalone training from scratch. */
#ifndef ETNAS_CORE_TRAIN_H
#define ETNAS_CORE_TRAIN_H

#include <stdint.h>

#include <etnas/etnas.h>

#include "beam.h"
#include "model.h"
#include "optim.h"

typedef enum et_sampling {
    ET_SAMPLING_UNIFORM = 0,  /* one subnet per update, each gene uniform (HAT) */
    ET_SAMPLING_SANDWICH = 1  /* largest + smallest + one random per update */
} et_sampling;

typedef struct et_train_config {
    int64_t steps;          /* updates (for et_trainer_run's schedule) */
    int32_t batch_size;
    int32_t grad_accum;     /* micro-batches per update */
    int32_t eval_batch_size;
    int32_t sampling;       /* et_sampling */
    uint64_t seed;          /* subnet sampling, shuffling, dropout */
    et_optim_config optim;
    /* token tasks scored by decoding (BLEU): beam, lenpen, max_len_a and
     * max_len_b are used; the rest comes from the task and the model */
    et_beam_config decode;
} et_train_config;

typedef struct et_trainer {
    et_train_config cfg;
    et_model *model;
    et_optim optim;
    const et_task_vtable *task;
    void *task_state;
    et_task_info info;
    et_rng rng;             /* subnet sampling stream */
    int64_t step;           /* updates done */
    int64_t epoch, batch;   /* position in the training data */
    int32_t *union_rows, *union_cols; /* slices touched in the current update */
    et_beam beam;           /* decoding scratch */
    int32_t *hyp, *hyp_len; /* decoded tokens of a batch */
    int64_t hyp_cap;
    int64_t repeaters;      /* hypotheses of the current evaluation with a repeat run */
    double repeat_share;    /* after et_trainer_evaluate with decoding: share of the
                             * hypotheses with one token ET_REPEAT_RUN or more times
                             * in a row ("repeater" output); NAN without decoding */
} et_trainer;

/* Run length that makes a decoded hypothesis a "repeater". */
#define ET_REPEAT_RUN 4

/* Longest run of one token repeated back to back in tok[0..n). */
int32_t et_longest_run(const int32_t *tok, int32_t n);

/* The model is owned by the caller and must fit the task (input_dim,
 * max_len, num_classes, max_batch >= both batch sizes). */
int et_trainer_create(et_trainer *t, const et_train_config *cfg, et_model *model,
                      const et_task_vtable *task, void *task_state, const et_task_info *info,
                      char **err);
void et_trainer_destroy(et_trainer *t);

/* `updates` more optimizer updates. With fixed != NULL every update trains
 * that arch (standalone training); otherwise subnets are sampled from the
 * space by cfg.sampling. *mean_loss (may be NULL) gets the mean training
 * loss per example over these updates. */
int et_trainer_run(et_trainer *t, int64_t updates, const et_arch *fixed, double *mean_loss,
                   char **err);

/* Put the trainer where it was after `step` updates (resume): the data
 * position follows from the step; the sampling stream must be restored
 * separately (it is saved in checkpoints). */
void et_trainer_seek(et_trainer *t, int64_t step);

/* Metric and mean loss of arch on a split with the current (inherited)
 * weights, dropout off: accuracy and loss per example for classifiers;
 * for token tasks the loss per target token, and BLEU of the decoded split
 * (cfg.decode) when the task's metric is "bleu", else token accuracy. */
int et_trainer_evaluate(et_trainer *t, const et_arch *arch, int32_t split, double *metric,
                        double *loss, char **err);

#endif
