/* Statistics the search reports rest on (stats.h). */
#include "stats.h"

#include <math.h>

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
