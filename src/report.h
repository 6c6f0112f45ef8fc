/* Reports of a run, made from the store alone (so `etnas report STORE` and
 * the end of `etnas run` write the same thing): a comparison table of the
 * strategies, their final results, report.md, results.csv, results.json and
 * one SVG per cost figure with every strategy's evaluations and Pareto
 * front. */
#ifndef ETNAS_CORE_REPORT_H
#define ETNAS_CORE_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "store.h"

/* Write the report of `run` (0: the store's latest run) into out_dir, and
 * the table to `table` (may be NULL). higher_is_better: the metric's
 * direction (1 for accuracy and BLEU). */
int et_report_write(et_store *st, int64_t run, const char *out_dir, int higher_is_better,
                    FILE *table, char **err);

#endif
