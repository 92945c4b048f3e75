/**
 * `node:http` and `node:https` loaded with `require`, for modules that would otherwise `import` them.
 *
 * Why: in Node 24 an ES module `import` of `node:http` builds the module's ESM namespace by reading
 * every export, and a few of them are lazy getters that load Node's bundled undici (fetch,
 * WebSocket): 4-5 MB more resident memory in a process that never uses it (docs/memory.md).
 * `require` hands back the CommonJS exports without reading the getters. Type-only imports
 * (`import type`) are erased and cost nothing. The saving needs every module of the process to
 * load them this way.
 */
import { createRequire } from 'node:module';
import type HttpModule from 'node:http';
import type HttpsModule from 'node:https';

const require = createRequire(import.meta.url);

export const http = require('node:http') as typeof HttpModule;
export const https = require('node:https') as typeof HttpsModule;
