/* AdamW over the bound slices of a model's parameters, learning-rate
 * schedules, and clipping by global gradient norm. */
#ifndef ETNAS_CORE_OPTIM_H
#define ETNAS_CORE_OPTIM_H

#include <stdint.h>

#include "model.h"

typedef enum et_schedule {
    ET_SCHEDULE_COSINE = 0,       /* linear warm-up, then cosine to min_lr */
    ET_SCHEDULE_INVERSE_SQRT = 1, /* linear warm-up, then lr * sqrt(warmup / step) */
    ET_SCHEDULE_CONSTANT = 2,     /* linear warm-up, then lr */
    ET_SCHEDULE_ONECYCLE = 3      /* one cycle (Smith): cosine from lr / div up to lr
                                   * over the warm-up, cosine down to lr / div /
                                   * final_div; beta1 falls to beta1_min at the peak
                                   * and rises back (torch's OneCycleLR) */
} et_schedule;

typedef struct et_optim_config {
    double lr, min_lr;
    int64_t warmup_steps, total_steps;
    int32_t schedule; /* et_schedule */
    double beta1, beta2, eps, weight_decay;
    double clip_norm; /* 0 = no clipping */
    double div, final_div, beta1_min; /* ET_SCHEDULE_ONECYCLE only */
    int32_t decay_all; /* weight decay on every tensor, not only those with decay = 1 */
} et_optim_config;

typedef struct et_optim {
    et_optim_config cfg;
    float *m, *v;      /* first and second moments, one per parameter */
    int64_t n;
    int64_t *t;        /* per-parameter update count (slices update at different times) */
    int64_t step;      /* updates done */
} et_optim;

int et_optim_create(et_optim *o, const et_optim_config *cfg, int64_t n_params, char **err);
void et_optim_destroy(et_optim *o);

/* Learning rate of update `step` (0-based). */
double et_optim_lr(const et_optim_config *cfg, int64_t step);

/* AdamW beta1 of update `step`: cfg->beta1, except under the one-cycle
 * schedule, which moves it opposite to the learning rate. */
double et_optim_beta1(const et_optim_config *cfg, int64_t step);

/* Global L2 norm of the gradients of the bound slices. */
double et_optim_grad_norm(et_model *m);

/* One AdamW update of the bound slices (decoupled weight decay on tensors
 * with decay = 1), after clipping; returns the gradient norm before
 * clipping. Bias correction counts each parameter's own updates, since a
 * weight-sharing supernet updates different slices at different steps. */
double et_optim_step(et_optim *o, et_model *m);

/* The same over explicit slices: rows[i] x cols[i] of tensor i (the union
 * of the subnets that contributed gradients to this update). */
double et_optim_step_slices(et_optim *o, et_model *m, const int32_t *rows, const int32_t *cols);

#endif
