import { DescribeExecutionCommand, ListExecutionsCommand } from '@aws-sdk/client-sfn';
import { Command } from 'commander';
import { TargetNameSchema } from '../lambdas/shared/config';
import { awsFailure } from './account';
import { type CommonOptions, commonOptions, type OperatorContext, printJson, runOperator } from './operator';
import { knownTargets, type LockView, type RunSummary, readLock, runHistory } from './runs';
import { type CliIo, EXIT, type ExitCode, InputError } from './terminal';

/**
 * `understudy status [<target>]`: the executions running now (with the target each one is for), and per
 * target its last run record and whether its lock is held.
 */

export interface RunningExecution {
  readonly target: string | null;
  readonly name: string;
  readonly arn: string;
  readonly startDate: string | null;
}

/** `status --json` (README, "Trigger, observe, roll back"). */
export interface StatusDocument {
  readonly command: 'status';
  readonly running: RunningExecution[];
  readonly targets: {
    readonly target: string;
    readonly lock: LockView | null;
    readonly lastRun: RunSummary | null;
  }[];
}

export const validTarget = (target: string | undefined): void => {
  if (target === undefined) return;
  const parsed = TargetNameSchema.safeParse(target);
  if (!parsed.success) throw new InputError('target', parsed.error.issues[0]?.message ?? 'not a target name');
};

const runningExecutions = async (ctx: OperatorContext): Promise<RunningExecution[]> => {
  const running: RunningExecution[] = [];
  try {
    let nextToken: string | undefined;
    do {
      const page = await ctx.clients.sfn.send(
        new ListExecutionsCommand({
          stateMachineArn: ctx.stack.stateMachineArn,
          statusFilter: 'RUNNING',
          ...(nextToken ? { nextToken } : {}),
        }),
      );
      for (const item of page.executions ?? []) {
        const described = await ctx.clients.sfn.send(
          new DescribeExecutionCommand({ executionArn: item.executionArn }),
        );
        let target: string | null = null;
        try {
          const input = JSON.parse(described.input ?? '{}') as { target?: unknown };
          if (typeof input.target === 'string') target = input.target;
        } catch {
          // An input that is not JSON names no target; the execution is still listed.
        }
        running.push({
          target,
          name: item.name ?? '',
          arn: item.executionArn ?? '',
          startDate: item.startDate?.toISOString() ?? null,
        });
      }
      nextToken = page.nextToken;
    } while (nextToken);
  } catch (error) {
    throw awsFailure('listing the running executions', error);
  }
  return running;
};

const statusLines = (doc: StatusDocument, ctx: OperatorContext): string[] => {
  const c = ctx.colors;
  const lines = [c.bold(`running executions (${doc.running.length})`)];
  for (const e of doc.running) {
    lines.push(`  ${c.cyan('●')} ${(e.target ?? '?').padEnd(16)} ${e.name}  since ${e.startDate ?? '-'}`);
  }
  if (doc.running.length === 0) lines.push('  none');
  lines.push(c.bold('targets'));
  for (const t of doc.targets) {
    const lock = t.lock
      ? `locked by ${t.lock.executionName ?? '?'} until ${t.lock.expiresAt ?? '?'}${t.lock.expired ? c.yellow(' (lease expired: the next run takes it over)') : ''}`
      : 'not locked';
    const last = t.lastRun
      ? `last run ${t.lastRun.outcome ?? '?'} at ${t.lastRun.finishedAt ?? '?'} (${t.lastRun.executionName ?? '?'})`
      : 'no run recorded';
    lines.push(`  ${t.target.padEnd(16)} ${last}; ${lock}`);
  }
  if (doc.targets.length === 0) lines.push('  none recorded yet');
  return lines;
};

export const runStatus = (target: string | undefined, options: CommonOptions, io: CliIo): Promise<ExitCode> =>
  runOperator(
    'status',
    options,
    io,
    async (ctx) => {
      const all = await runningExecutions(ctx);
      const running = target === undefined ? all : all.filter((e) => e.target === target);
      const names =
        target !== undefined
          ? [target]
          : [
              ...new Set([
                ...(await knownTargets(ctx.clients, ctx.stack.runsBucket)),
                ...running.flatMap((e) => (e.target ? [e.target] : [])),
              ]),
            ].sort();
      const targets: StatusDocument['targets'] = [];
      for (const name of names) {
        const [lastRun] = await runHistory(ctx.clients, ctx.stack.runsBucket, name, 1);
        targets.push({
          target: name,
          lock: await readLock(ctx.clients, ctx.stack.runsBucket, name),
          lastRun: lastRun ?? null,
        });
      }
      const doc: StatusDocument = { command: 'status', running, targets };
      if (ctx.json) printJson(io, doc);
      else io.stdout.write(`${statusLines(doc, ctx).join('\n')}\n`);
      return EXIT.ok;
    },
    () => validTarget(target),
  );

export const statusCommand = (io: CliIo, onExit: (code: ExitCode) => void): Command => {
  const command = new Command('status')
    .description('running executions, and per target the last run and whether it is locked')
    .argument('[target]', 'only this target');
  for (const option of commonOptions()) command.addOption(option);
  return command.action(async (target: string | undefined, options: CommonOptions) => {
    onExit(await runStatus(target, options, io));
  });
};
