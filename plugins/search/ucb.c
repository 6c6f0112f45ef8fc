/* UCB1 for OP-NAS's op choice: see ucb.h. */
#include "ucb.h"

#include <math.h>
#include <string.h>

int ucb_init(ucb *u, int32_t arms, double alpha)
{
    memset(u, 0, sizeof *u);
    if (arms < 1 || arms > UCB_MAX_ARMS || !(alpha >= 0) || !isfinite(alpha))
        return -1;
    u->arms = arms;
    u->alpha = alpha;
    return 0;
}

double ucb_mean(const ucb *u, int32_t arm)
{
    if (arm < 0 || arm >= u->arms || !u->tries[arm])
        return 0.0;
    return u->reward[arm] / (double)u->tries[arm];
}

double ucb_value(const ucb *u, int32_t arm)
{
    if (arm < 0 || arm >= u->arms)
        return -INFINITY;
    if (!u->tries[arm])
        return INFINITY;
    /* N >= N_i >= 1, so the log is >= 0 */
    return ucb_mean(u, arm) +
           u->alpha * sqrt(2.0 * log((double)u->total) / (double)u->tries[arm]);
}

int32_t ucb_select(const ucb *u, const unsigned char *allowed, et_rng *rng)
{
    int32_t best[UCB_MAX_ARMS], n = 0;
    double top = -INFINITY;
    for (int32_t i = 0; i < u->arms; i++) {
        if (allowed && !allowed[i])
            continue;
        double v = ucb_value(u, i);
        if (n == 0 || v > top) {
            top = v;
            n = 0;
        } else if (v < top)
            continue;
        best[n++] = i;
    }
    if (!n)
        return -1;
    if (n == 1 || !rng)
        return best[0];
    return best[et_rng_below(rng, (uint64_t)n)];
}

void ucb_update(ucb *u, int32_t arm, double reward)
{
    if (arm < 0 || arm >= u->arms)
        return;
    u->tries[arm]++;
    u->total++;
    u->reward[arm] += isfinite(reward) ? reward : 0.0;
}
