import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

describe('npx understudy demo --json', () => {
  it('prints the scenario contract of design §5 for the happy scenario', async () => {
    const { stdout } = await run('npx', ['understudy', 'demo', '--json', '--scenario', 'happy'], {
      cwd: join(__dirname, '..', '..'),
      maxBuffer: 16 * 1024 * 1024,
    });
    const { scenarios } = JSON.parse(stdout) as { scenarios: Record<string, unknown>[] };
    const [happy] = scenarios;

    expect(scenarios).toHaveLength(1);
    expect(Object.keys(happy ?? {}).sort()).toEqual(
      [
        'name',
        'outcome',
        'oldInstanceId',
        'newInstanceId',
        'elasticIpInstanceId',
        'failedProbes',
        'downtimeMs',
        'stateTransitions',
        'tfstateSerialBefore',
        'tfstateSerialAfter',
        'wallMs',
        'timeline',
      ].sort(),
    );
    expect(happy?.outcome).toBe('replaced');
    expect(happy?.elasticIpInstanceId).toBe(happy?.newInstanceId);
    expect(happy?.oldInstanceId).not.toBe(happy?.newInstanceId);
    // The replaced server's Terraform state was reconciled: one serial later.
    expect(typeof happy?.tfstateSerialBefore).toBe('number');
    expect(happy?.tfstateSerialAfter).toBe((happy?.tfstateSerialBefore as number) + 1);
    const timeline = happy?.timeline as { state: string; startMs: number; durationMs: number }[];
    expect(timeline.map((t) => t.state)).toEqual(
      expect.arrayContaining(['Preflight', 'Launch', 'Switch', 'Finish']),
    );
  }, 600_000);

  it('shows in one run that restore keeps HTTPS up while the manual order (http-01 after the switch) does not', async () => {
    const { stdout } = await run('npx', ['understudy', 'demo', '--json'], {
      cwd: join(__dirname, '..', '..'),
      maxBuffer: 16 * 1024 * 1024,
    });
    const { scenarios } = JSON.parse(stdout) as {
      scenarios: { name: string; outcome: string; failedProbes: number; downtimeMs: number }[];
    };
    const byName = new Map(scenarios.map((s) => [s.name, s]));

    expect([...byName.keys()]).toEqual(
      expect.arrayContaining(['happy', 'bad-ami', 'bad-app', 'tls-restore', 'manual-order']),
    );
    expect(byName.get('tls-restore')).toMatchObject({ outcome: 'replaced', failedProbes: 0, downtimeMs: 0 });
    expect(byName.get('manual-order')?.outcome).toBe('replaced');
    expect(byName.get('manual-order')?.failedProbes).toBeGreaterThan(0);
    expect(byName.get('manual-order')?.downtimeMs).toBeGreaterThan(0);
  }, 600_000);

  it('refuses an unknown scenario with the list of known ones', async () => {
    const failure = await run('npx', ['understudy', 'demo', '--scenario', 'nope'], {
      cwd: join(__dirname, '..', '..'),
    }).catch((error: { code: number; stderr: string }) => error);

    expect((failure as { code: number }).code).toBe(2);
    expect((failure as { stderr: string }).stderr).toContain('happy');
  }, 600_000);
});
