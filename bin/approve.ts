import { SendTaskFailureCommand, SendTaskSuccessCommand } from '@aws-sdk/client-sfn';
import { GetParameterCommand } from '@aws-sdk/client-ssm';
import { Command } from 'commander';
import { z } from 'zod';
import { type ApprovalRecord, ApprovalRecordSchema } from '../lambdas/shared/approval';
import { TargetNameSchema } from '../lambdas/shared/config';
import { parameterNames } from '../lambdas/shared/constants';
import { ErrorNames } from '../lambdas/shared/errors';
import { awsFailure } from './account';
import { type CommonOptions, commonOptions, type OperatorContext, printJson, runOperator } from './operator';
import { CliError, type CliIo, EXIT, type ExitCode, InputError } from './terminal';

/**
 * `understudy approve|reject <target>`: answers the approval gate a run waits at before its switch. The
 * run parked its task token in a SecureString parameter; the command reads it and completes the task.
 * The token is a credential for the execution: it is never printed, in text or in `--json`.
 */

export type Answer = 'approve' | 'reject';

export interface ApproveOptions extends CommonOptions {
  readonly reason?: string;
}

export interface ApproveDocument {
  readonly command: Answer;
  readonly target: string;
  readonly answer: 'approved' | 'rejected';
  readonly execution: string;
  readonly candidate: string;
  readonly reason?: string;
}

// SendTaskFailure takes a cause of up to 32768 characters; one line keeps the outcome message readable.
const ReasonSchema = z
  .string()
  .min(1)
  .max(512)
  .regex(/^\P{Cc}+$/u, 'use one line of printable text');

/** The task is gone: answered already, timed out, or its run ended some other way. */
const CLOSED_TASK = /^(TaskTimedOut|InvalidToken|TaskDoesNotExist)$/;

const noPending = (target: string, detail: string): CliError =>
  new CliError(
    EXIT.usage,
    `no approval is pending for ${target} (${detail}): see \`npx understudy status ${target}\``,
  );

const readRecord = async (ctx: OperatorContext, target: string): Promise<ApprovalRecord> => {
  const name = parameterNames(ctx.stack.parameterPrefix).approval(target);
  let value: string | undefined;
  try {
    const out = await ctx.clients.ssm.send(new GetParameterCommand({ Name: name, WithDecryption: true }));
    value = out.Parameter?.Value;
  } catch (error) {
    if ((error as Error)?.name === 'ParameterNotFound')
      throw noPending(target, 'no run is waiting: none asked, or its run ended');
    throw awsFailure(`reading the approval request of ${target}`, error);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(value ?? '');
  } catch {
    parsed = undefined;
  }
  const record = ApprovalRecordSchema.safeParse(parsed);
  if (!record.success || record.data.target !== target) {
    throw noPending(target, 'the stored request is unreadable; the run will time out and roll back');
  }
  return record.data;
};

const answerTask = async (
  ctx: OperatorContext,
  answer: Answer,
  record: ApprovalRecord,
  reason: string | undefined,
): Promise<void> => {
  try {
    if (answer === 'approve') {
      await ctx.clients.sfn.send(
        new SendTaskSuccessCommand({
          taskToken: record.token,
          output: JSON.stringify({
            approved: true,
            at: new Date().toISOString(),
            ...(reason ? { reason } : {}),
          }),
        }),
      );
    } else {
      await ctx.clients.sfn.send(
        new SendTaskFailureCommand({
          taskToken: record.token,
          error: ErrorNames.ApprovalRejected,
          cause: `rejected by the operator: ${reason ?? 'no reason given'}`,
        }),
      );
    }
  } catch (error) {
    const name = (error as Error)?.name ?? '';
    if (CLOSED_TASK.test(name)) {
      throw noPending(
        record.target,
        `the request of ${record.execution} was answered, timed out or its run ended`,
      );
    }
    // Never the SDK's message as is: some echo the request, and the request holds the token.
    throw new CliError(
      EXIT.aws,
      `answering the approval of ${record.target} failed: ${name || 'unknown error'}`,
    );
  }
};

export const runApprove = (
  answer: Answer,
  target: string,
  options: ApproveOptions,
  io: CliIo,
): Promise<ExitCode> =>
  runOperator(
    answer,
    options,
    io,
    async (ctx) => {
      const record = await readRecord(ctx, target);
      await answerTask(ctx, answer, record, options.reason);
      const document: ApproveDocument = {
        command: answer,
        target,
        answer: answer === 'approve' ? 'approved' : 'rejected',
        execution: record.execution,
        candidate: record.candidate,
        ...(options.reason ? { reason: options.reason } : {}),
      };
      if (ctx.json) printJson(io, document);
      else {
        const next =
          answer === 'approve'
            ? 'the run switches the Elastic IP to the new box'
            : 'the run rolls back; nothing was switched';
        io.stdout.write(
          `${document.answer}: ${target} (run ${record.execution}, candidate ${record.candidate}): ${next}\n`,
        );
      }
      return EXIT.ok;
    },
    () => {
      if (!TargetNameSchema.safeParse(target).success) {
        throw new InputError('target', 'use the name of a configured target, e.g. web');
      }
      if (options.reason !== undefined && !ReasonSchema.safeParse(options.reason).success) {
        throw new InputError('--reason', 'use one line of printable text, at most 512 characters');
      }
    },
  );

export const approveCommand = (answer: Answer, io: CliIo, onExit: (code: ExitCode) => void): Command => {
  const command = new Command(answer)
    .description(
      answer === 'approve'
        ? "let the target's waiting run switch the Elastic IP to its new box"
        : "stop the target's waiting run before its switch; it rolls back",
    )
    .argument('<target>', 'target name from understudy.config.json')
    .option('--reason <text>', 'why (kept in the run outcome)');
  for (const option of commonOptions()) command.addOption(option);
  return command.action(async (target: string, options: ApproveOptions) => {
    onExit(await runApprove(answer, target, options, io));
  });
};
