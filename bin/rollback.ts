import { Command, Option } from 'commander';
import { commonOptions } from './operator';
import { type ReplaceOptions, runReplace } from './replace';
import type { CliIo, ExitCode } from './terminal';

/**
 * `understudy rollback <target>`: within the rollback window, brings the target's retired server back
 * (design §2.10). It is the replace command's machinery with `action: "rollback"`: the workflow's
 * preflight finds the retired box and refuses outside the window, so the reason is in the run record and
 * the outcome like any refusal, and the command exits 2 (the run failed) as for any refused run.
 */

export type RollbackOptions = Pick<
  ReplaceOptions,
  'reason' | 'dryRun' | 'watch' | 'json' | 'sandbox' | 'stack'
>;

export const rollbackCommand = (io: CliIo, onExit: (code: ExitCode) => void): Command => {
  const command = new Command('rollback')
    .description(
      "bring back the target's retired server while its rollback window is open, and retire the newer one",
    )
    .argument('<target>', 'target name from understudy.config.json')
    .option('--reason <text>', 'why (kept in the run record and the notifications)')
    .option('--dry-run', 'preflight only: print the rollback plan, change nothing')
    .addOption(new Option('--watch', 'follow the run live (default when stdout is a terminal)'))
    .addOption(new Option('--no-watch', 'return once the execution started'));
  for (const option of commonOptions()) command.addOption(option);
  return command.action(async (target: string, options: RollbackOptions) => {
    onExit(await runReplace(target, options, io, 'rollback'));
  });
};
