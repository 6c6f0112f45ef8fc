/* The experiment runner: turns a checked experiment into a run. It loads the
 * task, builds the supernet, gives search plugins their host services
 * (supernet training, evaluation with inherited weights, costs,
 * constraints), keeps every evaluation in the store before a strategy sees
 * it, retrains the winners from scratch and reports. */
#ifndef ETNAS_CORE_RUNNER_H
#define ETNAS_CORE_RUNNER_H

#include "experiment.h"

/* Extra [train] / [final] keys the runner reads are declared in
 * experiment.c. resume: continue the latest run of this experiment in its
 * store. Returns 0, or a negative code with *err set (a failed run). */
int et_runner_run(et_experiment *x, int resume, char **err);

#endif
