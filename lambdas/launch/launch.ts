import { createHash } from 'node:crypto';
import {
  type BlockDeviceMapping,
  DescribeImagesCommand,
  DescribeInstanceCreditSpecificationsCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  type EC2Client,
  type Image,
  type Instance,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  type Tag,
  type Volume,
} from '@aws-sdk/client-ec2';
import type { S3Client } from '@aws-sdk/client-s3';
import { awsCall, describeAwsError, failAs, hasCode } from '../shared/aws-errors';
import { Tags } from '../shared/constants';
import { describeInstanceById, instanceAttribute } from '../shared/ec2';
import { ErrorNames, failure } from '../shared/errors';
import { renewHeldLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import type { ExecutionContext, LaunchResult, Plan, RunState } from '../shared/schemas';

/**
 * Launch: a faithful clone of the running server on the new image (reference/aws-behaviors.md §A).
 * Every RunInstances field is chosen from an allow-list; describe output is never spread into the
 * request, because the Instance shape keeps growing and half of it is not settable.
 */

export interface LaunchClients {
  readonly ec2: EC2Client;
  readonly s3: S3Client;
}

const BURSTABLE_FAMILIES = new Set(['t2', 't3', 't3a', 't4g']);
const MAX_TAGS = 50;
/** Volume types whose IOPS (and, for gp3, throughput) are provisioned rather than derived from size. */
const PROVISIONED_IOPS = new Set(['io1', 'io2', 'gp3']);

/**
 * The idempotency token of this execution's launch: the same on every retry of the task, different
 * after a redrive (a redriven run must be free to launch again). sha256 hex is exactly 64 characters,
 * the API's limit.
 */
export const clientTokenFor = (execution: Pick<ExecutionContext, 'arn' | 'redriveCount'>): string =>
  createHash('sha256').update(`${execution.arn}#${execution.redriveCount}`).digest('hex');

const launchFailed = failure(ErrorNames.LaunchFailed);

/** What DescribeInstances leaves out and RunInstances needs (§A2). */
export interface OldInstanceFacts {
  readonly instance: Instance;
  readonly userData?: string;
  readonly disableApiTermination?: boolean;
  readonly disableApiStop?: boolean;
  readonly shutdownBehavior?: string;
  readonly cpuCredits?: string;
  readonly rootVolume: Volume;
  readonly rootDeleteOnTermination?: boolean;
}

const describeOld = async (ec2: EC2Client, instanceId: string): Promise<Instance> => {
  const instance = await describeInstanceById(ec2, instanceId);
  if (!instance) throw launchFailed(`the server being replaced (${instanceId}) no longer exists`);
  return instance;
};

export const isBurstable = (instanceType: string): boolean =>
  BURSTABLE_FAMILIES.has(instanceType.split('.')[0] ?? '');

const gatherFacts = async (ec2: EC2Client, instance: Instance): Promise<OldInstanceFacts> => {
  const id = instance.InstanceId as string;
  const [userData, termination, stop, shutdown] = await Promise.all([
    instanceAttribute(ec2, id, 'userData'),
    instanceAttribute(ec2, id, 'disableApiTermination'),
    instanceAttribute(ec2, id, 'disableApiStop'),
    instanceAttribute(ec2, id, 'instanceInitiatedShutdownBehavior'),
  ]);
  // The call fails for non-burstable types, and the default differs per family (T2 standard, T3+ unlimited).
  const cpuCredits = isBurstable(instance.InstanceType ?? '')
    ? (
        await awsCall('DescribeInstanceCreditSpecifications', () =>
          ec2.send(new DescribeInstanceCreditSpecificationsCommand({ InstanceIds: [id] })),
        )
      ).InstanceCreditSpecifications?.[0]?.CpuCredits
    : undefined;

  const rootMapping = instance.BlockDeviceMappings?.find((m) => m.DeviceName === instance.RootDeviceName);
  const volumeId = rootMapping?.Ebs?.VolumeId;
  if (!volumeId)
    throw launchFailed(`server ${id} has no EBS root volume at ${instance.RootDeviceName}; cannot clone it`);
  const volumes = await awsCall('DescribeVolumes', () =>
    ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] })),
  );
  const rootVolume = volumes.Volumes?.[0];
  if (!rootVolume) throw launchFailed(`root volume ${volumeId} of server ${id} cannot be described`);

  return {
    instance,
    rootVolume,
    ...(userData.UserData?.Value ? { userData: userData.UserData.Value } : {}),
    ...(termination.DisableApiTermination?.Value !== undefined
      ? { disableApiTermination: termination.DisableApiTermination.Value }
      : {}),
    ...(stop.DisableApiStop?.Value !== undefined ? { disableApiStop: stop.DisableApiStop.Value } : {}),
    ...(shutdown.InstanceInitiatedShutdownBehavior?.Value
      ? { shutdownBehavior: shutdown.InstanceInitiatedShutdownBehavior.Value }
      : {}),
    ...(cpuCredits ? { cpuCredits } : {}),
    ...(rootMapping?.Ebs?.DeleteOnTermination !== undefined
      ? { rootDeleteOnTermination: rootMapping.Ebs.DeleteOnTermination }
      : {}),
  };
};

const describeNewImage = async (ec2: EC2Client, imageId: string): Promise<Image> => {
  const out = await awsCall(
    'DescribeImages',
    () => ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] })),
    (error) =>
      hasCode(error, 'InvalidAMIID.NotFound', 'InvalidAMIID.Unavailable')
        ? launchFailed(`image ${imageId} disappeared after preflight (deregistered?)`, error)
        : undefined,
  );
  const image = out.Images?.[0];
  if (!image?.RootDeviceName)
    throw launchFailed(`image ${imageId} cannot be described or has no root device name`);
  return image;
};

/** Tags worth copying: never `aws:` (reserved, refused on create), never our own (role/execution differ). */
const copyable = (tags: readonly Tag[] | undefined): Tag[] =>
  (tags ?? []).filter(
    (t): t is Tag & { Key: string } =>
      typeof t.Key === 'string' && !t.Key.startsWith('aws:') && !t.Key.startsWith('understudy:'),
  );

const withOurTags = (tags: readonly Tag[] | undefined, plan: Plan, executionName: string): Tag[] => {
  const ours: Tag[] = [
    { Key: Tags.target, Value: plan.target.name },
    { Key: Tags.execution, Value: executionName },
    { Key: Tags.role, Value: 'candidate' },
  ];
  return [...copyable(tags).slice(0, MAX_TAGS - ours.length), ...ours];
};

/**
 * The root volume, described on the OLD box and written under the NEW image's root device name:
 * using the old name when the images differ (/dev/xvda vs /dev/sda1) would add a blank disk instead.
 */
const rootDevice = (facts: OldInstanceFacts, image: Image): BlockDeviceMapping => {
  const volume = facts.rootVolume;
  const imageRoot = image.BlockDeviceMappings?.find((m) => m.DeviceName === image.RootDeviceName)?.Ebs;
  // A volume can grow but never shrink below the image's snapshot.
  const size = Math.max(volume.Size ?? 0, imageRoot?.VolumeSize ?? 0) || undefined;
  const type = volume.VolumeType;
  return {
    DeviceName: image.RootDeviceName,
    Ebs: {
      ...(size !== undefined ? { VolumeSize: size } : {}),
      ...(type ? { VolumeType: type } : {}),
      ...(type && PROVISIONED_IOPS.has(type) && volume.Iops !== undefined ? { Iops: volume.Iops } : {}),
      ...(type === 'gp3' && volume.Throughput !== undefined ? { Throughput: volume.Throughput } : {}),
      ...(facts.rootDeleteOnTermination !== undefined
        ? { DeleteOnTermination: facts.rootDeleteOnTermination }
        : {}),
      // Encryption can be added but never removed: pass it only when the old root had it.
      ...(volume.Encrypted
        ? { Encrypted: true, ...(volume.KmsKeyId ? { KmsKeyId: volume.KmsKeyId } : {}) }
        : {}),
    },
  };
};

/** Maps the old box onto a RunInstances request for the new image (allow-list, §A3). */
export const buildRunInstances = (
  facts: OldInstanceFacts,
  image: Image,
  plan: Plan,
  execution: ExecutionContext,
): RunInstancesCommandInput => {
  const old = facts.instance;
  const groupIds = (old.SecurityGroups ?? [])
    .map((g) => g.GroupId)
    .filter((g): g is string => typeof g === 'string');
  const metadata = old.MetadataOptions;
  const placement = old.Placement;
  const network: Partial<RunInstancesCommandInput> = plan.needsPublicIp
    ? {
        // A public IP exists only on a new eth0 spec; subnet and groups must then live inside it.
        NetworkInterfaces: [
          {
            DeviceIndex: 0,
            SubnetId: old.SubnetId,
            Groups: groupIds,
            AssociatePublicIpAddress: true,
            DeleteOnTermination: true,
          },
        ],
      }
    : { SubnetId: old.SubnetId, SecurityGroupIds: groupIds };
  const cpu = old.CpuOptions;
  const dns = old.PrivateDnsNameOptions;

  return {
    ImageId: plan.image.imageId,
    InstanceType: old.InstanceType,
    MinCount: 1,
    MaxCount: 1,
    ClientToken: clientTokenFor(execution),
    ...network,
    ...(facts.userData ? { UserData: facts.userData } : {}),
    ...(old.KeyName ? { KeyName: old.KeyName } : {}),
    ...(old.IamInstanceProfile?.Arn ? { IamInstanceProfile: { Arn: old.IamInstanceProfile.Arn } } : {}),
    ...(facts.disableApiTermination !== undefined
      ? { DisableApiTermination: facts.disableApiTermination }
      : {}),
    ...(facts.disableApiStop !== undefined ? { DisableApiStop: facts.disableApiStop } : {}),
    ...(facts.shutdownBehavior ? { InstanceInitiatedShutdownBehavior: facts.shutdownBehavior as never } : {}),
    // gatherFacts reads credits only for burstable types, the only ones that accept the field.
    ...(facts.cpuCredits ? { CreditSpecification: { CpuCredits: facts.cpuCredits } } : {}),
    ...(metadata
      ? {
          MetadataOptions: {
            ...(metadata.HttpTokens ? { HttpTokens: metadata.HttpTokens } : {}),
            ...(metadata.HttpPutResponseHopLimit !== undefined
              ? { HttpPutResponseHopLimit: metadata.HttpPutResponseHopLimit }
              : {}),
            ...(metadata.HttpEndpoint ? { HttpEndpoint: metadata.HttpEndpoint } : {}),
            ...(metadata.InstanceMetadataTags ? { InstanceMetadataTags: metadata.InstanceMetadataTags } : {}),
            ...(metadata.HttpProtocolIpv6 ? { HttpProtocolIpv6: metadata.HttpProtocolIpv6 } : {}),
          },
        }
      : {}),
    Monitoring: { Enabled: old.Monitoring?.State === 'enabled' || old.Monitoring?.State === 'pending' },
    ...(old.EbsOptimized !== undefined ? { EbsOptimized: old.EbsOptimized } : {}),
    ...(placement?.AvailabilityZone || placement?.Tenancy
      ? {
          Placement: {
            ...(placement.AvailabilityZone ? { AvailabilityZone: placement.AvailabilityZone } : {}),
            ...(placement.Tenancy ? { Tenancy: placement.Tenancy } : {}),
          },
        }
      : {}),
    ...(cpu?.CoreCount !== undefined && cpu.ThreadsPerCore !== undefined
      ? { CpuOptions: { CoreCount: cpu.CoreCount, ThreadsPerCore: cpu.ThreadsPerCore } }
      : {}),
    ...(old.HibernationOptions?.Configured !== undefined
      ? { HibernationOptions: { Configured: old.HibernationOptions.Configured } }
      : {}),
    ...(old.EnclaveOptions?.Enabled ? { EnclaveOptions: { Enabled: true } } : {}),
    ...(old.MaintenanceOptions?.AutoRecovery
      ? { MaintenanceOptions: { AutoRecovery: old.MaintenanceOptions.AutoRecovery } }
      : {}),
    ...(dns
      ? {
          PrivateDnsNameOptions: {
            ...(dns.HostnameType ? { HostnameType: dns.HostnameType } : {}),
            ...(dns.EnableResourceNameDnsARecord !== undefined
              ? { EnableResourceNameDnsARecord: dns.EnableResourceNameDnsARecord }
              : {}),
            ...(dns.EnableResourceNameDnsAAAARecord !== undefined
              ? { EnableResourceNameDnsAAAARecord: dns.EnableResourceNameDnsAAAARecord }
              : {}),
          },
        }
      : {}),
    BlockDeviceMappings: [rootDevice(facts, image)],
    TagSpecifications: [
      { ResourceType: 'instance', Tags: withOurTags(old.Tags, plan, execution.name) },
      { ResourceType: 'volume', Tags: withOurTags(facts.rootVolume.Tags, plan, execution.name) },
    ],
  };
};

/** An instance an earlier attempt of this task already launched (same token), if any. */
const findByToken = async (ec2: EC2Client, token: string): Promise<Instance | undefined> => {
  const out = await awsCall('DescribeInstances', () =>
    ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'client-token', Values: [token] }] })),
  );
  return out.Reservations?.flatMap((r) => r.Instances ?? []).find((i) => i.InstanceId !== undefined);
};

/** EC2's own launch time, so an attempt that reuses the candidate reports when it really launched. */
const launchedAt = (instance: Instance): string => {
  const at = instance.LaunchTime === undefined ? Number.NaN : new Date(instance.LaunchTime).getTime();
  return new Date(Number.isFinite(at) ? at : Date.now()).toISOString();
};

const resultFor = (instance: Instance, token: string, old: Instance): LaunchResult => ({
  instanceId: instance.InstanceId as string,
  clientToken: token,
  launchedAt: launchedAt(instance),
  ...(instance.PrivateIpAddress ? { privateIpAddress: instance.PrivateIpAddress } : {}),
  // Source/dest check has no RunInstances parameter; await-running applies it once the box runs.
  ...(old.SourceDestCheck === false ? { sourceDestCheck: false } : {}),
});

export const launch = (clients: LaunchClients, state: RunState): Promise<LaunchResult> =>
  runLaunch(clients, state).catch(
    failAs(ErrorNames.LaunchFailed, `launch of a clone of ${state.run.old.instanceId}`),
  );

const runLaunch = async (clients: LaunchClients, state: RunState): Promise<LaunchResult> => {
  const { ec2, s3 } = clients;
  const plan = state.run;
  correlate({ target: plan.target.name, execution: state.execution.name });
  await renewHeldLock(s3, plan.lock);

  const token = clientTokenFor(state.execution);
  const old = await describeOld(ec2, plan.old.instanceId);
  const existing = await findByToken(ec2, token);
  if (existing) {
    correlate({ instance: existing.InstanceId });
    logger.info('reusing the candidate an earlier attempt launched', { state: existing.State?.Name });
    return resultFor(existing, token, old);
  }

  const facts = await gatherFacts(ec2, old);
  const image = await describeNewImage(ec2, plan.image.imageId);
  const request = buildRunInstances(facts, image, plan, state.execution);
  const out = await awsCall(
    'RunInstances',
    () => ec2.send(new RunInstancesCommand(request)),
    (error) =>
      launchFailed(
        hasCode(error, 'IdempotentParameterMismatch')
          ? `RunInstances refused the clone of ${plan.old.instanceId}: this execution's client token was already used with other parameters (${describeAwsError(error)}); redrive or start a new execution`
          : `RunInstances refused the clone of ${plan.old.instanceId} on ${plan.image.imageId}: ${describeAwsError(error)}`,
        error,
      ),
  );
  const instance = out.Instances?.[0];
  if (!instance?.InstanceId) throw launchFailed('RunInstances answered without an instance');
  correlate({ instance: instance.InstanceId });
  logger.info('candidate launched', { imageId: plan.image.imageId, publicIp: plan.needsPublicIp });
  return resultFor(instance, token, old);
};
