import {
  GetCommandInvocationCommand,
  type GetCommandInvocationCommandOutput,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { z } from 'zod';
import { describeAwsError, hasCode, rethrowIfTransient } from '../shared/aws-errors';
import { ErrorNames, failure, UnderstudyError } from '../shared/errors';
import { correlate } from '../shared/logger';
import { CommandRefSchema } from '../shared/schemas';

export const AwaitCommandInputSchema = z.object({
  command: CommandRefSchema,
  /** Human words for messages, e.g. "local app check" or "certificate". */
  purpose: z.string().min(1),
});
export type AwaitCommandInput = z.infer<typeof AwaitCommandInputSchema>;

export interface CommandResult {
  readonly status: 'Success';
  /** The end of stdout, where scripts print their conclusion. */
  readonly output: string;
}

export const OUTPUT_TAIL = 2_000;
const STDERR_TAIL = 1_000;

/** Statuses the command leaves on its own; the state machine polls through them. */
const STILL_RUNNING = new Set(['Pending', 'InProgress', 'Delayed']);

const tail = (text: string | undefined, limit: number): string => {
  const trimmed = (text ?? '').trimEnd();
  return trimmed.length <= limit ? trimmed : `…${trimmed.slice(-limit)}`;
};

const pending = failure(ErrorNames.CommandPending);
const stillRunning = (input: AwaitCommandInput, detail: string): string =>
  `${input.purpose} on ${input.command.instanceId} is still running (${detail}); polling again`;

/** One look at the command: CommandPending while it runs, its output tail on Success, CommandFailed otherwise. */
export const awaitCommand = async (ssm: SSMClient, input: AwaitCommandInput): Promise<CommandResult> => {
  const { commandId, instanceId } = input.command;
  correlate({ instance: instanceId });
  let out: GetCommandInvocationCommandOutput;
  try {
    out = await ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }));
  } catch (error) {
    // Right after SendCommand the invocation may not be visible yet (eventual consistency).
    if (hasCode(error, 'InvocationDoesNotExist'))
      throw pending(stillRunning(input, 'not visible yet'), error);
    rethrowIfTransient(error, 'GetCommandInvocation');
    throw new UnderstudyError(
      ErrorNames.CommandFailed,
      `${input.purpose} on ${instanceId}: GetCommandInvocation for command ${commandId} failed: ${describeAwsError(error)}`,
      { cause: error },
    );
  }

  const status = out.Status ?? 'Pending';
  if (STILL_RUNNING.has(status)) throw pending(stillRunning(input, out.StatusDetails ?? status));
  if (status === 'Success')
    return { status: 'Success', output: tail(out.StandardOutputContent, OUTPUT_TAIL) };

  const stderr = tail(out.StandardErrorContent, STDERR_TAIL) || tail(out.StandardOutputContent, STDERR_TAIL);
  throw new UnderstudyError(
    ErrorNames.CommandFailed,
    `${input.purpose} failed on ${instanceId}: ${out.StatusDetails ?? status}, exit ${out.ResponseCode ?? 'unknown'}: ${stderr || '(no output)'}` +
      ` (command ${commandId}; full output in the SSM console)`,
  );
};
