import type {
  SendTaskFailureCommandInput,
  SendTaskHeartbeatCommandInput,
  SendTaskSuccessCommandInput,
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

/**
 * Step Functions as the callback pattern sees it: tokens the harness minted, closed by the first
 * SendTaskSuccess/SendTaskFailure or by the harness when the task ends otherwise. A closed token
 * answers TaskTimedOut, as AWS does for a task that is already over; a token it never issued answers
 * InvalidToken.
 */
export class SfnModel {
  private readonly tasks = new Map<string, PendingTask>();

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

  private open(token: string | undefined): PendingTask {
    const task = token ? this.tasks.get(token) : undefined;
    if (!task) throw fail('InvalidToken', `Invalid Token: '${token ?? ''}'`);
    if (task.closed) throw fail('TaskTimedOut', 'Task Timed Out');
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
  };
}
