import type { MaintenanceWindow, TargetConfig, Weekday } from './config';
import { WEEKDAYS } from './config';
import { refused } from './errors';
import type { ExecutionInput } from './schemas';

/**
 * Maintenance windows (config `triggers.maintenanceWindows`). The trigger function applies the same
 * rule before it starts anything and defers a trigger outside every window to the next opening
 * (lambdas/trigger/defer.ts), since a started execution would use up its de-duplication name. A run
 * that still arrives outside (started by another route) is refused here, before preflight reads
 * anything else.
 */

const MINUTES_PER_DAY = 24 * 60;

const minutesOf = (time: string): number => {
  const [hours, minutes] = time.split(':').map(Number);
  return (hours ?? 0) * 60 + (minutes ?? 0);
};

/** The weekday and minute of the day at `at` on the wall clock of `timeZone`. */
export const localTime = (at: Date, timeZone: string): { day: Weekday; minutes: number; text: string } => {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    weekday: 'short',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(at);
  const part = (type: Intl.DateTimeFormatPartTypes) => parts.find((p) => p.type === type)?.value ?? '';
  const day = part('weekday').toLowerCase().slice(0, 3) as Weekday;
  const hour = part('hour');
  const minute = part('minute');
  return { day, minutes: minutesOf(`${hour}:${minute}`), text: `${part('weekday')} ${hour}:${minute}` };
};

const dayBefore = (day: Weekday): Weekday =>
  WEEKDAYS[(WEEKDAYS.indexOf(day) + WEEKDAYS.length - 1) % WEEKDAYS.length] as Weekday;

/** Whether `at` falls in the window; a window whose end is not after its start runs past midnight. */
export const inWindow = (window: MaintenanceWindow, at: Date): boolean => {
  const { day, minutes } = localTime(at, window.timezone);
  const start = minutesOf(window.start);
  const end = minutesOf(window.end);
  if (start < end) return window.days.includes(day) && minutes >= start && minutes < end;
  const lateOnStartDay = window.days.includes(day) && minutes >= start && minutes < MINUTES_PER_DAY;
  const earlyOnNextDay = window.days.includes(dayBefore(day)) && minutes < end;
  return lateOnStartDay || earlyOnNextDay;
};

const describeWindow = (w: MaintenanceWindow): string =>
  `${w.days.join(',')} ${w.start}-${w.end} ${w.timezone}`;

/**
 * Refuses a run started by an automatic trigger outside the target's windows. Manual runs (no
 * `input.trigger`) are never held; self-healing is held only when its config asks for it, since a
 * broken box waiting for Sunday is the outage the trigger exists to end.
 */
export const checkMaintenanceWindow = (target: TargetConfig, input: ExecutionInput, at: Date): void => {
  const trigger = input.trigger;
  const windows = target.triggers?.maintenanceWindows;
  if (trigger === undefined || windows === undefined || windows.length === 0) return;
  if (trigger === 'selfHeal' && target.triggers?.selfHeal?.onlyInMaintenanceWindows !== true) return;
  if (windows.some((w) => inWindow(w, at))) return;
  const first = windows[0] as MaintenanceWindow;
  throw refused(
    `triggers.maintenanceWindows: the ${trigger} trigger fired at ${at.toISOString()} (${localTime(at, first.timezone).text} ${first.timezone}), outside every maintenance window of target ${target.name} (${windows.map(describeWindow).join('; ')}); nothing was changed. Replace it by hand now (npx understudy replace ${target.name}), or let a trigger inside a window do it`,
    { field: 'triggers.maintenanceWindows' },
  );
};
