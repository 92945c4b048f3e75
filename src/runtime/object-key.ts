/** Object identity as the runtime uses it: `namespace/name`, or just `name` for cluster-scoped objects. */

/** What a reconcile request carries: the object's identity only (level-based: the state is re-read). */
export interface ObjectKey {
  /** Empty for cluster-scoped objects. */
  namespace: string;
  name: string;
}

/** The minimum the runtime needs to know about an object; everything else passes through untouched. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    [field: string]: unknown;
  };
}

/** `namespace/name` (or `name`), the cache and queue key. */
export function formatKey(key: ObjectKey): string {
  return key.namespace ? `${key.namespace}/${key.name}` : key.name;
}

/** The inverse of {@link formatKey}. Names cannot contain '/', so the first one splits. */
export function parseKey(key: string): ObjectKey {
  const slash = key.indexOf('/');
  return slash < 0 ? { namespace: '', name: key } : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export function keyOfObject(object: KubeObject): string {
  const name = object.metadata?.name;
  if (!name) throw new Error(`object without metadata.name (kind ${object.kind ?? 'unknown'})`);
  return formatKey({ namespace: object.metadata?.namespace ?? '', name });
}
