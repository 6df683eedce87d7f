import type { HistoryDocument } from '../../bin/history';
import type { ReplaceDocument } from '../../bin/replace';
import { useAccount } from './operator-world';

const world = useAccount();

describe('understudy history', () => {
  it('lists the target’s runs newest first: time, outcome, old → new instance, execution name, warnings', async () => {
    const { seeded } = world.account.deployment;
    const replaced = JSON.parse(
      (await world.cli(['replace', 'web', '--watch', '--json'])).stdout,
    ) as ReplaceDocument;
    const planned = JSON.parse(
      (await world.cli(['replace', 'web', '--dry-run', '--watch', '--json'])).stdout,
    ) as ReplaceDocument;

    const run = await world.cli(['history', 'web', '--json']);
    const text = await world.cli(['history', 'web']);
    const doc = JSON.parse(run.stdout) as HistoryDocument;
    const newInstance = world.account.sandbox.eipInstance(seeded.allocationId);

    expect(run.code).toBe(0);
    expect(doc.command).toBe('history');
    expect(doc.runs.map((r) => r.executionName)).toEqual([planned.execution.name, replaced.execution.name]);
    expect(doc.runs[1]).toMatchObject({
      outcome: 'replaced',
      oldInstanceId: seeded.oldInstanceId,
      newInstanceId: newInstance,
      warnings: 0,
      finishedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    expect(text.code).toBe(0);
    expect(text.stdout.split('\n')[1]).toMatch(
      new RegExp(`^\\S+Z {2}replaced +${seeded.oldInstanceId} → ${newInstance} +${replaced.execution.name}$`),
    );
  });

  it('keeps to --limit, and refuses a limit that is not a positive whole number with exit 1', async () => {
    const limited = await world.cli(['history', 'web', '--limit', '1', '--json']);
    const refused = await world.cli(['history', 'web', '--limit', '0']);

    expect((JSON.parse(limited.stdout) as HistoryDocument).runs).toHaveLength(1);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('--limit');
  });

  it('says so for a target without runs', async () => {
    const run = await world.cli(['history', 'api']);

    expect(run.code).toBe(0);
    expect(run.stdout).toBe('no run recorded for api\n');
  });
});
