/**
 * Settings shared by the command-line entry points, from flags and environment, validated with
 * zod. Errors name the setting (flag and variable) and what would fix it.
 */
import { z } from 'zod';

export const databaseURLSchema = z
  .string({ error: 'is required' })
  .min(1, 'is required')
  .refine((value) => {
    try {
      return ['postgres:', 'postgresql:'].includes(new URL(value).protocol);
    } catch {
      return false;
    }
  }, 'must be a postgres:// or postgresql:// connection string');

/** `500ms`, `10s`, `2m`, `1h` (or a number of milliseconds) → milliseconds. */
export const durationSchema = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const ms = typeof value === 'number' ? value : parseDuration(value);
  if (ms === undefined || ms < 0) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} is not a duration; use e.g. 500ms, 10s, 2m, 1h` });
    return z.NEVER;
  }
  return ms;
});

export const logLevelSchema = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info');

export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (!match) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(match[1]) * unit);
}

/** `parseArgs` option definitions for a set of settings (all strings; zod does the typing). */
export function flagOptions(settings: Record<string, SettingName>): Record<string, { type: 'string' }> {
  return Object.fromEntries(Object.values(settings).map(({ flag }) => [flag.slice(2), { type: 'string' as const }]));
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** A setting's human name: `--database-url / DATABASE_URL`. */
export interface SettingName {
  flag: string;
  env: string;
  /** A switch: a bare `--flag` means true (`--flag=false` / `--flag false` turn it off). */
  boolean?: true;
}

/** A setting as `--help` shows it: what it does and its default, in the words a user types. */
export interface DocumentedSetting extends SettingName {
  /** One line: what the setting does. */
  description: string;
  /**
   * The default as a user would write it (`15s`, `:8080`, `4Gi`), or what happens when it is unset
   * (`unset: every namespace`); {@link REQUIRED} when there is none.
   */
  default: string;
}

/** The `default` of a setting that must be given. */
export const REQUIRED = 'required';

/**
 * Rewrites bare boolean switches to `--flag=true` so `parseArgs` (every option a string, zod does
 * the typing) accepts them; `--flag false` and `--flag=false` keep their value.
 */
export function normalizeBooleanFlags(argv: readonly string[], settings: Iterable<SettingName>): string[] {
  const switches = new Set([...settings].filter((s) => s.boolean).map((s) => s.flag));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (!switches.has(arg)) {
      out.push(arg);
      continue;
    }
    const next = argv[i + 1];
    if (next !== undefined && /^(true|false|1|0)$/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(`${arg}=true`);
    }
  }
  return out;
}

/** Picks each setting's value: its flag when given, else its environment variable; empty means unset. */
export function collectSettings(
  names: Record<string, SettingName>,
  flags: Record<string, string | boolean | undefined>,
  env: NodeJS.ProcessEnv,
): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const [key, { flag, env: variable }] of Object.entries(names)) {
    const value = flags[flag.slice(2)] ?? env[variable];
    if (value !== undefined && value !== '') values[key] = value;
  }
  return values;
}

/** Parses `values` with `schema`, turning zod issues into messages that name flag and variable. */
export function parseSettings<S extends z.ZodObject>(schema: S, values: Record<string, unknown>, names: Record<string, SettingName>): z.infer<S> {
  const result = schema.safeParse(values);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? '');
      const name = names[key];
      return `${name ? `${name.flag} / ${name.env}` : key}: ${issue.message}`;
    }),
  );
}
