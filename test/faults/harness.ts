import { AsyncLocalStorage } from 'node:async_hooks';
import { STEPS } from '../../lib/steps';
import type { Sandbox } from '../../sandbox/aws/sandbox';
import type { CallRecord, FaultRule } from '../../sandbox/contracts';
import type { HandlerSet, LambdaHandler } from '../../sandbox/workflow';
import { startWorld, type World, type WorldOptions } from '../workflow/helpers';
import { type Before, captureBefore } from './invariants';

/**
 * The fault matrix's world: the workflow's world (test/workflow/helpers.ts) with every handler run in
 * its own async context, so each call in the sandbox's log is attributed to the function that made it,
 * and with the two faults the sandbox cannot inject by itself: a function that dies right after one of
 * its calls took effect (so Step Functions retries it), and a Lambda service error before a handler runs.
 */

/**
 * One AWS call site of the workflow: a function, the call, the how-many-th call of that action within
 * one invocation of the function (reconcile's PutObjects are the lock, the backup and the state), and
 * which matching call of the whole run it is.
 */
export interface CallSite {
  readonly step: string;
  readonly service: CallRecord['service'];
  readonly action: string;
  /** 1-based position among this invocation's calls of `service:action`. */
  readonly ordinal: number;
  /** 1-based position among all calls of `service:action` in the happy run (what `injectFault` counts). */
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

export interface FaultWorld extends World {
  /** The function whose invocation made this call, and the how-many-th of its action it was there. */
  ownerOf(call: CallRecord): { readonly step: string; readonly ordinal: number } | undefined;
  /** The calls made since the world was set up (the run's, then the invariants' own reads). */
  runCalls(): CallRecord[];
  /** Whether the fault this world was built for actually happened. */
  faultFired(): boolean;
  /** What the invariants compare with, read before the fault was armed (so it shifts no `nth`). */
  readonly before: Before;
}

/** A world whose calls are attributed to functions, with `fault` (if any) armed for the next run. */
export const startFaultWorld = async (
  fault?: Fault,
  options: Omit<WorldOptions, 'wrap'> = {},
): Promise<FaultWorld> => {
  const context = new AsyncLocalStorage<Invocation>();
  let fired = false;

  const instrument = (step: string, handler: LambdaHandler): LambdaHandler => {
    return (event, lambdaContext) => {
      if (fault?.kind === 'lambda-error' && fault.step === step && !fired) {
        fired = true;
        return Promise.reject(namedError(fault.error, `${fault.error} (injected before ${step} ran)`));
      }
      const invocation: Invocation = { step, made: new Map(), frozen: false };
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
  });
  const before = await captureBefore(world);
  const sandbox = world.sandbox as unknown as Sandbox;
  const setupCalls = sandbox.calls.length;
  const owners = new WeakMap<CallRecord, { step: string; ordinal: number }>();
  const counts = new Map<string, number>();
  const original = sandbox.dispatch.bind(sandbox);

  // The sandbox routes every SDK command (and every presigned request) through dispatch on the current
  // sandbox: wrapping it here sees each call in the context of the invocation that made it.
  sandbox.dispatch = (service, action, input, via) => {
    const invocation = via ? undefined : context.getStore();
    if (invocation?.frozen) return new Promise<never>(() => {});
    const pending = original(service, action, input, via);
    const record = sandbox.calls.at(-1);
    const key = `${service}:${action}`;
    const ordinal = (invocation?.made.get(key) ?? 0) + 1;
    invocation?.made.set(key, ordinal);
    if (record && invocation) owners.set(record, { step: invocation.step, ordinal });
    const nth = (counts.get(key) ?? 0) + 1;
    counts.set(key, nth);
    if (
      fault?.kind === 'crash-after-effect' &&
      !fired &&
      invocation &&
      fault.site.service === service &&
      fault.site.action === action &&
      fault.site.nth === nth
    ) {
      // Whatever the call answered (an error such as InvalidInstanceID.NotFound is an answer too), the
      // function dies before it can act on it.
      const crash = () => {
        if (fault.site.step !== invocation.step || fault.site.ordinal !== ordinal) return pending;
        fired = true;
        invocation.frozen = true;
        invocation.die?.(
          namedError('Lambda.ServiceException', `${invocation.step} died after ${key} took effect`),
        );
        return new Promise<never>(() => {});
      };
      return pending.then(crash, crash);
    }
    return pending;
  };

  if (fault && fault.kind !== 'crash-after-effect' && fault.kind !== 'lambda-error') {
    const rule = fault.kind === 'throttle' ? throttleError(fault.site.service) : undefined;
    sandbox.injectFault({
      service: fault.site.service,
      action: fault.site.action,
      nth: fault.site.nth,
      fault: fault.kind === 'hang' ? 'hang' : (rule ?? serverError(fault.site.service)),
    });
  }

  return {
    ...world,
    before,
    ownerOf: (call) => owners.get(call),
    runCalls: () => sandbox.calls.slice(setupCalls),
    faultFired: () => {
      if (!fault) return false;
      if (fault.kind === 'crash-after-effect' || fault.kind === 'lambda-error') return fired;
      const { service, action, nth, step, ordinal } = fault.site;
      const hit = sandbox.calls.slice(setupCalls).filter((c) => c.service === service && c.action === action)[
        nth - 1
      ];
      const owner = hit && owners.get(hit);
      return hit?.error !== undefined && owner?.step === step && owner.ordinal === ordinal;
    },
  };
};

/**
 * The call sites of a run: each distinct (function, service, action, ordinal in the invocation), first
 * occurrence, with its position among all calls of that action (so injectFault with `nth` hits that
 * very call). A poll invoked ten times is one site. Presigned requests (a box's curl) and calls no
 * function made are not the workflow's call sites.
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
    const id = `${owner.step} ${key} ${owner.ordinal}`;
    if (!sites.has(id)) {
      sites.set(id, {
        step: owner.step,
        service: call.service,
        action: call.action,
        ordinal: owner.ordinal,
        nth,
      });
    }
  }
  return [...sites.values()];
};
