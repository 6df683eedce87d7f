import { createHash } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  type Command,
  DescribeInstanceInformationCommand,
  ListCommandsCommand,
  SendCommandCommand,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { describeAwsError, hasCode, rethrowIfTransient } from './aws-errors';
import { ErrorNames, UnderstudyError } from './errors';
import { renewHeldLock } from './lock';
import { correlate, logger } from './logger';
import type { LaunchResult, RunState } from './schemas';

/**
 * SSM Run Command sent at most once per execution and purpose. A Lambda retry (or a crash right after
 * SendCommand returned) must not run certbot twice, so the command carries a deterministic Comment and
 * every attempt first looks for a command with that Comment on the instance.
 */

export const DOCUMENT_NAME = 'AWS-RunShellScript';
/** Both the delivery timeout and the script's own limit (AWS-RunShellScript `executionTimeout`). */
export const COMMAND_TIMEOUT_SECONDS = 600;
/** SendCommand refuses a longer Comment. */
const COMMENT_LIMIT = 100;
const PREFIX = 'understudy:';
/** A new instance has seen only a handful of commands; this bounds a runaway listing. */
const MAX_LIST_PAGES = 20;

/**
 * The first lines of every script. The agent runs AWS-RunShellScript as `sh -c <script file>`; on
 * Debian and Ubuntu `sh` is dash, which has no `pipefail` (Debian 12), so `set -o pipefail` would fail
 * every command. `sh` execs the file, so the shebang puts the script under bash before any line runs.
 */
export const SCRIPT_PREAMBLE: readonly string[] = ['#!/bin/bash', 'set -euo pipefail'];

export interface CommandRef {
  readonly commandId: string;
  readonly instanceId: string;
}

export interface CommandRequest {
  readonly instanceId: string;
  readonly executionName: string;
  /** Short machine word, e.g. `prepare` or `certificate`; part of the Comment. */
  readonly purpose: string;
  /** Script lines for AWS-RunShellScript; never secrets (SSM stores them with the command). */
  readonly commands: readonly string[];
}

/**
 * `understudy:<execution name>:<purpose>`. Execution names may be 80 characters, which can overflow the
 * Comment limit; then the name is shortened and a digest of the full name keeps it unique.
 */
export const commandComment = (executionName: string, purpose: string): string => {
  const full = `${PREFIX}${executionName}:${purpose}`;
  if (full.length <= COMMENT_LIMIT) return full;
  const digest = createHash('sha256').update(executionName).digest('hex').slice(0, 8);
  const room = COMMENT_LIMIT - PREFIX.length - 1 - digest.length - 1 - purpose.length;
  return `${PREFIX}${executionName.slice(0, Math.max(room, 0))}~${digest}:${purpose}`;
};

const failed = (operation: string, instanceId: string, error: unknown): UnderstudyError => {
  rethrowIfTransient(error, operation);
  return new UnderstudyError(
    ErrorNames.CommandFailed,
    `${operation} for ${instanceId} failed: ${describeAwsError(error)}`,
    {
      cause: error,
    },
  );
};

/** Throws AgentNotOnline (the state machine's poll) until the instance's SSM agent reports Online. */
export const assertAgentOnline = async (ssm: SSMClient, instanceId: string): Promise<void> => {
  let ping: string | undefined;
  try {
    const out = await ssm.send(
      new DescribeInstanceInformationCommand({ Filters: [{ Key: 'InstanceIds', Values: [instanceId] }] }),
    );
    ping = out.InstanceInformationList?.find((i) => i.InstanceId === instanceId)?.PingStatus;
  } catch (error) {
    throw failed('DescribeInstanceInformation', instanceId, error);
  }
  if (ping !== 'Online') {
    throw new UnderstudyError(
      ErrorNames.AgentNotOnline,
      `the SSM agent on ${instanceId} is not Online yet (${ping === undefined ? 'not registered' : `PingStatus ${ping}`}); ` +
        'if this persists, check that the instance profile allows SSM and that the subnet reaches the SSM endpoints',
    );
  }
};

/** The command an earlier attempt of this execution already sent for `comment`, if any. */
export const findSentCommand = async (
  ssm: SSMClient,
  instanceId: string,
  comment: string,
): Promise<Command | undefined> => {
  let nextToken: string | undefined;
  for (let page = 0; page < MAX_LIST_PAGES; page += 1) {
    const out = await ssm.send(
      new ListCommandsCommand({
        InstanceId: instanceId,
        Filters: [{ key: 'DocumentName', value: DOCUMENT_NAME }],
        MaxResults: 50,
        ...(nextToken ? { NextToken: nextToken } : {}),
      }),
    );
    const match = out.Commands?.find((c) => c.Comment === comment && c.CommandId !== undefined);
    if (match) return match;
    nextToken = out.NextToken;
    if (!nextToken) return undefined;
  }
  return undefined;
};

/**
 * Sends the script once: checks the agent, reuses a command with the same Comment, otherwise sends.
 * `reused` tells whether an earlier attempt had already sent it.
 */
export const sendCommandOnce = async (
  ssm: SSMClient,
  request: CommandRequest,
): Promise<{ command: CommandRef; reused: boolean }> => {
  const { instanceId } = request;
  await assertAgentOnline(ssm, instanceId);
  const comment = commandComment(request.executionName, request.purpose);

  let earlier: Command | undefined;
  try {
    earlier = await findSentCommand(ssm, instanceId, comment);
  } catch (error) {
    throw failed('ListCommands', instanceId, error);
  }
  if (earlier?.CommandId) {
    logger.info('reusing the command an earlier attempt sent', {
      commandId: earlier.CommandId,
      purpose: request.purpose,
    });
    return { command: { commandId: earlier.CommandId, instanceId }, reused: true };
  }

  try {
    const out = await ssm.send(
      new SendCommandCommand({
        InstanceIds: [instanceId],
        DocumentName: DOCUMENT_NAME,
        Comment: comment,
        TimeoutSeconds: COMMAND_TIMEOUT_SECONDS,
        Parameters: { commands: [...request.commands], executionTimeout: [String(COMMAND_TIMEOUT_SECONDS)] },
      }),
    );
    const commandId = out.Command?.CommandId;
    if (!commandId) throw new Error('SendCommand returned no CommandId');
    logger.info('sent command', { commandId, purpose: request.purpose });
    return { command: { commandId, instanceId }, reused: false };
  } catch (error) {
    // The agent can be Online in DescribeInstanceInformation a moment before SendCommand accepts the node.
    if (hasCode(error, 'InvalidInstanceId')) {
      throw new UnderstudyError(
        ErrorNames.AgentNotOnline,
        `SSM does not accept commands for ${instanceId} yet (InvalidInstanceId); retrying until the agent registers`,
        { cause: error },
      );
    }
    throw failed('SendCommand', instanceId, error);
  }
};

export interface CandidateCommandClients {
  readonly ssm: SSMClient;
  readonly s3: S3Client;
}

/**
 * A step's command on one of the run's boxes (the candidate, or the old box for the restore pack):
 * correlates the logs, renews the run's lock (a lost lock sends nothing), then sends `commands` once
 * per execution and purpose. Returns the command to poll.
 */
export const sendForInstance = async (
  clients: CandidateCommandClients,
  state: Pick<RunState, 'execution' | 'run'>,
  instanceId: string,
  purpose: string,
  commands: readonly string[],
): Promise<{ command: CommandRef }> => {
  correlate({ target: state.run.target.name, execution: state.execution.name, instance: instanceId });
  await renewHeldLock(clients.s3, state.run.lock);
  const { command } = await sendCommandOnce(clients.ssm, {
    instanceId,
    executionName: state.execution.name,
    purpose,
    commands,
  });
  return { command };
};

/** A step's command on the candidate (see sendForInstance). */
export const sendForCandidate = (
  clients: CandidateCommandClients,
  state: Pick<RunState, 'execution' | 'run'> & { readonly launch: LaunchResult },
  purpose: string,
  commands: readonly string[],
): Promise<{ command: CommandRef }> =>
  sendForInstance(clients, state, state.launch.instanceId, purpose, commands);
