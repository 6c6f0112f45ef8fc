/* Statistics the search reports rest on (stats.h). */
#include "stats.h"

#include <math.h>
#include <stdlib.h>

double et_kendall_tau(const double *x, const double *y, size_t n)
{
    if (n < 2)
        return NAN;
    double concordant = 0, discordant = 0, tie_x = 0, tie_y = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            double dx = x[i] - x[j], dy = y[i] - y[j];
            if (dx == 0 && dy == 0)
                continue;
            if (dx == 0)
                tie_x++;
            else if (dy == 0)
                tie_y++;
            else if ((dx > 0) == (dy > 0))
                concordant++;
            else
                discordant++;
        }
    double denom = sqrt((concordant + discordant + tie_x) * (concordant + discordant + tie_y));
    return denom > 0 ? (concordant - discordant) / denom : NAN;
}

static int better_or_equal(double a, double b, int higher)
{
    return higher ? a >= b : a <= b;
}

size_t et_pareto_front(const double *metric, const double *cost, size_t n, int higher_is_better,
                       int32_t *front)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        int dominated = 0;
        for (size_t j = 0; j < n && !dominated; j++) {
            if (j == i)
                continue;
            int no_worse = better_or_equal(metric[j], metric[i], higher_is_better) &&
                           cost[j] <= cost[i];
            int strictly = metric[j] != metric[i] || cost[j] != cost[i];
            dominated = no_worse && strictly;
        }
        front[i] = !dominated;
        count += !dominated;
    }
    return count;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void et_trimmed_stats(double *samples, size_t n, double trim, double *mean, double *std)
{
    *mean = *std = NAN;
    if (n == 0)
        return;
    qsort(samples, n, sizeof *samples, cmp_double);
    size_t cut = (size_t)floor((double)n * trim);
    if (2 * cut >= n)
        cut = (n - 1) / 2;
    size_t k = n - 2 * cut;
    double s = 0, s2 = 0;
    for (size_t i = cut; i < n - cut; i++)
        s += samples[i];
    double m = s / (double)k;
    for (size_t i = cut; i < n - cut; i++)
        s2 += (samples[i] - m) * (samples[i] - m);
    *mean = m;
    *std = k > 1 ? sqrt(s2 / (double)(k - 1)) : 0.0;
}
