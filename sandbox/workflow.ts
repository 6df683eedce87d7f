import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Context } from 'aws-lambda';
import { StateMachine } from 'aws-local-stepfunctions';
import { placeholderFor, STEP_NAMES } from '../lib/steps';
import type { SandboxApi } from './contracts';

/**
 * Runs the deployed state machine definition (statemachine/replace.asl.json, the very file CDK ships)
 * through aws-local-stepfunctions, every Task mapped to the real Lambda handler, on a sandbox account.
 * Lambda's own semantics are kept at the boundary: JSON in and out, errors in Lambda's envelope
 * (Error = errorType, Cause = JSON text), a context whose remaining time follows the task timeout.
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

export const substitutedDefinition = (sandbox: Pick<SandboxApi, 'region' | 'accountId'>): unknown => {
  const text = readFileSync(ASL_PATH, 'utf8').replace(/\$\{([A-Za-z]+)\}/g, (_, key: string) => {
    const folder = STEP_NAMES.find((step) => placeholderFor(step) === key);
    if (!folder) throw new Error(`no substitution for \${${key}} in ${ASL_PATH}`);
    return functionArn(sandbox, folder);
  });
  return JSON.parse(text);
};

const folderOfArn = (arn: string): string =>
  arn.slice(arn.lastIndexOf(':understudy-') + ':understudy-'.length);

const lambdaContext = (folder: string, timeoutMs: number): Context => {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: `understudy-${folder}`,
    functionVersion: '$LATEST',
    invokedFunctionArn: `understudy-${folder}`,
    memoryLimitInMB: '512',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/understudy-${folder}`,
    logStreamName: 'sandbox',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
};

/** Calls a handler the way Lambda does: serialised payloads, errors in Lambda's envelope. */
export const invokeLambda = async (
  handlers: HandlerSet,
  folder: string,
  payload: unknown,
  timeoutMs = 300_000,
): Promise<unknown> => {
  const handler = handlers[folder];
  if (!handler) throw new Error(`no handler for step ${folder}`);
  try {
    const result = await handler(
      JSON.parse(JSON.stringify(payload ?? null)),
      lambdaContext(folder, timeoutMs),
    );
    return result === undefined ? null : JSON.parse(JSON.stringify(result));
  } catch (caught) {
    const error = caught instanceof Error ? caught : new Error(String(caught));
    const envelope = new Error(
      JSON.stringify({ errorType: error.name, errorMessage: error.message, trace: [] }),
    );
    envelope.name = error.name;
    throw envelope;
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
}

export interface RunOptions {
  readonly name?: string;
  /** Called when a state is entered (the demo starts its downtime client on Launch). */
  readonly onStateEntered?: (state: string) => void;
}

interface TaskState {
  readonly Type: string;
  readonly Resource?: string;
  readonly TimeoutSeconds?: number;
  readonly TimeoutSecondsPath?: string;
  readonly HeartbeatSecondsPath?: string;
  readonly Parameters?: unknown;
}

/** One state machine, many runs against the sandbox account. */
export class LocalWorkflow {
  private readonly machine: StateMachine;
  private readonly states: Record<string, TaskState>;
  private counter = 0;

  constructor(
    private readonly sandbox: SandboxApi & {
      lastHeartbeat?: (token: string) => number | undefined;
    },
    private readonly handlers: HandlerSet,
  ) {
    const definition = substitutedDefinition(sandbox) as { States: Record<string, TaskState> };
    adaptPathsToLocalEngine(definition.States);
    this.states = definition.States;
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
      (event) => invokeLambda(this.handlers, 'signal', event, 60_000),
    );
  }

  private taskOverrides(): Record<string, (input: unknown) => Promise<unknown>> {
    const overrides: Record<string, (input: unknown) => Promise<unknown>> = {};
    for (const [name, state] of Object.entries(this.states)) {
      if (state.Type !== 'Task' || !state.Resource) continue;
      const timeoutMs = (state.TimeoutSeconds ?? 300) * 1000;
      if (state.Resource.endsWith('.waitForTaskToken')) {
        overrides[name] = (input) =>
          this.awaitCallback(input as { FunctionName: string; Payload: unknown }, state);
      } else {
        const folder = folderOfArn(state.Resource);
        overrides[name] = (input) => invokeLambda(this.handlers, folder, input, timeoutMs);
      }
    }
    return overrides;
  }

  /**
   * `.waitForTaskToken`: the local engine gives one static token and ignores heartbeats, so each call
   * mints its own token, registers it with the account's Step Functions model, invokes the function
   * with it, and waits for SendTaskSuccess/Failure, enforcing HeartbeatSeconds itself.
   */
  private async awaitCallback(
    input: { FunctionName: string; Payload: unknown },
    state: TaskState,
  ): Promise<unknown> {
    const token = `sandbox-token-${randomUUID()}`;
    const payload = JSON.parse(JSON.stringify(input.Payload)) as { taskToken?: string; state?: unknown };
    payload.taskToken = token;
    const heartbeatSeconds = readPath(payload, state.HeartbeatSecondsPath?.replace('$.Payload.', '$.'));
    const completion = this.sandbox.registerTaskToken(token);
    completion.catch(() => undefined);
    await invokeLambda(this.handlers, folderOfArn(input.FunctionName), payload, 60_000);
    if (typeof heartbeatSeconds !== 'number') return completion;
    const startedAt = Date.now();
    let timer: ReturnType<typeof setInterval> | undefined;
    const heartbeat = new Promise<never>((_, reject) => {
      timer = setInterval(() => {
        const last = this.sandbox.lastHeartbeat?.(token) ?? startedAt;
        if (Date.now() - last > heartbeatSeconds * 1000) {
          const error = new Error(`no heartbeat for ${heartbeatSeconds} s`);
          error.name = 'States.HeartbeatTimeout';
          reject(error);
        }
      }, 5_000);
    });
    try {
      return await Promise.race([completion, heartbeat]);
    } finally {
      clearInterval(timer);
    }
  }

  async run(input: unknown, options: RunOptions = {}): Promise<WorkflowRun> {
    this.counter += 1;
    const name = options.name ?? `run-${this.counter}-${randomUUID().slice(0, 8)}`;
    const executionArn = `arn:aws:states:${this.sandbox.region}:${this.sandbox.accountId}:execution:understudy-replace:${name}`;
    const execution = this.machine.run(input as never, {
      overrides: { taskResourceLocalHandlers: this.taskOverrides() as never },
      context: {
        Execution: {
          Id: executionArn,
          Name: name,
          RedriveCount: 0,
          StartTime: new Date().toISOString(),
          Input: input,
          RoleArn: `arn:aws:iam::${this.sandbox.accountId}:role/understudy-sandbox`,
        },
        StateMachine: { Id: 'understudy-replace', Name: 'understudy-replace' },
        Task: { Token: 'replaced-per-task' },
      } as never,
    });
    const timeline: TimelineEntry[] = [];
    const outputs: Record<string, unknown> = {};
    let transitions = 0;
    const open = new Map<string, TimelineEntry>();
    const drain = (async () => {
      for await (const event of execution.eventLogs) {
        if (event.type === 'StateEntered') {
          transitions += 1;
          const entry = { state: event.state.name, startMs: this.sandbox.clock.elapsed(), durationMs: 0 };
          open.set(event.state.name, entry);
          timeline.push(entry);
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
      return { executionArn, status: 'SUCCEEDED', output, stateTransitions: transitions, timeline, outputs };
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
      };
    }
  }
}

/**
 * AWS evaluates TimeoutSecondsPath/HeartbeatSecondsPath against the state's input; aws-local-stepfunctions
 * evaluates them against the effective Parameters. For `lambda:invoke` tasks the state input travels
 * as `Payload.state`, so the local copy of the definition reads the same value from there.
 */
const adaptPathsToLocalEngine = (states: Record<string, TaskState>): void => {
  for (const state of Object.values(states)) {
    const payload = (state.Parameters as { Payload?: Record<string, string> } | undefined)?.Payload;
    const stateKey = Object.entries(payload ?? {})
      .find(([, v]) => v === '$')?.[0]
      ?.replace(/\.\$$/, '');
    if (!stateKey) continue;
    for (const key of ['TimeoutSecondsPath', 'HeartbeatSecondsPath'] as const) {
      const path = state[key];
      if (typeof path === 'string' && path.startsWith('$.')) {
        (state as unknown as Record<string, unknown>)[key] = `$.Payload.${stateKey}.${path.slice(2)}`;
      }
    }
  }
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
