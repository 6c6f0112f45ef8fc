/* Kernel selection for OpenBLAS on CPUs its detection does not know
 * (blas_tune.h). */
#include "blas_tune.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

const char *et_blas_better_core(void)
{
    if (getenv("OPENBLAS_CORETYPE"))
        return NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
    if (!want)
        return NULL;
    static const char *const generic[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem",
                                          "Atom", "Sandybridge", "Katmai", "Coppermine",
                                          "Northwood", "Banias", NULL};
    const char *core = openblas_get_corename();
    if (!core)
        return NULL;
    for (int i = 0; generic[i]; i++)
        if (!strcasecmp(core, generic[i]))
            return want;
    if (!strcasecmp(core, "Haswell") && !strcmp(want, "SkylakeX"))
        return want;
#endif
    return NULL;
}

void et_blas_tune(char **argv)
{
    const char *core = et_blas_better_core();
    if (!core || setenv("OPENBLAS_CORETYPE", core, 1))
        return;
    execv("/proc/self/exe", argv);
    /* could not re-execute: go on with the detected kernels */
    unsetenv("OPENBLAS_CORETYPE");
}
