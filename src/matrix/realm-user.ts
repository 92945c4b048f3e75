/**
 * A published realm's own Matrix user, registered as Boxel registers it.
 *
 * Checked against cardstack/boxel:
 * - packages/realm-server/handlers/handle-publish-realm.ts: on a first publish Boxel registers
 *   `realm/_published_<id>` with displayname = username and the password `passwordFromSeed(username,
 *   realmSecretSeed)`; a republish registers nobody.
 * - packages/realm-server/synapse.ts `registerUser`: GET `<matrixURL>_synapse/admin/v1/register` for
 *   a nonce, then POST the same URL with `{ nonce, username, displayname, password, mac, admin }`,
 *   mac = hex HMAC-SHA1 keyed with the registration shared secret over
 *   `nonce \0 username \0 password \0 notadmin`.
 * - packages/runtime-common/matrix-client.ts `passwordFromSeed`: hex SHA-256 over the bare username
 *   (`@` and `:server` stripped) followed by the seed, both as UTF-8.
 *
 * Beyond Boxel: an existing user is success (Boxel's publish fails instead), after proving the
 * derived password logs in, so a seed that differs from the one the user was made with is caught
 * here rather than when a realm server cannot log in. Pure parts are exported for unit tests.
 */
import { createHash, createHmac } from 'node:crypto';

/** The settings a person fixes when registration fails; named in every error. */
export const MATRIX_SETTINGS = {
  url: '--matrix-url / MATRIX_URL',
  registrationSecret: '--matrix-registration-secret-file / MATRIX_REGISTRATION_SHARED_SECRET_FILE (or MATRIX_REGISTRATION_SHARED_SECRET)',
  realmSecretSeed: '--realm-secret-seed-file / REALM_SECRET_SEED_FILE (or REALM_SECRET_SEED)',
} as const;

export interface MatrixRegistrationSettings {
  /** The homeserver's client-server base URL, e.g. `http://synapse:8008/`. */
  matrixURL: string;
  /** Synapse's `registration_shared_secret`. */
  registrationSharedSecret: string;
  /** Boxel's REALM_SECRET_SEED: realm users' passwords derive from it. */
  realmSecretSeed: string;
}

export interface RegisterRealmUserOptions extends MatrixRegistrationSettings {
  /** Bare username, e.g. `realm/_published_<disk id>`. */
  username: string;
  /** Per-request timeout. Default 10 s. */
  timeoutMs?: number;
}

export interface RegisteredRealmUser {
  /** `@<username>:<server name>`, as the homeserver reports it. */
  userId: string;
  /** false when the user already existed (and the derived password logged in). */
  created: boolean;
}

/** A registration that failed; `setting` names what to fix when it is a configuration problem. */
export class MatrixRegistrationError extends Error {
  override readonly name = 'MatrixRegistrationError';
  constructor(
    message: string,
    readonly setting?: keyof typeof MATRIX_SETTINGS,
  ) {
    super(message);
  }
}

/** `@alice:example.org` → `alice`; a bare username is returned as is (Boxel's getMatrixUsername). */
export function bareMatrixUsername(userIdOrUsername: string): string {
  return userIdOrUsername.replace(/^@/, '').replace(/:.*$/, '');
}

/** The password Boxel gives a realm user: hex SHA-256 of the bare username followed by the seed. */
export function realmUserPassword(username: string, realmSecretSeed: string): string {
  return createHash('sha256').update(bareMatrixUsername(username), 'utf8').update(realmSecretSeed, 'utf8').digest('hex');
}

/** Synapse's shared-secret registration MAC: hex HMAC-SHA1 over NUL-separated nonce, username, password and `admin`/`notadmin`. */
export function registrationMac(input: { sharedSecret: string; nonce: string; username: string; password: string; admin?: boolean }): string {
  return createHmac('sha1', input.sharedSecret)
    .update(`${input.nonce}\0${input.username}\0${input.password}\0${input.admin ? 'admin' : 'notadmin'}`, 'utf8')
    .digest('hex');
}

/** The POST body Boxel sends (displayname = username, admin false). */
export function registrationBody(input: { nonce: string; username: string; password: string; mac: string }): Record<string, unknown> {
  return { nonce: input.nonce, username: input.username, displayname: input.username, password: input.password, mac: input.mac, admin: false };
}

/**
 * Registers `username` on the homeserver with the derived password, as Boxel does; an existing
 * user is fine once the derived password logs in as it. Throws {@link MatrixRegistrationError}.
 */
export async function registerRealmUser(options: RegisterRealmUserOptions): Promise<RegisteredRealmUser> {
  const base = matrixBaseURL(options.matrixURL);
  const registerURL = new URL('_synapse/admin/v1/register', base);
  const password = realmUserPassword(options.username, options.realmSecretSeed);
  const timeoutMs = options.timeoutMs ?? 10_000;

  const nonceResponse = await request(registerURL, { method: 'GET' }, timeoutMs);
  const nonceBody = await readJSON(nonceResponse);
  if (!nonceResponse.ok || typeof nonceBody.nonce !== 'string') throw nonceRefusal(registerURL, nonceResponse.status, nonceBody);
  const mac = registrationMac({ sharedSecret: options.registrationSharedSecret, nonce: nonceBody.nonce, username: options.username, password });

  const response = await request(
    registerURL,
    { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(registrationBody({ nonce: nonceBody.nonce, username: options.username, password, mac })) },
    timeoutMs,
  );
  const body = await readJSON(response);
  if (response.ok && typeof body.user_id === 'string') return { userId: body.user_id, created: true };
  if (body.errcode === 'M_USER_IN_USE') return { userId: await verifyLogin(base, options.username, password, timeoutMs), created: false };
  throw registrationRefusal(options.username, registerURL, response.status, body);
}

/** Logs in as the existing user with the derived password (then logs out); returns its user id. */
async function verifyLogin(base: URL, username: string, password: string, timeoutMs: number): Promise<string> {
  const response = await request(
    new URL('_matrix/client/v3/login', base),
    {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'm.login.password', identifier: { type: 'm.id.user', user: username }, password, initial_device_display_name: 'realm-operator registration check' }),
    },
    timeoutMs,
  );
  const body = await readJSON(response);
  if (response.ok && typeof body.user_id === 'string') {
    if (typeof body.access_token === 'string') {
      // Only a check: drop the device the login made rather than leave one per verification.
      await request(new URL('_matrix/client/v3/logout', base), { method: 'POST', headers: { authorization: `Bearer ${body.access_token}` } }, timeoutMs).catch(() => undefined);
    }
    return body.user_id;
  }
  if (body.errcode === 'M_FORBIDDEN') {
    throw new MatrixRegistrationError(
      `Matrix user ${username} already exists, but the password derived from the realm secret seed does not log in as it: ` +
        `${MATRIX_SETTINGS.realmSecretSeed} must be the REALM_SECRET_SEED the Boxel deployment uses (the one the user was registered with)`,
      'realmSecretSeed',
    );
  }
  throw new MatrixRegistrationError(`Matrix user ${username} already exists, and logging in as it to check the derived password failed: HTTP ${response.status} ${describe(body)}`);
}

function matrixBaseURL(matrixURL: string): URL {
  let url: URL;
  try {
    url = new URL(matrixURL);
  } catch {
    throw new MatrixRegistrationError(`${JSON.stringify(matrixURL)} is not a URL: set ${MATRIX_SETTINGS.url} to the homeserver's base URL, e.g. http://synapse:8008/`, 'url');
  }
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

async function request(url: URL, init: RequestInit, timeoutMs: number): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const detail = cause?.code ?? cause?.message ?? (error as Error).message;
    throw new MatrixRegistrationError(`cannot reach the Matrix homeserver at ${url.origin} (${init.method ?? 'GET'} ${url.pathname}: ${detail}); check ${MATRIX_SETTINGS.url} and that the homeserver is up`, 'url');
  }
}

async function readJSON(response: Response): Promise<Record<string, unknown>> {
  const text = await response.text();
  try {
    const parsed: unknown = JSON.parse(text);
    return parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : { body: text };
  } catch {
    return { body: text.slice(0, 200) };
  }
}

function describe(body: Record<string, unknown>): string {
  if (typeof body.errcode === 'string') return `${body.errcode}: ${typeof body.error === 'string' ? body.error : ''}`.trim();
  return JSON.stringify(body).slice(0, 200);
}

function nonceRefusal(url: URL, status: number, body: Record<string, unknown>): MatrixRegistrationError {
  if (status === 404 || status === 400) {
    // 400 "Shared secret registration is not enabled"; 404 when the URL is not a Synapse at all.
    return new MatrixRegistrationError(
      `the homeserver at ${url.origin} offers no shared-secret registration (GET ${url.pathname}: HTTP ${status} ${describe(body)}): ` +
        `${MATRIX_SETTINGS.url} must point at Synapse, with registration_shared_secret set in its homeserver.yaml`,
      'url',
    );
  }
  return new MatrixRegistrationError(`the homeserver at ${url.origin} gave no registration nonce: GET ${url.pathname} answered HTTP ${status} ${describe(body)}`);
}

function registrationRefusal(username: string, url: URL, status: number, body: Record<string, unknown>): MatrixRegistrationError {
  // Synapse answers a wrong MAC with 403 (errcode M_UNKNOWN or M_FORBIDDEN, "HMAC incorrect").
  if (status === 403) {
    return new MatrixRegistrationError(
      `the homeserver at ${url.origin} refused to register ${username}: ${describe(body)}; ${MATRIX_SETTINGS.registrationSecret} must hold its registration_shared_secret`,
      'registrationSecret',
    );
  }
  return new MatrixRegistrationError(`the homeserver at ${url.origin} refused to register ${username}: HTTP ${status} ${describe(body)}`);
}
