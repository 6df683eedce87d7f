import { Command, Option } from 'commander';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../lib/config-loader';
import { tfstateCommand } from './tfstate';

/**
 * `npx understudy ...`: the operator's entry point. Commands that need the simulated account load
 * the sandbox lazily, so nothing of it is imported for real-account commands.
 */

const program = new Command()
  .name('understudy')
  .description('Replace the EC2 server behind an Elastic IP with a fresh one from a prebuilt AMI.')
  .showHelpAfterError();

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
    const code = await runDemo({ json: options.json === true, only: options.scenario });
    process.exitCode = code;
  });

const config = program.command('config').description('work with understudy.config.json');
config
  .command('validate')
  .description('validate a config file; every problem is printed with the field and the fix')
  .argument('[file]', 'config file', DEFAULT_CONFIG_PATH)
  .action((file: string) => {
    try {
      const parsed = loadConfig(file);
      console.log(
        `${file} is valid: ${parsed.targets.length} target(s): ${parsed.targets.map((t) => t.name).join(', ')}`,
      );
    } catch (error) {
      console.error(error instanceof Error ? error.message : String(error));
      process.exitCode = 1;
    }
  });

program.addCommand(tfstateCommand());

program.parseAsync(process.argv).catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
