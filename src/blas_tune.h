/* OpenBLAS picks its kernels from the CPU model at load time. A release
 * older than the CPU falls back to a generic core (Debian 12's 0.3.21 calls
 * an AVX-512 Sapphire Rapids "Prescott": 4-5x slower sgemm). */
#ifndef ETNAS_CORE_BLAS_TUNE_H
#define ETNAS_CORE_BLAS_TUNE_H

/* The kernel set OpenBLAS should use on this CPU when its detection fell
 * back to an older one ("SkylakeX" with AVX-512, "Haswell" with AVX2+FMA),
 * or NULL when detection is fine or OPENBLAS_CORETYPE is already set. */
const char *et_blas_better_core(void);

/* Called first in main(): when et_blas_better_core() names a core, set
 * OPENBLAS_CORETYPE to it and re-execute the program (OpenBLAS reads it
 * only when it loads). Returns only when nothing had to be done or the
 * re-execution failed (then the run goes on with the slower kernels). */
void et_blas_tune(char **argv);

#endif
