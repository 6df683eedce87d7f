// `npm run bench`: each Lambda bundle's size and cold import time, as a ratio against a baseline
// (importing an empty ESM module) measured the same way in the same run: median of fresh processes.
// Then the Terraform state reconcile benchmark (bench/tfstate.ts).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { buildBundles } from '../scripts/build-bundles';
import { runTfstateBench } from './tfstate';

const RUNS = 7;
const OUT = join(__dirname, 'out');

const importMs = (file: string): number => {
  const script = `const t=performance.now();await import(${JSON.stringify(pathToFileURL(file).href)});console.log(performance.now()-t)`;
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i += 1) {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'SILENT', AWS_REGION: 'eu-west-1' },
    });
    samples.push(Number(out.toString().trim()));
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] as number;
};

const main = async () => {
  mkdirSync(OUT, { recursive: true });
  const baselineFile = join(OUT, 'baseline.mjs');
  writeFileSync(baselineFile, 'export const handler = async () => ({});\n');
  const baseline = importMs(baselineFile);
  const bundles = await buildBundles();
  console.log(
    `node ${process.version}; baseline import ${baseline.toFixed(2)} ms (median of ${RUNS} processes)`,
  );
  console.log('step              size KiB   gzip KiB   import ms   × baseline');
  const rows = [];
  for (const [step, file] of Object.entries(bundles)) {
    const size = statSync(file).size / 1024;
    const gzip = gzipSync(readFileSync(file)).length / 1024;
    const ms = importMs(file);
    rows.push({ step, sizeKiB: size, gzipKiB: gzip, importMs: ms, ratio: ms / baseline });
    console.log(
      `${step.padEnd(16)} ${size.toFixed(1).padStart(9)} ${gzip.toFixed(1).padStart(10)} ${ms.toFixed(1).padStart(11)} ${(ms / baseline).toFixed(1).padStart(12)}`,
    );
  }
  writeFileSync(join(OUT, 'bundles.json'), JSON.stringify({ baselineMs: baseline, rows }, null, 2));
  await runTfstateBench();
};

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
