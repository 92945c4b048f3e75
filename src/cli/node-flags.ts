/**
 * The Node flags the `operator` command runs with, wherever it is shipped: the image's ENTRYPOINT
 * (Dockerfile) and bin/realm-operator carry the same list (test/unit/node-flags.test.ts compares
 * them with this constant), and bench/controller-runtime.ts starts ours with it.
 *
 * Why: the operator's own JavaScript is not where its time goes (JSON parsing, TLS and HTTP
 * parsing are native; it waits on the API server and the database), but V8's optimizing compilers
 * (Maglev, TurboFan) cost tens of MB of peak RSS for optimized code, feedback and compilation
 * zones. These are V8's `--lite-mode` without two of its parts: `--jitless`, which also removes
 * WebAssembly, and the `fetch` the operator uses for Matrix (Node's undici parses HTTP with
 * WebAssembly) then fails; and `--no-sparkplug`: the baseline compiler costs ~1 MB here and saves
 * a fifth of the operator's CPU. `--optimize-for-size` keeps the young generation at 1 MB
 * semi-spaces (it overrides `--max-semi-space-size`); `--regexp-interpret-all` keeps regular
 * expressions out of native code. Measured in docs/memory.md; NODE_OPTIONS may not carry these
 * flags, hence the launchers. Other commands (realm-server serves every read) keep Node's defaults.
 */
export const OPERATOR_NODE_FLAGS: readonly string[] = ['--no-opt', '--no-maglev', '--optimize-for-size', '--regexp-interpret-all'];

/** The Node flags for a `realm-operator <command>` process. */
export function nodeFlagsFor(command: string | undefined): readonly string[] {
  return command === 'operator' ? OPERATOR_NODE_FLAGS : [];
}
