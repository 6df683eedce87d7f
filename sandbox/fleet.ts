import { readFileSync } from 'node:fs';
import { DescribeExecutionCommand, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { StateMachine } from 'aws-local-stepfunctions';
import { sfnClient } from '../lambdas/shared/clients';
import { FLEET_DEFINITION_PATH } from '../lib/fleet';
import type { EngineEvent, EngineResult, SandboxApi } from './contracts';
import type { RunOptions, WorkflowRun } from './workflow';

/**
 * Runs statemachine/fleet.asl.json on a sandbox account. aws-local-stepfunctions has no Distributed
 * Map (no child workflow executions, no tolerated failure threshold), so the definition is adapted,
 * and ONLY these parts are local:
 *  - the Map runs INLINE (ProcessorConfig, Label and ToleratedFailurePercentagePath are dropped;
 *    MaxConcurrencyPath is kept and honoured by the engine);
 *  - an item's failure ends at RecordFailure (its ItemFailed state, which fails the child workflow
 *    execution in AWS so the Map Run counts it, is removed: an INLINE Map would fail outright);
 *  - a CountFailures task after the Map applies the Map Run's rule instead: more than
 *    toleratedFailurePercentage of the items failed → `States.ExceedToleratedFailureThreshold`.
 *    Unlike AWS it judges once every item ran (AWS stops starting items as soon as the threshold is
 *    exceeded), and it names the failed targets in the cause;
 *  - `states:startExecution.sync:2` runs the replace workflow for the item in this process, under
 *    the execution name the definition computes, and answers as the integration does: the
 *    DescribeExecution fields with Output parsed (`:2`), or `States.TaskFailed` with that document
 *    as the cause when the run failed.
 * Everything else (ItemSelector, the name, the child input, the per-item Catch, Summarize) is the
 * deployed file as is. One engine quirk to know: its States.Hash MD5 differs from MD5 for inputs
 * longer than 55 bytes, so the digest in a child's name matches what the CLI computes only for fleet
 * execution names up to 55 characters (the CLI's own names are shorter; AWS hashes any length right).
 */

/** What the fleet needs of a finished replace run. */
export interface ReplaceResult extends EngineResult {
  readonly executionArn: string;
}

/** How a replace run for one item is carried out: a LocalWorkflow's `run`, or {@link throughStepFunctions}. */
export type ReplaceRunner<R extends ReplaceResult = WorkflowRun> = (
  input: unknown,
  options: RunOptions & { readonly name: string },
) => Promise<R>;

/**
 * Starts the item's run on the account's Step Functions (the replace machine registered there) and
 * polls it to its end, so it is listed and described like any other execution (the CLI's wave view
 * finds it by name).
 */
export const throughStepFunctions =
  (replaceStateMachineArn: string, pollMs = 5_000): ReplaceRunner<ReplaceResult> =>
  async (input, { name }) => {
    const sfn = sfnClient();
    const { executionArn = '' } = await sfn.send(
      new StartExecutionCommand({
        stateMachineArn: replaceStateMachineArn,
        name,
        input: JSON.stringify(input),
      }),
    );
    for (;;) {
      const described = await sfn.send(new DescribeExecutionCommand({ executionArn }));
      if (described.status !== 'RUNNING') {
        return {
          executionArn,
          status: described.status === 'SUCCEEDED' ? 'SUCCEEDED' : 'FAILED',
          ...(described.output !== undefined ? { output: JSON.parse(described.output) as unknown } : {}),
          ...(described.error !== undefined ? { error: described.error } : {}),
          ...(described.cause !== undefined ? { cause: described.cause } : {}),
        };
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  };

const START_SYNC = 'arn:aws:states:::states:startExecution.sync:2';
const MAP_STATE = 'ReplaceTargets';
const COUNT_FAILURES = 'CountFailures';
/** A resource ARN the engine accepts; the task is always overridden. */
const localResource = (sandbox: Pick<SandboxApi, 'region' | 'accountId'>) =>
  `arn:aws:lambda:${sandbox.region}:${sandbox.accountId}:function:understudy-local-fleet-tolerance`;

interface State {
  Type: string;
  Resource?: string;
  Next?: string;
  End?: boolean;
  [key: string]: unknown;
}
interface MapState extends State {
  ItemProcessor: { ProcessorConfig?: Record<string, string>; StartAt: string; States: Record<string, State> };
}
interface Definition {
  StartAt: string;
  States: Record<string, State>;
}

/** The item outcome RecordFailure and Replaced leave in the Map's results. */
export interface FleetItemResult {
  readonly target: string;
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly executionArn?: string;
  readonly error?: string;
  readonly cause?: string;
}

export class ToleranceError extends Error {
  override readonly name = 'States.ExceedToleratedFailureThreshold';
}

/**
 * The Map Run's rule: it fails when the failed items' share exceeds the tolerated percentage (exactly
 * the percentage is still tolerated).
 */
export const exceedsTolerance = (failed: number, total: number, toleratedPercentage: number): boolean =>
  total > 0 && (failed / total) * 100 > toleratedPercentage;

/** The fleet definition with `${ReplaceStateMachineArn}` substituted and adapted to the local engine. */
export const localFleetDefinition = (
  sandbox: Pick<SandboxApi, 'region' | 'accountId'>,
  replaceStateMachineArn: string,
): Definition => {
  const text = readFileSync(FLEET_DEFINITION_PATH, 'utf8').replace(/\$\{([A-Za-z]+)\}/g, (_, key: string) => {
    if (key !== 'ReplaceStateMachineArn')
      throw new Error(`no substitution for \${${key}} in the fleet definition`);
    return replaceStateMachineArn;
  });
  const definition = JSON.parse(text) as Definition;
  const map = definition.States[MAP_STATE] as MapState | undefined;
  if (map?.Type !== 'Map') throw new Error(`the fleet definition has no ${MAP_STATE} Map state`);
  map.ItemProcessor.ProcessorConfig = { Mode: 'INLINE' };
  delete map.Label;
  delete map.ToleratedFailurePercentagePath;
  const items = map.ItemProcessor.States;
  for (const [name, state] of Object.entries(items)) {
    if (state.Type !== 'Fail') continue;
    delete items[name];
    for (const other of Object.values(items)) {
      if (other.Next === name) {
        delete other.Next;
        other.End = true;
      }
    }
  }
  const after = map.Next;
  map.Next = COUNT_FAILURES;
  definition.States[COUNT_FAILURES] = {
    Type: 'Task',
    Resource: localResource(sandbox),
    Parameters: { 'results.$': '$.results', 'toleratedFailurePercentage.$': '$.toleratedFailurePercentage' },
    ResultPath: null,
    TimeoutSeconds: 60,
    ...(after ? { Next: after } : { End: true }),
  };
  return definition;
};

export interface FleetRun<R extends ReplaceResult = WorkflowRun> {
  readonly executionArn: string;
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly output?: unknown;
  readonly error?: string;
  readonly cause?: string;
  /** The per-item outcomes, in item order (the Map's results). */
  readonly items: readonly FleetItemResult[];
  /** Each replace run by target, as it ended. */
  readonly runs: Readonly<Record<string, R>>;
}

const failure = (name: string, message: string): Error => {
  const error = new Error(message);
  error.name = name;
  return error;
};

/** The fleet state machine on one sandbox account, each item a run of the replace workflow. */
export class LocalFleet<R extends ReplaceResult = WorkflowRun> {
  private readonly machine: StateMachine;
  private readonly definition: Definition;
  private counter = 0;

  constructor(
    private readonly sandbox: SandboxApi,
    private readonly replaceStateMachineArn: string,
    private readonly runReplace: ReplaceRunner<R>,
  ) {
    this.definition = localFleetDefinition(sandbox, replaceStateMachineArn);
    // biome-ignore lint/suspicious/noExplicitAny: the library types the definition as its own ASL shape
    this.machine = new StateMachine(this.definition as any, {
      validationOptions: { checkArn: true, checkPaths: true },
    });
  }

  /** The adapted definition (registered with the sandbox's Step Functions for its history). */
  get localDefinition(): unknown {
    return this.definition;
  }

  async run(
    input: unknown,
    options: { name?: string; onEvent?: (event: EngineEvent) => void; signal?: AbortSignal } = {},
  ): Promise<FleetRun<R>> {
    this.counter += 1;
    const name = options.name ?? `fleet-${this.counter}`;
    const executionArn = `arn:aws:states:${this.sandbox.region}:${this.sandbox.accountId}:execution:understudy-fleet:${name}`;
    const runs: Record<string, R> = {};
    const items: FleetItemResult[] = [];
    const startSync = async (raw: unknown): Promise<unknown> => {
      const request = raw as { StateMachineArn: string; Name: string; Input: { target: string } };
      if (request.StateMachineArn !== this.replaceStateMachineArn) {
        throw failure(
          'StepFunctions.StateMachineDoesNotExistException',
          `no state machine ${request.StateMachineArn}`,
        );
      }
      const startDate = Date.now();
      const run = await this.runReplace(request.Input, { name: request.Name });
      runs[request.Input.target] = run;
      const described = {
        ExecutionArn: run.executionArn,
        StateMachineArn: request.StateMachineArn,
        Name: request.Name,
        Status: run.status,
        StartDate: startDate,
        StopDate: Date.now(),
        Input: request.Input,
        InputDetails: { Included: true },
        ...(run.status === 'SUCCEEDED'
          ? { Output: run.output ?? null, OutputDetails: { Included: true } }
          : { Error: run.error, Cause: run.cause }),
      };
      if (run.status === 'SUCCEEDED') return described;
      throw failure('States.TaskFailed', JSON.stringify(described));
    };
    const countFailures = async (raw: unknown): Promise<unknown> => {
      const { results, toleratedFailurePercentage } = raw as {
        results: FleetItemResult[];
        toleratedFailurePercentage: number;
      };
      items.push(...results);
      const failed = results.filter((r) => r.status === 'FAILED');
      if (exceedsTolerance(failed.length, results.length, toleratedFailurePercentage)) {
        throw new ToleranceError(
          `${failed.length} of ${results.length} items failed, more than the tolerated ${toleratedFailurePercentage}%: ` +
            failed.map((f) => `${f.target} (${f.error ?? 'failed'})`).join(', '),
        );
      }
      return {};
    };
    const overrides: Record<string, (input: unknown) => Promise<unknown>> = {};
    const map = this.definition.States[MAP_STATE] as MapState;
    for (const [stateName, state] of Object.entries(map.ItemProcessor.States)) {
      if (state.Resource === START_SYNC) overrides[stateName] = startSync;
    }
    overrides[COUNT_FAILURES] = countFailures;

    const execution = this.machine.run(input as never, {
      overrides: { taskResourceLocalHandlers: overrides as never },
      context: {
        Execution: {
          Id: executionArn,
          Name: name,
          StartTime: new Date().toISOString(),
          Input: input,
          RoleArn: `arn:aws:iam::${this.sandbox.accountId}:role/understudy-sandbox`,
        },
        StateMachine: { Id: 'understudy-fleet', Name: 'understudy-fleet' },
      } as never,
    });
    options.signal?.addEventListener('abort', () => execution.abort(), { once: true });
    const drain = (async () => {
      for await (const event of execution.eventLogs) options.onEvent?.(event as EngineEvent);
    })();
    try {
      const output = await execution.result;
      await drain;
      return { executionArn, status: 'SUCCEEDED', output, items, runs };
    } catch (thrown) {
      await drain.catch(() => undefined);
      const cause = (thrown as { cause?: Error }).cause ?? (thrown as Error);
      return { executionArn, status: 'FAILED', error: cause.name, cause: cause.message, items, runs };
    }
  }
}
