import type {
  DescribeExecutionCommandInput,
  DescribeExecutionCommandOutput,
  ExecutionListItem,
  ExecutionStatus,
  GetExecutionHistoryCommandInput,
  HistoryEvent,
  HistoryEventType,
  ListExecutionsCommandInput,
  SendTaskFailureCommandInput,
  SendTaskHeartbeatCommandInput,
  SendTaskSuccessCommandInput,
  StartExecutionCommandInput,
  StopExecutionCommandInput,
} from '@aws-sdk/client-sfn';
import type { EngineEvent, StateMachineRegistration } from '../contracts';
import type { ModelContext } from './context';
import { errorsFor } from './errors';

const fail = errorsFor('sfn');

interface PendingTask {
  readonly resolve: (output: unknown) => void;
  readonly reject: (error: Error) => void;
  closed: boolean;
  lastHeartbeat?: number;
}

interface Execution {
  readonly arn: string;
  readonly name: string;
  readonly stateMachineArn: string;
  readonly input: string;
  readonly startDate: Date;
  status: ExecutionStatus;
  stopDate?: Date;
  output?: string;
  error?: string;
  cause?: string;
  readonly events: HistoryEvent[];
  readonly stop: AbortController;
}

const EXECUTION_NAME = /^[A-Za-z0-9_-]{1,80}$/;

const json = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value ?? null));

/** `arn:aws:states:::lambda:invoke.waitForTaskToken` → `lambda` / `invoke.waitForTaskToken`, as TaskScheduled names them. */
const resourceParts = (resource: string | undefined): { resourceType: string; resource: string } => {
  const tail = resource?.startsWith('arn:aws:states:::') ? resource.slice('arn:aws:states:::'.length) : '';
  const [type, ...rest] = tail.split(':');
  return tail
    ? { resourceType: type ?? '', resource: rest.join(':') }
    : { resourceType: 'lambda', resource: resource ?? '' };
};

/**
 * Step Functions as the callback pattern sees it: tokens the harness minted, closed by the first
 * SendTaskSuccess/SendTaskFailure or by the harness when the task ends otherwise. A closed token
 * answers TaskTimedOut, as AWS does for a task that is already over; a token it never issued answers
 * InvalidToken.
 *
 * And Step Functions as an operator sees it: executions of the registered state machines, started by
 * name (idempotent for the same name and input while running, reference D2), run in the background on
 * the virtual clock, described, listed, and their history in AWS's event shapes, retries included.
 */
export class SfnModel {
  private readonly tasks = new Map<string, PendingTask>();
  private readonly machines = new Map<string, StateMachineRegistration>();
  private readonly executions = new Map<string, Execution>();

  constructor(private readonly ctx: ModelContext) {}

  registerTaskToken(token: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.tasks.set(token, { resolve, reject, closed: false });
    });
  }

  /** The harness's task timed out (or was cancelled): later callbacks get TaskTimedOut. */
  closeTaskToken(token: string): void {
    const task = this.tasks.get(token);
    if (task) task.closed = true;
  }

  lastHeartbeat(token: string): number | undefined {
    return this.tasks.get(token)?.lastHeartbeat;
  }

  /** Deploys a state machine: StartExecution on the returned ARN runs `registration.run`. */
  registerStateMachine(registration: StateMachineRegistration): string {
    const arn = `arn:aws:states:${this.ctx.region}:${this.ctx.accountId}:stateMachine:${registration.name}`;
    this.machines.set(arn, registration);
    return arn;
  }

  private open(token: string | undefined): PendingTask {
    const task = token ? this.tasks.get(token) : undefined;
    if (!task) throw fail('InvalidToken', `Invalid Token: '${token ?? ''}'`);
    if (task.closed) throw fail('TaskTimedOut', 'Task Timed Out');
    return task;
  }

  private execution(arn: string | undefined): Execution {
    const execution = arn ? this.executions.get(arn) : undefined;
    if (!execution) throw fail('ExecutionDoesNotExist', `Execution Does Not Exist: '${arn ?? ''}'`);
    return execution;
  }

  private start(input: StartExecutionCommandInput): { executionArn: string; startDate: Date } {
    const machine = input.stateMachineArn ? this.machines.get(input.stateMachineArn) : undefined;
    if (!input.stateMachineArn || !machine) {
      throw fail(
        'StateMachineDoesNotExist',
        `State Machine Does Not Exist: '${input.stateMachineArn ?? ''}'`,
      );
    }
    const name = input.name ?? this.ctx.ids.uuid('execution');
    if (!EXECUTION_NAME.test(name)) throw fail('InvalidName', `Invalid Name: '${name}'`);
    const text = input.input ?? '{}';
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw fail(
        'InvalidExecutionInput',
        'Invalid State Machine Execution Input: the input must be valid JSON',
      );
    }
    const arn = `${input.stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
    const existing = this.executions.get(arn);
    if (existing) {
      if (existing.status === 'RUNNING' && existing.input === text) {
        return { executionArn: arn, startDate: existing.startDate };
      }
      throw fail('ExecutionAlreadyExists', `Execution Already Exists: '${arn}'`);
    }
    const execution: Execution = {
      arn,
      name,
      stateMachineArn: input.stateMachineArn,
      input: text,
      startDate: new Date(this.ctx.clock.now()),
      status: 'RUNNING',
      events: [],
      stop: new AbortController(),
    };
    this.executions.set(arn, execution);
    const history = new HistoryBuilder(execution, machine.definition, this.ctx.region);
    this.ctx.spawn(
      () =>
        machine
          .run(parsed, { name, onEvent: (event) => history.add(event), signal: execution.stop.signal })
          .then((result) => {
            if (execution.status !== 'RUNNING') return;
            execution.status = result.status;
            execution.stopDate = new Date(this.ctx.clock.now());
            if (result.status === 'SUCCEEDED') execution.output = json(result.output);
            if (result.error !== undefined) execution.error = result.error;
            if (result.cause !== undefined) execution.cause = result.cause;
          }),
      (error) => {
        if (execution.status !== 'RUNNING') return;
        execution.status = 'FAILED';
        execution.stopDate = new Date(this.ctx.clock.now());
        execution.error = 'States.Runtime';
        execution.cause = error instanceof Error ? error.message : String(error);
        history.append('ExecutionFailed', {
          executionFailedEventDetails: { error: execution.error, cause: execution.cause },
        });
      },
    );
    return { executionArn: arn, startDate: execution.startDate };
  }

  readonly actions = {
    SendTaskSuccess: (input: SendTaskSuccessCommandInput) => {
      const task = this.open(input.taskToken);
      let output: unknown;
      try {
        output = JSON.parse(input.output ?? '');
      } catch {
        throw fail('InvalidOutput', 'Invalid output: the output must be valid JSON');
      }
      task.closed = true;
      task.resolve(output);
      return {};
    },
    SendTaskFailure: (input: SendTaskFailureCommandInput) => {
      const task = this.open(input.taskToken);
      task.closed = true;
      const error = new Error(input.cause ?? '');
      error.name = input.error ?? '';
      task.reject(error);
      return {};
    },
    SendTaskHeartbeat: (input: SendTaskHeartbeatCommandInput) => {
      const task = this.open(input.taskToken);
      task.lastHeartbeat = this.ctx.clock.now();
      return {};
    },
    StartExecution: (input: StartExecutionCommandInput) => this.start(input),
    DescribeExecution: (
      input: DescribeExecutionCommandInput,
    ): Omit<DescribeExecutionCommandOutput, '$metadata'> => {
      const e = this.execution(input.executionArn);
      return {
        executionArn: e.arn,
        stateMachineArn: e.stateMachineArn,
        name: e.name,
        status: e.status,
        startDate: e.startDate,
        input: e.input,
        inputDetails: { included: true },
        redriveCount: 0,
        ...(e.stopDate ? { stopDate: e.stopDate } : {}),
        ...(e.output !== undefined ? { output: e.output, outputDetails: { included: true } } : {}),
        ...(e.error !== undefined ? { error: e.error } : {}),
        ...(e.cause !== undefined ? { cause: e.cause } : {}),
      };
    },
    /** Newest first, as AWS lists them; the page token is the offset. */
    ListExecutions: (input: ListExecutionsCommandInput) => {
      if (!input.stateMachineArn || !this.machines.has(input.stateMachineArn)) {
        throw fail(
          'StateMachineDoesNotExist',
          `State Machine Does Not Exist: '${input.stateMachineArn ?? ''}'`,
        );
      }
      const all = [...this.executions.values()]
        .filter((e) => e.stateMachineArn === input.stateMachineArn)
        .filter((e) => !input.statusFilter || e.status === input.statusFilter)
        .reverse();
      return page(
        all,
        input.maxResults,
        input.nextToken,
        'executions',
        (e): ExecutionListItem => ({
          executionArn: e.arn,
          stateMachineArn: e.stateMachineArn,
          name: e.name,
          status: e.status,
          startDate: e.startDate,
          ...(e.stopDate ? { stopDate: e.stopDate } : {}),
        }),
      );
    },
    GetExecutionHistory: (input: GetExecutionHistoryCommandInput) => {
      const e = this.execution(input.executionArn);
      const events = input.reverseOrder ? [...e.events].reverse() : [...e.events];
      return page(events, input.maxResults, input.nextToken, 'events', (event) => event);
    },
    StopExecution: (input: StopExecutionCommandInput) => {
      const e = this.execution(input.executionArn);
      // The runner starts no further state; the state in progress ends on its own (the local engine
      // even runs its pending retry), and nothing of it reaches the history any more.
      if (e.status === 'RUNNING') {
        e.status = 'ABORTED';
        e.stop.abort();
        e.stopDate = new Date(this.ctx.clock.now());
        if (input.error !== undefined) e.error = input.error;
        if (input.cause !== undefined) e.cause = input.cause;
        new HistoryBuilder(e, undefined, this.ctx.region).append('ExecutionAborted', {
          executionAbortedEventDetails: {
            ...(input.error !== undefined ? { error: input.error } : {}),
            ...(input.cause !== undefined ? { cause: input.cause } : {}),
          },
        });
      }
      return { stopDate: e.stopDate };
    },
  };
}

const page = <T, R, K extends string>(
  items: readonly T[],
  maxResults: number | undefined,
  nextToken: string | undefined,
  key: K,
  map: (item: T) => R,
): Record<K, R[]> & { nextToken?: string } => {
  const size = maxResults && maxResults > 0 ? Math.min(maxResults, 1000) : 100;
  const offset = nextToken ? Number(Buffer.from(nextToken, 'base64').toString('utf8')) : 0;
  if (!Number.isInteger(offset) || offset < 0)
    throw fail('InvalidToken', 'Invalid Token: the page token is not one of ours');
  const slice = items.slice(offset, offset + size).map(map);
  const next =
    offset + size < items.length ? Buffer.from(String(offset + size)).toString('base64') : undefined;
  return { [key]: slice, ...(next ? { nextToken: next } : {}) } as Record<K, R[]> & { nextToken?: string };
};

const ENTERED: Record<string, HistoryEventType> = {
  Task: 'TaskStateEntered',
  Choice: 'ChoiceStateEntered',
  Pass: 'PassStateEntered',
  Wait: 'WaitStateEntered',
  Succeed: 'SucceedStateEntered',
  Fail: 'FailStateEntered',
  Parallel: 'ParallelStateEntered',
  Map: 'MapStateEntered',
};
const EXITED: Record<string, HistoryEventType> = {
  Task: 'TaskStateExited',
  Choice: 'ChoiceStateExited',
  Pass: 'PassStateExited',
  Wait: 'WaitStateExited',
  Succeed: 'SucceedStateExited',
  Parallel: 'ParallelStateExited',
  Map: 'MapStateExited',
};

/**
 * Turns the engine's event log into AWS's history: each attempt of a Task is a TaskScheduled,
 * TaskStarted and TaskSucceeded or TaskFailed, so a retried step shows its failed attempts; a caught
 * failure is a TaskFailed followed by the state's exit, as in AWS.
 */
class HistoryBuilder {
  private readonly failedAttempt = new Set<string>();

  constructor(
    private readonly execution: Execution,
    private readonly definition: unknown,
    private readonly region: string,
  ) {}

  private resourceOf(state: string): { resourceType: string; resource: string } {
    const states = (this.definition as { States?: Record<string, { Resource?: unknown }> } | undefined)
      ?.States;
    const resource = states?.[state]?.Resource;
    return resourceParts(typeof resource === 'string' ? resource : undefined);
  }

  append(type: HistoryEventType, details: Partial<HistoryEvent>, at = Date.now()): void {
    const events = this.execution.events;
    const id = events.length + 1;
    events.push({
      timestamp: new Date(at),
      type,
      id,
      previousEventId: id - 1,
      ...details,
    });
  }

  private schedule(state: string, input: unknown, at: number): void {
    const resource = this.resourceOf(state);
    this.append(
      'TaskScheduled',
      { taskScheduledEventDetails: { ...resource, region: this.region, parameters: json(input) } },
      at,
    );
    this.append('TaskStarted', { taskStartedEventDetails: resource }, at);
  }

  add(event: EngineEvent): void {
    // A stopped execution's history ends with ExecutionAborted, whatever the engine still reports.
    if (this.execution.status !== 'RUNNING') return;
    const at = event.timestamp;
    const state = event.state;
    switch (event.type) {
      case 'ExecutionStarted':
        this.append(
          'ExecutionStarted',
          {
            executionStartedEventDetails: {
              input: this.execution.input,
              inputDetails: { truncated: false },
            },
          },
          at,
        );
        return;
      case 'StateEntered': {
        if (!state) return;
        const type = ENTERED[state.type];
        if (type) {
          this.append(
            type,
            {
              stateEnteredEventDetails: {
                name: state.name,
                input: json(state.input),
                inputDetails: { truncated: false },
              },
            },
            at,
          );
        }
        if (state.type === 'Task') this.schedule(state.name, state.input, at);
        return;
      }
      case 'StateFailed':
        if (state?.type !== 'Task') return;
        this.failedAttempt.add(state.name);
        this.append(
          'TaskFailed',
          {
            taskFailedEventDetails: {
              ...this.resourceOf(state.name),
              ...(event.Error !== undefined ? { error: event.Error } : {}),
              cause: json(event.Cause),
            },
          },
          at,
        );
        return;
      case 'StateRetried':
        if (state?.type !== 'Task') return;
        this.failedAttempt.delete(state.name);
        this.schedule(state.name, state.input, at);
        return;
      case 'StateExited': {
        if (!state) return;
        if (state.type === 'Task' && !this.failedAttempt.delete(state.name)) {
          this.append(
            'TaskSucceeded',
            {
              taskSucceededEventDetails: {
                ...this.resourceOf(state.name),
                output: json(state.output),
                outputDetails: { truncated: false },
              },
            },
            at,
          );
        }
        const type = EXITED[state.type];
        if (type) {
          this.append(
            type,
            {
              stateExitedEventDetails: {
                name: state.name,
                output: json(state.output),
                outputDetails: { truncated: false },
              },
            },
            at,
          );
        }
        return;
      }
      case 'ExecutionSucceeded':
        this.append(
          'ExecutionSucceeded',
          {
            executionSucceededEventDetails: {
              output: json(event.output),
              outputDetails: { truncated: false },
            },
          },
          at,
        );
        return;
      case 'ExecutionFailed':
        this.append(
          'ExecutionFailed',
          {
            executionFailedEventDetails: {
              ...(event.Error !== undefined ? { error: event.Error } : {}),
              cause: json(event.Cause),
            },
          },
          at,
        );
        return;
      default:
        return;
    }
  }
}
