#!/usr/bin/env node
// npm bin entry: runs the TypeScript CLI with tsx (the same way `npm run demo` does), so `npx understudy`
// works right after `npm ci` without a build step.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const cli = fileURLToPath(new URL('./cli.ts', import.meta.url));
const result = spawnSync(process.execPath, [require.resolve('tsx/cli'), cli, ...process.argv.slice(2)], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
