/** `realm-operator [<command>] --help`: each command's own flags, each with variable, description and default. */
import { z } from 'zod';
import { REQUIRED } from '../../src/cli/config.js';
import { commandHelp, COMMANDS, findCommand, generalHelp } from '../../src/cli/help.js';
import { operatorConfigSchema, OPERATOR_SETTINGS } from '../../src/cli/operator-config.js';
import { REALM_SERVER_SETTINGS } from '../../src/cli/realm-server-command.js';

/** The flags a help text lists: lines `  --flag …` (descriptions are indented further). */
function listedFlags(text: string): string[] {
  return [...text.matchAll(/^ {2}(--[a-z-]+)/gm)].map((m) => m[1]!);
}

/** Each flag's entry: its line, then its description line and its default line. */
function entries(text: string): Map<string, { header: string; description: string; default: string }> {
  const lines = text.split('\n');
  const out = new Map<string, { header: string; description: string; default: string }>();
  lines.forEach((line, i) => {
    const flag = /^ {2}(--[a-z-]+)/.exec(line)?.[1];
    if (flag) out.set(flag, { header: line, description: lines[i + 1] ?? '', default: lines[i + 2] ?? '' });
  });
  return out;
}

test('the general help lists every command with a one-line summary and no flags', () => {
  const text = generalHelp();
  for (const command of COMMANDS) expect(text).toMatch(new RegExp(`^ {2}${command.name} +\\S.{10,}$`, 'm'));
  expect(listedFlags(text)).toEqual([]);
});

test.each(COMMANDS.map((c) => [c.name, c] as const))('%s --help lists exactly its own flags', (_name, command) => {
  const flags = listedFlags(commandHelp(command));
  expect(flags).toEqual([...command.settings.map((s) => s.flag), '--help']);
  expect(new Set(flags).size).toBe(flags.length);
});

test('operator --help has every operator setting and none of the realm server\'s', () => {
  const flags = listedFlags(commandHelp(findCommand('operator')!));
  for (const { flag } of Object.values(OPERATOR_SETTINGS)) expect(flags).toContain(flag);
  for (const only of ['--listen', '--management-listen', '--serve-source-realms', '--replica-id', '--heartbeat-interval']) expect(flags).not.toContain(only);
});

test('realm-server --help has every realm-server setting and none of the operator\'s, and names the metrics path', () => {
  const text = commandHelp(findCommand('realm-server')!);
  const flags = listedFlags(text);
  for (const { flag } of Object.values(REALM_SERVER_SETTINGS)) expect(flags).toContain(flag);
  for (const only of ['--leader-elect', '--metrics-bind-address', '--max-realm-files', '--ack-wait']) expect(flags).not.toContain(only);
  expect(entries(text).get('--management-listen')!.description).toContain('/_metrics');
});

test('migrate and check-schema take only the database URL', () => {
  for (const name of ['migrate', 'check-schema']) expect(listedFlags(commandHelp(findCommand(name)!))).toEqual(['--database-url', '--help']);
});

test.each(COMMANDS.map((c) => [c.name, c] as const))('%s --help: every flag has its variable, a description and a default (or says required)', (_name, command) => {
  const text = commandHelp(command);
  for (const setting of command.settings) {
    const entry = entries(text).get(setting.flag)!;
    if (setting.env !== '(none)') expect(entry.header).toContain(`(${setting.env})`);
    expect(entry.description.trim().length).toBeGreaterThan(15);
    expect(entry.default.trim()).toMatch(/^(required|default: \S.*)$/);
  }
});

/**
 * The documented defaults are the real ones: parsing a default's text gives what the schema
 * uses when the setting is absent (settings whose default depends on the host are skipped by name).
 */
test('every operator default shown in the help is what the schema applies', () => {
  const shape = operatorConfigSchema.shape as Record<string, z.ZodType>;
  const checked: string[] = [];
  for (const [key, setting] of Object.entries(OPERATOR_SETTINGS)) {
    const field = shape[key]!;
    const absent = field.safeParse(undefined);
    if (setting.default === REQUIRED) {
      expect(absent.success).toBe(false);
      continue;
    }
    if (setting.default.startsWith('unset') || setting.default.startsWith('<')) continue;
    expect({ key, value: field.parse(setting.default) }).toEqual({ key, value: absent.data });
    checked.push(key);
  }
  expect(checked).toEqual(expect.arrayContaining(['leaseDuration', 'metricsBindAddress', 'maxRealmBytes', 'resyncPeriod', 'leaderElection', 'publishedRealmDomainOverrides']));
});
