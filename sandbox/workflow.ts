import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PublishCommand, type PublishCommandInput } from '@aws-sdk/client-sns';
import type { Context } from 'aws-lambda';
import { StateMachine } from 'aws-local-stepfunctions';
import { clients } from '../lambdas/shared/clients';
import { NOTIFICATION_TOPIC_PLACEHOLDER, placeholderFor, STEP_NAMES, STEPS } from '../lib/steps';
import type { EngineEvent, SandboxApi } from './contracts';

/**
 * Runs the deployed state machine definition (statemachine/replace.asl.json, the very file CDK ships)
 * through aws-local-stepfunctions, every Task mapped to the real Lambda handler, on a sandbox account.
 * Lambda's own semantics are kept at the boundary: JSON in and out, errors in Lambda's envelope
 * (Error = errorType, Cause = JSON text), and each function's own timeout (lib/steps.ts) enforced on the
 * virtual clock, failing the invocation with Lambda's `Sandbox.Timedout`.
 */

export type LambdaHandler = (event: unknown, context: Context) => Promise<unknown>;
export type HandlerSet = Record<string, LambdaHandler>;

const ROOT = join(__dirname, '..');
export const ASL_PATH = join(ROOT, 'statemachine', 'replace.asl.json');

/** Imports the handlers from source (TypeScript through the caller's loader). */
export const sourceHandlers = async (): Promise<HandlerSet> => {
  const entries = await Promise.all(
    STEP_NAMES.map(async (folder) => {
      const module = (await import(join(ROOT, 'lambdas', folder, 'handler'))) as { handler: LambdaHandler };
      return [folder, module.handler] as const;
    }),
  );
  return Object.fromEntries(entries);
};

const functionArn = (sandbox: Pick<SandboxApi, 'region' | 'accountId'>, folder: string) =>
  `arn:aws:lambda:${sandbox.region}:${sandbox.accountId}:function:understudy-${folder}`;

export const substitutedDefinition = (
  sandbox: Pick<SandboxApi, 'region' | 'accountId'>,
  deployment: Deployment,
): unknown => {
  const text = readFileSync(ASL_PATH, 'utf8').replace(/\$\{([A-Za-z]+)\}/g, (_, key: string) => {
    if (key === NOTIFICATION_TOPIC_PLACEHOLDER) return deployment.topicArn;
    const folder = STEP_NAMES.find((step) => placeholderFor(step) === key);
    if (!folder) throw new Error(`no substitution for \${${key}} in ${ASL_PATH}`);
    return functionArn(sandbox, folder);
  });
  return JSON.parse(text);
};

const folderOfArn = (arn: string): string =>
  arn.slice(arn.lastIndexOf(':understudy-') + ':understudy-'.length);

/** The function's configured timeout, as the stack deploys it. */
const functionTimeoutMs = (folder: string): number => {
  const spec = STEPS.find((step) => step.name === folder);
  if (!spec) throw new Error(`no step ${folder} in lib/steps.ts`);
  return spec.timeoutSeconds * 1000;
};

const lambdaContext = (folder: string, timeoutMs: number, requestId: string): Context => {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: `understudy-${folder}`,
    functionVersion: '$LATEST',
    invokedFunctionArn: `understudy-${folder}`,
    memoryLimitInMB: '512',
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/understudy-${folder}`,
    logStreamName: 'sandbox',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
};

/** A failed invocation as Step Functions sees it: Error = errorType, Cause = the error payload's JSON. */
const lambdaError = (errorType: string, errorMessage: string): Error => {
  const envelope = new Error(JSON.stringify({ errorType, errorMessage, trace: [] }));
  envelope.name = errorType;
  return envelope;
};

/**
 * Calls a handler the way Lambda does: serialised payloads, errors in Lambda's envelope, and the
 * function's timeout. A handler still running at its deadline is abandoned (Lambda would freeze it);
 * whatever it does later is ignored.
 */
export const invokeLambda = async (
  handlers: HandlerSet,
  folder: string,
  payload: unknown,
): Promise<unknown> => {
  const handler = handlers[folder];
  if (!handler) throw new Error(`no handler for step ${folder}`);
  const timeoutMs = functionTimeoutMs(folder);
  const requestId = randomUUID();
  const event = JSON.parse(JSON.stringify(payload ?? null)) as unknown;
  // Settled either way, so a handler that fails after its deadline leaves no unhandled rejection.
  const settled = Promise.resolve()
    .then(() => handler(event, lambdaContext(folder, timeoutMs, requestId)))
    .then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<'timed out'>((resolve) => {
    timer = setTimeout(() => resolve('timed out'), timeoutMs);
  });
  const outcome = await Promise.race([settled, deadline]);
  clearTimeout(timer);
  if (outcome === 'timed out') {
    throw lambdaError(
      'Sandbox.Timedout',
      `RequestId: ${requestId} Error: Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`,
    );
  }
  if (!outcome.ok) {
    const error = outcome.error instanceof Error ? outcome.error : new Error(String(outcome.error));
    throw lambdaError(error.name, error.message);
  }
  return outcome.value === undefined ? null : JSON.parse(JSON.stringify(outcome.value));
};

/** Lambda's waits before it retries a failed asynchronous invocation (it retries twice). */
const ASYNC_RETRY_DELAYS_MS = [60_000, 120_000];

/**
 * An asynchronous invocation, as EventBridge makes them: when the function fails (an error, a timeout,
 * a Lambda service error), Lambda itself runs it again, twice at most, before the event is dropped.
 */
export const invokeAsync = async (
  handlers: HandlerSet,
  folder: string,
  payload: unknown,
): Promise<unknown> => {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await invokeLambda(handlers, folder, payload);
    } catch (error) {
      const delay = ASYNC_RETRY_DELAYS_MS[attempt];
      if (delay === undefined) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
};

export interface TimelineEntry {
  readonly state: string;
  readonly startMs: number;
  durationMs: number;
}

export interface WorkflowRun {
  readonly executionArn: string;
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly output?: unknown;
  readonly error?: string;
  readonly cause?: string;
  /** StateEntered + StateRetried: the billing proxy for a Standard workflow. */
  readonly stateTransitions: number;
  readonly timeline: TimelineEntry[];
  /** Every state's output as it exited, by state name (last one wins for loops). */
  readonly outputs: Record<string, unknown>;
  /** Every state's input as it was entered, by state name (last one wins for loops). */
  readonly inputs: Record<string, unknown>;
}

export interface RunOptions {
  readonly name?: string;
  /** Called when a state is entered (the demo starts its downtime client on Launch). */
  readonly onStateEntered?: (state: string) => void;
  /**
   * Runs the execution `name` again as RedriveExecution does: from the state that failed, with the input
   * that state was given then, the execution's RedriveCount raised.
   */
  readonly redrive?: { readonly from: string; readonly input: unknown; readonly count: number };
  /** Every event of the engine's log, as it happens (the sandbox's Step Functions builds the history from them). */
  readonly onEvent?: (event: EngineEvent) => void;
  /**
   * StopExecution: no further state starts. The state in progress runs to its end (a function already
   * invoked runs on, as in Lambda; the local engine also runs a retry it was waiting for).
   */
  readonly signal?: AbortSignal;
}

interface TaskState {
  readonly Type: string;
  readonly Resource?: string;
  TimeoutSeconds?: number;
  TimeoutSecondsPath?: string;
  HeartbeatSeconds?: number;
  HeartbeatSecondsPath?: string;
  readonly Parameters?: unknown;
}

/** A callback task's limits as AWS reads them: numbers, or paths into the state input. */
interface CallbackLimits {
  readonly timeoutSeconds?: number;
  readonly timeoutPath?: string;
  readonly heartbeatSeconds?: number;
  readonly heartbeatPath?: string;
  /** The Payload member that carries the state input (`"state.$": "$"`), where the paths are read. */
  readonly stateKey?: string;
}

/**
 * Stands for "no timeout" (AWS's default of 99999999 s) where the local engine would otherwise use 60 s:
 * the longest delay a timer takes (2^31 - 1 ms); anything longer would fire at once.
 */
const NO_TIMEOUT_SECONDS = 2_147_483;

const statesError = (name: string, message: string): Error => {
  const error = new Error(message);
  error.name = name;
  return error;
};

/** What the stack substitutes besides the functions, and how the sandbox runs the service integrations. */
export interface Deployment {
  /** `${NotificationTopicArn}`: the topic AnnounceOutcome publishes to (the functions' TOPIC_ARN). */
  readonly topicArn: string;
  /**
   * Runs each call a service-integration state makes (Step Functions itself is the caller there, not a
   * function); the fault matrix uses it to attribute those calls. Default: just runs it.
   */
  readonly aroundIntegration?: <T>(state: string, call: () => Promise<T>) => Promise<T>;
}

/** `arn:aws:states:::sns:publish`, the optimized integration AnnounceOutcome uses. */
const SNS_PUBLISH = 'arn:aws:states:::sns:publish';

/**
 * The optimized integration's Publish, made by "Step Functions" with the sandbox's SNS client. A failure
 * comes back as the integration reports it: the service's error name under the service's prefix.
 */
const publishAsStepFunctions = async (input: unknown): Promise<unknown> => {
  try {
    return await clients().sns.send(new PublishCommand(input as PublishCommandInput));
  } catch (error) {
    const name = error instanceof Error ? error.name : 'UnknownError';
    throw statesError(`SNS.${name}`, error instanceof Error ? error.message : String(error));
  }
};

/** One state machine, many runs against the sandbox account. */
export class LocalWorkflow {
  private readonly machine: StateMachine;
  private readonly definition: { States: Record<string, TaskState> };
  private readonly states: Record<string, TaskState>;
  private readonly callbacks: Record<string, CallbackLimits>;
  private counter = 0;

  constructor(
    private readonly sandbox: SandboxApi,
    private readonly handlers: HandlerSet,
    private readonly deployment: Deployment,
  ) {
    const definition = substitutedDefinition(sandbox, deployment) as { States: Record<string, TaskState> };
    this.callbacks = adaptToLocalEngine(definition.States);
    this.states = definition.States;
    this.definition = definition;
    // biome-ignore lint/suspicious/noExplicitAny: the library types the definition as its own ASL shape; ours is parsed JSON
    this.machine = new StateMachine(definition as any, {
      validationOptions: { checkArn: true, checkPaths: true },
    });
  }

  /** Wires the Understudy bus rules the stack deploys: agent events to the signal function. */
  wireEventRules(busName: string): void {
    this.sandbox.addRule(
      busName,
      {
        source: ['understudy.agent'],
        'detail-type': ['Instance Ready', 'Instance Failed', 'Instance Progress'],
      },
      (event) => invokeAsync(this.handlers, 'signal', event),
    );
  }

  private taskOverrides(): Record<string, (input: unknown) => Promise<unknown>> {
    const overrides: Record<string, (input: unknown) => Promise<unknown>> = {};
    for (const [name, state] of Object.entries(this.states)) {
      if (state.Type !== 'Task' || !state.Resource) continue;
      const limits = this.callbacks[name];
      if (state.Resource === SNS_PUBLISH) {
        const around = this.deployment.aroundIntegration ?? ((_state, call) => call());
        overrides[name] = (input) => around(name, () => publishAsStepFunctions(input));
      } else if (limits) {
        overrides[name] = (input) =>
          this.awaitCallback(input as { FunctionName: string; Payload: unknown }, limits);
      } else {
        const folder = folderOfArn(state.Resource);
        overrides[name] = (input) => invokeLambda(this.handlers, folder, input);
      }
    }
    return overrides;
  }

  /**
   * `.waitForTaskToken`: the local engine gives one static token and ignores heartbeats, so each call
   * mints its own token, registers it with the account's Step Functions model, invokes the function
   * with it, and waits for SendTaskSuccess/Failure. TimeoutSeconds and HeartbeatSeconds both run from
   * the start of the task, as in AWS; once the task is over, however it ended, the token is closed and
   * a late callback answers TaskTimedOut.
   */
  private async awaitCallback(
    input: { FunctionName: string; Payload: unknown },
    limits: CallbackLimits,
  ): Promise<unknown> {
    const token = `sandbox-token-${randomUUID()}`;
    const payload = JSON.parse(JSON.stringify(input.Payload)) as Record<string, unknown>;
    payload.taskToken = token;
    const stateInput = limits.stateKey ? payload[limits.stateKey] : undefined;
    const seconds = (fixed: number | undefined, path: string | undefined): number | undefined => {
      const value = fixed ?? readPath(stateInput, path);
      return typeof value === 'number' ? value : undefined;
    };
    const timeoutSeconds = seconds(limits.timeoutSeconds, limits.timeoutPath);
    const heartbeatSeconds = seconds(limits.heartbeatSeconds, limits.heartbeatPath);
    const startedAt = Date.now();
    const completion = this.sandbox.registerTaskToken(token);
    completion.catch(() => undefined);
    const timers: ReturnType<typeof setTimeout>[] = [];
    const expiry = new Promise<never>((_, reject) => {
      if (timeoutSeconds !== undefined) {
        timers.push(
          setTimeout(
            () => reject(statesError('States.Timeout', `Task timed out after ${timeoutSeconds} s`)),
            timeoutSeconds * 1000,
          ),
        );
      }
      if (heartbeatSeconds === undefined) return;
      const windowMs = heartbeatSeconds * 1000;
      const watch = (delay: number): void => {
        timers.push(
          setTimeout(() => {
            const due = (this.sandbox.lastHeartbeat(token) ?? startedAt) + windowMs;
            if (Date.now() >= due) {
              reject(statesError('States.HeartbeatTimeout', `no heartbeat for ${heartbeatSeconds} s`));
            } else {
              watch(due - Date.now());
            }
          }, delay),
        );
      };
      watch(windowMs);
    });
    try {
      return await Promise.race([
        invokeLambda(this.handlers, folderOfArn(input.FunctionName), payload).then(() => completion),
        expiry,
      ]);
    } finally {
      for (const timer of timers) clearTimeout(timer);
      this.sandbox.closeTaskToken(token);
    }
  }

  async run(input: unknown, options: RunOptions = {}): Promise<WorkflowRun> {
    this.counter += 1;
    const name = options.name ?? `run-${this.counter}-${randomUUID().slice(0, 8)}`;
    const executionArn = `arn:aws:states:${this.sandbox.region}:${this.sandbox.accountId}:execution:understudy-replace:${name}`;
    const redrive = options.redrive;
    // Validated whole in the constructor; started further in, the states before are unreachable.
    const machine = redrive
      ? // biome-ignore lint/suspicious/noExplicitAny: as in the constructor
        new StateMachine({ ...this.definition, StartAt: redrive.from } as any, {
          validationOptions: { noValidate: true },
        })
      : this.machine;
    const execution = machine.run((redrive ? redrive.input : input) as never, {
      overrides: { taskResourceLocalHandlers: this.taskOverrides() as never },
      context: {
        Execution: {
          Id: executionArn,
          Name: name,
          RedriveCount: redrive?.count ?? 0,
          StartTime: new Date().toISOString(),
          Input: input,
          RoleArn: `arn:aws:iam::${this.sandbox.accountId}:role/understudy-sandbox`,
        },
        StateMachine: { Id: 'understudy-replace', Name: 'understudy-replace' },
        Task: { Token: 'replaced-per-task' },
      } as never,
    });
    options.signal?.addEventListener('abort', () => execution.abort(), { once: true });
    const timeline: TimelineEntry[] = [];
    const outputs: Record<string, unknown> = {};
    const inputs: Record<string, unknown> = {};
    let transitions = 0;
    const open = new Map<string, TimelineEntry>();
    const drain = (async () => {
      for await (const event of execution.eventLogs) {
        options.onEvent?.(event as EngineEvent);
        if (event.type === 'StateEntered') {
          transitions += 1;
          const entry = { state: event.state.name, startMs: this.sandbox.clock.elapsed(), durationMs: 0 };
          open.set(event.state.name, entry);
          timeline.push(entry);
          inputs[event.state.name] = event.state.input;
          options.onStateEntered?.(event.state.name);
        } else if (event.type === 'StateRetried') {
          transitions += 1;
        } else if (event.type === 'StateExited' || event.type === 'StateFailed') {
          const entry = open.get(event.state.name);
          if (entry) entry.durationMs = this.sandbox.clock.elapsed() - entry.startMs;
          if (event.type === 'StateExited') outputs[event.state.name] = event.state.output;
        }
      }
    })();
    try {
      const output = await execution.result;
      await drain;
      return {
        executionArn,
        status: 'SUCCEEDED',
        output,
        stateTransitions: transitions,
        timeline,
        outputs,
        inputs,
      };
    } catch (failure) {
      await drain.catch(() => undefined);
      const cause = (failure as { cause?: Error }).cause ?? (failure as Error);
      return {
        executionArn,
        status: 'FAILED',
        error: cause.name,
        cause: cause.message,
        stateTransitions: transitions,
        timeline,
        outputs,
        inputs,
      };
    }
  }
}

/**
 * Prepares the definition for aws-local-stepfunctions, which differs from AWS in three ways: it reads
 * TimeoutSecondsPath against the effective Parameters (AWS: the state input, which `lambda:invoke`
 * tasks carry as `Payload.state`), it times a Task out after 60 s when the state sets nothing (AWS:
 * 99999999), and it ignores heartbeats. Callback tasks have their limits taken out and returned, to be
 * enforced by the harness, which also closes the token when the task ends.
 */
const adaptToLocalEngine = (states: Record<string, TaskState>): Record<string, CallbackLimits> => {
  const callbacks: Record<string, CallbackLimits> = {};
  for (const [name, state] of Object.entries(states)) {
    if (state.Type !== 'Task') continue;
    const payload = (state.Parameters as { Payload?: Record<string, string> } | undefined)?.Payload;
    const stateKey = Object.entries(payload ?? {})
      .find(([, v]) => v === '$')?.[0]
      ?.replace(/\.\$$/, '');
    if (state.Resource?.endsWith('.waitForTaskToken')) {
      callbacks[name] = {
        ...(state.TimeoutSeconds !== undefined ? { timeoutSeconds: state.TimeoutSeconds } : {}),
        ...(state.TimeoutSecondsPath ? { timeoutPath: state.TimeoutSecondsPath } : {}),
        ...(state.HeartbeatSeconds !== undefined ? { heartbeatSeconds: state.HeartbeatSeconds } : {}),
        ...(state.HeartbeatSecondsPath ? { heartbeatPath: state.HeartbeatSecondsPath } : {}),
        ...(stateKey ? { stateKey } : {}),
      };
      delete state.TimeoutSecondsPath;
      delete state.HeartbeatSeconds;
      delete state.HeartbeatSecondsPath;
      state.TimeoutSeconds = NO_TIMEOUT_SECONDS;
      continue;
    }
    if (stateKey && state.TimeoutSecondsPath?.startsWith('$.')) {
      state.TimeoutSecondsPath = `$.Payload.${stateKey}.${state.TimeoutSecondsPath.slice(2)}`;
    }
    if (state.TimeoutSeconds === undefined && state.TimeoutSecondsPath === undefined) {
      state.TimeoutSeconds = NO_TIMEOUT_SECONDS;
    }
  }
  return callbacks;
};

const readPath = (document: unknown, path: string | undefined): unknown => {
  if (!path?.startsWith('$.')) return undefined;
  return path
    .slice(2)
    .split('.')
    .reduce<unknown>(
      (value, key) =>
        value && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined,
      document,
    );
};
