/* Training and evaluation loops over a task (train.h). */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bleu.h"
#include "space.h"
#include "util.h"

int et_trainer_create(et_trainer *t, const et_train_config *cfg, et_model *model,
                      const et_task_vtable *task, void *task_state, const et_task_info *info,
                      char **err)
{
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->model = model;
    t->task = task;
    t->task_state = task_state;
    t->info = *info;
    t->repeat_share = NAN;
    t->rng = et_rng_from_seed(cfg->seed);
    if (cfg->batch_size < 1 || cfg->eval_batch_size < 1 || cfg->grad_accum < 1)
        return et_fail(err, ET_STATUS_ERR_USAGE, "train: batch sizes and grad_accum must be >= 1");
    int64_t n;
    et_model_params(model, &n);
    int32_t nt;
    et_model_tensors(model, &nt);
    t->union_rows = calloc((size_t)nt, sizeof *t->union_rows);
    t->union_cols = calloc((size_t)nt, sizeof *t->union_cols);
    if (!t->union_rows || !t->union_cols) {
        et_trainer_destroy(t);
        return et_fail(err, ET_STATUS_ERR_NOMEM, "train: out of memory");
    }
    return et_optim_create(&t->optim, &cfg->optim, n, err);
}

void et_trainer_destroy(et_trainer *t)
{
    et_optim_destroy(&t->optim);
    et_beam_free(&t->beam);
    free(t->hyp);
    free(t->hyp_len);
    t->hyp = t->hyp_len = NULL;
    free(t->union_rows);
    free(t->union_cols);
    t->union_rows = t->union_cols = NULL;
}

/* The next training batch, moving to the next epoch when one ends. */
static int next_batch(et_trainer *t, et_batch *b, char **err)
{
    int64_t count = t->task->batch_count(t->task_state, ET_SPLIT_TRAIN, t->cfg.batch_size);
    if (count < 1)
        return et_fail(err, ET_STATUS_ERR_USAGE, "train: the task has no training batches");
    if (t->batch >= count) {
        t->epoch++;
        t->batch = 0;
    }
    char *terr = NULL;
    int rc = t->task->batch(t->task_state, ET_SPLIT_TRAIN, t->epoch, t->cfg.batch_size, t->batch,
                            b, &terr);
    t->batch++;
    if (rc) {
        et_fail(err, rc, "train: %s", terr ? terr : "the task failed to give a batch");
        free(terr);
    }
    return rc;
}

static void widen_union(et_trainer *t)
{
    int32_t nt;
    const et_tensor *x = et_model_tensors(t->model, &nt);
    for (int32_t i = 0; i < nt; i++) {
        if (x[i].bound_rows > t->union_rows[i])
            t->union_rows[i] = x[i].bound_rows;
        if (x[i].bound_cols > t->union_cols[i])
            t->union_cols[i] = x[i].bound_cols;
    }
}

/* One forward/backward of arch on the next micro-batches; gradients add up. */
static int accumulate(et_trainer *t, const et_arch *arch, float scale, double *loss_sum,
                      int64_t *examples, char **err)
{
    int rc = et_model_bind(t->model, arch, t->cfg.batch_size, t->info.max_src_len, err);
    if (rc)
        return rc;
    widen_union(t);
    for (int32_t k = 0; k < t->cfg.grad_accum; k++) {
        et_batch b;
        if ((rc = next_batch(t, &b, err)))
            return rc;
        double loss;
        rc = et_model_forward(t->model, &b, 1, t->cfg.seed, t->step * t->cfg.grad_accum + k,
                              &loss, NULL, err);
        if (rc)
            return rc;
        int64_t units = et_model_units(t->model);
        if (units < 1)
            continue; /* a batch without targets (all padding) */
        if ((rc = et_model_backward(t->model, scale / (float)units, err)))
            return rc;
        *loss_sum += loss;
        *examples += units;
    }
    return 0;
}

int et_trainer_run(et_trainer *t, int64_t updates, const et_arch *fixed, double *mean_loss,
                   char **err)
{
    const et_space *s = et_model_space(t->model);
    double loss_sum = 0;
    int64_t examples = 0;
    int32_t nt;
    const et_tensor *x = et_model_tensors(t->model, &nt);
    float *g = et_model_grads(t->model, NULL);
    for (int64_t u = 0; u < updates; u++) {
        et_arch members[3];
        int n = 1;
        if (fixed) {
            members[0] = *fixed;
        } else if (t->cfg.sampling == ET_SAMPLING_SANDWICH) {
            et_arch_smallest(s, &members[0]);
            et_arch_sample(s, &t->rng, &members[1]);
            et_arch_largest(s, &members[2]);
            n = 3;
        } else {
            et_arch_sample(s, &t->rng, &members[0]);
        }
        memset(t->union_rows, 0, sizeof *t->union_rows * (size_t)nt);
        memset(t->union_cols, 0, sizeof *t->union_cols * (size_t)nt);
        float scale = 1.0f / (float)(t->cfg.grad_accum * n);
        for (int k = 0; k < n; k++) {
            int rc = accumulate(t, &members[k], scale, &loss_sum, &examples, err);
            if (rc)
                return rc;
        }
        et_optim_step_slices(&t->optim, t->model, t->union_rows, t->union_cols);
        for (int32_t i = 0; i < nt; i++)
            for (int32_t r = 0; r < t->union_rows[i]; r++)
                memset(g + x[i].offset + (int64_t)r * x[i].cols, 0,
                       sizeof(float) * (size_t)t->union_cols[i]);
        t->step++;
    }
    if (mean_loss)
        *mean_loss = examples ? loss_sum / (double)examples : 0.0;
    return 0;
}

void et_trainer_seek(et_trainer *t, int64_t step)
{
    int64_t members = t->cfg.sampling == ET_SAMPLING_SANDWICH ? 3 : 1;
    int64_t consumed = step * members * t->cfg.grad_accum;
    int64_t count = t->task->batch_count(t->task_state, ET_SPLIT_TRAIN, t->cfg.batch_size);
    t->step = step;
    t->epoch = count > 0 ? consumed / count : 0;
    t->batch = count > 0 ? consumed % count : 0;
}

int32_t et_longest_run(const int32_t *tok, int32_t n)
{
    int32_t best = n > 0, run = n > 0;
    for (int32_t i = 1; i < n; i++) {
        run = tok[i] == tok[i - 1] ? run + 1 : 1;
        best = run > best ? run : best;
    }
    return best;
}

/* Decode a batch and append hypotheses and references for BLEU. */
static int decode_batch(et_trainer *t, const et_batch *b, int32_t split, char **hyps,
                        const char **refs, int64_t at, char **err)
{
    const et_task_vtable *task = t->task;
    int32_t stride = t->info.max_tgt_len + 1;
    int64_t need = (int64_t)b->size * stride;
    if (need > t->hyp_cap) {
        free(t->hyp);
        free(t->hyp_len);
        t->hyp = malloc(sizeof *t->hyp * (size_t)need);
        t->hyp_len = malloc(sizeof *t->hyp_len * (size_t)b->size * stride);
        if (!t->hyp || !t->hyp_len) {
            t->hyp_cap = 0;
            return et_fail(err, ET_STATUS_ERR_NOMEM, "evaluate: out of memory");
        }
        t->hyp_cap = need;
    }
    et_beam_config bc = t->cfg.decode;
    bc.bos = t->info.bos;
    bc.eos = t->info.eos;
    bc.vocab = t->info.tgt_vocab;
    bc.max_len = stride;
    int rc = et_beam_search(&t->beam, t->model, b, &bc, t->hyp, stride, t->hyp_len, err);
    if (rc)
        return rc;
    for (int32_t i = 0; i < b->size; i++) {
        size_t cap = 0;
        char *text = NULL;
        if (et_longest_run(t->hyp + (int64_t)i * stride, t->hyp_len[i]) >= ET_REPEAT_RUN)
            t->repeaters++;
        int64_t n = task->detokenize(t->task_state, t->hyp + (int64_t)i * stride, t->hyp_len[i],
                                     &text, &cap);
        if (n < 0) {
            free(text);
            return et_fail(err, (int)n, "evaluate: the task could not detokenise a hypothesis");
        }
        if (!text && !(text = calloc(1, 1)))
            return et_fail(err, ET_STATUS_ERR_NOMEM, "evaluate: out of memory");
        hyps[at + i] = text;
        refs[at + i] = b->examples ? task->reference(t->task_state, split, b->examples[i]) : NULL;
        if (!refs[at + i])
            return et_fail(err, ET_STATUS_ERR_USAGE,
                           "evaluate: the task gave no reference for an example of the split");
    }
    return 0;
}

int et_trainer_evaluate(et_trainer *t, const et_arch *arch, int32_t split, double *metric,
                        double *loss, char **err)
{
    int32_t bs = t->cfg.eval_batch_size;
    t->repeaters = 0;
    t->repeat_share = NAN;
    int rc = et_model_bind(t->model, arch, bs, t->info.max_src_len, err);
    if (rc)
        return rc;
    int64_t count = t->task->batch_count(t->task_state, split, bs);
    int bleu = t->info.metric && !strcmp(t->info.metric, "bleu") && t->task->detokenize &&
               t->task->reference;
    int64_t n_ex = t->info.split_size[split];
    char **hyps = NULL;
    const char **refs = NULL;
    if (bleu) {
        hyps = calloc((size_t)(n_ex > 0 ? n_ex : 1), sizeof *hyps);
        refs = calloc((size_t)(n_ex > 0 ? n_ex : 1), sizeof *refs);
        if (!hyps || !refs) {
            free(hyps);
            free(refs);
            return et_fail(err, ET_STATUS_ERR_NOMEM, "evaluate: out of memory");
        }
    }
    double loss_sum = 0;
    int64_t right = 0, seen = 0, decoded = 0;
    for (int64_t i = 0; i < count && !rc; i++) {
        et_batch b;
        char *terr = NULL;
        rc = t->task->batch(t->task_state, split, 0, bs, i, &b, &terr);
        if (rc) {
            et_fail(err, rc, "evaluate: %s", terr ? terr : "the task failed to give a batch");
            free(terr);
            break;
        }
        double l;
        int64_t ok;
        if ((rc = et_model_forward(t->model, &b, 0, 0, 0, &l, &ok, err)))
            break;
        loss_sum += l;
        right += ok;
        seen += et_model_units(t->model);
        if (bleu) {
            if (decoded + b.size > n_ex) {
                rc = et_fail(err, ET_STATUS_ERR_USAGE, "evaluate: the split has more examples "
                                                       "than the task said");
                break;
            }
            if ((rc = decode_batch(t, &b, split, hyps, refs, decoded, err)))
                break;
            decoded += b.size;
        }
    }
    if (!rc && seen == 0)
        rc = et_fail(err, ET_STATUS_ERR_USAGE, "evaluate: the split has no examples");
    if (!rc) {
        *metric = (double)right / (double)seen;
        if (loss)
            *loss = loss_sum / (double)seen;
    }
    if (!rc && bleu) {
        et_bleu_result br;
        rc = et_bleu_corpus((const char *const *)hyps, refs, (size_t)decoded,
                            ET_BLEU_TOKENIZE_13A, &br, err);
        if (!rc) {
            *metric = br.score;
            t->repeat_share = decoded > 0 ? (double)t->repeaters / (double)decoded : NAN;
        }
    }
    for (int64_t i = 0; hyps && i < n_ex; i++)
        free(hyps[i]);
    free(hyps);
    free(refs);
    return rc;
}
