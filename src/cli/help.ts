/**
 * `realm-operator --help` and `realm-operator <command> --help`: each command's own flags, each
 * with its environment variable, one line saying what it does, and its default. Pure: the text is
 * built from the settings tables, so a new setting cannot be missing from the help.
 */
import { REQUIRED, type DocumentedSetting } from './config.js';
import { OPERATOR_SETTINGS } from './operator-config.js';
import { REALM_SERVER_SETTINGS } from './realm-server-command.js';

/** Flags of `seed-sample` that are not operator settings. */
export const SEED_SAMPLE_SETTINGS = {
  sourceURL: { flag: '--source-url', env: '(none)', description: 'URL of the sample source realm to register', default: 'http://localhost:4201/alice/blog/' },
  owner: { flag: '--owner', env: '(none)', description: 'Matrix localpart of the sample realm\'s owner (gets realm-owner on it)', default: 'alice' },
} satisfies Record<string, DocumentedSetting>;

export interface CommandHelp {
  name: string;
  summary: string;
  settings: DocumentedSetting[];
}

export const COMMANDS: readonly CommandHelp[] = [
  {
    name: 'operator',
    summary: 'Run the PublishedRealm operator (in a cluster, or outside one with a kubeconfig)',
    settings: Object.values(OPERATOR_SETTINGS),
  },
  {
    name: 'realm-server',
    summary: 'Run the reference realm server: a realm-server replica with the listener (metrics on --management-listen at /_metrics)',
    settings: Object.values(REALM_SERVER_SETTINGS),
  },
  {
    name: 'migrate',
    summary: 'Apply the standalone migrations to the database (Boxel tables if absent, the realm_operator schema)',
    settings: [OPERATOR_SETTINGS.databaseURL],
  },
  {
    name: 'check-schema',
    summary: 'Check that every table and column the operator needs exists, and say how to fix what is missing',
    settings: [OPERATOR_SETTINGS.databaseURL],
  },
  {
    name: 'seed-sample',
    summary: 'Migrate, then register a sample source realm under --realms-root',
    settings: [
      OPERATOR_SETTINGS.databaseURL,
      OPERATOR_SETTINGS.realmsRoot,
      SEED_SAMPLE_SETTINGS.sourceURL,
      SEED_SAMPLE_SETTINGS.owner,
      { ...OPERATOR_SETTINGS.matrixServerName, description: 'Matrix server name of the owner\'s user id (@<owner>:<name>)', default: 'localhost' },
    ],
  },
];

const HELP_FLAG: DocumentedSetting = { flag: '--help', env: '(none)', description: 'Show this help', default: 'false' };

export function findCommand(name: string): CommandHelp | undefined {
  return COMMANDS.find((command) => command.name === name);
}

/** `realm-operator --help`: the commands, one line each. */
export function generalHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    'usage: realm-operator <command> [flags]',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)} ${c.summary}`),
    '',
    'Run `realm-operator <command> --help` for a command\'s flags. Flags win over environment variables,',
    'which win over defaults.',
    '',
  ].join('\n');
}

/** `realm-operator <command> --help`: that command's flags, each with variable, description and default. */
export function commandHelp(command: CommandHelp): string {
  const lines = [`usage: realm-operator ${command.name} [flags]`, '', command.summary, '', 'flags (flag / environment variable):'];
  for (const setting of [...command.settings, HELP_FLAG]) {
    const value = setting.boolean || setting === HELP_FLAG ? '' : ' <value>';
    lines.push(`  ${setting.flag}${value}${setting.env === '(none)' ? '' : `  (${setting.env})`}`);
    lines.push(`      ${setting.description}`);
    lines.push(`      ${setting.default === REQUIRED ? 'required' : `default: ${setting.default}`}`);
  }
  lines.push('', 'Durations are written 500ms, 10s, 2m, 1h; switches take --flag, --flag=false or --flag false.', '');
  return lines.join('\n');
}
