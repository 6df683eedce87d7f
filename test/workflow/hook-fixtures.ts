import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TargetConfig } from '../../lambdas/shared/config';
import type { World } from './helpers';

/** The target with these lifecycle hooks. */
export const withHooks =
  (hooks: NonNullable<TargetConfig['hooks']>) =>
  (t: TargetConfig): TargetConfig => ({ ...t, hooks });

/**
 * The lines the hooks appended to `hooks.log` in the box's own directory (the sandbox's per-instance
 * root): which box ran what, in order.
 */
export const logOf = (world: World, instanceId: string): string[] => {
  const path = join(world.sandbox.instanceDir(instanceId), 'hooks.log');
  return existsSync(path) ? readFileSync(path, 'utf8').trim().split('\n') : [];
};
