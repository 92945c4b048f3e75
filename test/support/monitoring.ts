/**
 * The monitoring kit's expressions, for the tests: the alert expressions of
 * deploy/monitoring/prometheus-rule.yaml, the dashboard's panel queries (with Grafana's variables
 * given values so PromQL parsers accept them), the metric names an expression selects, and the
 * metric names a Prometheus text scrape holds.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';

export const MONITORING_DIR = path.resolve(import.meta.dirname, '../../deploy/monitoring');
export const RULE_FILE = path.join(MONITORING_DIR, 'prometheus-rule.yaml');
export const DASHBOARD_FILE = path.join(MONITORING_DIR, 'grafana-dashboard.json');

interface RuleGroups {
  groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string }> }>;
}

/** `.spec` of the PrometheusRule: a plain Prometheus rule file, as `promtool check rules` reads it. */
export function ruleGroups(): RuleGroups {
  return parse(readFileSync(RULE_FILE, 'utf8')).spec as RuleGroups;
}

/** Grafana's built-in and dashboard variables, replaced by values PromQL accepts. */
const GRAFANA_VARIABLES: Record<string, string> = {
  $__rate_interval: '5m',
  $__interval: '1m',
  $__range: '6h',
  $namespace: '.*',
  $operator_job: '.*',
  $object_namespace: '.*',
};

export function withGrafanaVariables(expr: string): string {
  return expr.replace(/\$\w+/g, (name) => {
    const value = GRAFANA_VARIABLES[name];
    if (value === undefined) throw new Error(`dashboard query uses ${name}, which the test does not know: add it to GRAFANA_VARIABLES`);
    return value;
  });
}

export interface DashboardQuery {
  where: string;
  expr: string;
}

/** Every panel target and templating query of the dashboard, variables substituted. */
export function dashboardQueries(): DashboardQuery[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as {
    panels: Array<{ id: number; title: string; targets?: Array<{ refId: string; expr: string }> }>;
    templating: { list: Array<{ name: string; query?: { query: string } | string }> };
  };
  const queries: DashboardQuery[] = [];
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) queries.push({ where: `panel ${panel.id} "${panel.title}" ${target.refId}`, expr: withGrafanaVariables(target.expr) });
  }
  for (const variable of dashboard.templating.list) {
    const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
    // Grafana's label_values(<selector>, <label>): the selector is PromQL.
    const selector = query && /^label_values\((.+),\s*\w+\)$/.exec(query)?.[1];
    if (selector) queries.push({ where: `variable ${variable.name}`, expr: withGrafanaVariables(selector) });
  }
  return queries;
}

/** A rule file with one recording rule per dashboard query, so `promtool check rules` parses them all. */
export function dashboardQueriesAsRuleFile(): string {
  const rules = dashboardQueries().map((query, i) => ({ record: `dashboard:query_${i}`, expr: query.expr, labels: { dashboard_query: query.where } }));
  return stringify({ groups: [{ name: 'grafana-dashboard-queries', rules }] });
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'inf', 'nan', 'atan2', 'start', 'end']);
const LABEL_LISTS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

/**
 * The metric names a (valid) PromQL expression selects: identifiers that are not functions,
 * aggregations, keywords, label names in `{…}` or in `by (…)`-style lists, strings, numbers or
 * durations. Validity itself is promtool's job; this only reads names.
 */
export function metricNamesIn(expr: string): Set<string> {
  const names = new Set<string>();
  let i = 0;
  let previousWord = '';
  const skipBalanced = (open: string, close: string) => {
    let depth = 0;
    for (; i < expr.length; i++) {
      const c = expr[i]!;
      if (c === '"' || c === "'" || c === '`') {
        const end = expr.indexOf(c, i + 1);
        i = end < 0 ? expr.length : end;
        continue;
      }
      if (c === open) depth++;
      else if (c === close && --depth === 0) {
        i++;
        return;
      }
    }
  };
  while (i < expr.length) {
    const c = expr[i]!;
    if (c === '"' || c === "'" || c === '`') {
      const end = expr.indexOf(c, i + 1);
      i = end < 0 ? expr.length : end + 1;
      previousWord = '';
    } else if (c === '{') {
      skipBalanced('{', '}');
    } else if (c === '[') {
      skipBalanced('[', ']');
    } else if (c === '(' && LABEL_LISTS.has(previousWord)) {
      skipBalanced('(', ')');
      previousWord = '';
    } else if (/[0-9.]/.test(c)) {
      const number = /^[0-9.][0-9a-zA-Z._+-]*/.exec(expr.slice(i))![0].replace(/[+-].*$/, '');
      i += Math.max(1, number.length);
      previousWord = '';
    } else if (/[a-zA-Z_:]/.test(c)) {
      const word = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(expr.slice(i))![0];
      i += word.length;
      const next = /^\s*(.)/.exec(expr.slice(i))?.[1];
      // `sum by (…) (…)`: an aggregation whose grouping comes before its parentheses.
      const groupedAggregation = /^\s*(by|without)\s*\(/.test(expr.slice(i));
      const isCall = (next === '(' && !LABEL_LISTS.has(word)) || groupedAggregation;
      if (!isCall && !KEYWORDS.has(word.toLowerCase())) names.add(word);
      previousWord = word;
    } else {
      if (!/\s/.test(c)) previousWord = '';
      i++;
    }
  }
  return names;
}

/** Sample names in a Prometheus text exposition (`foo_bucket`, `foo_sum`, `foo_count` for histograms). */
export function scrapedMetricNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    const name = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{|\s)/.exec(line)?.[1];
    if (name) names.add(name);
  }
  return names;
}
