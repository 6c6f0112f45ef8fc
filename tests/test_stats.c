/* Kendall's tau-b and the Pareto front on hand-made points. */
#include <criterion/criterion.h>
#include <math.h>

#include "stats.h"

Test(stats, kendall_tau_hand_cases)
{
    double a[] = {1, 2, 3, 4, 5}, up[] = {10, 20, 30, 40, 50}, down[] = {5, 4, 3, 2, 1};
    cr_assert_float_eq(et_kendall_tau(a, up, 5), 1.0, 1e-12);
    cr_assert_float_eq(et_kendall_tau(a, down, 5), -1.0, 1e-12);
    /* one swapped pair of 10: (9 - 1) / 10 */
    double sw[] = {1, 3, 2, 4, 5};
    cr_assert_float_eq(et_kendall_tau(a, sw, 5), 0.8, 1e-12);
    /* tau-b with ties: x = 1,1,2,3 y = 1,2,2,3 -> C 4, D 0, ties x 1, ties y 1:
     * 4 / sqrt(5 * 5) = 0.8 */
    double tx[] = {1, 1, 2, 3}, ty[] = {1, 2, 2, 3};
    cr_assert_float_eq(et_kendall_tau(tx, ty, 4), 0.8, 1e-12);
    double c[] = {2, 2, 2};
    cr_assert(isnan(et_kendall_tau(a, c, 3)));
    cr_assert(isnan(et_kendall_tau(a, up, 1)));
}

Test(stats, pareto_front_hand_cases)
{
    /* accuracy (higher better) against params */
    double acc[] = {0.80, 0.85, 0.83, 0.90, 0.85, 0.70};
    double cost[] = {1.0, 2.0, 2.5, 4.0, 2.0, 0.5};
    int32_t f[6];
    cr_assert_eq(et_pareto_front(acc, cost, 6, 1, f), 5);
    int32_t want[] = {1, 1, 0, 1, 1, 1}; /* 0.83 @ 2.5 is dominated by 0.85 @ 2.0; equal points both stay */
    for (int i = 0; i < 6; i++)
        cr_assert_eq(f[i], want[i], "point %d", i);
    /* loss (lower better) */
    double loss[] = {1.0, 0.5, 0.7};
    double c2[] = {1.0, 1.0, 0.5};
    cr_assert_eq(et_pareto_front(loss, c2, 3, 0, f), 2);
    cr_assert(f[0] == 0 && f[1] == 1 && f[2] == 1);
}

Test(stats, trimmed_latency_statistics)
{
    /* ten samples, one outlier at each end: 10 % trimmed from each side */
    double t[] = {5.0, 1.0, 1.2, 1.1, 0.9, 1.0, 100.0, 1.1, 0.1, 1.0};
    double mean, std;
    et_trimmed_stats(t, 10, 0.1, &mean, &std);
    /* kept: 0.9 1.0 1.0 1.0 1.1 1.1 1.2 5.0 */
    cr_assert_float_eq(mean, 12.3 / 8, 1e-12);
    double ss = 0, kept[] = {0.9, 1.0, 1.0, 1.0, 1.1, 1.1, 1.2, 5.0};
    for (int i = 0; i < 8; i++)
        ss += (kept[i] - mean) * (kept[i] - mean);
    cr_assert_float_eq(std, sqrt(ss / 7), 1e-12);
    double one[] = {2.0};
    et_trimmed_stats(one, 1, 0.1, &mean, &std);
    cr_assert(mean == 2.0 && std == 0.0);
}
