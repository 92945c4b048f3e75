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
