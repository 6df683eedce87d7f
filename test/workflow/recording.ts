import { AsyncLocalStorage } from 'node:async_hooks';
import type { Sandbox } from '../../sandbox/aws/sandbox';
import type { CallRecord, PublishedMessage, SandboxApi } from '../../sandbox/contracts';
import { type HandlerSet, invokeLambda } from '../../sandbox/workflow';
import { startWorld, type World, type WorldOptions } from './helpers';

/**
 * A workflow world that remembers what each function was asked: every invocation's event (as Lambda
 * handed it over) and whether it succeeded, and which execution made each AWS call. With those, a test
 * can ask a function the same question again after the run (a retry whose first answer was lost, a
 * redrive) and tell one execution's calls from another's.
 */

export interface Invocation {
  readonly step: string;
  readonly event: unknown;
  /** The execution the event belongs to, when the event says (await-command's does not). */
  readonly execution: string | undefined;
  ok?: boolean;
}

export type Invoked =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: string };

export interface RecordingWorld extends World {
  /** Every invocation the workflow and the event rules made, in order. */
  readonly invocations: readonly Invocation[];
  /** The execution whose function made this call, if a function did. */
  executionOf(call: CallRecord): string | undefined;
  /**
   * Invokes a function as deployed (without the test's wrapper) the way Lambda does: serialised event,
   * its timeout. Outside any run, and not recorded.
   */
  invoke(step: string, event: unknown): Promise<Invoked>;
}

export interface RecordingOptions extends Omit<WorldOptions, 'wrap'> {
  /** Wraps the handlers inside the recording, so it sees every invocation, even one the wrapper fails. */
  readonly wrap?: (handlers: HandlerSet) => HandlerSet;
}

const executionNameOf = (event: unknown): string | undefined => {
  const e = event as { execution?: { name?: unknown }; state?: { execution?: { name?: unknown } } } | null;
  const name = e?.execution?.name ?? e?.state?.execution?.name;
  return typeof name === 'string' ? name : undefined;
};

export const startRecordingWorld = async (options: RecordingOptions = {}): Promise<RecordingWorld> => {
  const context = new AsyncLocalStorage<string | undefined>();
  const invocations: Invocation[] = [];
  let raw: HandlerSet = {};

  const record = (handlers: HandlerSet): HandlerSet =>
    Object.fromEntries(
      Object.entries(handlers).map(([step, handler]) => [
        step,
        async (event: unknown, lambdaContext: Parameters<HandlerSet[string]>[1]) => {
          const invocation: Invocation = {
            step,
            event: JSON.parse(JSON.stringify(event ?? null)),
            execution: executionNameOf(event),
          };
          invocations.push(invocation);
          try {
            const value = await context.run(invocation.execution, () => handler(event, lambdaContext));
            invocation.ok = true;
            return value;
          } catch (error) {
            invocation.ok = false;
            throw error;
          }
        },
      ]),
    );

  const world = await startWorld({
    ...options,
    wrap: (handlers) => {
      raw = handlers;
      return record(options.wrap ? options.wrap(handlers) : handlers);
    },
  });

  const owners = new WeakMap<CallRecord, string>();
  const sandbox = world.sandbox as unknown as Sandbox;
  const dispatch = sandbox.dispatch.bind(sandbox);
  // Every SDK command reaches the account through dispatch, which logs it before its first await: the
  // record it just pushed is this call's, made in the async context of the invocation that sent it.
  sandbox.dispatch = (service, action, input, via) => {
    const execution = context.getStore();
    const pending = dispatch(service, action, input, via);
    const call = sandbox.calls.at(-1);
    if (call && execution) owners.set(call, execution);
    return pending;
  };

  return {
    ...world,
    invocations,
    executionOf: (call) => owners.get(call),
    invoke: (step, event) =>
      context.run(executionNameOf(event), () =>
        invokeLambda(raw, step, event).then(
          (value): Invoked => ({ ok: true, value }),
          (error: Error): Invoked => ({ ok: false, error: error.name }),
        ),
      ),
  };
};

/** The execution a notification is about: its attribute, or the body's field where it has none. */
export const messageExecution = (message: PublishedMessage): string | undefined => {
  if (message.attributes.execution) return message.attributes.execution;
  try {
    const body = JSON.parse(message.message) as { execution?: unknown };
    return typeof body.execution === 'string' ? body.execution : undefined;
  } catch {
    return undefined;
  }
};

/** One execution's notifications of one kind. */
export const messagesOf = (world: World, execution: string, kind: string): PublishedMessage[] =>
  world.sandbox.messages.filter((m) => m.attributes.kind === kind && messageExecution(m) === execution);

/**
 * The world as one execution sees it: only its own messages. The invariants count outcome messages in
 * the whole account, which holds one per execution when several ran.
 */
export const asSeenBy = (world: World, execution: string): World => {
  const sandbox = new Proxy(world.sandbox, {
    get(target, property) {
      if (property === 'messages') {
        return target.messages.filter((m) => messageExecution(m) === execution);
      }
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as SandboxApi;
  return { ...world, sandbox };
};

/** The distinct events each function was given, in the order the run first gave them. */
export const eventsByStep = (invocations: readonly Invocation[]): Map<string, unknown[]> => {
  const byStep = new Map<string, unknown[]>();
  const seen = new Set<string>();
  for (const invocation of invocations) {
    const key = `${invocation.step} ${JSON.stringify(invocation.event)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    byStep.set(invocation.step, [...(byStep.get(invocation.step) ?? []), invocation.event]);
  }
  return byStep;
};
