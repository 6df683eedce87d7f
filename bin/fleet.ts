import { createHash } from 'node:crypto';
import { DescribeExecutionCommand, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { type GroupConfig, type GroupedConfig, groupTargets } from '../lambdas/shared/config';
import type { ExecutionInput } from '../lambdas/shared/schemas';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../lib/config-loader';
import { awsFailure, consoleLink } from './account';
import { type CommonOptions, type OperatorContext, printJson, runOperator } from './operator';
import { executionInput } from './replace';
import { CliError, type CliIo, EXIT, type ExitCode, InputError } from './terminal';

/**
 * `understudy replace --group <name>`: resolves the group from understudy.config.json, validates each
 * item's input with the workflow's own schema, starts the fleet state machine (stack output
 * FleetStateMachineArn) and, with `--watch`, shows the waves: each target's replace execution is found
 * by the name the fleet definition gives it (`<target>-fleet-<md5 of the fleet execution name>`).
 */

export interface FleetOptions extends CommonOptions {
  readonly image?: string;
  readonly reason?: string;
  readonly watch?: boolean;
  /** The config file the group is read from. */
  readonly config?: string;
}

export interface FleetInput {
  readonly group: string;
  readonly items: { readonly target: string; readonly input: ExecutionInput }[];
  readonly maxConcurrency: number;
  readonly toleratedFailurePercentage: number;
}

/** The fleet execution input for `group`; a refusal names the flag or the config field. */
export const fleetInput = (config: GroupedConfig, name: string, options: FleetOptions): FleetInput => {
  const group: GroupConfig | undefined = config.groups?.find((g) => g.name === name);
  if (!group) {
    const known = (config.groups ?? []).map((g) => g.name);
    throw new InputError(
      'group',
      `no group "${name}" in the config (${known.length > 0 ? `groups: ${known.join(', ')}` : 'it has no groups'}): add it under groups (--group)`,
    );
  }
  return {
    group: group.name,
    items: groupTargets(config, group).map((target) => ({
      target,
      input: executionInput(target, {
        image: options.image,
        reason: options.reason ?? `fleet ${group.name}`,
      }),
    })),
    maxConcurrency: group.maxConcurrency,
    toleratedFailurePercentage: group.toleratedFailurePercentage,
  };
};

/** The second service the `--sandbox` account seeds next to `web`, so a fleet has two targets. */
export const SANDBOX_FLEET_TARGET = 'api';

/**
 * The groups `--sandbox` knows when no `--config` is given: the sandbox account's own two services,
 * one at a time (`replace --group sandbox --sandbox`).
 */
export const SANDBOX_FLEET_CONFIG: GroupedConfig = {
  targets: [{ name: 'web' }, { name: SANDBOX_FLEET_TARGET }],
  groups: [
    {
      name: 'sandbox',
      targets: ['web', SANDBOX_FLEET_TARGET],
      maxConcurrency: 1,
      toleratedFailurePercentage: 0,
    },
  ],
};

/** `fleet-<group>-<UTC minute>-<digest of the input>`: the same command twice in a minute is one run. */
export const fleetExecutionName = (input: FleetInput, now: Date): string => {
  const minute = now.toISOString().slice(0, 16).replace(/[-:]/g, '');
  const digest = createHash('sha256').update(JSON.stringify(input)).digest('hex').slice(0, 6);
  return `fleet-${input.group}-${minute}-${digest}`.slice(0, 80);
};

/** The replace execution the fleet starts for `target` (the Name of statemachine/fleet.asl.json). */
export const childExecutionName = (target: string, fleetExecutionName: string): string =>
  `${target}-fleet-${createHash('md5').update(fleetExecutionName).digest('hex')}`;

export type ItemStatus = 'pending' | 'running' | 'succeeded' | 'failed';

export interface FleetDocument {
  readonly command: 'replace';
  readonly group: string;
  readonly execution: { name: string; arn: string; status: string; consoleUrl: string };
  readonly items: { target: string; status: ItemStatus; executionArn: string }[];
  readonly error: string | null;
  readonly cause: string | null;
  readonly exitCode: ExitCode;
}

const fleetArnOf = (ctx: OperatorContext): string => {
  const arn = ctx.stack.fleetStateMachineArn;
  if (!arn) {
    throw new CliError(
      EXIT.aws,
      `stack ${ctx.stack.stackName} has no FleetStateMachineArn output: redeploy it with this version (npx cdk deploy)`,
    );
  }
  return arn;
};

const itemStatus = async (ctx: OperatorContext, arn: string): Promise<ItemStatus> => {
  try {
    const answer = await ctx.clients.sfn.send(new DescribeExecutionCommand({ executionArn: arn }));
    if (answer.status === 'RUNNING' || answer.status === 'PENDING_REDRIVE') return 'running';
    return answer.status === 'SUCCEEDED' ? 'succeeded' : 'failed';
  } catch (error) {
    if ((error as Error)?.name === 'ExecutionDoesNotExist') return 'pending';
    throw awsFailure('DescribeExecution', error);
  }
};

const POLL_MS = 5_000;

/** One line per change: how many targets wait, run, succeeded and failed. */
export const waveLine = (items: readonly { status: ItemStatus }[]): string => {
  const count = (s: ItemStatus) => items.filter((i) => i.status === s).length;
  return `wave: ${count('running')} running, ${count('succeeded')} succeeded, ${count('failed')} failed, ${count('pending')} pending`;
};

export const runFleet = async (groupName: string, options: FleetOptions, io: CliIo): Promise<ExitCode> => {
  let input: FleetInput | undefined;
  return runOperator(
    'replace',
    options,
    io,
    async (ctx) => {
      const request = input as FleetInput;
      const fleetArn = fleetArnOf(ctx);
      const name = fleetExecutionName(request, new Date());
      const started = await ctx.clients.sfn
        .send(new StartExecutionCommand({ stateMachineArn: fleetArn, name, input: JSON.stringify(request) }))
        .catch((error: unknown) => {
          throw awsFailure('StartExecution', error);
        });
      const arn = started.executionArn ?? '';
      const consoleUrl = consoleLink(ctx.stack.region, arn);
      const replaceExecutions = `${ctx.stack.stateMachineArn.replace(':stateMachine:', ':execution:')}:`;
      const items = request.items.map((item) => ({
        target: item.target,
        status: 'pending' as ItemStatus,
        executionArn: `${replaceExecutions}${childExecutionName(item.target, name)}`,
      }));
      if (!ctx.json) {
        io.stdout.write(
          `started ${name}: ${items.length} target(s), ${request.maxConcurrency} at a time, ${request.toleratedFailurePercentage}% failures tolerated\n  ${consoleUrl}\n`,
        );
      }
      const watch = options.watch ?? io.stdout.isTTY === true;
      let status = 'RUNNING';
      let error: string | null = null;
      let cause: string | null = null;
      if (watch) {
        let last = '';
        for (;;) {
          const fleet = await ctx.clients.sfn
            .send(new DescribeExecutionCommand({ executionArn: arn }))
            .catch((e: unknown) => {
              throw awsFailure('DescribeExecution', e);
            });
          for (const item of items) {
            if (item.status === 'succeeded' || item.status === 'failed') continue;
            const now = await itemStatus(ctx, item.executionArn);
            if (now !== item.status && (now === 'succeeded' || now === 'failed') && !ctx.json) {
              io.stdout.write(
                `  ${now === 'succeeded' ? ctx.colors.green('✓') : ctx.colors.red('✗')} ${item.target} ${now}\n`,
              );
            }
            item.status = now;
          }
          const line = waveLine(items);
          if (line !== last && !ctx.json) io.stdout.write(`${line}\n`);
          last = line;
          status = fleet.status ?? 'UNKNOWN';
          if (status !== 'RUNNING') {
            error = fleet.error ?? null;
            cause = fleet.cause ?? null;
            break;
          }
          await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        }
      }
      const exitCode = !watch || status === 'SUCCEEDED' ? EXIT.ok : EXIT.runFailed;
      const doc: FleetDocument = {
        command: 'replace',
        group: request.group,
        execution: { name, arn, status, consoleUrl },
        items,
        error,
        cause,
        exitCode,
      };
      if (ctx.json) printJson(io, doc);
      else if (watch) {
        const failed = items.filter((i) => i.status === 'failed').map((i) => i.target);
        io.stdout.write(
          `${status === 'SUCCEEDED' ? ctx.colors.green(ctx.colors.bold('fleet succeeded')) : ctx.colors.red(ctx.colors.bold(`fleet ${status.toLowerCase()}`))}: ${request.group}` +
            `${failed.length > 0 ? `, failed: ${failed.join(', ')}` : ''}${error ? ` (${error})` : ''}\n`,
        );
      }
      return exitCode;
    },
    () => {
      const config =
        options.sandbox && options.config === undefined
          ? SANDBOX_FLEET_CONFIG
          : loadConfigForCli(options.config);
      input = fleetInput(config, groupName, options);
    },
  );
};

const loadConfigForCli = (path: string = DEFAULT_CONFIG_PATH): GroupedConfig => {
  try {
    return loadConfig(path);
  } catch (error) {
    throw new InputError('config', error instanceof Error ? error.message : String(error));
  }
};
