import { z } from 'zod';
import { ConfigSchema } from '../lambdas/shared/config';

/** Committed location of the editor schema; `npm run schema` rewrites it. */
export const CONFIG_SCHEMA_PATH = 'config/understudy.config.schema.json';

/**
 * The JSON Schema of what a user may write (`io: 'input'`: defaulted fields are optional), rendered
 * exactly as committed so a test can tell when the file went stale. Cross-field rules (exactly one image
 * source, unique names) cannot be expressed here; synth still enforces them.
 */
export const renderConfigSchema = (): string => {
  const schema = z.toJSONSchema(ConfigSchema, { io: 'input' });
  return `${JSON.stringify(
    { ...schema, title: 'Understudy configuration (understudy.config.json)' },
    null,
    2,
  )}\n`;
};
