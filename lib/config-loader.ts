import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Node } from 'constructs';
import { parseConfig, type UnderstudyConfig } from '../lambdas/shared/config';

/** Where the CDK app looks for the configuration unless `-c config=<path>` says otherwise. */
export const DEFAULT_CONFIG_PATH = 'understudy.config.json';

/** The config path for an app: the `config` context value, else {@link DEFAULT_CONFIG_PATH}. */
export const configPathFrom = (node: Node): string => {
  const fromContext: unknown = node.tryGetContext('config');
  if (fromContext === undefined) return DEFAULT_CONFIG_PATH;
  if (typeof fromContext !== 'string' || fromContext.trim() === '') {
    throw new Error('context "config" must be a file path, e.g. `npx cdk synth -c config=prod.config.json`');
  }
  return fromContext;
};

/**
 * Reads and validates the configuration file. A bad file fails synth with every problem at once, one
 * line each, naming the field and the fix (the format comes from `parseConfig`).
 */
export const loadConfig = (path: string = DEFAULT_CONFIG_PATH): UnderstudyConfig => {
  const absolute = resolve(path);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `cannot read the configuration at ${absolute} (${reason}): copy understudy.config.example.json to ` +
        `${DEFAULT_CONFIG_PATH} and edit it, or point to another file with -c config=<path>`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`${path} is not valid JSON (${reason}): fix the syntax, the schema is in $schema`);
  }
  return parseConfig(raw, path);
};
