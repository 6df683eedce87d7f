import { Option } from 'commander';
import {
  DEFAULT_STACK,
  describeStack,
  type OperatorClients,
  operatorClients,
  type StackInfo,
} from './account';
import { CliError, type CliIo, type Colors, colorsFor, EXIT, type ExitCode, InputError } from './terminal';

/**
 * What `replace`, `status` and `history` share: the `--json`, `--stack` and `--sandbox` options, finding
 * the stack, one error path (a line on stderr, or the JSON error document), and the exit code.
 */

export interface CommonOptions {
  readonly json?: boolean;
  readonly stack?: string;
  readonly sandbox?: boolean;
}

export interface OperatorContext {
  readonly io: CliIo;
  readonly clients: OperatorClients;
  readonly stack: StackInfo;
  readonly colors: Colors;
  readonly json: boolean;
}

export const commonOptions = (): Option[] => [
  new Option('--json', 'print one JSON document (shape in the README) instead of text'),
  new Option('--stack <name>', `the Understudy CloudFormation stack (default: ${DEFAULT_STACK})`),
  new Option('--sandbox', 'run against a fresh simulated account seeded like the demo (offline)'),
];

export const printJson = (io: CliIo, document: unknown): void => {
  io.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
};

/** Anything that is not already the CLI's own refusal is an AWS-side failure (credentials, region...). */
const asCliError = (error: unknown): CliError => {
  if (error instanceof CliError) return error;
  const name = error instanceof Error ? error.name : 'Error';
  const message = error instanceof Error ? error.message : String(error);
  return new CliError(EXIT.aws, `${name}: ${message}`);
};

export const reportError = (io: CliIo, command: string, json: boolean, error: unknown): ExitCode => {
  const failure = asCliError(error);
  if (json) {
    printJson(io, {
      command,
      error: {
        exitCode: failure.code,
        ...(failure instanceof InputError ? { field: failure.field } : {}),
        message: failure.message,
      },
    });
  } else {
    io.stderr.write(`${colorsFor(io, io.stderr).red('error')} ${failure.message}\n`);
  }
  return failure.code;
};

/** The `--sandbox` account a command runs against (loaded lazily: real-account runs never load it). */
export type SandboxAccountHandle = Awaited<
  ReturnType<typeof import('./sandbox-account')['startSandboxAccount']>
>;

/**
 * Runs `work` against the account: as it is, or with `sandbox` a fresh simulated account, started
 * before the first SDK client and stopped afterwards. Its errors become the command's error document.
 */
export const withAccount = async (
  command: string,
  sandbox: boolean | undefined,
  io: CliIo,
  json: boolean,
  work: (account: SandboxAccountHandle | undefined) => Promise<ExitCode>,
): Promise<ExitCode> => {
  let stopSandbox: (() => Promise<void>) | undefined;
  let code: ExitCode;
  try {
    let account: SandboxAccountHandle | undefined;
    if (sandbox) {
      const { startSandboxAccount } = await import('./sandbox-account');
      account = await startSandboxAccount();
      stopSandbox = account.stop;
    }
    code = await work(account);
  } catch (error) {
    code = reportError(io, command, json, error);
  }
  if (stopSandbox) {
    try {
      await stopSandbox();
    } catch (error) {
      // Work the sandbox ran in the background failed: the run's answer cannot be trusted.
      io.stderr.write(`sandbox: ${error instanceof Error ? error.message : String(error)}\n`);
      return EXIT.aws;
    }
  }
  return code;
};

/**
 * Runs one command against the deployed stack: AWS (default credential chain and region), or with
 * `--sandbox` a fresh simulated account. `validate` runs first, before any AWS call, so bad input never
 * reaches the account.
 */
export const runOperator = async (
  command: string,
  options: CommonOptions,
  io: CliIo,
  body: (ctx: OperatorContext) => Promise<ExitCode>,
  validate: () => void = () => undefined,
): Promise<ExitCode> => {
  const json = options.json === true;
  try {
    validate();
  } catch (error) {
    return reportError(io, command, json, error);
  }
  return withAccount(command, options.sandbox, io, json, async (account) => {
    const stackName = options.stack ?? account?.stackName ?? DEFAULT_STACK;
    if (account && !json) {
      io.stderr.write(
        `sandbox account ${account.sandbox.accountId} in ${account.sandbox.region}, stack ${stackName}\n`,
      );
    }
    const clients = operatorClients();
    const stack = await describeStack(clients, stackName);
    return body({ io, clients, stack, colors: colorsFor(io), json });
  });
};
