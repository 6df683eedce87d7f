import { promisify } from 'node:util';
import { withGlobal } from '@sinonjs/fake-timers';
import type { VirtualClock } from './contracts';

/**
 * The sandbox's virtual clock: `@sinonjs/fake-timers` owns setTimeout/setInterval/Date, and a driver on
 * the real event loop fires the next due fake timer whenever no sandbox work is in flight.
 *
 * Why a "quiet turn": a timer fires only after one real `setImmediate` found nothing in flight, so every
 * promise chain has drained (a handler about to send its next SDK command reaches the sandbox's
 * tracking first) and one poll phase has delivered pending I/O. Sockets to the Elastic IP hold the clock
 * from the moment the client creates them (the connect hook in lambdas/shared/http.ts), so no guess is
 * needed for the gap between a client's connect and the proxy's accept; more turns are an option for
 * untracked real work a caller cannot hold for.
 *
 * The one way to misuse it: tracking (or holding for) work that itself waits on virtual time, such as a
 * modelled call that "hangs" on a timer. Time then never moves; the stall warning names the culprit.
 */

export interface ClockOptions {
  /** Virtual epoch milliseconds at install; defaults to the real now. */
  readonly startMs?: number;
  /** Real event-loop turns with nothing in flight before a timer fires (default 1, minimum 1). */
  readonly quietTurns?: number;
  /**
   * Real milliseconds of "work in flight, timers due, nothing changing" after which `onStall` is told
   * (default 10 000; 0 turns it off).
   */
  readonly stallWarningMs?: number;
  /** Defaults to a console warning naming the open holds. */
  readonly onStall?: (inFlight: string[]) => void;
}

/** The contract plus what a harness needs to explain a stuck run. */
export interface SandboxClock extends VirtualClock {
  /** As the contract's `track`, with a label for `inFlight()`. */
  track<T>(work: Promise<T>, label?: string): Promise<T>;
  /** Labels of the holds and tracked promises open right now. */
  inFlight(): string[];
}

const INSTALLED = Symbol.for('understudy.sandbox-clock');
type Host = { [INSTALLED]?: boolean };

type TimerHandle = { hasRef?: () => boolean; refresh?: () => unknown };
type Callback = (...args: unknown[]) => void;

export function installClock(options: ClockOptions = {}): SandboxClock {
  const host = globalThis as typeof globalThis & Host;
  if (host[INSTALLED]) throw new Error('a sandbox clock is already installed; uninstall it first');

  // Captured before faking: the driver lives on real time.
  const realSetImmediate = globalThis.setImmediate;
  const realClearImmediate = globalThis.clearImmediate;
  const realSetInterval = globalThis.setInterval;
  const realClearInterval = globalThis.clearInterval;

  const startMs = options.startMs ?? Date.now();
  const quietTurns = Math.max(1, options.quietTurns ?? 1);
  const fake = withGlobal(globalThis).install({
    now: startMs,
    toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
    // Timers created before install (by jest, by libraries) may be cleared afterwards; pass those through.
    shouldClearNativeTimers: true,
  });
  host[INSTALLED] = true;

  const inflight = new Map<number, string>();
  let nextHoldId = 0;
  let stopped = false;
  let scheduled: NodeJS.Immediate | undefined;
  let quiet = 0;
  // Bumped on every hold and release: the stall watchdog's sign of progress.
  let activity = 0;

  // Node lets unref'd timers fire without keeping the process alive; the driver copies that by only
  // holding the real loop open while a ref'd fake timer is pending.
  const pending = new Map<number, TimerHandle>();
  const anyRefPending = (): boolean => {
    // A timer that reached fake-timers by another path than the wrappers below counts as ref'd.
    if (fake.countTimers() > pending.size) return true;
    for (const handle of pending.values()) if (handle.hasRef?.() ?? true) return true;
    return false;
  };

  const schedule = (): void => {
    if (stopped) return;
    if (scheduled) {
      // Scheduled unref'd right after a timer fired; the continuation may since have added a ref'd one.
      if (!scheduled.hasRef() && anyRefPending()) scheduled.ref();
      return;
    }
    scheduled = realSetImmediate(step);
    if (!anyRefPending()) scheduled.unref();
  };

  function step(): void {
    scheduled = undefined;
    if (stopped) return;
    // In flight: a release reschedules. No timers: creating one reschedules. Either way, no spinning.
    if (inflight.size > 0 || fake.countTimers() === 0) {
      quiet = 0;
      return;
    }
    if (quiet < quietTurns) {
      quiet += 1;
      schedule();
      return;
    }
    quiet = 0;
    try {
      // Synchronous: jumps `now` to the timer's due time and calls it; a throw surfaces as it would
      // from a real timer, after the driver is rescheduled.
      fake.next();
    } finally {
      schedule();
    }
  }

  const idOf = (handle: unknown): number => Number(handle);
  const fakeSetTimeout = globalThis.setTimeout;
  const fakeSetInterval = globalThis.setInterval;
  const fakeClearTimeout = globalThis.clearTimeout;
  const fakeClearInterval = globalThis.clearInterval;

  const remember = (handle: TimerHandle): void => {
    const id = idOf(handle);
    pending.set(id, handle);
    const refresh = handle.refresh;
    if (typeof refresh === 'function') {
      // A refreshed timeout is pending again even if it already fired.
      handle.refresh = function (this: TimerHandle) {
        pending.set(id, handle);
        schedule();
        return refresh.call(this);
      };
    }
    schedule();
  };

  // fake-timers truncates a delay to whole milliseconds, so 0.86 ms would fire at the same virtual
  // instant; Node never fires a timer early (below 1 ms it waits 1 ms). A loop that waits for Date.now()
  // to move, like the SDK's adaptive rate limiter, would otherwise spin forever.
  const atLeast = (ms: number | undefined): number | undefined =>
    typeof ms === 'number' && ms > 0 && !Number.isInteger(ms) ? Math.ceil(ms) : ms;

  const wrappedSetTimeout = (callback: Callback, ms?: number, ...args: unknown[]) => {
    let id = Number.NaN;
    const handle = (fakeSetTimeout as unknown as (cb: Callback, ms?: number) => TimerHandle)(() => {
      pending.delete(id);
      callback(...args);
    }, atLeast(ms));
    id = idOf(handle);
    remember(handle);
    return handle;
  };
  const wrappedSetInterval = (callback: Callback, ms?: number, ...args: unknown[]) => {
    const handle = (
      fakeSetInterval as unknown as (cb: Callback, ms?: number, ...a: unknown[]) => TimerHandle
    )(callback, atLeast(ms), ...args);
    remember(handle);
    return handle;
  };
  const wrappedClear = (clear: (handle: unknown) => void) => (handle: unknown) => {
    if (handle !== undefined && handle !== null) pending.delete(idOf(handle));
    clear(handle);
  };
  Object.assign(wrappedSetTimeout, fakeSetTimeout);
  Object.assign(wrappedSetInterval, fakeSetInterval);
  // fake-timers' own promisified setTimeout would add its timer without waking the driver.
  Object.defineProperty(wrappedSetTimeout, promisify.custom, {
    value: (ms?: number, value?: unknown) =>
      new Promise((resolve) => {
        wrappedSetTimeout(() => resolve(value), ms);
      }),
  });
  const globals = globalThis as unknown as Record<string, unknown>;
  globals.setTimeout = wrappedSetTimeout;
  globals.setInterval = wrappedSetInterval;
  globals.clearTimeout = wrappedClear(fakeClearTimeout as (handle: unknown) => void);
  globals.clearInterval = wrappedClear(fakeClearInterval as (handle: unknown) => void);

  const open = (label: string): (() => void) => {
    const id = nextHoldId++;
    inflight.set(id, label);
    activity += 1;
    return () => {
      if (!inflight.delete(id)) return;
      activity += 1;
      if (inflight.size === 0) {
        quiet = 0;
        schedule();
      }
    };
  };

  const stallWarningMs = options.stallWarningMs ?? 10_000;
  const onStall =
    options.onStall ??
    ((labels: string[]) =>
      console.warn(
        `sandbox clock: virtual time has not moved for ${stallWarningMs} ms of real time; in flight: ${labels.join(', ')}`,
      ));
  let seenActivity = -1;
  let warned = false;
  const watchdog =
    stallWarningMs > 0
      ? realSetInterval(() => {
          const stuck = inflight.size > 0 && fake.countTimers() > 0 && activity === seenActivity;
          if (stuck && !warned) onStall([...inflight.values()]);
          warned = stuck;
          seenActivity = activity;
        }, stallWarningMs)
      : undefined;
  watchdog?.unref();

  return {
    now: () => fake.now,
    elapsed: () => fake.now - startMs,
    track<T>(work: Promise<T>, label = 'tracked promise'): Promise<T> {
      const release = open(label);
      work.then(release, release);
      return work;
    },
    hold: (label: string) => open(label),
    sleep: (ms: number) =>
      new Promise<void>((resolve) => {
        wrappedSetTimeout(() => resolve(), ms);
      }),
    inFlight: () => [...inflight.values()],
    uninstall(): void {
      if (stopped) return;
      stopped = true;
      if (watchdog) realClearInterval(watchdog);
      if (scheduled) realClearImmediate(scheduled);
      scheduled = undefined;
      pending.clear();
      fake.uninstall();
      delete host[INSTALLED];
    },
  };
}
