import { Command, CommanderError, Option } from 'commander';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../lib/config-loader';
import { approveCommand } from './approve';
import { historyCommand } from './history';
import { initCommand } from './init';
import { reportError } from './operator';
import { replaceCommand } from './replace';
import { rollbackCommand } from './rollback';
import { statusCommand } from './status';
import { type CliIo, EXIT, InputError, processIo } from './terminal';
import { tfstateCommand } from './tfstate';

/**
 * `npx understudy ...`: every command, registered on one program that writes to `io`. Commands that
 * need the simulated account load the sandbox lazily, so nothing of it is imported for real-account
 * commands.
 */
export const buildProgram = (io: CliIo, onExit: (code: number) => void): Command => {
  const write = (out: CliIo['stdout']) => (text: string) => {
    out.write(text);
  };
  const program = new Command()
    .name('understudy')
    .description('Replace the EC2 server behind an Elastic IP with a fresh one from a prebuilt AMI.')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: write(io.stdout), writeErr: write(io.stderr) });

  program
    .command('demo')
    .description(
      'run the replacement workflow on the built-in sandbox account (offline) and print the outcome of each scenario',
    )
    .addOption(
      new Option('--json', 'print the machine-readable result (design contract) instead of the summary'),
    )
    .addOption(new Option('--scenario <name...>', 'run only these scenarios'))
    .action(async (options: { json?: boolean; scenario?: string[] }) => {
      const { runDemo } = await import('../sandbox/run-demo');
      onExit(await runDemo({ json: options.json === true, only: options.scenario }));
    });

  const config = program.command('config').description('work with understudy.config.json');
  config
    .command('validate')
    .description('validate a config file; every problem is printed with the field and the fix')
    .argument('[file]', 'config file', DEFAULT_CONFIG_PATH)
    .action((file: string) => {
      try {
        const parsed = loadConfig(file);
        io.stdout.write(
          `${file} is valid: ${parsed.targets.length} target(s): ${parsed.targets.map((t) => t.name).join(', ')}\n`,
        );
        onExit(EXIT.ok);
      } catch (error) {
        io.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
        onExit(EXIT.usage);
      }
    });

  const replace = replaceCommand(io, onExit);
  const rollback = rollbackCommand(io, onExit);
  const status = statusCommand(io, onExit);
  const history = historyCommand(io, onExit);
  const init = initCommand(io, onExit);
  const approve = approveCommand('approve', io, onExit);
  const reject = approveCommand('reject', io, onExit);
  program.addCommand(replace);
  program.addCommand(rollback);
  program.addCommand(status);
  program.addCommand(history);
  program.addCommand(init);
  program.addCommand(approve);
  program.addCommand(reject);
  program.addCommand(
    tfstateCommand({ io: { stdout: write(io.stdout), stderr: write(io.stderr) } }, onExit, (command) =>
      command.exitOverride(),
    ),
  );
  // Commands built on their own do not inherit the program's settings.
  for (const command of [replace, rollback, status, history, init, approve, reject]) {
    command.exitOverride().configureOutput({ writeOut: write(io.stdout), writeErr: write(io.stderr) });
  }
  return program;
};

/**
 * Runs `understudy <argv...>` in this process and returns the exit code (README's table): the entry
 * point of bin/cli.ts and of the tests, which pass their own writers and TTY flags.
 */
export const runCli = async (argv: readonly string[], io: CliIo = processIo()): Promise<number> => {
  let code: number = EXIT.ok;
  const program = buildProgram(io, (exit) => {
    code = exit;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    // Help and version exit 0; every parse error is a usage error.
    code = error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    // Commander has already said it on stderr; a script that asked for JSON still gets its document.
    if (code === EXIT.usage && argv.includes('--json')) {
      const command = argv.find((arg) => program.commands.some((c) => c.name() === arg)) ?? 'understudy';
      reportError(io, command, true, new InputError('argv', error.message.replace(/^error: /, '')));
    }
  }
  return code;
};
