/**
 * The Node flags the `operator` command runs with, wherever it is shipped: the image's ENTRYPOINT
 * (Dockerfile) and bin/realm-operator carry the same list (test/unit/node-flags.test.ts compares
 * them with this constant), and bench/controller-runtime.ts starts ours with it.
 *
 * Why `--lite-mode`: the operator's own JavaScript is not where its time goes (JSON parsing, TLS
 * and HTTP parsing are native; it waits on the API server and the database), but V8's optimizing
 * compilers (Maglev, TurboFan) cost tens of MB of peak RSS for code, feedback vectors and
 * compilation zones. Measured on 1,000 objects (docs/memory.md): peak 101 → 72 MB, CPU ×1.2-1.3.
 * It is not allowed in NODE_OPTIONS, hence the launchers. Other commands (realm-server serves
 * files on the hot path of every read) keep Node's defaults.
 */
export const OPERATOR_NODE_FLAGS: readonly string[] = ['--lite-mode'];

/** The Node flags for a `realm-operator <command>` process. */
export function nodeFlagsFor(command: string | undefined): readonly string[] {
  return command === 'operator' ? OPERATOR_NODE_FLAGS : [];
}
