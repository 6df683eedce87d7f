import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { installClock, type SandboxClock } from '../../../sandbox/clock';

// Captured at module load: the real timers, to make real-time work the clock must wait for.
const realSetTimeout = globalThis.setTimeout;
const realDateNow = Date.now;
const realDelay = (ms: number) => new Promise<void>((resolve) => realSetTimeout(resolve, ms));

describe('virtual clock', () => {
  let clock: SandboxClock | undefined;
  afterEach(() => {
    clock?.uninstall();
    clock = undefined;
  });

  it('resolves a one-hour virtual timer in a fraction of a real second', async () => {
    clock = installClock();
    const realStart = realDateNow();
    await new Promise<void>((resolve) => setTimeout(resolve, 3_600_000));
    expect(realDateNow() - realStart).toBeLessThan(5_000);
    expect(clock.elapsed()).toBe(3_600_000);
  });

  it('moves Date.now() by exactly the delay of the timer that fired', async () => {
    clock = installClock({ startMs: Date.UTC(2030, 0, 1) });
    const before = Date.now();
    expect(before).toBe(Date.UTC(2030, 0, 1));
    await clock.sleep(12_345);
    expect(Date.now() - before).toBe(12_345);
    expect(new Date().toISOString()).toBe('2030-01-01T00:00:12.345Z');
    expect(clock.now()).toBe(Date.now());
  });

  it('never fires a timer before its delay: a fraction of a millisecond waits a whole one, as in Node', async () => {
    clock = installClock();
    const start = Date.now();
    // The shape of the SDK's adaptive rate limiter: wait until enough time has passed.
    while (Date.now() - start < 3) {
      await new Promise<void>((resolve) => setTimeout(resolve, 0.5));
    }
    await new Promise<void>((resolve) => setTimeout(resolve, 10.2));
    expect(clock.elapsed()).toBe(3 + 11);
  });

  it('does not fire a timer while a tracked promise is pending', async () => {
    clock = installClock();
    const order: string[] = [];
    const work = clock.track(realDelay(50).then(() => order.push('work settled')));
    const timer = clock.sleep(10).then(() => order.push('timer fired'));
    await Promise.all([work, timer]);
    expect(order).toEqual(['work settled', 'timer fired']);
    expect(clock.elapsed()).toBe(10);
  });

  it('does not fire a timer while a hold is open, and fires it once released', async () => {
    clock = installClock();
    let fired = false;
    const release = clock.hold('socket');
    const timer = clock.sleep(10).then(() => {
      fired = true;
    });
    await realDelay(40);
    expect(fired).toBe(false);
    expect(clock.inFlight()).toEqual(['socket']);
    expect(clock.elapsed()).toBe(0);
    release();
    await timer;
    expect(fired).toBe(true);
    expect(clock.inFlight()).toEqual([]);
  });

  it('ignores a second release of the same hold', async () => {
    clock = installClock();
    const first = clock.hold('a');
    const second = clock.hold('b');
    first();
    first();
    expect(clock.inFlight()).toEqual(['b']);
    second();
    await clock.sleep(1);
    expect(clock.elapsed()).toBe(1);
  });

  it('fires timers in due order, creation order breaking ties', async () => {
    clock = installClock();
    const order: string[] = [];
    const done = Promise.all([
      clock.sleep(300).then(() => order.push('300')),
      clock.sleep(100).then(() => order.push('100 first')),
      clock.sleep(200).then(() => order.push('200')),
      clock.sleep(100).then(() => order.push('100 second')),
    ]);
    await done;
    expect(order).toEqual(['100 first', '100 second', '200', '300']);
  });

  it('repeats an interval at its period until cleared', async () => {
    clock = installClock();
    const seen: number[] = [];
    const start = Date.now();
    await new Promise<void>((resolve) => {
      const handle = setInterval(() => {
        seen.push(Date.now() - start);
        if (seen.length === 4) {
          clearInterval(handle);
          resolve();
        }
      }, 250);
    });
    expect(seen).toEqual([250, 500, 750, 1000]);
  });

  it('does not fire a cleared timeout', async () => {
    clock = installClock();
    let fired = false;
    const handle = setTimeout(() => {
      fired = true;
    }, 100);
    clearTimeout(handle);
    await clock.sleep(1_000);
    expect(fired).toBe(false);
  });

  it('lets a timer callback start tracked work that the next timer waits for', async () => {
    clock = installClock();
    const order: string[] = [];
    const active = clock;
    setTimeout(() => {
      void active.track(realDelay(30).then(() => order.push('work from timer done')));
    }, 5);
    await clock.sleep(6).then(() => order.push('later timer'));
    expect(order).toEqual(['work from timer done', 'later timer']);
  });

  it('names the work in flight when virtual time is stuck behind it', async () => {
    const stalls: string[][] = [];
    clock = installClock({ stallWarningMs: 30, onStall: (labels) => stalls.push(labels) });
    const release = clock.hold('RunInstances waiting on a virtual timer');
    const due = clock.sleep(1_000);
    await realDelay(120);
    expect(stalls).toEqual([['RunInstances waiting on a virtual timer']]);
    release();
    await due;
  });

  it('advances for util.promisify(setTimeout) too', async () => {
    clock = installClock();
    await promisify(setTimeout)(90_000);
    expect(clock.elapsed()).toBe(90_000);
  });

  it('refuses a second install while one is active', () => {
    clock = installClock();
    expect(() => installClock()).toThrow(/already installed/);
  });

  it('restores the real Date and timers on uninstall', async () => {
    const installed = installClock({ startMs: 0 });
    expect(Date.now()).toBe(0);
    installed.uninstall();
    expect(Math.abs(Date.now() - realDateNow())).toBeLessThan(1_000);
    expect(globalThis.setTimeout).toBe(realSetTimeout);
    await new Promise<void>((resolve) => setTimeout(resolve, 1));
  });

  it('lets a plain script finish: pending ref timers keep it alive, unref ones do not', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'understudy-clock-'));
    try {
      const script = path.join(dir, 'script.ts');
      const clockModule = path.resolve(__dirname, '../../../sandbox/clock');
      await writeFile(
        script,
        [
          `import { installClock } from ${JSON.stringify(clockModule)};`,
          'const clock = installClock();',
          'async function main() {',
          '  for (let i = 0; i < 100; i++) await clock.sleep(1_000);',
          '  // Endless, so a driver that kept the process alive for it would never let the script end.',
          '  setInterval(() => undefined, 10).unref();',
          "  console.log('slept', clock.elapsed());",
          '}',
          'void main();',
        ].join('\n'),
      );
      const run = promisify(execFile)(process.execPath, ['--import', 'tsx', script], {
        cwd: path.resolve(__dirname, '../../..'),
        timeout: 20_000,
      });
      const { stdout } = await run;
      expect(stdout).toBe('slept 100000\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
