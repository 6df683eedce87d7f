import { Command, InvalidArgumentError } from 'commander';
import { type CommonOptions, commonOptions, type OperatorContext, printJson, runOperator } from './operator';
import { type RunSummary, runHistory } from './runs';
import { validTarget } from './status';
import { type CliIo, EXIT, type ExitCode } from './terminal';

/** `understudy history <target>`: the target's run records, newest first. */

export interface HistoryOptions extends CommonOptions {
  readonly limit?: number;
}

/** `history --json` (README, "Trigger, observe, roll back"). */
export interface HistoryDocument {
  readonly command: 'history';
  readonly target: string;
  readonly runs: RunSummary[];
}

export const DEFAULT_LIMIT = 10;

const parseLimit = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1000)
    throw new InvalidArgumentError('use a whole number from 1 to 1000');
  return n;
};

const historyLines = (doc: HistoryDocument, ctx: OperatorContext): string[] => {
  const c = ctx.colors;
  if (doc.runs.length === 0) return [`no run recorded for ${doc.target}`];
  return doc.runs.map((run) => {
    const outcome = run.outcome ?? '?';
    const colour = outcome === 'replaced' || outcome === 'no-op' || outcome === 'dry-run' ? c.green : c.red;
    const instances = `${run.oldInstanceId ?? '-'} → ${run.newInstanceId ?? '-'}`;
    const warnings = run.warnings ? c.yellow(`  ${run.warnings} warning(s)`) : '';
    return `${run.finishedAt ?? '-'}  ${colour(outcome.padEnd(12))} ${instances.padEnd(44)} ${run.executionName ?? '-'}${warnings}`;
  });
};

export const runHistoryCommand = (target: string, options: HistoryOptions, io: CliIo): Promise<ExitCode> =>
  runOperator(
    'history',
    options,
    io,
    async (ctx) => {
      const runs = await runHistory(
        ctx.clients,
        ctx.stack.runsBucket,
        target,
        options.limit ?? DEFAULT_LIMIT,
      );
      const doc: HistoryDocument = { command: 'history', target, runs };
      if (ctx.json) printJson(io, doc);
      else io.stdout.write(`${historyLines(doc, ctx).join('\n')}\n`);
      return EXIT.ok;
    },
    () => validTarget(target),
  );

export const historyCommand = (io: CliIo, onExit: (code: ExitCode) => void): Command => {
  const command = new Command('history')
    .description("the target's runs, newest first: time, outcome, old → new instance, execution, warnings")
    .argument('<target>', 'target name')
    .option('--limit <n>', `at most this many runs (default ${DEFAULT_LIMIT})`, parseLimit);
  for (const option of commonOptions()) command.addOption(option);
  return command.action(async (target: string, options: HistoryOptions) => {
    onExit(await runHistoryCommand(target, options, io));
  });
};
