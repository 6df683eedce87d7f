import { DescribeInstanceStatusCommand, type EC2Client } from '@aws-sdk/client-ec2';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SSMClient } from '@aws-sdk/client-ssm';
import type { z } from 'zod';
import { localCheckCommands } from '../prepare/prepare';
import { awsCall, failAs } from '../shared/aws-errors';
import { assertAgentOnline, SCRIPT_PREAMBLE, sendForInstance } from '../shared/commands';
import type { TargetConfig } from '../shared/config';
import { describeInstanceById } from '../shared/ec2';
import { ErrorNames, failure } from '../shared/errors';
import { correlate } from '../shared/logger';
import { LaunchResultSchema, type RestoredResult, RunStateSchema } from '../shared/schemas';

/**
 * Await restored: the retired server is back when EC2 says it runs and both status checks pass, its
 * SSM agent is Online, and the app answers locally. An old box may have no readiness agent (design
 * §2.10), so nothing waits for an agent event: each invocation looks once and throws InstanceNotReady
 * or AgentNotOnline, the state machine's retry being the poll, then sends the local check once.
 */

export const AwaitRestoredEventSchema = RunStateSchema.extend({ launch: LaunchResultSchema });
export type AwaitRestoredEvent = z.infer<typeof AwaitRestoredEventSchema>;

export interface AwaitRestoredClients {
  readonly ec2: EC2Client;
  readonly ssm: SSMClient;
  readonly s3: S3Client;
}

export const PURPOSE = 'restore-check';

const notReady = failure(ErrorNames.InstanceNotReady);
const lost = failure(ErrorNames.InstanceLost);

/**
 * The box boots its services again after a stop: where cloud-init exists, its end is when the app's
 * units have been started, so the check waits for it instead of failing on a box still booting. Its
 * exit code is left to the app check to judge (an old box may report a long-past degraded boot).
 */
export const restoreCheckScript = (target: TargetConfig): string[] => [
  ...SCRIPT_PREAMBLE,
  'if command -v cloud-init > /dev/null 2>&1; then cloud-init status --wait > /dev/null 2>&1 || true; fi',
  ...localCheckCommands(target),
];

export const awaitRestored = (
  clients: AwaitRestoredClients,
  state: AwaitRestoredEvent,
): Promise<RestoredResult> =>
  check(clients, state).catch(
    failAs(ErrorNames.InstanceLost, `waiting for the restored server ${state.launch.instanceId}`),
  );

const check = async (clients: AwaitRestoredClients, state: AwaitRestoredEvent): Promise<RestoredResult> => {
  const { ec2, ssm } = clients;
  const id = state.launch.instanceId;
  correlate({ target: state.run.target.name, execution: state.execution.name, instance: id });

  const instance = await describeInstanceById(ec2, id);
  if (!instance) throw lost(`the restored server ${id} no longer exists`);
  const current = instance.State?.Name ?? 'unknown';
  if (current === 'terminated' || current === 'shutting-down') {
    throw lost(`the restored server ${id} is ${current}`);
  }
  if (current !== 'running') throw notReady(`the restored server ${id} is ${current}`);

  const out = await awsCall('DescribeInstanceStatus', () =>
    ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] })),
  );
  const status = out.InstanceStatuses?.find((s) => s.InstanceId === id);
  const system = status?.SystemStatus?.Status ?? 'not reported';
  const own = status?.InstanceStatus?.Status ?? 'not reported';
  if (system === 'impaired' || own === 'impaired') {
    throw lost(`the restored server ${id} fails its status checks (system ${system}, instance ${own})`);
  }
  if (system !== 'ok' || own !== 'ok') {
    throw notReady(`status checks of ${id}: system ${system}, instance ${own}`);
  }

  await assertAgentOnline(ssm, id);
  const readyAt = new Date().toISOString();
  const sent = await sendForInstance(clients, state, id, PURPOSE, restoreCheckScript(state.run.target));
  return { ...sent, readyAt };
};
