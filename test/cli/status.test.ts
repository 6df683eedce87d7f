import type { ReplaceDocument } from '../../bin/replace';
import type { StatusDocument } from '../../bin/status';
import { SANDBOX_ENV } from '../../sandbox/demo';
import { settled, until, useAccount } from './operator-world';

const world = useAccount();

describe('understudy status', () => {
  it('shows the running execution with its target and the lock it holds, then the finished run and no lock', async () => {
    // A slow-booting image keeps the run in AwaitReadiness for minutes of virtual time.
    const slow = world.account.sandbox.registerImage(
      { cloudInit: 'done', app: 'healthy', bootMs: 300_000 },
      { name: 'slow-image' },
    );
    const started = await world.cli(['replace', 'web', '--image', slow, '--no-watch', '--json']);
    const { execution } = JSON.parse(started.stdout) as ReplaceDocument;
    await until(() => world.account.sandbox.objectKeys(SANDBOX_ENV.RUNS_BUCKET).includes('locks/web.json'));

    const during = await world.cli(['status', '--json']);
    const duringText = await world.cli(['status', 'web']);
    await settled(execution.arn);
    const after = await world.cli(['status', 'web', '--json']);
    const running = JSON.parse(during.stdout) as StatusDocument;
    const finished = JSON.parse(after.stdout) as StatusDocument;

    expect(started.code).toBe(0);
    expect(execution.status).toBe('RUNNING');
    expect(during.code).toBe(0);
    expect(running.running).toEqual([
      { target: 'web', name: execution.name, arn: execution.arn, startDate: expect.any(String) },
    ]);
    expect(running.targets).toEqual([
      {
        target: 'web',
        lock: expect.objectContaining({ executionName: execution.name, expired: false }),
        lastRun: null,
      },
    ]);
    expect(duringText.stdout).toContain(`web              ${execution.name}`);
    expect(duringText.stdout).toContain(`locked by ${execution.name}`);
    expect(finished.running).toEqual([]);
    expect(finished.targets).toEqual([
      {
        target: 'web',
        lock: null,
        lastRun: expect.objectContaining({ executionName: execution.name, outcome: 'replaced' }),
      },
    ]);
  });

  it('exits 3 when the stack is not in the account, and 1 for a malformed target name', async () => {
    const missing = await world.cli(['status', '--stack', 'NoSuchStack']);
    const malformed = await world.cli(['status', 'Web_1', '--json']);

    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('stack NoSuchStack not found');
    expect(malformed.code).toBe(1);
    expect(JSON.parse(malformed.stdout)).toMatchObject({
      command: 'status',
      error: { exitCode: 1, field: 'target' },
    });
  });
});
