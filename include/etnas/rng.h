/* The etnas random number generator: counter-based and splittable, header-only
 * so plugins use the same bits as the core without linking against it.
 *
 * Output n of a stream with key k is mix(k + (n+1)·γ) where mix is the
 * SplitMix64 finaliser and γ the 64-bit golden ratio, so a stream can be
 * positioned anywhere in O(1) and replayed exactly. et_rng_split derives an
 * independent child stream from (key, id) without consuming the parent, so
 * parallel workers get streams that repeat run to run. */
#ifndef ETNAS_RNG_H
#define ETNAS_RNG_H

#include <math.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct et_rng {
    uint64_t key;
    uint64_t counter;
} et_rng;

#define ET_RNG_GAMMA UINT64_C(0x9e3779b97f4a7c15)

static inline uint64_t et_rng_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline et_rng et_rng_from_seed(uint64_t seed)
{
    et_rng r;
    r.key = et_rng_mix64(seed ^ UINT64_C(0x6a09e667f3bcc909));
    r.counter = 0;
    return r;
}

/* An independent stream named by `id`; the parent is not advanced. */
static inline et_rng et_rng_split(const et_rng *parent, uint64_t id)
{
    et_rng r;
    r.key = et_rng_mix64(parent->key ^ et_rng_mix64(id + UINT64_C(0x3c6ef372fe94f82b)));
    r.counter = 0;
    return r;
}

static inline uint64_t et_rng_u64(et_rng *r)
{
    r->counter++;
    return et_rng_mix64(r->key + r->counter * ET_RNG_GAMMA);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double et_rng_uniform(et_rng *r)
{
    return (double)(et_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n), unbiased (rejection); n > 0. */
static inline uint64_t et_rng_below(et_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = et_rng_u64(r);
    } while (x >= limit);
    return x % n;
}

/* Standard normal (Box-Muller, one value per call, two draws). */
static inline double et_rng_normal(et_rng *r)
{
    double u1 = 1.0 - et_rng_uniform(r); /* (0, 1] */
    double u2 = et_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

#ifdef __cplusplus
}
#endif
#endif
