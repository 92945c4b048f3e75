/**
 * The alerts and dashboard select the per-object state metrics only by labels the collector
 * exports, with values it can export: a typo in a label or a kind, condition type, state or
 * reason would make a selector match nothing and an alert silently never fire (promtool parses
 * such an expression happily). Every reason named must be one docs/troubleshooting.md explains,
 * since the runbooks send people there.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from '@jest/globals';
import { STATE_METRICS, type StateMetricName } from '../../src/reconciler/state-metrics.js';
import { dashboardQueries, ruleGroups } from '../support/monitoring.js';

const TROUBLESHOOTING = readFileSync(path.resolve(import.meta.dirname, '../../docs/troubleshooting.md'), 'utf8');
const VALUES: Record<string, ReadonlySet<string>> = {
  kind: new Set(['PublishedRealm', 'Realm']),
  type: new Set(['Ready', 'Reconciling', 'Stalled', 'RealmUserRegistered']),
  status: new Set(['True', 'False', 'Unknown']),
  state: new Set(['acknowledged', 'expected']),
  adopted: new Set(['true', 'false']),
};

interface Selector {
  where: string;
  metric: string;
  matchers: Array<{ label: string; op: string; value: string }>;
}

function stateSelectors(where: string, expr: string): Selector[] {
  const selectors: Selector[] = [];
  for (const [, metric, body] of expr.matchAll(/\b(realm_operator_(?:resource|published_realm|realm)_\w+)\s*(?:\{([^}]*)\})?/g)) {
    const matchers = [...(body ?? '').matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)].map(([, label, op, value]) => ({ label: label!, op: op!, value: value! }));
    selectors.push({ where, metric: metric!, matchers });
  }
  return selectors;
}

/** Problems with one selector: unknown metric or label, impossible value, undocumented reason. */
function selectorProblems(selector: Selector): string[] {
  const known = STATE_METRICS[selector.metric as StateMetricName];
  if (!known) return [`${selector.where}: ${selector.metric} is not a state metric the operator exports`];
  const problems: string[] = [];
  for (const { label, op, value } of selector.matchers) {
    if (!known.labels.includes(label)) problems.push(`${selector.where}: ${selector.metric} has no label ${label}`);
    const values = op.endsWith('~') ? value.split('|') : [value];
    // Grafana variables are replaced by .* for the checks; a regex of .* is no claim about values.
    if (values.some((v) => v === '.*')) continue;
    for (const v of values) {
      if (VALUES[label] && !VALUES[label].has(v)) problems.push(`${selector.where}: ${label}="${v}" is never exported`);
      if (label === 'reason' && !TROUBLESHOOTING.includes(`\`${v}\``)) problems.push(`${selector.where}: reason ${v} is not explained in docs/troubleshooting.md`);
    }
  }
  return problems;
}

function allSelectors(): Selector[] {
  const rules = ruleGroups().groups.flatMap((g) => g.rules).flatMap((r) => stateSelectors(r.alert ?? r.record ?? '?', r.expr));
  const dashboard = dashboardQueries().flatMap((q) => stateSelectors(q.where, q.expr));
  return [...rules, ...dashboard];
}

test('every state-metric selector of the alerts and the dashboard uses exported labels and values, and documented reasons', () => {
  const selectors = allSelectors();
  // The check reads selectors at all: the per-object alerts and panels select these metrics.
  expect(selectors.filter((s) => s.where.startsWith('RealmOperator')).length).toBeGreaterThan(8);
  expect(selectors.filter((s) => s.where.startsWith('panel')).length).toBeGreaterThan(8);
  expect(selectors.flatMap(selectorProblems)).toEqual([]);
});

test('the check refuses a misspelt label, kind, condition type or reason (it can fail)', () => {
  const bad = stateSelectors('bad', 'realm_operator_resource_condition{kindd="Realm",kind="Realms",type="Stalling",reason=~"RealmMissing|RealmMising"} or realm_operator_published_realm_replica');
  expect(bad.flatMap(selectorProblems)).toEqual([
    'bad: realm_operator_resource_condition has no label kindd',
    'bad: kind="Realms" is never exported',
    'bad: type="Stalling" is never exported',
    'bad: reason RealmMising is not explained in docs/troubleshooting.md',
    'bad: realm_operator_published_realm_replica is not a state metric the operator exports',
  ]);
});
