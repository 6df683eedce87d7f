import { writeFileSync } from 'node:fs';
import { CONFIG_SCHEMA_PATH, renderConfigSchema } from '../lib/config-schema';

// `npm run schema`: regenerate the editor schema after changing lambdas/shared/config.ts.
writeFileSync(CONFIG_SCHEMA_PATH, renderConfigSchema());
console.log(`wrote ${CONFIG_SCHEMA_PATH}`);
