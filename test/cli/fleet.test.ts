import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childExecutionName, type FleetDocument } from '../../bin/fleet';
import { useAccount } from './operator-world';

const world = useAccount();

/** A config as the operator keeps it: the sandbox's `web` and a second target `api`, grouped. */
const writeConfig = (): string => {
  const target = (name: string) => ({
    name,
    allocationId: 'eipalloc-0123456789abcdef0',
    domain: `${name}.example.test`,
    image: { imageId: 'ami-0123456789abcdef0' },
    tls: { mode: 'none' },
    tags: { tier: 'front' },
  });
  const path = join(mkdtempSync(join(tmpdir(), 'understudy-fleet-')), 'understudy.config.json');
  writeFileSync(
    path,
    JSON.stringify({
      targets: [target('web'), target('api')],
      groups: [{ name: 'front', targets: { tag: { key: 'tier', value: 'front' } }, maxConcurrency: 1 }],
    }),
  );
  return path;
};

let config = '';

beforeAll(() => {
  // The sandbox account already has `api` next to `web`, and the fleet machine, as `cdk deploy` would.
  config = writeConfig();
});

describe('understudy replace --group', () => {
  it('replaces every target of the group through the fleet machine and reports each item; exit 0', async () => {
    const run = await world.cli(['replace', '--group', 'front', '--config', config, '--watch', '--json']);
    const doc = JSON.parse(run.stdout) as FleetDocument;

    expect(run.code).toBe(0);
    expect(doc.execution.status).toBe('SUCCEEDED');
    expect(doc.items.map((i) => [i.target, i.status])).toEqual([
      ['web', 'succeeded'],
      ['api', 'succeeded'],
    ]);
    expect(doc.items[0]?.executionArn.endsWith(`:${childExecutionName('web', doc.execution.name)}`)).toBe(
      true,
    );
  });

  it('shows the waves as lines when watching without JSON: one target at a time', async () => {
    const run = await world.cli([
      'replace',
      '--group',
      'front',
      '--config',
      config,
      '--watch',
      '--reason',
      'waves',
    ]);

    expect(run.code).toBe(0);
    expect(run.stdout).toContain('2 target(s), 1 at a time, 0% failures tolerated');
    expect(run.stdout).toContain('wave: 1 running, 0 succeeded, 0 failed, 1 pending');
    expect(run.stdout).not.toMatch(/wave: 2 running/);
    expect(run.stdout).toContain('fleet succeeded: front');
  });

  it('refuses an unknown group naming --group, before any call; exit 1', async () => {
    const run = await world.cli(['replace', '--group', 'back', '--config', config, '--json']);

    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout).error).toMatchObject({ field: 'group' });
    expect(JSON.parse(run.stdout).error.message).toContain('groups: front');
  });

  it('refuses a target and a group together; exit 1', async () => {
    const run = await world.cli(['replace', 'web', '--group', 'front', '--config', config]);

    expect(run.code).toBe(1);
    expect(run.stderr).toContain('not both');
  });
});
