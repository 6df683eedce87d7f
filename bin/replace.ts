import { createHash } from 'node:crypto';
import { DescribeExecutionCommand, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { GetParameterCommand } from '@aws-sdk/client-ssm';
import { Command, Option } from 'commander';
import { formatIssues, issuePath } from '../lambdas/shared/config';
import { parameterNames, runKeys } from '../lambdas/shared/constants';
import { type ExecutionInput, ExecutionInputSchema } from '../lambdas/shared/schemas';
import { awsFailure, consoleLink } from './account';
import {
  type CommonOptions,
  commonOptions,
  type OperatorContext,
  printJson,
  reportError,
  runOperator,
} from './operator';
import { type RunSummary, readJson, summarizeRecord } from './runs';
import { type CliIo, EXIT, type ExitCode, InputError } from './terminal';
import { type ExecutionView, seconds, watchExecution } from './watch';

/**
 * `understudy replace <target>`: validates the execution input with the workflow's own schema, checks
 * the target is deployed, starts the state machine under a deterministic name and follows the run.
 */

export interface ReplaceOptions extends CommonOptions {
  readonly image?: string;
  readonly reason?: string;
  readonly dryRun?: boolean;
  /** `--watch` / `--no-watch`; default: watch when stdout is a TTY. */
  readonly watch?: boolean;
}

/** The CLI flag of each execution input field, for messages. */
const FLAG: Record<string, string> = {
  target: '<target>',
  imageId: '--image',
  reason: '--reason',
  dryRun: '--dry-run',
};

/** What the run is asked to do: a replacement, or a rollback within the window (bin/rollback.ts). */
export type RunAction = 'replace' | 'rollback';

/** The execution input exactly as the workflow will parse it; a refusal names the field. */
export const executionInput = (
  target: string,
  options: ReplaceOptions,
  action: RunAction = 'replace',
): ExecutionInput => {
  const raw = {
    target,
    ...(action === 'rollback' ? { action } : {}),
    ...(options.image !== undefined ? { imageId: options.image } : {}),
    ...(options.dryRun ? { dryRun: true } : {}),
    ...(options.reason !== undefined ? { reason: options.reason } : {}),
  };
  const parsed = ExecutionInputSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue ? issuePath(issue.path) : 'input';
    const message = formatIssues(parsed.error)[0]?.replace(/^[^:]*: /, '') ?? parsed.error.message;
    throw new InputError(field, `${message} (${FLAG[field] ?? field})`);
  }
  return parsed.data;
};

/**
 * `<target>-<image or "configured">-<UTC minute>`, plus a short digest of the whole input: running the
 * same command twice in a minute (a retry after a timeout) asks for the same execution, which Step
 * Functions starts once; any other request gets its own name. Names allow 80 characters.
 */
export const executionName = (input: ExecutionInput, now: Date): string => {
  const minute = now.toISOString().slice(0, 16).replace(/[-:]/g, '');
  const digest = createHash('sha256').update(JSON.stringify(input)).digest('hex').slice(0, 6);
  const kind = input.dryRun ? 'plan' : 'cli';
  const what = input.action === 'rollback' ? 'rollback' : (input.imageId ?? 'configured');
  return `${kind}-${input.target}-${what}-${minute}-${digest}`.slice(0, 80);
};

const SUCCESSFUL = new Set(['replaced', 'rolled-back-by-request', 'no-op', 'dry-run']);

/** `replace --json`: the document (README, "Trigger, observe, roll back"). */
export interface ReplaceDocument {
  readonly command: RunAction;
  readonly target: string;
  readonly input: ExecutionInput;
  readonly execution: {
    readonly name: string;
    readonly arn: string;
    readonly status: string;
    readonly startDate: string | null;
    readonly stopDate: string | null;
    readonly consoleUrl: string;
  };
  /** null until the run ended (`--no-watch`). */
  readonly outcome: string | null;
  readonly error: string | null;
  readonly cause: string | null;
  readonly failedStep: {
    readonly name: string;
    readonly error: string | null;
    readonly cause: string | null;
  } | null;
  readonly run: RunSummary | null;
  readonly steps: {
    readonly name: string;
    readonly status: string;
    readonly durationMs: number;
    readonly attempts: number;
    readonly retries: number;
    readonly error: string | null;
    readonly cause: string | null;
  }[];
  readonly exitCode: ExitCode;
}

const targetExists = async (ctx: OperatorContext, target: string): Promise<void> => {
  try {
    await ctx.clients.ssm.send(
      new GetParameterCommand({ Name: parameterNames(ctx.stack.parameterPrefix).target(target) }),
    );
  } catch (error) {
    if ((error as Error)?.name === 'ParameterNotFound') {
      throw new InputError(
        'target',
        `no target "${target}" is deployed in stack ${ctx.stack.stackName}: add it to understudy.config.json and run npx cdk deploy`,
      );
    }
    throw awsFailure(`reading the configuration of target ${target}`, error);
  }
};

const start = async (ctx: OperatorContext, input: ExecutionInput, name: string) => {
  const text = JSON.stringify(input);
  try {
    const answer = await ctx.clients.sfn.send(
      new StartExecutionCommand({ stateMachineArn: ctx.stack.stateMachineArn, name, input: text }),
    );
    return { executionArn: answer.executionArn ?? '', startDate: answer.startDate?.toISOString() ?? null };
  } catch (error) {
    if ((error as Error)?.name !== 'ExecutionAlreadyExists') throw awsFailure('StartExecution', error);
    const arn = `${ctx.stack.stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
    const existing = await ctx.clients.sfn
      .send(new DescribeExecutionCommand({ executionArn: arn }))
      .catch((e: unknown) => {
        throw awsFailure('DescribeExecution', e);
      });
    throw new InputError(
      'target',
      `the same request already started execution ${name} this minute (${existing.status}); follow it with \`understudy status ${input.target}\`, or repeat the command in a minute`,
    );
  }
};

const summaryLines = (doc: ReplaceDocument, view: ExecutionView, ctx: OperatorContext): string[] => {
  const c = ctx.colors;
  const run = doc.run;
  const good = doc.exitCode === EXIT.ok;
  const outcome = doc.outcome ?? doc.execution.status.toLowerCase();
  const total =
    view.startedAt !== undefined && view.endedAt !== undefined
      ? ` in ${seconds(view.endedAt - view.startedAt)}`
      : '';
  const lines = [`${good ? c.green(c.bold(outcome)) : c.red(c.bold(outcome))}: ${doc.target}${total}`];
  if (run?.oldInstanceId || run?.newInstanceId) {
    lines.push(
      doc.outcome === 'replaced' || doc.outcome === 'rolled-back-by-request'
        ? `  instance    ${run.oldInstanceId ?? '-'} → ${run.newInstanceId ?? '-'}`
        : `  instance    ${run.oldInstanceId ?? '-'} kept${run.newInstanceId ? `, candidate ${run.newInstanceId} not kept` : ''}`,
    );
  }
  if (doc.failedStep) {
    const failure = [doc.failedStep.error, doc.failedStep.cause].filter(Boolean).join(': ');
    lines.push(`  failed step ${c.red(doc.failedStep.name)}${failure ? ` — ${failure}` : ''}`);
  } else if (doc.error && !good) {
    lines.push(`  error       ${[doc.error, doc.cause].filter(Boolean).join(': ')}`);
  }
  if (run?.probe && run.probe.requests !== null) {
    lines.push(
      `  probe       ${run.probe.requests} request(s) through the EIP, ${run.probe.failures ?? 0} failed`,
    );
  }
  if (run?.terraform) {
    const { serialBefore, serialAfter, backupKey } = run.terraform;
    lines.push(
      `  terraform   serial ${serialBefore ?? '-'} → ${serialAfter ?? '-'}${backupKey ? `, backup ${backupKey}` : ''}`,
    );
  }
  if (run) lines.push(`  record      ${run.record}${run.warnings ? `, ${run.warnings} warning(s)` : ''}`);
  lines.push(`  console     ${doc.execution.consoleUrl}`);
  return lines;
};

export const runReplace = async (
  target: string,
  options: ReplaceOptions,
  io: CliIo,
  action: RunAction = 'replace',
): Promise<ExitCode> => {
  let input: ExecutionInput | undefined;
  return runOperator(
    action,
    options,
    io,
    async (ctx) => {
      const request = input as ExecutionInput;
      await targetExists(ctx, request.target);
      const name = executionName(request, new Date());
      const { executionArn, startDate } = await start(ctx, request, name);
      const consoleUrl = consoleLink(ctx.stack.region, executionArn);
      const watch = options.watch ?? io.stdout.isTTY === true;
      if (!ctx.json) io.stdout.write(`started ${name}\n  ${consoleUrl}\n`);
      if (!watch) {
        const doc = baseDocument(request, name, executionArn, consoleUrl);
        if (ctx.json) printJson(io, { ...doc, execution: { ...doc.execution, startDate } });
        return EXIT.ok;
      }
      const { view, execution } = await watchExecution({
        sfn: ctx.clients.sfn,
        executionArn,
        io,
        render: !ctx.json,
      });
      const key = runKeys.record(request.target, name);
      const record = await readJson(ctx.clients, ctx.stack.runsBucket, key);
      const run = record ? summarizeRecord(record, ctx.stack.runsBucket, key) : null;
      const outcome = run?.outcome ?? null;
      const succeeded = outcome !== null ? SUCCESSFUL.has(outcome) : execution.status === 'SUCCEEDED';
      const exitCode = succeeded ? EXIT.ok : EXIT.runFailed;
      const failed = view.failedStep;
      const doc: ReplaceDocument = {
        ...baseDocument(request, name, executionArn, consoleUrl),
        execution: {
          name,
          arn: executionArn,
          status: execution.status ?? 'UNKNOWN',
          startDate: execution.startDate?.toISOString() ?? null,
          stopDate: execution.stopDate?.toISOString() ?? null,
          consoleUrl,
        },
        outcome,
        error: run?.error ?? execution.error ?? null,
        cause: run?.cause ?? view.cause ?? null,
        failedStep: failed
          ? { name: failed.name, error: failed.error ?? null, cause: failed.cause ?? null }
          : null,
        run,
        steps: view.steps.map((s) => ({
          name: s.name,
          status: s.status,
          durationMs: (s.endedAt ?? s.startedAt) - s.startedAt,
          attempts: s.attempts,
          retries: s.retried.length,
          error: s.error ?? null,
          cause: s.cause ?? null,
        })),
        exitCode,
      };
      if (ctx.json) printJson(io, doc);
      else io.stdout.write(`${summaryLines(doc, view, ctx).join('\n')}\n`);
      return exitCode;
    },
    () => {
      input = executionInput(target, options, action);
    },
  );
};

const baseDocument = (
  input: ExecutionInput,
  name: string,
  arn: string,
  consoleUrl: string,
): ReplaceDocument => ({
  command: input.action === 'rollback' ? 'rollback' : 'replace',
  target: input.target,
  input,
  execution: { name, arn, status: 'RUNNING', startDate: null, stopDate: null, consoleUrl },
  outcome: null,
  error: null,
  cause: null,
  failedStep: null,
  run: null,
  steps: [],
  exitCode: EXIT.ok,
});

export const replaceCommand = (io: CliIo, onExit: (code: ExitCode) => void): Command => {
  const command = new Command('replace')
    .description("replace the target's server with a fresh one from its image and follow the run")
    .argument('[target]', 'target name from understudy.config.json (or --group)')
    .option('--group <name>', 'replace every target of this group of the config, in waves (bin/fleet.ts)')
    .option('--config <file>', 'the config file --group is read from (default understudy.config.json)')
    .option('--image <ami>', 'AMI id to use instead of the configured image source')
    .option('--reason <text>', 'why (kept in the run record and the notifications)')
    .option('--dry-run', 'preflight only: print the plan, change nothing')
    .addOption(new Option('--watch', 'follow the run live (default when stdout is a terminal)'))
    .addOption(new Option('--no-watch', 'return once the execution started'));
  for (const option of commonOptions()) command.addOption(option);
  return command.action(
    async (target: string | undefined, options: ReplaceOptions & { group?: string; config?: string }) => {
      if ((target === undefined) === (options.group === undefined)) {
        const refusal = new InputError('target', 'name one target, or a group with --group, not both');
        onExit(reportError(io, 'replace', options.json === true, refusal));
        return;
      }
      if (options.group !== undefined) {
        if (options.dryRun) {
          const refusal = new InputError('dryRun', '--dry-run takes one target, not --group');
          onExit(reportError(io, 'replace', options.json === true, refusal));
          return;
        }
        const { runFleet } = await import('./fleet');
        onExit(await runFleet(options.group, options, io));
        return;
      }
      onExit(await runReplace(target as string, options, io));
    },
  );
};
