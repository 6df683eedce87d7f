import type { VirtualClock } from '../contracts';
import type { IdFactory } from './ids';

/** What every service model shares: the clock, id minting, identity, and background work. */
export interface ModelContext {
  readonly clock: VirtualClock;
  readonly ids: IdFactory;
  readonly region: string;
  readonly accountId: string;
  /** True once the sandbox stopped: scheduled work must do nothing. */
  readonly closed: boolean;
  /** Runs `fn` after `ms` virtual milliseconds (tracked while it runs), unless the sandbox stopped. */
  after(ms: number, fn: () => unknown): void;
  /** Tracks background work; failures are kept in `backgroundErrors` instead of going unhandled. */
  background(work: Promise<unknown>): void;
  /**
   * Starts foreign code (an event target, an execution) and tracks it only until its synchronous part
   * ran: such code may itself wait on virtual time, and tracking that would stop the clock for good.
   * Its own SDK calls are tracked as they happen.
   */
  spawn(fn: () => unknown, onError: (error: unknown) => void): void;
}

export const iso = (ms: number): string => new Date(ms).toISOString();
