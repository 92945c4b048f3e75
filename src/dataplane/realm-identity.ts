// A published realm's own identity, as Boxel names it.
//
// Boxel's publish handler (cardstack/boxel
// packages/realm-server/handlers/handle-publish-realm.ts) names a published
// realm's user `realm/${PUBLISHED_DIRECTORY_NAME}_${id}`, where
// PUBLISHED_DIRECTORY_NAME is '_published' (packages/runtime-common, the same
// name as the directory the published copies live in) and id is the realm's
// disk id (the uuid that is also its folder under _published/). That bare
// username is what Boxel stores as realm_registry.owner_username and passes as
// realmUsername in the reindex job; the Matrix user id is `@<it>:<server>`.

/** The directory (and username prefix) Boxel keeps published realms under. */
export const PUBLISHED_DIRECTORY_NAME = '_published';

/** The bare username of the realm user Boxel gives a published realm. */
export function publishedRealmUsername(diskId: string): string {
  if (diskId === '' || diskId.includes('/')) {
    throw new Error(
      `publishedRealmUsername: disk id ${JSON.stringify(diskId)} is not a single path segment; pass the published realm's disk id (a uuid)`,
    );
  }
  return `realm/${PUBLISHED_DIRECTORY_NAME}_${diskId}`;
}

/** `@<username>:<serverName>`, the Matrix user id Synapse returns for a registered username. */
export function matrixUserId(username: string, serverName: string): string {
  return `@${username}:${serverName}`;
}

/** The server name of a Matrix user id `@localpart:server`, or undefined when `userId` is not one. */
export function matrixServerNameOf(userId: string): string | undefined {
  if (!userId.startsWith('@')) return undefined;
  const colon = userId.indexOf(':');
  if (colon < 2 || colon === userId.length - 1) return undefined;
  return userId.slice(colon + 1);
}
