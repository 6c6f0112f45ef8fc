/* Checkpoints: a versioned binary file with the space and arch texts, a
 * tensor table with a CRC-32 per tensor, the parameters, optionally the
 * optimizer state, the training RNG state and step. Written atomically
 * (temp file, fsync, rename); a failed write never damages the previous
 * checkpoint, and a bad file is refused with what is wrong. */
#ifndef ETNAS_CORE_CHECKPOINT_H
#define ETNAS_CORE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <etnas/rng.h>

#include "model.h"
#include "optim.h"

#define ET_CHECKPOINT_VERSION 1

typedef struct et_checkpoint_info {
    int64_t step;
    et_rng rng;
    char arch[16384]; /* canonical text of the arch bound when saved ("" if none) */
} et_checkpoint_info;

/* opt may be NULL (weights only). */
int et_checkpoint_save(const char *path, et_model *m, const et_optim *opt,
                       const et_checkpoint_info *info, char **err);
/* The model must be over the same space; opt (may be NULL) must have been
 * created for the same parameter count. */
int et_checkpoint_load(const char *path, et_model *m, et_optim *opt, et_checkpoint_info *info,
                       char **err);
/* 0 when the file at path is an etnas checkpoint written for `space`
 * (magic, version and space text; the tensors are checked by load). */
int et_checkpoint_check_space(const char *path, const et_space *space, char **err);

#endif
