import { createHash } from 'node:crypto';
import { CreateScheduleCommand, type SchedulerClient } from '@aws-sdk/client-scheduler';
import { awsCall, hasCode } from '../shared/aws-errors';
import type { MaintenanceWindow } from '../shared/config';
import { inWindow, localTime } from '../shared/window';

/**
 * Deferring a trigger instead of starting a run that preflight would refuse: the execution name is the
 * de-duplication of design §3 and Step Functions keeps it for 90 days, so a run refused for a closed
 * window or a held lock would use up the only name that image (or that broken box) ever gets. A
 * deferral is a one-time schedule that hands the same event back to this function later, which then
 * decides everything again (the parameter may hold a newer image by then).
 */

/** How long a trigger waits for a run that holds the target's lock before it looks again. */
export const LOCK_RETRY_MS = 15 * 60_000;
/** Scheduler wants the time ahead of now; a minute covers the call's own latency. */
const MIN_LEAD_MS = 60_000;
const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;

const ceilTo = (ms: number, step: number): number => Math.ceil(ms / step) * step;

const minutesOf = (time: string): number => {
  const [hours, minutes] = time.split(':').map(Number);
  return (hours ?? 0) * 60 + (minutes ?? 0);
};

/** The UTC offset of `timeZone` at `at`, in ms (local wall clock minus UTC). */
const offsetAt = (at: number, timeZone: string): number => {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(new Date(at));
  const n = (type: Intl.DateTimeFormatPartTypes) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  const wall = Date.UTC(n('year'), n('month') - 1, n('day'), n('hour'), n('minute'), n('second'));
  return wall - Math.floor(at / 1000) * 1000;
};

/** The instant the wall clock of `timeZone` reads `wallMs` (as if it were UTC); DST-aware. */
const instantOf = (wallMs: number, timeZone: string): number => {
  const first = wallMs - offsetAt(wallMs, timeZone);
  return wallMs - offsetAt(first, timeZone);
};

/**
 * When the earliest of `windows` next opens after `now`, or undefined when none does within 8 days
 * (every window names at least one day, so that only happens to a malformed config). A start that a
 * DST change skips opens at the first minute the window is open after it.
 */
export const nextOpening = (windows: readonly MaintenanceWindow[], now: Date): Date | undefined => {
  let best: number | undefined;
  for (const window of windows) {
    // Local midnight of today, as a wall-clock instant (ms since epoch read as UTC).
    const wallNow = now.getTime() + offsetAt(now.getTime(), window.timezone);
    const wallMidnight = Math.floor(wallNow / DAY_MS) * DAY_MS;
    for (let day = 0; day <= 8; day += 1) {
      const wallStart = wallMidnight + day * DAY_MS + minutesOf(window.start) * MINUTE_MS;
      const weekday = localTime(new Date(instantOf(wallStart, window.timezone)), window.timezone).day;
      if (!window.days.includes(weekday)) continue;
      let at = instantOf(wallStart, window.timezone);
      // A skipped start lands either before the jump (closed) or after it (open, but late): walk to the edge.
      for (let step = 0; step < 180 && !inWindow(window, new Date(at)); step += 1) at += MINUTE_MS;
      for (let step = 0; step < 180; step += 1) {
        const earlier = at - MINUTE_MS;
        if (earlier <= now.getTime() || !inWindow(window, new Date(earlier))) break;
        at = earlier;
      }
      if (at > now.getTime() && inWindow(window, new Date(at))) {
        best = best === undefined ? at : Math.min(best, at);
        break;
      }
    }
  }
  return best === undefined ? undefined : new Date(best);
};

/** When a deferred trigger for a held lock looks again: the next quarter hour at least 15 minutes out. */
export const afterLock = (now: Date): Date => new Date(ceilTo(now.getTime() + LOCK_RETRY_MS, LOCK_RETRY_MS));

/** `yyyymmddhhmm` in UTC. */
const stamp = (at: Date): string => at.toISOString().slice(0, 16).replace(/[-T:]/g, '');

/**
 * The schedule's name: the execution it is for and the minute it fires, so that two deferrals of the
 * same request to the same time meet in one schedule (ConflictException), while a deferral made by a
 * deferred invocation never collides with the schedule that invoked it (which Scheduler deletes only
 * after the invocation). Kept inside Scheduler's 64 characters with a digest when the name is long.
 */
export const deferralName = (executionName: string, at: Date): string => {
  const suffix = `-${stamp(at)}`;
  if (executionName.length + suffix.length <= 64) return `${executionName}${suffix}`;
  const digest = createHash('sha256').update(executionName).digest('hex').slice(0, 8);
  return `${executionName.slice(0, 64 - suffix.length - digest.length - 1)}-${digest}${suffix}`;
};

export interface DeferralSettings {
  readonly scheduleGroup: string;
  readonly schedulerRoleArn: string;
  /** This function's unqualified ARN: the schedule's templated Lambda target. */
  readonly functionArn: string;
}

export interface Deferral {
  readonly schedule: string;
  readonly at: string;
  /** False when the same request was deferred to the same time already. */
  readonly created: boolean;
}

export const deferTrigger = async (
  scheduler: SchedulerClient,
  settings: DeferralSettings,
  request: { readonly executionName: string; readonly event: unknown; readonly at: Date; readonly now: Date },
  description: string,
): Promise<Deferral> => {
  const at = new Date(
    Math.max(ceilTo(request.at.getTime(), MINUTE_MS), ceilTo(request.now.getTime() + MIN_LEAD_MS, MINUTE_MS)),
  );
  const name = deferralName(request.executionName, at);
  try {
    await awsCall('CreateSchedule', () =>
      scheduler.send(
        new CreateScheduleCommand({
          Name: name,
          GroupName: settings.scheduleGroup,
          Description: description.length <= 512 ? description : `${description.slice(0, 511)}…`,
          ScheduleExpression: `at(${at.toISOString().slice(0, 19)})`,
          ScheduleExpressionTimezone: 'UTC',
          FlexibleTimeWindow: { Mode: 'OFF' },
          ActionAfterCompletion: 'DELETE',
          State: 'ENABLED',
          Target: {
            Arn: settings.functionArn,
            RoleArn: settings.schedulerRoleArn,
            Input: JSON.stringify(request.event),
            // A deferred run that cannot start within the hour is looked at again by its next event.
            RetryPolicy: { MaximumRetryAttempts: 10, MaximumEventAgeInSeconds: 3600 },
          },
        }),
      ),
    );
    return { schedule: name, at: at.toISOString(), created: true };
  } catch (error) {
    if (!hasCode(error, 'ConflictException')) throw error;
    return { schedule: name, at: at.toISOString(), created: false };
  }
};
