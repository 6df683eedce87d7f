// Builds every step's handler, and the trigger function's, with the stack's bundling options (lib/bundling.ts): ESM, minified, source maps, AWS SDK
// bundled. Output: dist/lambdas/<step>/index.mjs.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type BuildOptions, build } from 'esbuild';
import { BUNDLE } from '../lib/bundling';
import { STEP_NAMES, TRIGGER_FOLDER } from '../lib/steps';

const ROOT = join(__dirname, '..');

const bundleOptions: BuildOptions = {
  bundle: true,
  platform: 'node',
  format: BUNDLE.format,
  target: BUNDLE.target,
  minify: BUNDLE.minify,
  mainFields: [...BUNDLE.mainFields],
  banner: { js: BUNDLE.banner },
  sourcemap: BUNDLE.sourcemap,
  logLevel: 'warning',
};

export const buildBundles = async (
  outDir = join(ROOT, 'dist', 'lambdas'),
): Promise<Record<string, string>> => {
  const outputs: Record<string, string> = {};
  for (const folder of [...STEP_NAMES, TRIGGER_FOLDER]) {
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
