import { AsyncLocalStorage } from 'node:async_hooks';
import { DefaultRateLimiter } from '@smithy/core/retry';
import {
  dynamodbClient,
  ec2Client,
  eventsClient,
  s3Client,
  schedulerClient,
  sfnClient,
  snsClient,
  ssmClient,
} from '../../lambdas/shared/clients';
import { STEPS } from '../../lib/steps';
import type { Sandbox } from '../../sandbox/aws/sandbox';
import type { CallRecord, FaultRule } from '../../sandbox/contracts';
import type { HandlerSet, LambdaHandler } from '../../sandbox/workflow';
import { startWorld, type World, type WorldOptions } from '../workflow/helpers';
import { type Before, captureBefore } from './invariants';

/**
 * The fault matrix's world: the workflow's world (test/workflow/helpers.ts) with every handler run in
 * its own async context, so each call in the sandbox's log is attributed to the function that made it
 * (or to the state, for a call Step Functions makes itself through a service integration), and with
 * the two faults the sandbox cannot inject by itself: a function that dies right after one of
 * its calls took effect (so Step Functions retries it), and a Lambda service error before a handler runs.
 */

/**
 * One AWS call site of the workflow: a function (or a state machine state that calls the service
 * itself), the call, the how-many-th call of that action within one invocation of the function
 * (reconcile's PutObjects are the lock, the backup and the state), and which matching call of the run
 * it is.
 */
export interface CallSite {
  /** The function's folder under lambdas/, or the state's name when Step Functions makes the call. */
  readonly step: string;
  /**
   * `state-machine` for an optimized service integration (AnnounceOutcome's sns:publish): no function
   * of ours runs there, so there is none to die after the call or to fail with a Lambda service error.
   */
  readonly caller: 'function' | 'state-machine';
  readonly service: CallRecord['service'];
  readonly action: string;
  /** 1-based position among this invocation's calls of `service:action`. */
  readonly ordinal: number;
  /**
   * 1-based position among all calls of `service:action` in its source run: where the site was seen,
   * for the reader; a cell faults the site's first call by its owner, not by this count.
   */
  readonly nth: number;
}

export type Fault =
  | { readonly kind: 'throttle' | 'server-error' | 'hang'; readonly site: CallSite }
  | { readonly kind: 'crash-after-effect'; readonly site: CallSite }
  | {
      readonly kind: 'lambda-error';
      readonly step: string;
      readonly error: 'Lambda.ServiceException' | 'Lambda.TooManyRequestsException';
    };

/** AWS's own throttling code per service: EC2 says RequestLimitExceeded, S3 SlowDown (503). */
export const throttleError = (service: CallRecord['service']): FaultRule['fault'] => {
  if (service === 'ec2') return { error: 'RequestLimitExceeded' };
  if (service === 's3') return { error: 'SlowDown', httpStatus: 503 };
  return { error: 'ThrottlingException' };
};

/** A 5xx as each service names it. */
export const serverError = (service: CallRecord['service']): FaultRule['fault'] => {
  if (service === 'ec2' || service === 's3') return { error: 'InternalError', httpStatus: 500 };
  return { error: 'ServiceUnavailable', httpStatus: 503 };
};

interface Invocation {
  readonly step: string;
  readonly caller: CallSite['caller'];
  /** Calls of each `service:action` this invocation made so far. */
  readonly made: Map<string, number>;
  /** Set once the function "died" or ran past its timeout: Lambda froze it, so it calls nothing more. */
  frozen: boolean;
  die?: (error: Error) => void;
}

const namedError = (name: string, message: string): Error => {
  const error = new Error(message);
  error.name = name;
  return error;
};

const timeoutMsOf = (step: string): number =>
  (STEPS.find((s) => s.name === step)?.timeoutSeconds ?? 900) * 1000;

/**
 * Each world is a new account whose virtual clock starts from real time, behind where the previous
 * world's clock ended, while the handlers' SDK clients stay warm across worlds. An adaptive-retry rate
 * limiter that saw a throttle in one world keeps timestamps from that world's future, and in the next
 * world it waits for them: the signal function's sends stalled after a throttled SendTaskFailure cell.
 * Each world starts with the limiters of cold Lambda containers; within a world, throttling still
 * slows the client as AWS's SDK does.
 */
const coldRateLimiters = async (): Promise<void> => {
  const warm = [
    ec2Client,
    ssmClient,
    s3Client,
    snsClient,
    sfnClient,
    eventsClient,
    dynamodbClient,
    schedulerClient,
  ];
  for (const client of warm) {
    const strategy = (await client().config.retryStrategy()) as { rateLimiter?: unknown };
    if (strategy.rateLimiter !== undefined) strategy.rateLimiter = new DefaultRateLimiter();
  }
};

/** Who made a call: a function's invocation or a service-integration state, and its how-many-th there. */
export interface Owner {
  readonly step: string;
  readonly caller: CallSite['caller'];
  readonly ordinal: number;
}

export interface FaultWorld extends World {
  /** The invocation (function or integration state) that made this call. */
  ownerOf(call: CallRecord): Owner | undefined;
  /** The calls made since the world was set up (the run's, then the invariants' own reads). */
  runCalls(): CallRecord[];
  /** Whether the fault this world was built for actually happened. */
  faultFired(): boolean;
  /** What the invariants compare with, read before the fault was armed (so it shifts no `nth`). */
  readonly before: Before;
}

/**
 * A world whose calls are attributed to functions and integration states, with `fault` (if any) armed
 * for the next run; `setup` adjusts the account first (before anything is read or counted).
 */
export const startFaultWorld = async (
  fault?: Fault,
  options: Omit<WorldOptions, 'wrap' | 'aroundIntegration'> = {},
  setup?: (world: World) => void | Promise<void>,
): Promise<FaultWorld> => {
  const context = new AsyncLocalStorage<Invocation>();
  let fired = false;
  // A setup may run the workflow itself (the replacement a rollback-by-request undoes): no fault before
  // the run under test starts.
  let armed = false;

  const instrument = (step: string, handler: LambdaHandler): LambdaHandler => {
    return (event, lambdaContext) => {
      if (armed && fault?.kind === 'lambda-error' && fault.step === step && !fired) {
        fired = true;
        return Promise.reject(namedError(fault.error, `${fault.error} (injected before ${step} ran)`));
      }
      const invocation: Invocation = { step, caller: 'function', made: new Map(), frozen: false };
      return new Promise((resolve, reject) => {
        invocation.die = reject;
        // Lambda freezes a function at its timeout; the sandbox only stops waiting for it.
        const freeze = setTimeout(() => {
          invocation.frozen = true;
        }, timeoutMsOf(step));
        context
          .run(invocation, () => handler(event, lambdaContext))
          .then(resolve, reject)
          .finally(() => clearTimeout(freeze));
      });
    };
  };

  const world = await startWorld({
    ...options,
    wrap: (handlers: HandlerSet) =>
      Object.fromEntries(Object.entries(handlers).map(([step, h]) => [step, instrument(step, h)])),
    // Step Functions' own call (a Standard workflow runs the task once, retries aside) is attributed to
    // its state; a hang there ends at the state's TimeoutSeconds, which the engine enforces.
    aroundIntegration: (state, call) =>
      context.run({ step: state, caller: 'state-machine', made: new Map(), frozen: false }, call),
  });
  await coldRateLimiters();
  try {
    await setup?.(world);
  } catch (error) {
    // The cell never gets the world to stop: its clock and servers would outlive it into the next cell.
    await world.stop();
    throw error;
  }
  const before = await captureBefore(world);
  const sandbox = world.sandbox as unknown as Sandbox;
  const setupCalls = sandbox.calls.length;
  const owners = new WeakMap<CallRecord, Owner & { readonly nth: number }>();
  const counts = new Map<string, number>();
  const original = sandbox.dispatch.bind(sandbox);
  const isSite = (owner: Owner | undefined, site: CallSite) =>
    owner?.step === site.step && owner.caller === site.caller && owner.ordinal === site.ordinal;
  // The faulted call is the site's first call in this run, picked by who makes it, not by its position
  // among all calls of its action: a function run by an event (signal, when a started box's agent
  // reports) interleaves its calls with the workflow's as timing has it, so a count would drift.
  let targeted: CallRecord | undefined;
  const answer =
    fault?.kind === 'throttle' || fault?.kind === 'server-error' || fault?.kind === 'hang'
      ? fault
      : undefined;

  // Each call is attributed when the sandbox records it, not when dispatch is entered: dispatch may
  // first fire due schedules (an await), so its record can come after other calls' records. Recording
  // happens in the caller's async context, so the invocation (and the call's own slot) are still there.
  const slots = new AsyncLocalStorage<{ record?: CallRecord }>();
  const push = sandbox.calls.push.bind(sandbox.calls);
  sandbox.calls.push = (...records: CallRecord[]) => {
    for (const record of records) {
      const key = `${record.service}:${record.action}`;
      const nth = (counts.get(key) ?? 0) + 1;
      counts.set(key, nth);
      const invocation = record.via ? undefined : context.getStore();
      if (invocation) {
        const ordinal = (invocation.made.get(key) ?? 0) + 1;
        invocation.made.set(key, ordinal);
        const owner = { step: invocation.step, caller: invocation.caller, ordinal, nth };
        owners.set(record, owner);
        const site = answer?.site;
        if (armed && answer && site && !targeted && site.service === record.service) {
          if (site.action === record.action && isSite(owner, site)) {
            targeted = record;
            // The sandbox matches its rules right after recording the call: a rule for the next call
            // of this action is a rule for this very call.
            sandbox.injectFault({
              service: site.service,
              action: site.action,
              nth: 1,
              fault:
                answer.kind === 'hang'
                  ? 'hang'
                  : answer.kind === 'throttle'
                    ? throttleError(site.service)
                    : serverError(site.service),
            });
          }
        }
      }
      const slot = slots.getStore();
      if (slot && !slot.record) slot.record = record;
    }
    return push(...records);
  };

  // The sandbox routes every SDK command (and every presigned request) through dispatch on the current
  // sandbox: wrapping it here sees each call in the context of the invocation that made it.
  sandbox.dispatch = (service, action, input, via) => {
    const invocation = via ? undefined : context.getStore();
    if (invocation?.frozen) return new Promise<never>(() => {});
    const slot: { record?: CallRecord } = {};
    const pending = slots.run(slot, () => original(service, action, input, via));
    if (
      fault?.kind === 'crash-after-effect' &&
      !fired &&
      invocation?.caller === 'function' &&
      fault.site.service === service &&
      fault.site.action === action
    ) {
      // Whatever the call answered (an error such as InvalidInstanceID.NotFound is an answer too), the
      // function dies before it can act on it.
      const crash = () => {
        const owner = slot.record && owners.get(slot.record);
        if (fired || !isSite(owner, fault.site)) return pending;
        fired = true;
        invocation.frozen = true;
        invocation.die?.(
          namedError(
            'Lambda.ServiceException',
            `${invocation.step} died after ${service}:${action} took effect`,
          ),
        );
        return new Promise<never>(() => {});
      };
      return pending.then(crash, crash);
    }
    return pending;
  };

  armed = true;

  return {
    ...world,
    before,
    ownerOf: (call) => owners.get(call),
    runCalls: () => sandbox.calls.slice(setupCalls),
    faultFired: () => {
      if (!fault) return false;
      if (fault.kind === 'crash-after-effect' || fault.kind === 'lambda-error') return fired;
      return targeted?.error !== undefined;
    },
  };
};

/** What makes two call sites the same, whichever run they were seen in (`nth` is per run). */
export const siteId = (step: string, call: string, ordinal: number): string => `${step} ${call} ${ordinal}`;

/**
 * The call sites of a run: each distinct (function, service, action, ordinal in the invocation), first
 * occurrence, with its position among all calls of that action. A poll invoked ten times is one site. Presigned requests (a box's curl) and calls neither
 * a function nor an integration state made are not the workflow's call sites.
 */
export const callSitesOf = (world: FaultWorld, calls: readonly CallRecord[]): CallSite[] => {
  const sites = new Map<string, CallSite>();
  const counts = new Map<string, number>();
  for (const call of calls) {
    const key = `${call.service}:${call.action}`;
    const nth = (counts.get(key) ?? 0) + 1;
    counts.set(key, nth);
    const owner = world.ownerOf(call);
    if (!owner || call.via) continue;
    const id = siteId(owner.step, key, owner.ordinal);
    if (!sites.has(id)) {
      sites.set(id, {
        step: owner.step,
        caller: owner.caller,
        service: call.service,
        action: call.action,
        ordinal: owner.ordinal,
        nth,
      });
    }
  }
  return [...sites.values()];
};
