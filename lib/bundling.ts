/**
 * How every step is bundled: the stack (NodejsFunction) and scripts/build-bundles.ts (the bundle tests
 * and the benchmark) both read these, so what is tested and measured is what is deployed. CDK-free.
 */

/** esbuild's ESM output has no `require`; a few bundled CommonJS dependencies still call it. */
export const ESM_REQUIRE_SHIM =
  "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);";

export const BUNDLE = {
  target: 'node22',
  minify: true,
  mainFields: ['module', 'main'],
  banner: ESM_REQUIRE_SHIM,
} as const;
