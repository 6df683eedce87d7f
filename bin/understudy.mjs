#!/usr/bin/env node
// npm bin entry: runs the TypeScript CLI through tsx's loader, so `npx understudy` works right after `npm ci`.
import { createRequire } from 'node:module';
import { register } from 'tsx/cjs/api';

register();
createRequire(import.meta.url)('./cli.ts');
