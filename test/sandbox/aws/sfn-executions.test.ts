import {
  DescribeExecutionCommand,
  ExecutionAlreadyExists,
  ExecutionDoesNotExist,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  ListExecutionsCommand,
  StartExecutionCommand,
  StateMachineDoesNotExist,
  StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { StateMachine } from 'aws-local-stepfunctions';
import type { EngineEvent, ExecutionRunner } from '../../../sandbox/contracts';
import { rejectionOf, useWorld } from './helpers';

const world = useWorld();

/** Check (fails its first attempt, retried), a Choice, then Finish: fails when the input says so. */
const DEFINITION = {
  StartAt: 'Check',
  States: {
    Check: {
      Type: 'Task',
      Resource: 'arn:aws:states:::lambda:invoke',
      Parameters: { 'Payload.$': '$' },
      OutputPath: '$.Payload',
      Retry: [{ ErrorEquals: ['Transient'], IntervalSeconds: 5, MaxAttempts: 2 }],
      Next: 'Route',
    },
    Route: {
      Type: 'Choice',
      Choices: [{ Variable: '$.fail', BooleanEquals: true, Next: 'Finish' }],
      Default: 'Done',
    },
    Finish: { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', End: true },
    Done: { Type: 'Succeed' },
  },
};

/** Runs DEFINITION with aws-local-stepfunctions, as LocalWorkflow does, reporting its event log. */
const localRunner = (calls: string[] = []): ExecutionRunner => {
  let checks = 0;
  return async (input, { onEvent, signal }) => {
    // biome-ignore lint/suspicious/noExplicitAny: the engine types the definition as its own ASL shape
    const machine = new StateMachine(DEFINITION as any);
    const execution = machine.run(input as never, {
      overrides: {
        taskResourceLocalHandlers: {
          Check: async (payload: unknown) => {
            calls.push('Check');
            checks += 1;
            if (checks % 2 === 1) {
              const error = new Error('{"errorType":"Transient","errorMessage":"S3 was busy"}');
              error.name = 'Transient';
              throw error;
            }
            return { Payload: (payload as { Payload: unknown }).Payload } as never;
          },
          Finish: async () => {
            const error = new Error('{"errorType":"ProbeFailed","errorMessage":"3 failed probes in a row"}');
            error.name = 'ProbeFailed';
            throw error;
          },
        },
      },
    });
    signal.addEventListener('abort', () => {
      calls.push('abort');
      execution.abort();
    });
    const drained = (async () => {
      for await (const event of execution.eventLogs) onEvent(event as EngineEvent);
    })();
    try {
      const output = await execution.result;
      await drained;
      return { status: 'SUCCEEDED', output };
    } catch (failure) {
      await drained;
      const cause = (failure as { cause?: Error }).cause ?? (failure as Error);
      return { status: 'FAILED', error: cause.name, cause: cause.message };
    }
  };
};

const deployMachine = (calls?: string[]) =>
  world.sandbox.registerStateMachine({ name: 'check', definition: DEFINITION, run: localRunner(calls) });

const settled = async (executionArn: string) => {
  for (;;) {
    const described = await world.aws.sfn.send(new DescribeExecutionCommand({ executionArn }));
    if (described.status !== 'RUNNING') return described;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
};

const history = async (executionArn: string): Promise<HistoryEvent[]> =>
  (await world.aws.sfn.send(new GetExecutionHistoryCommand({ executionArn }))).events ?? [];

describe('Step Functions executions in the sandbox', () => {
  it('answers a repeated StartExecution with the same name and input while running with the same execution', async () => {
    const stateMachineArn = deployMachine();
    const request = { stateMachineArn, name: 'run-1', input: '{"fail":false}' };

    const first = await world.aws.sfn.send(new StartExecutionCommand(request));
    const again = await world.aws.sfn.send(new StartExecutionCommand(request));
    const listed = await world.aws.sfn.send(
      new ListExecutionsCommand({ stateMachineArn, statusFilter: 'RUNNING' }),
    );

    expect(again.executionArn).toBe(first.executionArn);
    expect(again.startDate?.getTime()).toBe(first.startDate?.getTime());
    expect(listed.executions?.map((e) => e.name)).toEqual(['run-1']);
    await settled(first.executionArn ?? '');
  });

  it('refuses the same name with other input, and any reuse once the execution closed, with ExecutionAlreadyExists', async () => {
    const stateMachineArn = deployMachine();
    const { executionArn } = await world.aws.sfn.send(
      new StartExecutionCommand({ stateMachineArn, name: 'run-2', input: '{"fail":false}' }),
    );

    const otherInput = await rejectionOf(
      world.aws.sfn.send(
        new StartExecutionCommand({ stateMachineArn, name: 'run-2', input: '{"fail":true}' }),
      ),
    );
    await settled(executionArn ?? '');
    const afterClose = await rejectionOf(
      world.aws.sfn.send(
        new StartExecutionCommand({ stateMachineArn, name: 'run-2', input: '{"fail":false}' }),
      ),
    );

    expect(otherInput).toBeInstanceOf(ExecutionAlreadyExists);
    expect(afterClose).toBeInstanceOf(ExecutionAlreadyExists);
  });

  it('runs the execution in the background to its end: DescribeExecution and ListExecutions follow its status', async () => {
    const stateMachineArn = deployMachine();
    const { executionArn } = await world.aws.sfn.send(
      new StartExecutionCommand({ stateMachineArn, name: 'run-3', input: '{"fail":false}' }),
    );

    const described = await settled(executionArn ?? '');
    const running = await world.aws.sfn.send(
      new ListExecutionsCommand({ stateMachineArn, statusFilter: 'RUNNING' }),
    );
    const succeeded = await world.aws.sfn.send(
      new ListExecutionsCommand({ stateMachineArn, statusFilter: 'SUCCEEDED' }),
    );

    expect(described.status).toBe('SUCCEEDED');
    expect(JSON.parse(described.output ?? 'null')).toEqual({ fail: false });
    // The failed first attempt waited its 5 s retry interval on the virtual clock.
    expect(
      (described.stopDate?.getTime() ?? 0) - (described.startDate?.getTime() ?? 0),
    ).toBeGreaterThanOrEqual(5_000);
    expect(running.executions).toEqual([]);
    expect(succeeded.executions?.map((e) => e.executionArn)).toEqual([executionArn]);
  });

  it("records the history in AWS's shape: the retried attempt's TaskFailed, then a second TaskScheduled", async () => {
    const stateMachineArn = deployMachine();
    const { executionArn } = await world.aws.sfn.send(
      new StartExecutionCommand({ stateMachineArn, name: 'run-4', input: '{"fail":false}' }),
    );
    await settled(executionArn ?? '');

    const events = await history(executionArn ?? '');

    expect(events.map((e) => e.type)).toEqual([
      'ExecutionStarted',
      'TaskStateEntered',
      'TaskScheduled',
      'TaskStarted',
      'TaskFailed',
      'TaskScheduled',
      'TaskStarted',
      'TaskSucceeded',
      'TaskStateExited',
      'ChoiceStateEntered',
      'ChoiceStateExited',
      'SucceedStateEntered',
      'SucceedStateExited',
      'ExecutionSucceeded',
    ]);
    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
    expect(events.map((e) => e.previousEventId)).toEqual(events.map((_, i) => i));
    expect(events.every((e) => e.timestamp instanceof Date)).toBe(true);
    expect(events[1]?.stateEnteredEventDetails?.name).toBe('Check');
    expect(events[2]?.taskScheduledEventDetails).toMatchObject({
      resourceType: 'lambda',
      resource: 'invoke',
    });
    expect(events[4]?.taskFailedEventDetails).toMatchObject({ error: 'Transient' });
    expect(JSON.parse(events[4]?.taskFailedEventDetails?.cause ?? '{}')).toMatchObject({
      errorMessage: 'S3 was busy',
    });
    // The retry comes after the 5 s interval.
    expect(
      (events[5]?.timestamp?.getTime() ?? 0) - (events[4]?.timestamp?.getTime() ?? 0),
    ).toBeGreaterThanOrEqual(5_000);
  });

  it('ends a failed execution with ExecutionFailed carrying the error and cause, also in DescribeExecution', async () => {
    const stateMachineArn = deployMachine();
    const { executionArn } = await world.aws.sfn.send(
      new StartExecutionCommand({ stateMachineArn, name: 'run-5', input: '{"fail":true}' }),
    );

    const described = await settled(executionArn ?? '');
    const events = await history(executionArn ?? '');
    const last = events[events.length - 1];

    expect(described.status).toBe('FAILED');
    expect(described.error).toBe('ProbeFailed');
    expect(events.filter((e) => e.type === 'TaskFailed').map((e) => e.taskFailedEventDetails?.error)).toEqual(
      ['Transient', 'ProbeFailed'],
    );
    expect(last?.type).toBe('ExecutionFailed');
    expect(last?.executionFailedEventDetails?.error).toBe('ProbeFailed');
    expect(last?.executionFailedEventDetails?.cause).toContain('3 failed probes in a row');
  });

  it('pages the history and answers unknown executions and state machines as AWS does', async () => {
    const stateMachineArn = deployMachine();
    const { executionArn } = await world.aws.sfn.send(
      new StartExecutionCommand({ stateMachineArn, name: 'run-6', input: '{"fail":false}' }),
    );
    await settled(executionArn ?? '');

    const first = await world.aws.sfn.send(new GetExecutionHistoryCommand({ executionArn, maxResults: 10 }));
    const rest = await world.aws.sfn.send(
      new GetExecutionHistoryCommand({ executionArn, maxResults: 10, nextToken: first.nextToken }),
    );
    const newestFirst = await world.aws.sfn.send(
      new GetExecutionHistoryCommand({ executionArn, reverseOrder: true, maxResults: 1 }),
    );
    const unknownExecution = await rejectionOf(
      world.aws.sfn.send(new DescribeExecutionCommand({ executionArn: `${executionArn}-nope` })),
    );
    const unknownMachine = await rejectionOf(
      world.aws.sfn.send(
        new StartExecutionCommand({ stateMachineArn: `${stateMachineArn}-nope`, name: 'x' }),
      ),
    );

    expect(first.events).toHaveLength(10);
    expect(rest.events?.map((e) => e.id)).toEqual([11, 12, 13, 14]);
    expect(rest.nextToken).toBeUndefined();
    expect(newestFirst.events?.[0]?.type).toBe('ExecutionSucceeded');
    expect(unknownExecution).toBeInstanceOf(ExecutionDoesNotExist);
    expect(unknownMachine).toBeInstanceOf(StateMachineDoesNotExist);
  });

  it('stops a running execution: the runner is told, status ABORTED, the history closed by ExecutionAborted', async () => {
    const calls: string[] = [];
    const stateMachineArn = deployMachine(calls);
    const { executionArn } = await world.aws.sfn.send(
      new StartExecutionCommand({ stateMachineArn, name: 'run-7', input: '{"fail":false}' }),
    );
    // The first Check attempt fails; its retry is due 5 s later.
    await new Promise((resolve) => setTimeout(resolve, 1_000));

    await world.aws.sfn.send(
      new StopExecutionCommand({ executionArn, error: 'Operator', cause: 'wrong image' }),
    );
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    const described = await world.aws.sfn.send(new DescribeExecutionCommand({ executionArn }));
    const events = await history(executionArn ?? '');

    expect(described).toMatchObject({ status: 'ABORTED', error: 'Operator', cause: 'wrong image' });
    expect(events[events.length - 1]?.type).toBe('ExecutionAborted');
    expect(events[events.length - 1]?.executionAbortedEventDetails).toEqual({
      error: 'Operator',
      cause: 'wrong image',
    });
    expect(calls).toContain('abort');
    // Nothing the engine did after the stop is in the history: Check never shows its retry.
    expect(events.filter((e) => e.type === 'TaskScheduled')).toHaveLength(1);
  });
});
