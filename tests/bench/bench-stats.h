/* vmsnap benchmarks: the statistics every benchmark reports. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* qsort comparison of doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);

/* Median of the @n > 0 values of @v (left unsorted). */
double bench_median(const double *v, guint n);

/* Smallest of the @n > 0 values of @v: the cost without interference. */
double bench_minimum(const double *v, guint n);

G_END_DECLS
