/* Input checks and error messages shared by the learned cost models. */
#include "fit_input.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <etnas/plugin.h>

int et_fit_fail(char **err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        int len = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        *err = len >= 0 ? malloc((size_t)len + 1) : NULL;
        if (*err) {
            va_start(ap, fmt);
            vsnprintf(*err, (size_t)len + 1, fmt, ap);
            va_end(ap);
        }
    }
    return code;
}

int et_fit_check_shape(const char *who, int64_t n, int64_t f, int64_t f_max, char **err)
{
    if (n < 1)
        return et_fit_fail(err, ET_STATUS_ERR_USAGE, "%s: no rows (n = %lld)", who, (long long)n);
    if (f < 1 || f > f_max)
        return et_fit_fail(err, ET_STATUS_ERR_USAGE, "%s: %lld features; need 1..%lld", who,
                           (long long)f, (long long)f_max);
    if ((uint64_t)n > SIZE_MAX / sizeof(float) / (uint64_t)f)
        return et_fit_fail(err, ET_STATUS_ERR_USAGE, "%s: %lld x %lld features is too large",
                           who, (long long)n, (long long)f);
    return 0;
}

int et_fit_check_finite(const char *who, const float *v, int64_t count, int64_t row_len,
                        const char *what, char **err)
{
    for (int64_t i = 0; i < count; i++)
        if (!isfinite(v[i]))
            return et_fit_fail(err, ET_STATUS_ERR_NUMERIC,
                               "%s: %s has a non-finite value at row %lld, column %lld", who, what,
                               (long long)(i / row_len), (long long)(i % row_len));
    return 0;
}
