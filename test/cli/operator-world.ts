import { DescribeExecutionCommand, type DescribeExecutionCommandOutput } from '@aws-sdk/client-sfn';
import spinners from 'cli-spinners';
import { runCli } from '../../bin/program';
import { type SandboxAccount, startSandboxAccount } from '../../bin/sandbox-account';
import type { CliIo } from '../../bin/terminal';
import { sfnClient } from '../../lambdas/shared/clients';

/**
 * The operator commands run in this process against one sandbox account per test file (what
 * `--sandbox` seeds: the demo's happy deployment), through the same code path as against AWS: the
 * stack is found by name in CloudFormation, the calls go through the SDK clients.
 */

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly isTTY?: boolean;
  readonly env?: Record<string, string>;
}

export const captureIo = (options: RunOptions = {}) => {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: {
      isTTY: options.isTTY ?? false,
      write: (text: string) => {
        stdout += text;
        return true;
      },
    },
    stderr: {
      isTTY: options.isTTY ?? false,
      write: (text: string) => {
        stderr += text;
        return true;
      },
    },
    env: options.env ?? {},
  };
  return { io, stdout: () => stdout, stderr: () => stderr };
};

export interface AccountHandle {
  readonly account: SandboxAccount;
  /** `understudy <argv> --stack <the sandbox's stack>` (unless argv names a stack) */
  cli(argv: readonly string[], options?: RunOptions): Promise<CliRun>;
}

/** One account for the whole file; stopped after its last test. */
export const useAccount = (): AccountHandle => {
  let current: SandboxAccount | undefined;
  beforeAll(async () => {
    current = await startSandboxAccount();
  });
  afterAll(async () => {
    await current?.stop();
  });
  const account = () => {
    if (!current) throw new Error('the account exists only inside a test');
    return current;
  };
  return {
    get account() {
      return account();
    },
    cli: async (argv, options) => {
      const capture = captureIo(options);
      const stack = argv.includes('--stack') ? [] : ['--stack', account().stackName];
      const code = await runCli([...argv, ...stack], capture.io);
      return { code, stdout: capture.stdout(), stderr: capture.stderr() };
    },
  };
};

/** Polls on the sandbox's virtual clock until `done` holds. */
export const until = async (done: () => boolean | Promise<boolean>, stepMs = 1_000): Promise<void> => {
  for (let i = 0; i < 10_000; i += 1) {
    if (await done()) return;
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
  throw new Error('the condition never held');
};

export const settled = async (executionArn: string): Promise<DescribeExecutionCommandOutput> => {
  let described: DescribeExecutionCommandOutput | undefined;
  await until(async () => {
    described = await sfnClient().send(new DescribeExecutionCommand({ executionArn }));
    return described.status !== 'RUNNING';
  });
  return described as DescribeExecutionCommandOutput;
};

const ESC = String.fromCharCode(27);
/** Any SGR sequence (colour, bold, dim). */
export const COLOUR = new RegExp(`${ESC}\\[\\d+(;\\d+)*m`);
/** Anything that redraws a line: erase line, cursor moves, hide/show cursor. */
export const REDRAW = new RegExp(`${ESC}\\[(2K|\\d*G|\\d*A|\\?25[lh])`);
/** A frame of the spinner the CLI draws. */
export const SPINNER = new RegExp(`[${spinners.dots.frames.join('')}]`);
