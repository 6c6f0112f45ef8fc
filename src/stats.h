/* Statistics the search reports rest on: Kendall's rank correlation and the
 * Pareto front of (metric, cost) points. */
#ifndef ETNAS_CORE_STATS_H
#define ETNAS_CORE_STATS_H

#include <stddef.h>
#include <stdint.h>

/* Kendall's tau-b of two paired samples (ties handled as tau-b does), O(n^2).
 * NAN when n < 2 or one side is constant. */
double et_kendall_tau(const double *x, const double *y, size_t n);

/* Marks in front[i] (1/0) the points not dominated by any other: a point
 * dominates another when its metric is at least as good (higher when
 * higher_is_better, else lower) and its cost is at most as large, one of the
 * two strictly. Returns the number of points on the front. */
size_t et_pareto_front(const double *metric, const double *cost, size_t n, int higher_is_better,
                       int32_t *front);

/* Mean and standard deviation of timing samples after dropping the fastest
 * and slowest `trim` share (0.1 = 10 % at each end; at least one sample is
 * kept). Sorts `samples` in place. */
void et_trimmed_stats(double *samples, size_t n, double trim, double *mean, double *std);

#endif
