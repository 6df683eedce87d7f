import {
  type Address,
  AssociateAddressCommand,
  CreateTagsCommand,
  DescribeAddressesCommand,
  DescribeInstanceAttributeCommand,
  type DescribeInstanceAttributeCommandOutput,
  DescribeInstancesCommand,
  type EC2Client,
  type Instance,
  type InstanceAttributeName,
  ModifyInstanceAttributeCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { awsCall, hasCode } from './aws-errors';
import { type InstanceRole, Tags } from './constants';
import { ErrorNames, UnderstudyError } from './errors';
import { sleep } from './probe';

/**
 * The EC2 reads and the Elastic IP move several steps share. Transient failures come out as
 * `Transient`; what "not there" means is left to each step, which knows whether it is a poll, a
 * refusal or a box already gone.
 */

/** One instance by id, or undefined when EC2 does not know it (`InvalidInstanceID.NotFound` or an empty answer). */
export const describeInstanceById = async (
  ec2: EC2Client,
  instanceId: string,
): Promise<Instance | undefined> => {
  try {
    const out = await awsCall('DescribeInstances', () =>
      ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] })),
    );
    return out.Reservations?.[0]?.Instances?.[0];
  } catch (error) {
    if (hasCode(error, 'InvalidInstanceID.NotFound')) return undefined;
    throw error;
  }
};

/**
 * The target's boxes in one role, only in the given states when `states` is set. Without it the
 * answer includes terminated boxes, which EC2 keeps showing for about an hour.
 */
export const describeTargetBoxes = async (
  ec2: EC2Client,
  target: string,
  role: InstanceRole,
  states?: readonly string[],
): Promise<Instance[]> => {
  const out = await awsCall('DescribeInstances', () =>
    ec2.send(
      new DescribeInstancesCommand({
        Filters: [
          { Name: `tag:${Tags.target}`, Values: [target] },
          { Name: `tag:${Tags.role}`, Values: [role] },
          ...(states ? [{ Name: 'instance-state-name', Values: [...states] }] : []),
        ],
      }),
    ),
  );
  return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []).filter((i) => i.InstanceId !== undefined);
};

/** One attribute DescribeInstances leaves out (user data, protection flags, shutdown behaviour). */
export const instanceAttribute = (
  ec2: EC2Client,
  instanceId: string,
  attribute: InstanceAttributeName,
): Promise<DescribeInstanceAttributeCommandOutput> =>
  awsCall(`DescribeInstanceAttribute(${attribute})`, () =>
    ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: instanceId, Attribute: attribute })),
  );

/** The Elastic IP as the API sees it now, or undefined when it no longer exists. */
export const readAddress = async (ec2: EC2Client, allocationId: string): Promise<Address | undefined> => {
  const out = await awsCall('DescribeAddresses', () =>
    ec2.send(new DescribeAddressesCommand({ AllocationIds: [allocationId] })),
  );
  return out.Addresses?.[0];
};

export interface ConfirmOptions {
  /** Reads of DescribeAddresses after the move before giving up (the API is eventually consistent). */
  readonly attempts?: number;
  readonly delayMs?: number;
  /** Turns an AssociateAddress refusal into the caller's own error; unmapped errors pass through. */
  readonly mapError?: (error: unknown) => Error | undefined;
}

/**
 * Moves the Elastic IP with one AssociateAddress (AllowReassociation: a disassociate first would open a
 * gap with no server at all), then reads the address back until it shows `instanceId`, rather than
 * trusting the call's answer. Returns the association id the call gave and the last address read;
 * the caller decides what a move that did not show up means.
 */
export const associateAndConfirm = async (
  ec2: EC2Client,
  allocationId: string,
  instanceId: string,
  options: ConfirmOptions = {},
): Promise<{ associationId?: string; address: Address | undefined }> => {
  const associated = await awsCall(
    'AssociateAddress',
    () =>
      ec2.send(
        new AssociateAddressCommand({
          AllocationId: allocationId,
          InstanceId: instanceId,
          AllowReassociation: true,
        }),
      ),
    options.mapError,
  );
  const attempts = Math.max(1, options.attempts ?? 3);
  let address: Address | undefined;
  for (let attempt = 1; attempt <= attempts; attempt += 1) {
    address = await readAddress(ec2, allocationId);
    if (address?.InstanceId === instanceId) break;
    if (attempt < attempts) await sleep(options.delayMs ?? 1000);
  }
  return { ...(associated.AssociationId ? { associationId: associated.AssociationId } : {}), address };
};

const booleanAttribute = async (
  ec2: EC2Client,
  instanceId: string,
  name: 'disableApiStop' | 'disableApiTermination',
): Promise<boolean> => {
  const out = await instanceAttribute(ec2, instanceId, name);
  return (name === 'disableApiStop' ? out.DisableApiStop?.Value : out.DisableApiTermination?.Value) === true;
};

export type ParkAction = 'stopped' | 'terminated' | 'already-stopped';

/**
 * Stops or terminates one failed candidate and tags it (Rollback's candidates, and those a run that died
 * holding the lock left behind, which Preflight finds when it takes over). The candidate copied the old box's protection
 * flags, and they are ours to lift on a box we launched.
 */
export const parkCandidate = async (
  ec2: EC2Client,
  candidate: Instance,
  mode: 'stop' | 'terminate',
): Promise<ParkAction> => {
  const id = candidate.InstanceId as string;
  const current = candidate.State?.Name ?? '';
  if (candidate.Tags?.find((t) => t.Key === Tags.role)?.Value !== 'failed') {
    await awsCall('CreateTags', () =>
      ec2.send(new CreateTagsCommand({ Resources: [id], Tags: [{ Key: Tags.role, Value: 'failed' }] })),
    );
  }
  if (current === 'pending') {
    // Neither stop nor a clean terminate is accepted while pending; the rollback's retry comes back.
    throw new UnderstudyError(
      ErrorNames.Transient,
      `candidate ${id} is still pending; retrying the rollback`,
    );
  }
  if (mode === 'terminate') {
    if (await booleanAttribute(ec2, id, 'disableApiTermination')) {
      await awsCall('ModifyInstanceAttribute', () =>
        ec2.send(
          new ModifyInstanceAttributeCommand({ InstanceId: id, DisableApiTermination: { Value: false } }),
        ),
      );
    }
    await awsCall('TerminateInstances', () => ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] })));
    return 'terminated';
  }
  if (current === 'stopping' || current === 'stopped') return 'already-stopped';
  if (await booleanAttribute(ec2, id, 'disableApiStop')) {
    await awsCall('ModifyInstanceAttribute', () =>
      ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, DisableApiStop: { Value: false } })),
    );
  }
  await awsCall('StopInstances', () => ec2.send(new StopInstancesCommand({ InstanceIds: [id] })));
  return 'stopped';
};
