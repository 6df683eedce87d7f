import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

describe('the workflow with the minified Lambda bundles', () => {
  it('replaces on a good image and rolls back on a failing one, error names intact', async () => {
    const { stdout } = await run('npx', ['tsx', join('scripts', 'bundle-workflow.ts'), 'happy', 'bad-ami'], {
      cwd: join(__dirname, '..', '..'),
      env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'SILENT' },
      maxBuffer: 16 * 1024 * 1024,
    });
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
      scenarios: {
        name: string;
        outcome: string;
        oldInstanceId: string;
        elasticIpInstanceId: string;
        newInstanceId: string;
      }[];
    };
    const byName = Object.fromEntries(result.scenarios.map((s) => [s.name, s]));

    expect(byName.happy?.outcome).toBe('replaced');
    expect(byName.happy?.elasticIpInstanceId).toBe(byName.happy?.newInstanceId);
    expect(byName['bad-ami']?.outcome).toBe('rolled-back');
    expect(byName['bad-ami']?.elasticIpInstanceId).toBe(byName['bad-ami']?.oldInstanceId);
  }, 600_000);
});
