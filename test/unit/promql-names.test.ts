/** Reading metric names out of PromQL, for the check that the monitoring kit names only exported metrics. */
import { metricNamesIn, scrapedMetricNames, withGrafanaVariables } from '../support/monitoring.js';

test.each([
  ['up', ['up']],
  ['sum by (namespace, job) (rate(foo_total{controller="x",le=~"a|b"}[5m])) > 0', ['foo_total']],
  ['histogram_quantile(0.99, sum by (le) (rate(lat_seconds_bucket{a="b"}[10m]))) > 1', ['lat_seconds_bucket']],
  ['a_count == 0 and on (namespace, job) max by (namespace, job) (b_count) > 0', ['a_count', 'b_count']],
  ['count(ready == 0) or vector(0)', ['ready']],
  ['absent(metric{x="by (y)"})', ['metric']],
  ['rate(x[5m] offset 1h) / ignoring (instance) group_left (pod) y', ['x', 'y']],
  ['max without (pod) (changes(z[30m])) > 4e2', ['z']],
  ['sum(foo:recorded:rate5m) by (job)', ['foo:recorded:rate5m']],
])('%s selects %j', (expr, names) => {
  expect([...metricNamesIn(expr)].sort()).toEqual([...names].sort());
});

test('Grafana variables get values; an unknown one is refused by name', () => {
  expect(withGrafanaVariables('rate(x{namespace=~"$namespace"}[$__rate_interval])')).toBe('rate(x{namespace=~".*"}[5m])');
  expect(() => withGrafanaVariables('x{pod="$pod"}')).toThrow(/\$pod/);
});

test('scraped names come from sample lines, not comments', () => {
  const text = '# HELP a_total A.\n# TYPE a_total counter\na_total 1\nb_bucket{le="1"} 2\nb_sum 3\nc{x="y"} 4\n';
  expect([...scrapedMetricNames(text)].sort()).toEqual(['a_total', 'b_bucket', 'b_sum', 'c']);
});
