import type { Instance } from '@aws-sdk/client-ec2';
import { chooseRestoreTarget, ROLLBACK_MARGIN_MS } from '../../lambdas/preflight/rollback-plan';

const NOW = Date.parse('2026-11-27T12:00:00Z');
const box = (id: string, state: string, retireAfter?: string): Instance => ({
  InstanceId: id,
  State: { Name: state as never },
  Tags: [
    { Key: 'understudy:target', Value: 'web' },
    { Key: 'understudy:role', Value: 'retired' },
    ...(retireAfter ? [{ Key: 'understudy:retire-after', Value: retireAfter }] : []),
  ],
});

describe('the retired box a rollback brings back', () => {
  it('is the newest retired box by its window, when that window is open', () => {
    const chosen = chooseRestoreTarget(
      'web',
      [
        box('i-0000000000000000a', 'stopped', '2026-11-28T01:00:00Z'),
        box('i-0000000000000000b', 'stopped', '2026-11-28T09:00:00Z'),
      ],
      NOW,
    );
    expect(chosen.InstanceId).toBe('i-0000000000000000b');
  });

  it('is refused when there is none, naming why there may be none', () => {
    expect(() => chooseRestoreTarget('web', [], NOW)).toThrow(
      /^input\.action: target web has no retired server to roll back to/,
    );
  });

  it('is refused once its window ended, with the time it ended', () => {
    expect(() =>
      chooseRestoreTarget('web', [box('i-0000000000000000a', 'stopped', '2026-11-27T11:59:00Z')], NOW),
    ).toThrow('the rollback window of i-0000000000000000a (target web) ended at 2026-11-27T11:59:00.000Z');
  });

  it('is refused when it is already terminated, even inside its window', () => {
    expect(() =>
      chooseRestoreTarget('web', [box('i-0000000000000000a', 'terminated', '2026-11-28T11:00:00Z')], NOW),
    ).toThrow(/i-0000000000000000a of target web is terminated: its rollback window .* is closed/);
  });

  it('is refused when its window ends too soon to start it safely, and when its window is unreadable', () => {
    const soon = new Date(NOW + ROLLBACK_MARGIN_MS - 60_000).toISOString();
    expect(() => chooseRestoreTarget('web', [box('i-0000000000000000a', 'stopped', soon)], NOW)).toThrow(
      /too close to start it safely/,
    );
    expect(() => chooseRestoreTarget('web', [box('i-0000000000000000a', 'stopped')], NOW)).toThrow(
      /ended at an unreadable time/,
    );
  });
});
