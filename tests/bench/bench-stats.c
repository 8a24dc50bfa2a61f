/* vmsnap benchmarks: medians and minimums. */
#include "bench-stats.h"

#include <stdlib.h>

int
bench_cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;

  return (x > y) - (x < y);
}

double
bench_median(const double *v, guint n)
{
  g_autofree double *s = g_memdup2(v, n * sizeof(double));

  g_return_val_if_fail(n > 0, 0.0);
  qsort(s, n, sizeof(double), bench_cmp_double);
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

double
bench_minimum(const double *v, guint n)
{
  double m;

  g_return_val_if_fail(n > 0, 0.0);
  m = v[0];
  for (guint i = 1; i < n; i++)
    m = MIN(m, v[i]);
  return m;
}
