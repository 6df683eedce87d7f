/**
 * How every step is bundled: the stack (NodejsFunction) and scripts/build-bundles.ts (the bundle tests
 * and the benchmark) both read these, so what is tested and measured is what is deployed. CDK-free.
 */

/** esbuild's ESM output has no `require`; a few bundled CommonJS dependencies still call it. */
export const ESM_REQUIRE_SHIM =
  "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);";

export const BUNDLE = {
  format: 'esm',
  /** External source maps (`index.mjs.map`), read at run time through NODE_OPTIONS=--enable-source-maps. */
  sourcemap: true,
  target: 'node22',
  minify: true,
  mainFields: ['module', 'main'],
  banner: ESM_REQUIRE_SHIM,
} as const;
