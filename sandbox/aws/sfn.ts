import type {
  SendTaskFailureCommandInput,
  SendTaskHeartbeatCommandInput,
  SendTaskSuccessCommandInput,
  StartExecutionCommandInput,
} from '@aws-sdk/client-sfn';
import type { ModelContext } from './context';
import { errorsFor } from './errors';

const fail = errorsFor('sfn');

interface PendingTask {
  readonly resolve: (output: unknown) => void;
  readonly reject: (error: Error) => void;
  closed: boolean;
  lastHeartbeat?: number;
}

export interface StartExecutionRequest {
  readonly stateMachineArn: string;
  readonly name: string;
  readonly input: unknown;
}
export type StartExecutionHandler = (request: StartExecutionRequest) => void | Promise<void>;

/**
 * Step Functions as the callback pattern sees it: tokens the harness minted, closed by the first
 * SendTaskSuccess/SendTaskFailure. A closed or unknown token answers TaskTimedOut, as AWS does for a
 * task that is already over.
 */
export class SfnModel {
  private readonly tasks = new Map<string, PendingTask>();
  private startHandler: StartExecutionHandler | undefined;
  /** Executions whose handler threw (the harness decides what that means). */
  readonly failedExecutions: { executionArn: string; error: unknown }[] = [];
  private readonly executions = new Map<string, { input: string; arn: string; startDate: Date }>();

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

  onStartExecution(handler: StartExecutionHandler | undefined): void {
    this.startHandler = handler;
  }

  private open(token: string | undefined): PendingTask {
    if (!token) throw fail('InvalidToken', 'Invalid Token: task token is required');
    const task = this.tasks.get(token);
    if (!task || task.closed) throw fail('TaskTimedOut', 'Task Timed Out');
    return task;
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
    StartExecution: async (input: StartExecutionCommandInput) => {
      const arn = input.stateMachineArn ?? '';
      if (!this.startHandler) {
        throw fail('StateMachineDoesNotExist', `State Machine Does Not Exist: '${arn}'`);
      }
      const name = input.name ?? this.ctx.ids.uuid('execution');
      const executionArn = `${arn.replace(':stateMachine:', ':execution:')}:${name}`;
      const previous = this.executions.get(executionArn);
      if (previous) {
        // Standard workflows: same name + same input is idempotent, anything else is refused.
        if (previous.input === (input.input ?? '{}')) return { executionArn, startDate: previous.startDate };
        throw fail('ExecutionAlreadyExists', `Execution Already Exists: '${executionArn}'`);
      }
      const startDate = new Date(this.ctx.clock.now());
      this.executions.set(executionArn, { input: input.input ?? '{}', arn: executionArn, startDate });
      const handler = this.startHandler;
      const request = { stateMachineArn: arn, name, input: JSON.parse(input.input ?? '{}') as unknown };
      this.ctx.spawn(
        () => handler(request),
        (error) => this.failedExecutions.push({ executionArn, error }),
      );
      return { executionArn, startDate };
    },
  };
}
