/* Unsigned arbitrary-precision integers, just enough to count search spaces
 * exactly: multiply by a small factor, add, print in decimal. */
#include "bignum.h"

#include <stdio.h>
#include <string.h>

#define BASE 1000000000u

void et_bignum_set(et_bignum *a, uint32_t v)
{
    memset(a, 0, sizeof *a);
    if (v >= BASE) {
        a->limb[0] = v % BASE;
        a->limb[1] = v / BASE;
        a->n = 2;
    } else if (v) {
        a->limb[0] = v;
        a->n = 1;
    }
}

void et_bignum_mul(et_bignum *a, uint32_t f)
{
    uint64_t carry = 0;
    for (int32_t i = 0; i < a->n; i++) {
        uint64_t x = (uint64_t)a->limb[i] * f + carry;
        a->limb[i] = (uint32_t)(x % BASE);
        carry = x / BASE;
    }
    while (carry) {
        if (a->n == ET_BIGNUM_LIMBS) {
            a->overflow = 1;
            return;
        }
        a->limb[a->n++] = (uint32_t)(carry % BASE);
        carry /= BASE;
    }
    while (a->n > 0 && a->limb[a->n - 1] == 0)
        a->n--;
}

void et_bignum_add(et_bignum *a, const et_bignum *b)
{
    uint32_t carry = 0;
    int32_t n = a->n > b->n ? a->n : b->n;
    for (int32_t i = 0; i < n; i++) {
        uint32_t x = (i < a->n ? a->limb[i] : 0) + (i < b->n ? b->limb[i] : 0) + carry;
        carry = x >= BASE;
        a->limb[i] = carry ? x - BASE : x;
    }
    a->n = n;
    if (carry) {
        if (n == ET_BIGNUM_LIMBS)
            a->overflow = 1;
        else
            a->limb[a->n++] = 1;
    }
    a->overflow |= b->overflow;
}

int et_bignum_format(const et_bignum *a, char *buf, size_t n)
{
    if (a->overflow)
        return -1;
    if (a->n == 0)
        return snprintf(buf, n, "0") < (int)n ? 1 : -1;
    size_t o = (size_t)snprintf(buf, n, "%u", a->limb[a->n - 1]);
    for (int32_t i = a->n - 2; i >= 0 && o < n; i--)
        o += (size_t)snprintf(buf + o, n - o, "%09u", a->limb[i]);
    return o < n ? (int)o : -1;
}
