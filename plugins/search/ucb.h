/* UCB1 bookkeeping for OP-NAS's choice of the op an intra-layer mutation
 * uses (spec/search.md): arm i has been tried N_i times with rewards summing
 * to R_i (mean mu_i = R_i / N_i); of N tries in all, the next arm is the one
 * with the largest
 *
 *     u_i = mu_i + alpha sqrt(2 ln N / N_i),
 *
 * an untried arm counting as +infinity. The state is plain numbers built
 * only from the calls made, so replaying the same calls rebuilds it bit for
 * bit (a resumed search relies on that). */
#ifndef ETNAS_PLUGINS_UCB_H
#define ETNAS_PLUGINS_UCB_H

#include <stdint.h>

#include <etnas/rng.h>

#define UCB_MAX_ARMS 32

typedef struct ucb {
    int32_t arms;
    double alpha;
    int64_t total; /* N */
    int64_t tries[UCB_MAX_ARMS];
    double reward[UCB_MAX_ARMS]; /* sums */
} ucb;

/* 0, or -1 when arms is not in 1..UCB_MAX_ARMS or alpha is negative or not
 * finite. */
int ucb_init(ucb *u, int32_t arms, double alpha);

/* mu_i (0 for an untried arm) and u_i (INFINITY for an untried arm). */
double ucb_mean(const ucb *u, int32_t arm);
double ucb_value(const ucb *u, int32_t arm);

/* The arm with the largest u_i among those with allowed[i] != 0 (allowed
 * NULL: all). Ties go to a uniform draw from rng, or to the lowest index
 * when rng is NULL; rng is drawn from only on a tie. -1 when no arm is
 * allowed. */
int32_t ucb_select(const ucb *u, const unsigned char *allowed, et_rng *rng);

/* Record one try of arm with its reward (a non-finite reward counts as a
 * try with reward 0, so one diverged child cannot poison an arm's mean). */
void ucb_update(ucb *u, int32_t arm, double reward);

#endif
