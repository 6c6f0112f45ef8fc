/* Input checks and error messages shared by the learned cost models (the
 * MLP latency predictor and the XGBoost rankers): a feature matrix of n rows
 * of f floats and its targets, refused with the model's name, the row and
 * the column at fault. */
#ifndef ETNAS_CORE_FIT_INPUT_H
#define ETNAS_CORE_FIT_INPUT_H

#include <stdint.h>

/* *err = a malloc'd message (when err is not NULL); returns code. */
__attribute__((format(printf, 3, 4))) int et_fit_fail(char **err, int code, const char *fmt,
                                                      ...);

/* n >= 1 rows of 1..f_max features whose floats fit in memory's size_t. */
int et_fit_check_shape(const char *who, int64_t n, int64_t f, int64_t f_max, char **err);

/* Every one of count floats finite; a bad one named by row and column
 * (row_len floats a row) of `what`. */
int et_fit_check_finite(const char *who, const float *v, int64_t count, int64_t row_len,
                        const char *what, char **err);

#endif
