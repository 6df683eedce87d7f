import { MaintenanceWindowSchema } from '../../lambdas/shared/config';
import { afterLock, deferralName, nextOpening } from '../../lambdas/trigger/defer';

const window = (w: Record<string, unknown>) => MaintenanceWindowSchema.parse(w);

describe('when a deferred trigger comes back', () => {
  test('outside the window: at its next opening, in its own time zone', () => {
    const saturdayNight = window({ days: ['sat'], start: '22:00', end: '02:00', timezone: 'Europe/Berlin' });
    // Wednesday 1 July 2026, 14:00 in Berlin (UTC+2): Saturday 22:00 local is 20:00Z.
    expect(nextOpening([saturdayNight], new Date('2026-07-01T12:00:00Z'))?.toISOString()).toBe(
      '2026-07-04T20:00:00.000Z',
    );
    // Just after Sunday's early hours closed: a week later.
    expect(nextOpening([saturdayNight], new Date('2026-07-05T00:00:00Z'))?.toISOString()).toBe(
      '2026-07-11T20:00:00.000Z',
    );
  });

  test('the earliest of several windows wins', () => {
    const windows = [
      window({ days: ['sun'], start: '03:00', end: '05:00' }),
      window({ days: ['thu'], start: '23:30', end: '23:45' }),
    ];
    expect(nextOpening(windows, new Date('2026-07-01T12:00:00Z'))?.toISOString()).toBe(
      '2026-07-02T23:30:00.000Z',
    );
  });

  test('a start that the clock change skips opens at the first minute the window is open', () => {
    // Sunday 29 March 2026: Berlin jumps from 02:00 to 03:00 (UTC+1 to UTC+2); 02:30 never happens.
    const early = window({ days: ['sun'], start: '02:30', end: '04:00', timezone: 'Europe/Berlin' });
    expect(nextOpening([early], new Date('2026-03-28T12:00:00Z'))?.toISOString()).toBe(
      '2026-03-29T01:00:00.000Z',
    );
  });

  test('behind a held lock: at the next quarter hour at least fifteen minutes out', () => {
    expect(afterLock(new Date('2026-07-01T12:00:00Z')).toISOString()).toBe('2026-07-01T12:15:00.000Z');
    expect(afterLock(new Date('2026-07-01T12:07:10Z')).toISOString()).toBe('2026-07-01T12:30:00.000Z');
  });
});

describe('the deferral schedule name', () => {
  const at = new Date('2026-07-04T20:00:00Z');

  test('is the execution name and the minute, so one request deferred twice to one time is one schedule', () => {
    expect(deferralName('web-ami-0123456789abcdef0', at)).toBe('web-ami-0123456789abcdef0-202607042000');
    expect(deferralName('web-ami-0123456789abcdef0', new Date('2026-07-04T20:15:00Z'))).not.toBe(
      deferralName('web-ami-0123456789abcdef0', at),
    );
  });

  test("fits Scheduler's 64 characters for the longest execution names, and stays distinct", () => {
    const long = `${'a'.repeat(32)}-heal-i-0123456789abcdef0`;
    const other = `${'a'.repeat(32)}-heal-i-0123456789abcdef1`;
    expect(deferralName(long, at)).toMatch(/^[0-9a-zA-Z-_.]{1,64}$/);
    expect(deferralName(long, at)).not.toBe(deferralName(other, at));
  });
});
