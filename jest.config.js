// Jest runs the TypeScript sources as ES modules through SWC (type-checking is `tsc`'s job, in
// `make typecheck`); Node needs --experimental-vm-modules for that, which the npm scripts pass.
// The project runs on Node 24 (package.json engines; @kubernetes/client-node 2 cannot even load on
// older Node). The `node` devDependency provides it: run through `make`, `npm run`, `npx` or with
// node_modules/.bin first on PATH.
const nodeMajor = Number(process.versions.node.split('.')[0]);
if (nodeMajor < 24) {
  throw new Error(
    `Jest is running on Node ${process.version}; the tests need Node 24: use \`make test-unit\` etc., ` +
      '`npx node --experimental-vm-modules node_modules/jest/bin/jest.js ...`, or put node_modules/.bin first on PATH',
  );
}

const transform = {
  '^.+\\.ts$': [
    '@swc/jest',
    {
      jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
      module: { type: 'es6' },
      sourceMaps: 'inline',
    },
  ],
};
const common = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform,
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
};

/** @type {import('jest').Config} */
export default {
  // Per-project testTimeout is ignored by Jest; integration and end-to-end tests start real servers.
  testTimeout: 120_000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
    },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/e2e/**/*.test.ts'],
    },
    // Against a real kind cluster deployed from deploy/kind (hack/kind/e2e.sh exports KUBECONFIG).
    {
      ...common,
      displayName: 'kind',
      testMatch: ['<rootDir>/test/kind/**/*.test.ts'],
    },
  ],
};
