/* PAR's Gumbel-softmax (plugins/search/gumbel.c): sampling statistics (the
 * argmax of the perturbed logits follows softmax(z), the Gumbel-max trick:
 * frequencies within 0.01 of the probabilities over 200,000 draws), the
 * backward against central differences (1e-3 relative), temperature
 * annealing and argmax read-out on hand-set logits. */
#include <criterion/criterion.h>
#include <math.h>

#include "fdcheck.h"
#include "gumbel.h"

Test(gumbel, argmax_frequencies_follow_softmax)
{
    const float z[4] = {0.5f, -1.0f, 1.2f, 0.0f};
    float p[4], w[4];
    gumbel_softmax(z, 4, 1.0, NULL, NULL, p);
    double s = 0;
    for (int i = 0; i < 4; i++)
        s += p[i];
    cr_assert_float_eq(s, 1.0, 1e-6);
    et_rng r = et_rng_from_seed(9);
    int count[4] = {0};
    const int n = 200000;
    for (int k = 0; k < n; k++) {
        gumbel_softmax(z, 4, 0.5, &r, NULL, w);
        count[gumbel_argmax(w, 4)]++;
    }
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq((double)count[i] / n, p[i], 0.01, "candidate %d: %g against %g", i,
                           (double)count[i] / n, p[i]);
}

Test(gumbel, low_temperature_samples_are_nearly_one_hot)
{
    const float z[3] = {0.0f, 0.1f, -0.2f};
    float w[3];
    et_rng r = et_rng_from_seed(1);
    gumbel_softmax(z, 3, 0.01, &r, NULL, w);
    float mx = w[gumbel_argmax(w, 3)];
    cr_assert_gt(mx, 0.99f);
}

typedef struct fd_ctx {
    float z[5], g[5], coef[5];
    double tau;
} fd_ctx;

/* loss = sum_i coef_i w_i, w = softmax((z + g) / tau), fixed noise g */
static double fd_loss(void *p)
{
    fd_ctx *c = p;
    float a[5], w[5];
    for (int i = 0; i < 5; i++)
        a[i] = c->z[i] + c->g[i];
    gumbel_softmax(a, 5, c->tau, NULL, NULL, w);
    double s = 0;
    for (int i = 0; i < 5; i++)
        s += c->coef[i] * w[i];
    return s;
}

Test(gumbel, backward_matches_finite_differences)
{
    fd_ctx c = {.tau = 0.7};
    et_rng r = et_rng_from_seed(4);
    float w[5], dz[5];
    fd_fill(c.z, 5, &r, 1.0f);
    fd_fill(c.coef, 5, &r, 1.0f);
    gumbel_softmax(c.z, 5, c.tau, &r, c.g, w);
    gumbel_softmax_backward(w, c.coef, 5, c.tau, dz);
    double e = fd_check(fd_loss, &c, c.z, dz, 5, 5, 1e-3f);
    cr_assert_lt(e, 1e-3, "relative error %g", e);
}

Test(gumbel, temperature_anneals_geometrically)
{
    cr_assert_float_eq(gumbel_temperature(2.0, 0.2, 0, 11), 2.0, 1e-12);
    cr_assert_float_eq(gumbel_temperature(2.0, 0.2, 10, 11), 0.2, 1e-12);
    cr_assert_float_eq(gumbel_temperature(2.0, 0.2, 5, 11), sqrt(0.4), 1e-12);
    cr_assert_float_eq(gumbel_temperature(2.0, 0.2, 0, 1), 0.2, 1e-12);
}

Test(gumbel, argmax_reads_hand_set_logits)
{
    const float a[3] = {0.1f, 2.0f, -1.0f}, b[3] = {-3.0f, -2.0f, -2.5f}, c[3] = {1, 1, 0};
    cr_assert_eq(gumbel_argmax(a, 3), 1);
    cr_assert_eq(gumbel_argmax(b, 3), 1);
    cr_assert_eq(gumbel_argmax(c, 3), 0, "ties go to the first");
}
