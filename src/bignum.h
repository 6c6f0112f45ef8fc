/* Unsigned arbitrary-precision integers, just enough to count search spaces
 * exactly: multiply by a small factor, add, print in decimal. */
#ifndef ETNAS_CORE_BIGNUM_H
#define ETNAS_CORE_BIGNUM_H

#include <stddef.h>
#include <stdint.h>

#define ET_BIGNUM_LIMBS 64 /* base 1e9: up to 576 decimal digits */

typedef struct et_bignum {
    uint32_t limb[ET_BIGNUM_LIMBS]; /* little-endian, base 1e9 */
    int32_t n;                      /* limbs in use; 0 means zero */
    int32_t overflow;
} et_bignum;

void et_bignum_set(et_bignum *a, uint32_t v);
void et_bignum_mul(et_bignum *a, uint32_t f);
void et_bignum_add(et_bignum *a, const et_bignum *b);
/* Decimal text into buf; returns its length, or -1 when buf is too small or
 * the number overflowed. */
int et_bignum_format(const et_bignum *a, char *buf, size_t n);

#endif
