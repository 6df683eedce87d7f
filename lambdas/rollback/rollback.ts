import { DescribeInstancesCommand, type EC2Client, type Instance } from '@aws-sdk/client-ec2';
import type { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SNSClient } from '@aws-sdk/client-sns';
import { awsCall, describeAwsError } from '../shared/aws-errors';
import type { TargetConfig } from '../shared/config';
import { Tags } from '../shared/constants';
import {
  associateAndConfirm,
  describeInstanceById,
  type ParkAction,
  parkCandidate,
  readAddress,
} from '../shared/ec2';
import { ErrorNames, isUnderstudyError, UnderstudyError } from '../shared/errors';
import { renewHeldLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { phaseBus, publishQuietly, putPhaseEvent } from '../shared/notify';
import { probeUntilHealthy, schemeFor } from '../shared/probe';
import type { RunState } from '../shared/schemas';
import { shellQuote } from '../shared/shell';

/**
 * Rollback: puts the service back on the old server, whatever step failed. It reads the account as it
 * is now (not what the state says happened, since a step may have died after its AWS call), moves the
 * Elastic IP back only if it left, verifies through the EIP, and parks every candidate of this run.
 * What it cannot do itself ends as `manual-action-needed` with the exact commands to finish.
 */

export interface RollbackClients {
  readonly ec2: EC2Client;
  readonly s3: S3Client;
  readonly sns: SNSClient;
  /** For the `Replacement Rolled Back` event on the Understudy bus. */
  readonly events?: EventBridgeClient;
}

export interface RollbackEnv {
  readonly TOPIC_ARN: string;
  readonly EVENT_BUS_NAME?: string;
}

export interface RollbackOptions {
  /** How long the verification probe may take (the Task's timeout is 300 s). */
  readonly verifyDeadlineMs?: number;
  readonly verifySuccesses?: number;
  readonly confirmAttempts?: number;
  readonly confirmDelayMs?: number;
}

export type CandidateAction = ParkAction | 'kept: holds the Elastic IP' | `failed: ${string}`;

export interface RollbackResult {
  readonly outcome: 'rolled-back' | 'manual-action-needed';
  /** Where the Elastic IP points after the rollback. */
  readonly eipInstanceId?: string;
  /** Whether the verification probe reached its streak (false when it was not run). */
  readonly serviceHealthy: boolean;
  readonly candidates: { readonly instanceId: string; readonly action: CandidateAction }[];
  /** Exact commands a human runs to finish; empty when nothing is left to do. */
  readonly commands: string[];
  readonly summary: string;
}

const DEFAULT_VERIFY_MS = 120_000;
const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped'];

/** Every instance this execution launched that still exists: by tag, plus the recorded id. */
const findCandidates = async (ec2: EC2Client, state: RunState): Promise<Instance[]> => {
  const out = await awsCall('DescribeInstances', () =>
    ec2.send(
      new DescribeInstancesCommand({
        Filters: [
          { Name: `tag:${Tags.execution}`, Values: [state.execution.name] },
          { Name: `tag:${Tags.target}`, Values: [state.run.target.name] },
          { Name: 'instance-state-name', Values: LIVE_STATES },
        ],
      }),
    ),
  );
  const found = out.Reservations?.flatMap((r) => r.Instances ?? []) ?? [];
  const recorded = state.launch?.instanceId;
  if (recorded && !found.some((i) => i.InstanceId === recorded)) {
    const instance = await describeInstanceById(ec2, recorded);
    if (!instance) {
      // RunInstances returned this id, so NotFound is the API's eventual consistency: look again later.
      throw new UnderstudyError(
        ErrorNames.Transient,
        `candidate ${recorded} is not visible yet; retrying the rollback`,
      );
    }
    if (LIVE_STATES.includes(instance.State?.Name ?? '')) found.push(instance);
  }
  return found.filter((i) => i.InstanceId !== state.run.old.instanceId);
};

interface Commands {
  readonly region: string;
  readonly allocationId: string;
}
const associateCommand = (c: Commands, instanceId: string) =>
  `aws ec2 associate-address --region ${c.region} --allocation-id ${c.allocationId} --instance-id ${instanceId} --allow-reassociation`;
const confirmCommand = (c: Commands) =>
  `aws ec2 describe-addresses --region ${c.region} --allocation-ids ${c.allocationId} --query 'Addresses[0].InstanceId' --output text`;
/**
 * A request to the service through the Elastic IP, as a browser makes it: `--resolve` pins the domain to
 * the address, so curl sends the domain as SNI and Host and checks the certificate against it (a bare
 * IP with a Host header sends no SNI and would get the server's default certificate).
 */
export const checkCommand = (target: TargetConfig, publicIp: string): string => {
  const scheme = schemeFor(target);
  const port = scheme === 'https' ? 443 : 80;
  return `curl -sS -o /dev/null -w '%{http_code}\\n' --resolve ${shellQuote(`${target.domain}:${port}:${publicIp}`)} ${shellQuote(`${scheme}://${target.domain}${target.health.path}`)}`;
};
const parkCommand = (c: Commands, mode: 'stop' | 'terminate', instanceId: string) =>
  `aws ec2 ${mode === 'stop' ? 'stop' : 'terminate'}-instances --region ${c.region} --instance-ids ${instanceId}`;

export const rollback = async (
  clients: RollbackClients,
  env: RollbackEnv,
  state: RunState,
  options: RollbackOptions = {},
): Promise<RollbackResult> => {
  const { ec2, s3, sns } = clients;
  const plan = state.run;
  const oldId = plan.old.instanceId;
  const mode = plan.target.rollback.failedCandidate;
  correlate({ target: plan.target.name, execution: state.execution.name, instance: oldId });
  const c: Commands = { region: await ec2.config.region(), allocationId: plan.eip.allocationId };
  const restoreCommands = [associateCommand(c, oldId), confirmCommand(c)];

  try {
    // The rollback restores service whether or not the lease is still ours: never stop for the lock.
    await renewHeldLock(s3, plan.lock).catch((error: unknown) =>
      logger.warn('could not renew the lock during rollback', { error: describeAwsError(error) }),
    );

    const commands: string[] = [];
    const notes: string[] = [];
    let address = await readAddress(ec2, c.allocationId);
    const old = await describeInstanceById(ec2, oldId);
    const oldState = old?.State?.Name ?? 'gone';
    let eipRestored = address?.InstanceId === oldId;

    if (!eipRestored) {
      if (oldState === 'running') {
        try {
          ({ address } = await associateAndConfirm(ec2, c.allocationId, oldId, {
            ...(options.confirmAttempts !== undefined ? { attempts: options.confirmAttempts } : {}),
            ...(options.confirmDelayMs !== undefined ? { delayMs: options.confirmDelayMs } : {}),
          }));
          eipRestored = address?.InstanceId === oldId;
          if (!eipRestored)
            notes.push(
              `AssociateAddress answered but the Elastic IP is on ${address?.InstanceId ?? 'no instance'}`,
            );
        } catch (error) {
          if (isUnderstudyError(error, ErrorNames.Transient)) throw error;
          notes.push(`the Elastic IP could not be moved back: ${describeAwsError(error)}`);
        }
        if (!eipRestored) commands.push(...restoreCommands);
      } else if (oldState === 'stopped' || oldState === 'stopping') {
        // Starting the old box and waiting for its checks belongs to the window rollback, not here.
        notes.push(`the old server ${oldId} is ${oldState}`);
        commands.push(
          `aws ec2 start-instances --region ${c.region} --instance-ids ${oldId}`,
          `aws ec2 wait instance-status-ok --region ${c.region} --instance-ids ${oldId}`,
          ...restoreCommands,
        );
      } else {
        notes.push(`the old server ${oldId} is ${oldState}: it cannot take the Elastic IP back`);
      }
    }
    const eipInstanceId = address?.InstanceId;

    const candidates: { instanceId: string; action: CandidateAction }[] = [];
    for (const candidate of await findCandidates(ec2, state)) {
      const id = candidate.InstanceId as string;
      if (id === eipInstanceId) {
        // Parking the box that serves the Elastic IP would take the site down; a human decides after the move.
        candidates.push({ instanceId: id, action: 'kept: holds the Elastic IP' });
        // Once the listed restore commands ran, this one parks the candidate too.
        if (commands.length > 0) commands.push(parkCommand(c, mode, id));
        continue;
      }
      try {
        candidates.push({ instanceId: id, action: await parkCandidate(ec2, candidate, mode) });
      } catch (error) {
        if (isUnderstudyError(error, ErrorNames.Transient)) throw error;
        candidates.push({ instanceId: id, action: `failed: ${describeAwsError(error)}` });
        commands.push(parkCommand(c, mode, id));
      }
    }

    let serviceHealthy = false;
    let healthNote: string;
    if (eipRestored) {
      const deadline = Date.now() + (options.verifyDeadlineMs ?? DEFAULT_VERIFY_MS);
      const verdict = await probeUntilHealthy(
        plan.target,
        plan.eip.publicIp,
        options.verifySuccesses ?? 2,
        deadline,
      );
      serviceHealthy = verdict.reached;
      if (!plan.baseline.healthy) {
        healthNote = `service was already unhealthy before the run (baseline: ${plan.baseline.detail}); now: ${verdict.last.detail}`;
      } else if (serviceHealthy) {
        healthNote = 'service answers healthy through the Elastic IP';
      } else {
        healthNote = `the Elastic IP is back on ${oldId} but the service does not answer healthy: ${verdict.last.detail}`;
        commands.push(checkCommand(plan.target, plan.eip.publicIp));
      }
    } else {
      healthNote = 'service not verified: the Elastic IP is not on the old server';
    }

    const outcome: RollbackResult['outcome'] =
      !eipRestored || (plan.baseline.healthy && !serviceHealthy) ? 'manual-action-needed' : 'rolled-back';
    const summary = [
      outcome === 'rolled-back'
        ? `Elastic IP ${plan.eip.publicIp} is on the old server ${oldId}`
        : `manual action needed: Elastic IP ${plan.eip.publicIp} is on ${eipInstanceId ?? 'no instance'}`,
      ...notes,
      healthNote,
    ].join('; ');
    const result: RollbackResult = {
      outcome,
      ...(eipInstanceId ? { eipInstanceId } : {}),
      serviceHealthy,
      candidates,
      commands,
      summary,
    };
    await warn(sns, env.TOPIC_ARN, state, result);
    if (result.outcome === 'rolled-back') {
      await putPhaseEvent(phaseBus(clients.events, env.EVENT_BUS_NAME), 'rolled-back', {
        target: state.run.target.name,
        execution: state.execution.name,
        summary: result.summary,
        ...(result.eipInstanceId ? { eipInstanceId: result.eipInstanceId } : {}),
        oldInstanceId: state.run.old.instanceId,
        ...(state.launch?.instanceId ? { newInstanceId: state.launch.instanceId } : {}),
        serviceHealthy: result.serviceHealthy,
      });
    }
    return result;
  } catch (error) {
    if (isUnderstudyError(error, ErrorNames.Transient)) throw error;
    // The state machine retries this twice; after that Finish reports the message, commands included.
    throw new UnderstudyError(
      ErrorNames.RollbackFailed,
      `rollback of target ${plan.target.name} failed: ${describeAwsError(error)}. To restore by hand: ${restoreCommands.join(' && ')}`,
      { cause: error },
    );
  }
};

const warn = async (
  sns: SNSClient,
  topicArn: string,
  state: RunState,
  result: RollbackResult,
): Promise<void> => {
  await publishQuietly(
    sns,
    topicArn,
    {
      kind: 'warning',
      event: result.outcome,
      target: state.run.target.name,
      execution: state.execution.name,
      summary: result.summary,
      details: {
        cause: state.error?.Error,
        eipInstanceId: result.eipInstanceId,
        serviceHealthy: result.serviceHealthy,
        candidates: result.candidates,
        commands: result.commands,
      },
    },
    'the rollback warning',
  );
};
