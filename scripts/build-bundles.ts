// Builds every step's handler the way the stack does (lib/ uses the same options through NodejsFunction):
// ESM, minified, AWS SDK bundled, for Node 22. Output: dist/lambdas/<step>/index.mjs.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { STEP_FOLDERS } from '../sandbox/workflow';

const ROOT = join(__dirname, '..');

export const bundleOptions = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  minify: true,
  sourcemap: false,
  mainFields: ['module', 'main'] as string[],
  // ESM bundles of CommonJS dependencies still call require(); give them one.
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  logLevel: 'warning',
} as const;

export const buildBundles = async (
  outDir = join(ROOT, 'dist', 'lambdas'),
): Promise<Record<string, string>> => {
  const outputs: Record<string, string> = {};
  for (const folder of STEP_FOLDERS) {
    const outfile = join(outDir, folder, 'index.mjs');
    mkdirSync(join(outDir, folder), { recursive: true });
    await build({ ...bundleOptions, entryPoints: [join(ROOT, 'lambdas', folder, 'handler.ts')], outfile });
    outputs[folder] = outfile;
  }
  return outputs;
};

if (require.main === module) {
  buildBundles().then(
    (outputs) => console.log(`built ${Object.keys(outputs).length} bundles in dist/lambdas`),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
