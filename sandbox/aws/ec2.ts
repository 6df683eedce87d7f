import type {
  AssociateAddressCommandInput,
  CreateTagsCommandInput,
  DescribeAddressesCommandInput,
  DescribeImagesCommandInput,
  DescribeInstanceAttributeCommandInput,
  DescribeInstanceCreditSpecificationsCommandInput,
  DescribeInstanceStatusCommandInput,
  DescribeInstancesCommandInput,
  DescribeInstanceTypesCommandInput,
  DescribeRouteTablesCommandInput,
  DescribeSubnetsCommandInput,
  DescribeVolumesCommandInput,
  DescribeVpcEndpointsCommandInput,
  InstanceStateName,
  ModifyInstanceAttributeCommandInput,
  RunInstancesCommandInput,
  StartInstancesCommandInput,
  StopInstancesCommandInput,
  Tag,
  TerminateInstancesCommandInput,
} from '@aws-sdk/client-ec2';
import type { ImageBehaviour } from '../contracts';
import { iso, type ModelContext } from './context';
import { errorsFor } from './errors';
import { canonicalJson, matchesFilters, requireIds, tagList } from './filters';

const fail = errorsFor('ec2');

/** Virtual durations of EC2's transitions (AWS documents none; these are typical observations). */
export const Ec2Timing = {
  /** pending → running. */
  pendingMs: 10_000,
  /** DescribeInstances by id answers InvalidInstanceID.NotFound this long after RunInstances. */
  visibleAfterMs: 2_000,
  /** stopping → stopped. */
  stoppingMs: 15_000,
  /** shutting-down → terminated. */
  shuttingDownMs: 10_000,
  /** Terminated instances stay visible this long. */
  terminatedVisibleMs: 3_600_000,
  /** Both status checks read `initializing` this long after a box reaches `running`, then `ok`. */
  statusChecksMs: 90_000,
} as const;

const STATE_CODES: Record<InstanceStateName, number> = {
  pending: 0,
  running: 16,
  'shutting-down': 32,
  terminated: 48,
  stopping: 64,
  stopped: 80,
};

type Architecture = 'x86_64' | 'arm64';

interface InstanceTypeInfo {
  readonly architectures: readonly Architecture[];
  readonly burstable: boolean;
  readonly instanceStorage: boolean;
  readonly vcpus: number;
  readonly memoryMiB: number;
}
const INSTANCE_TYPES: Readonly<Record<string, InstanceTypeInfo>> = {
  't3.micro': {
    architectures: ['x86_64'],
    burstable: true,
    instanceStorage: false,
    vcpus: 2,
    memoryMiB: 1024,
  },
  't3.small': {
    architectures: ['x86_64'],
    burstable: true,
    instanceStorage: false,
    vcpus: 2,
    memoryMiB: 2048,
  },
  't4g.small': {
    architectures: ['arm64'],
    burstable: true,
    instanceStorage: false,
    vcpus: 2,
    memoryMiB: 2048,
  },
  'm5.large': {
    architectures: ['x86_64'],
    burstable: false,
    instanceStorage: false,
    vcpus: 2,
    memoryMiB: 8192,
  },
  'm6g.large': {
    architectures: ['arm64'],
    burstable: false,
    instanceStorage: false,
    vcpus: 2,
    memoryMiB: 8192,
  },
  'c5d.large': {
    architectures: ['x86_64'],
    burstable: false,
    instanceStorage: true,
    vcpus: 2,
    memoryMiB: 4096,
  },
};

export interface ImageRecord {
  readonly imageId: string;
  readonly name: string;
  readonly architecture: Architecture;
  readonly rootDeviceName: string;
  readonly rootSnapshotId: string;
  readonly rootSizeGiB: number;
  /** The key the root snapshot is encrypted with (full ARN); absent for an unencrypted snapshot. */
  readonly rootKmsKeyId?: string;
  readonly behaviour: ImageBehaviour;
  readonly creationDate: string;
  /** What the image's creator tagged it with (Image Builder adds `Ec2ImageBuilderArn`). */
  readonly tags: Map<string, string>;
  state: 'available' | 'deregistered';
}

export interface VolumeRecord {
  readonly volumeId: string;
  readonly size: number;
  readonly volumeType: string;
  readonly iops?: number;
  readonly throughput?: number;
  readonly encrypted: boolean;
  readonly kmsKeyId?: string;
  readonly snapshotId?: string;
  readonly availabilityZone: string;
  readonly createTime: number;
  state: 'in-use' | 'available' | 'deleted';
  attachment?: { instanceId: string; device: string; attachTime: number; deleteOnTermination: boolean };
  readonly tags: Map<string, string>;
}

export interface InstanceRecord {
  readonly instanceId: string;
  readonly reservationId: string;
  readonly imageId: string;
  instanceType: string;
  state: InstanceStateName;
  launchTime: number;
  readonly visibleAt: number;
  terminatedAt?: number;
  readonly subnetId: string;
  readonly vpcId: string;
  readonly availabilityZone: string;
  readonly privateIp: string;
  readonly eniId: string;
  readonly eniAttachmentId: string;
  /** Set when RunInstances asked for (or the subnet maps) a public IP: AWS gives one back after an EIP leaves. */
  readonly autoAssignPublicIp: boolean;
  autoPublicIp?: string;
  /** Virtual ms at which it last reached `running` through a transition (unset: seeded, running long ago). */
  runningSince?: number;
  /** Virtual ms since which its instance status check fails (a hung kernel, exhausted memory...). */
  impairedSince?: number;
  securityGroupIds: string[];
  readonly tags: Map<string, string>;
  readonly clientToken: string;
  userData?: string;
  disableApiTermination: boolean;
  disableApiStop: boolean;
  shutdownBehavior: string;
  cpuCredits?: string;
  readonly metadataOptions: Record<string, unknown>;
  readonly iamInstanceProfile?: { Arn: string; Id: string };
  readonly keyName?: string;
  readonly monitoring: boolean;
  readonly ebsOptimized: boolean;
  sourceDestCheck: boolean;
  readonly rootDeviceName: string;
  readonly blockDevices: {
    deviceName: string;
    volumeId: string;
    deleteOnTermination: boolean;
    attachTime: number;
  }[];
  readonly architecture: Architecture;
  readonly cpuOptions: { CoreCount: number; ThreadsPerCore: number };
  stateReason?: { Code: string; Message: string };
  stateTransitionReason: string;
  /** Bumped on every state change, so a transition scheduled for an older state does nothing. */
  epoch: number;
}

interface SubnetRecord {
  readonly subnetId: string;
  readonly vpcId: string;
  readonly cidr: string;
  readonly availabilityZone: string;
  readonly mapPublicIpOnLaunch: boolean;
  readonly tags: Map<string, string>;
  nextHost: number;
}
interface RouteTableRecord {
  readonly routeTableId: string;
  readonly vpcId: string;
  readonly main: boolean;
  readonly subnetIds: string[];
  readonly routes: Record<string, string>[];
}
interface AddressRecord {
  readonly allocationId: string;
  readonly publicIp: string;
  associationId?: string;
  instanceId?: string;
  readonly tags: Map<string, string>;
}
interface SecurityGroupRecord {
  readonly groupId: string;
  readonly groupName: string;
  readonly vpcId: string;
}

/** What EC2 tells the rest of the sandbox (box power, EIP moves); wired by the Sandbox. */
export interface Ec2Hooks {
  onRunning(instance: InstanceRecord, options: { serving: boolean }): void | Promise<void>;
  onHalt(instance: InstanceRecord): void | Promise<void>;
  onAddressMoved(allocationId: string): void;
}

export type EgressKind = 'nat' | 'igw' | 'none';
export type ReachableService = 'ssm' | 'events' | 's3';

const notFoundInstances = (ids: readonly string[]) =>
  ids.length === 1
    ? fail('InvalidInstanceID.NotFound', `The instance ID '${ids[0]}' does not exist`)
    : fail('InvalidInstanceID.NotFound', `The instance IDs '${ids.join(', ')}' do not exist`);

const checkTagKeys = (tags: readonly Tag[] | undefined) => {
  for (const tag of tags ?? []) {
    if (tag.Key?.toLowerCase().startsWith('aws:')) {
      throw fail('InvalidParameterValue', "Tag keys starting with 'aws:' are reserved for internal use");
    }
  }
};

const isBase64 = (value: string) =>
  /^[A-Za-z0-9+/\r\n]*={0,2}$/.test(value) && value.replace(/[\r\n]/g, '').length % 4 === 0;

/**
 * EC2 as the orchestrator uses it: images, instance types, the network a box lives in, instances with
 * their lifecycle (pending → running → stopping/stopped → shutting-down/terminated), volumes, and
 * Elastic IPs. Includes AWS's unkind parts: ClientToken idempotency and mismatch, eventual consistency
 * right after launch, reserved `aws:` tags, EIP association refused while pending, auto-assigned public
 * IPs released when an EIP arrives.
 */
export class Ec2Model {
  readonly images = new Map<string, ImageRecord>();
  readonly instances = new Map<string, InstanceRecord>();
  readonly volumes = new Map<string, VolumeRecord>();
  readonly addresses = new Map<string, AddressRecord>();
  private readonly subnets = new Map<string, SubnetRecord>();
  private readonly routeTables: RouteTableRecord[] = [];
  private readonly securityGroups = new Map<string, SecurityGroupRecord>();
  private readonly vpcEndpoints: { VpcEndpointId: string; VpcId: string; ServiceName: string }[] = [];
  private readonly vpcs = new Set<string>();
  private readonly clientTokens = new Map<
    string,
    { params: string; reservationId: string; instanceIds: string[] }
  >();
  private hooks: Ec2Hooks | undefined;

  constructor(private readonly ctx: ModelContext) {}

  setHooks(hooks: Ec2Hooks): void {
    this.hooks = hooks;
  }

  // -------------------------------------------------------------------------------------------------
  // Seeding (not API calls: the account as it was before the orchestrator arrived)
  // -------------------------------------------------------------------------------------------------

  registerImage(
    behaviour: ImageBehaviour,
    options: {
      architecture?: Architecture;
      name?: string;
      rootDeviceName?: string;
      kmsKeyId?: string;
      tags?: Readonly<Record<string, string>>;
    } = {},
  ): string {
    const imageId = this.ctx.ids.hex('ami');
    this.images.set(imageId, {
      imageId,
      name: options.name ?? `understudy-sandbox-${this.images.size + 1}`,
      architecture: options.architecture ?? 'x86_64',
      rootDeviceName: options.rootDeviceName ?? '/dev/xvda',
      rootSnapshotId: this.ctx.ids.hex('snap'),
      rootSizeGiB: 8,
      ...(options.kmsKeyId ? { rootKmsKeyId: options.kmsKeyId } : {}),
      behaviour,
      creationDate: iso(this.ctx.clock.now()),
      tags: new Map(Object.entries(options.tags ?? {})),
      state: 'available',
    });
    return imageId;
  }

  /** A VPC with one subnet per egress kind; `none` relies on the main route table (local route only). */
  seedNetwork(): { vpcId: string; subnets: Record<EgressKind, string>; securityGroupId: string } {
    const vpcId = this.ctx.ids.hex('vpc');
    this.vpcs.add(vpcId);
    const az = `${this.ctx.region}a`;
    const third = this.vpcs.size;
    const subnet = (index: number, kind: EgressKind): string => {
      const subnetId = this.ctx.ids.hex('subnet');
      this.subnets.set(subnetId, {
        subnetId,
        vpcId,
        cidr: `10.${third}.${index}.0/24`,
        availabilityZone: az,
        // A public subnet that does not map public IPs: launching there without asking for one leaves
        // the box without egress, which is exactly what the orchestrator must notice.
        mapPublicIpOnLaunch: false,
        tags: new Map([['Name', `sandbox-${kind}`]]),
        nextHost: 10,
      });
      return subnetId;
    };
    const subnets = { nat: subnet(1, 'nat'), igw: subnet(2, 'igw'), none: subnet(3, 'none') };
    const local = {
      DestinationCidrBlock: `10.${third}.0.0/16`,
      GatewayId: 'local',
      Origin: 'CreateRouteTable',
      State: 'active',
    };
    this.routeTables.push(
      { routeTableId: this.ctx.ids.hex('rtb'), vpcId, main: true, subnetIds: [], routes: [local] },
      {
        routeTableId: this.ctx.ids.hex('rtb'),
        vpcId,
        main: false,
        subnetIds: [subnets.nat],
        routes: [
          local,
          {
            DestinationCidrBlock: '0.0.0.0/0',
            NatGatewayId: this.ctx.ids.hex('nat'),
            Origin: 'CreateRoute',
            State: 'active',
          },
        ],
      },
      {
        routeTableId: this.ctx.ids.hex('rtb'),
        vpcId,
        main: false,
        subnetIds: [subnets.igw],
        routes: [
          local,
          {
            DestinationCidrBlock: '0.0.0.0/0',
            GatewayId: this.ctx.ids.hex('igw'),
            Origin: 'CreateRoute',
            State: 'active',
          },
        ],
      },
    );
    const securityGroupId = this.ctx.ids.hex('sg');
    this.securityGroups.set(securityGroupId, { groupId: securityGroupId, groupName: 'web', vpcId });
    return { vpcId, subnets, securityGroupId };
  }

  allocateAddress(): AddressRecord {
    const allocationId = this.ctx.ids.hex('eipalloc');
    const address: AddressRecord = {
      allocationId,
      publicIp: this.ctx.ids.address('203.0.113'),
      tags: new Map(),
    };
    this.addresses.set(allocationId, address);
    return address;
  }

  /** Launches without the API (no call record) and, when `serving`, skips pending and the boot. */
  seedInstance(input: RunInstancesCommandInput, options: { serving: boolean }): InstanceRecord {
    const instance = this.launch(input, this.ctx.ids.hex('r'), { skipPending: options.serving });
    return instance;
  }

  // -------------------------------------------------------------------------------------------------
  // Queries used by other models
  // -------------------------------------------------------------------------------------------------

  /** Can the box reach an AWS API: NAT route, IGW route plus a public IP, or a VPC endpoint. */
  reaches(instance: InstanceRecord, service: ReachableService): boolean {
    const table = this.routeTableFor(instance.subnetId);
    const defaultRoute = table?.routes.find((r) => r.DestinationCidrBlock === '0.0.0.0/0');
    if (defaultRoute?.NatGatewayId) return true;
    if (defaultRoute?.GatewayId?.startsWith('igw-') && this.publicIpOf(instance)) return true;
    const needed = service === 'ssm' ? ['ssm', 'ssmmessages', 'ec2messages'] : [service];
    return needed.every((name) =>
      this.vpcEndpoints.some((e) => e.VpcId === instance.vpcId && e.ServiceName.endsWith(`.${name}`)),
    );
  }

  addressOf(instanceId: string): AddressRecord | undefined {
    return [...this.addresses.values()].find((a) => a.instanceId === instanceId);
  }

  publicIpOf(instance: InstanceRecord): string | undefined {
    return this.addressOf(instance.instanceId)?.publicIp ?? instance.autoPublicIp;
  }

  image(imageId: string): ImageRecord | undefined {
    return this.images.get(imageId);
  }

  // -------------------------------------------------------------------------------------------------
  // Lifecycle
  // -------------------------------------------------------------------------------------------------

  private setState(instance: InstanceRecord, state: InstanceStateName): void {
    const wasRunning = instance.state === 'running';
    instance.state = state;
    instance.epoch += 1;
    if (state === 'running') instance.runningSince = this.ctx.clock.now();
    if (state === 'running')
      this.ctx.background(Promise.resolve(this.hooks?.onRunning(instance, { serving: false })));
    if (wasRunning && state !== 'running') this.ctx.background(Promise.resolve(this.hooks?.onHalt(instance)));
  }

  /** Moves to `state` after `ms`, unless something else changed the instance's state meanwhile. */
  private transition(
    instance: InstanceRecord,
    ms: number,
    state: InstanceStateName,
    then?: () => void,
  ): void {
    const epoch = instance.epoch;
    this.ctx.after(ms, () => {
      if (instance.epoch !== epoch) return;
      this.setState(instance, state);
      then?.();
    });
  }

  private visible(instance: InstanceRecord): boolean {
    const now = this.ctx.clock.now();
    if (now < instance.visibleAt) return false;
    return instance.terminatedAt === undefined || now < instance.terminatedAt + Ec2Timing.terminatedVisibleMs;
  }

  /** Resolves ids as EC2 would right now: unknown and not-yet-visible ids are NotFound together. */
  private instancesById(ids: readonly string[]): InstanceRecord[] {
    for (const id of ids) {
      if (!/^i-[0-9a-f]{8,17}$/.test(id)) throw fail('InvalidInstanceID.Malformed', `Invalid id: "${id}"`);
    }
    const missing = ids.filter((id) => {
      const found = this.instances.get(id);
      return !found || !this.visible(found);
    });
    if (missing.length > 0) throw notFoundInstances(missing);
    return ids.map((id) => this.instances.get(id) as InstanceRecord);
  }

  private launch(
    input: RunInstancesCommandInput,
    reservationId: string,
    options: { skipPending: boolean },
  ): InstanceRecord {
    const image = input.ImageId ? this.images.get(input.ImageId) : undefined;
    if (image?.state !== 'available') {
      throw fail('InvalidAMIID.NotFound', `The image id '[${input.ImageId ?? ''}]' does not exist`);
    }
    const instanceType = input.InstanceType ?? 'm1.small';
    const typeInfo = INSTANCE_TYPES[instanceType];
    if (!typeInfo) throw fail('InvalidParameterValue', `Invalid value '${instanceType}' for InstanceType.`);
    if (!typeInfo.architectures.includes(image.architecture)) {
      throw fail(
        'InvalidParameterValue',
        `The architecture '${typeInfo.architectures.join(', ')}' of the specified instance type does not match the architecture '${image.architecture}' of the specified AMI. Specify an instance type and an AMI that have matching architectures, and try again.`,
      );
    }
    const interfaces = input.NetworkInterfaces ?? [];
    if (interfaces.length > 0 && input.SubnetId) {
      throw fail(
        'InvalidParameterCombination',
        'Network interfaces and an instance-level subnet ID may not be specified on the same request',
      );
    }
    if (interfaces.length > 0 && (input.SecurityGroupIds?.length || input.SecurityGroups?.length)) {
      throw fail(
        'InvalidParameterCombination',
        'Network interfaces and an instance-level security groups may not be specified on the same request',
      );
    }
    if (interfaces.length > 1 && interfaces.some((n) => n.AssociatePublicIpAddress)) {
      throw fail(
        'InvalidParameterCombination',
        'The associatePublicIPAddress parameter cannot be specified when launching with multiple network interfaces.',
      );
    }
    const eth0 = interfaces.find((n) => (n.DeviceIndex ?? 0) === 0);
    const subnetId = eth0?.SubnetId ?? input.SubnetId;
    if (!subnetId)
      throw fail(
        'VPCIdNotSpecified',
        'No default VPC for this user. GroupName is only supported for EC2-Classic and default VPC.',
      );
    const subnet = this.subnets.get(subnetId);
    if (!subnet) throw fail('InvalidSubnetID.NotFound', `The subnet ID '${subnetId}' does not exist`);
    const groups = eth0?.Groups ?? input.SecurityGroupIds ?? [];
    for (const groupId of groups) {
      if (!this.securityGroups.has(groupId))
        throw fail(
          'InvalidGroup.NotFound',
          `The security group '${groupId}' does not exist in VPC '${subnet.vpcId}'`,
        );
    }
    for (const spec of input.TagSpecifications ?? []) checkTagKeys(spec.Tags);
    if (input.UserData !== undefined) {
      if (!isBase64(input.UserData))
        throw fail('InvalidParameterValue', 'Invalid BASE64 encoding of user data.');
      if (Buffer.from(input.UserData, 'base64').length > 16_384) {
        throw fail('InvalidParameterValue', 'User data is limited to 16384 bytes');
      }
    }
    const credits = input.CreditSpecification?.CpuCredits;
    if (credits && !typeInfo.burstable) {
      throw fail(
        'InstanceCreditSpecification.NotSupported',
        `The ${instanceType} instance type does not support T2 Unlimited.`,
      );
    }

    // Block devices: the AMI's mapping, overridden per DeviceName by the request's (AWS's merge rule).
    const now = this.ctx.clock.now();
    type Mapping = {
      size: number;
      type: string;
      iops?: number;
      throughput?: number;
      encrypted: boolean;
      kmsKeyId?: string;
      snapshotId?: string;
      deleteOnTermination: boolean;
    };
    const mappings = new Map<string, Mapping>([
      [
        image.rootDeviceName,
        {
          size: image.rootSizeGiB,
          type: 'gp3',
          // A volume restored from an encrypted snapshot is encrypted, with the snapshot's key unless the
          // request names another.
          encrypted: image.rootKmsKeyId !== undefined,
          ...(image.rootKmsKeyId ? { kmsKeyId: image.rootKmsKeyId } : {}),
          snapshotId: image.rootSnapshotId,
          deleteOnTermination: true,
        },
      ],
    ]);
    for (const bdm of input.BlockDeviceMappings ?? []) {
      const device = bdm.DeviceName ?? '';
      if (bdm.NoDevice !== undefined) {
        mappings.delete(device);
        continue;
      }
      if (!bdm.Ebs) continue;
      const base = mappings.get(device);
      const size = bdm.Ebs.VolumeSize ?? base?.size;
      if (size === undefined)
        throw fail(
          'InvalidBlockDeviceMapping',
          `The request must contain the parameter size or snapshotId for device ${device}`,
        );
      if (base?.snapshotId && size < base.size) {
        throw fail(
          'InvalidBlockDeviceMapping',
          `Volume of size ${size}GB is smaller than snapshot '${base.snapshotId}', expect size >= ${base.size}GB`,
        );
      }
      const kms = bdm.Ebs.KmsKeyId;
      mappings.set(device, {
        size,
        type: bdm.Ebs.VolumeType ?? base?.type ?? 'gp3',
        ...((bdm.Ebs.Iops ?? base?.iops) !== undefined ? { iops: bdm.Ebs.Iops ?? base?.iops } : {}),
        ...((bdm.Ebs.Throughput ?? base?.throughput) !== undefined
          ? { throughput: bdm.Ebs.Throughput ?? base?.throughput }
          : {}),
        // Encryption can be added at launch, never removed.
        encrypted: Boolean(bdm.Ebs.Encrypted) || Boolean(base?.encrypted) || kms !== undefined,
        ...(kms
          ? {
              kmsKeyId: kms.startsWith('arn:')
                ? kms
                : `arn:aws:kms:${this.ctx.region}:${this.ctx.accountId}:key/${kms}`,
            }
          : // Naming no key keeps the key of the (own) snapshot it is restored from.
            base?.kmsKeyId
            ? { kmsKeyId: base.kmsKeyId }
            : {}),
        ...((bdm.Ebs.SnapshotId ?? base?.snapshotId)
          ? { snapshotId: bdm.Ebs.SnapshotId ?? base?.snapshotId }
          : {}),
        deleteOnTermination: bdm.Ebs.DeleteOnTermination ?? base?.deleteOnTermination ?? false,
      });
    }

    const instanceId = this.ctx.ids.hex('i');
    const tagsFor = (type: string) =>
      new Map(
        (input.TagSpecifications ?? [])
          .filter((s) => s.ResourceType === type)
          .flatMap((s) => s.Tags ?? [])
          .map((t) => [t.Key ?? '', t.Value ?? ''] as const),
      );
    const blockDevices = [...mappings].map(([deviceName, m]) => {
      const volumeId = this.ctx.ids.hex('vol');
      const gp3 = m.type === 'gp3';
      this.volumes.set(volumeId, {
        volumeId,
        size: m.size,
        volumeType: m.type,
        ...(gp3 || m.iops !== undefined ? { iops: m.iops ?? 3000 } : {}),
        ...(gp3 ? { throughput: m.throughput ?? 125 } : {}),
        encrypted: m.encrypted,
        ...(m.kmsKeyId
          ? { kmsKeyId: m.kmsKeyId }
          : m.encrypted
            ? { kmsKeyId: `arn:aws:kms:${this.ctx.region}:${this.ctx.accountId}:key/aws-ebs-default` }
            : {}),
        ...(m.snapshotId ? { snapshotId: m.snapshotId } : {}),
        availabilityZone: subnet.availabilityZone,
        createTime: now,
        state: 'in-use',
        attachment: {
          instanceId,
          device: deviceName,
          attachTime: now,
          deleteOnTermination: m.deleteOnTermination,
        },
        tags: tagsFor('volume'),
      });
      return { deviceName, volumeId, deleteOnTermination: m.deleteOnTermination, attachTime: now };
    });

    const autoAssign = eth0?.AssociatePublicIpAddress ?? subnet.mapPublicIpOnLaunch;
    const [, , third] = subnet.cidr.split('.');
    subnet.nextHost += 1;
    const profile = input.IamInstanceProfile;
    const profileArn =
      profile?.Arn ??
      (profile?.Name ? `arn:aws:iam::${this.ctx.accountId}:instance-profile/${profile.Name}` : undefined);
    const instance: InstanceRecord = {
      instanceId,
      reservationId,
      imageId: image.imageId,
      instanceType,
      state: options.skipPending ? 'running' : 'pending',
      launchTime: now,
      visibleAt: options.skipPending ? now : now + Ec2Timing.visibleAfterMs,
      subnetId,
      vpcId: subnet.vpcId,
      availabilityZone: subnet.availabilityZone,
      privateIp: `${subnet.cidr.split('.').slice(0, 2).join('.')}.${third}.${subnet.nextHost}`,
      eniId: this.ctx.ids.hex('eni'),
      eniAttachmentId: this.ctx.ids.hex('eni-attach'),
      autoAssignPublicIp: autoAssign,
      ...(autoAssign ? { autoPublicIp: this.ctx.ids.address('198.51.100') } : {}),
      securityGroupIds: [...groups],
      tags: tagsFor('instance'),
      clientToken: input.ClientToken ?? '',
      ...(input.UserData !== undefined ? { userData: input.UserData } : {}),
      disableApiTermination: input.DisableApiTermination ?? false,
      disableApiStop: input.DisableApiStop ?? false,
      shutdownBehavior: input.InstanceInitiatedShutdownBehavior ?? 'stop',
      ...(typeInfo.burstable
        ? { cpuCredits: credits ?? (instanceType.startsWith('t2.') ? 'standard' : 'unlimited') }
        : {}),
      metadataOptions: {
        State: 'applied',
        // The AMI's ImdsSupport v2.0 makes `required` (and a hop limit of 2) the default.
        HttpTokens: input.MetadataOptions?.HttpTokens ?? 'required',
        HttpPutResponseHopLimit: input.MetadataOptions?.HttpPutResponseHopLimit ?? 2,
        HttpEndpoint: input.MetadataOptions?.HttpEndpoint ?? 'enabled',
        HttpProtocolIpv6: input.MetadataOptions?.HttpProtocolIpv6 ?? 'disabled',
        InstanceMetadataTags: input.MetadataOptions?.InstanceMetadataTags ?? 'disabled',
      },
      ...(profileArn
        ? {
            iamInstanceProfile: {
              Arn: profileArn,
              Id: this.ctx.ids.hex('AIPA', 17).replace('AIPA-', 'AIPA').toUpperCase(),
            },
          }
        : {}),
      ...(input.KeyName ? { keyName: input.KeyName } : {}),
      monitoring: input.Monitoring?.Enabled ?? false,
      ebsOptimized: input.EbsOptimized ?? false,
      sourceDestCheck: true,
      rootDeviceName: image.rootDeviceName,
      blockDevices,
      architecture: image.architecture,
      cpuOptions: {
        CoreCount: input.CpuOptions?.CoreCount ?? Math.max(1, typeInfo.vcpus / 2),
        ThreadsPerCore: input.CpuOptions?.ThreadsPerCore ?? 2,
      },
      ...(options.skipPending ? {} : { stateReason: { Code: 'pending', Message: 'pending' } }),
      stateTransitionReason: '',
      epoch: 0,
    };
    this.instances.set(instanceId, instance);
    if (options.skipPending) {
      this.ctx.background(Promise.resolve(this.hooks?.onRunning(instance, { serving: true })));
    } else {
      this.transition(instance, Ec2Timing.pendingMs, 'running', () => {
        delete instance.stateReason;
      });
    }
    return instance;
  }

  private stop(instance: InstanceRecord, reason: string): void {
    this.setState(instance, 'stopping');
    instance.stateTransitionReason = `${reason} (${iso(this.ctx.clock.now())
      .replace('T', ' ')
      .replace(/\.\d+Z$/, ' GMT')})`;
    // A stopped box keeps its EIP but loses an auto-assigned public IP.
    delete instance.autoPublicIp;
    this.transition(instance, Ec2Timing.stoppingMs, 'stopped', () => {
      instance.stateReason = {
        Code: 'Client.UserInitiatedShutdown',
        Message: 'Client.UserInitiatedShutdown: User initiated shutdown',
      };
    });
  }

  private terminate(instance: InstanceRecord): void {
    this.setState(instance, 'shutting-down');
    instance.stateTransitionReason = `User initiated (${iso(this.ctx.clock.now())
      .replace('T', ' ')
      .replace(/\.\d+Z$/, ' GMT')})`;
    const address = this.addressOf(instance.instanceId);
    this.transition(instance, Ec2Timing.shuttingDownMs, 'terminated', () => {
      instance.terminatedAt = this.ctx.clock.now();
      instance.stateReason = {
        Code: 'Client.UserInitiatedShutdown',
        Message: 'Client.UserInitiatedShutdown: User initiated shutdown',
      };
      delete instance.autoPublicIp;
      for (const device of instance.blockDevices) {
        const volume = this.volumes.get(device.volumeId);
        if (!volume) continue;
        delete volume.attachment;
        volume.state = device.deleteOnTermination ? 'deleted' : 'available';
      }
      if (address && address.instanceId === instance.instanceId) {
        delete address.associationId;
        delete address.instanceId;
        this.hooks?.onAddressMoved(address.allocationId);
      }
    });
  }

  // -------------------------------------------------------------------------------------------------
  // Output shapes
  // -------------------------------------------------------------------------------------------------

  private describeInstance(instance: InstanceRecord) {
    const address = this.addressOf(instance.instanceId);
    const publicIp = address?.publicIp ?? instance.autoPublicIp;
    const association = publicIp
      ? {
          PublicIp: publicIp,
          PublicDnsName: `ec2-${publicIp.replace(/\./g, '-')}.${this.ctx.region}.compute.amazonaws.com`,
          IpOwnerId: address ? this.ctx.accountId : 'amazon',
        }
      : undefined;
    const groups = instance.securityGroupIds.map((id) => ({
      GroupId: id,
      GroupName: this.securityGroups.get(id)?.groupName ?? id,
    }));
    const privateDns = `ip-${instance.privateIp.replace(/\./g, '-')}.${this.ctx.region}.compute.internal`;
    const live = instance.state !== 'terminated';
    return {
      InstanceId: instance.instanceId,
      ImageId: instance.imageId,
      InstanceType: instance.instanceType,
      State: { Code: STATE_CODES[instance.state], Name: instance.state },
      LaunchTime: new Date(instance.launchTime),
      Placement: { AvailabilityZone: instance.availabilityZone, Tenancy: 'default', GroupName: '' },
      Architecture: instance.architecture,
      ClientToken: instance.clientToken,
      Tags: tagList(instance.tags),
      Monitoring: { State: instance.monitoring ? 'enabled' : 'disabled' },
      EbsOptimized: instance.ebsOptimized,
      Hypervisor: 'xen',
      VirtualizationType: 'hvm',
      EnaSupport: true,
      BootMode: 'uefi-preferred',
      CurrentInstanceBootMode: 'legacy-bios',
      PlatformDetails: 'Linux/UNIX',
      UsageOperation: 'RunInstances',
      RootDeviceName: instance.rootDeviceName,
      RootDeviceType: 'ebs',
      StateTransitionReason: instance.stateTransitionReason,
      ...(instance.stateReason ? { StateReason: instance.stateReason } : {}),
      CpuOptions: instance.cpuOptions,
      MetadataOptions: instance.metadataOptions,
      HibernationOptions: { Configured: false },
      EnclaveOptions: { Enabled: false },
      MaintenanceOptions: { AutoRecovery: 'default', RebootMigration: 'default' },
      CapacityReservationSpecification: { CapacityReservationPreference: 'open' },
      PrivateDnsNameOptions: {
        HostnameType: 'ip-name',
        EnableResourceNameDnsARecord: false,
        EnableResourceNameDnsAAAARecord: false,
      },
      ...(instance.iamInstanceProfile ? { IamInstanceProfile: instance.iamInstanceProfile } : {}),
      ...(instance.keyName ? { KeyName: instance.keyName } : {}),
      ...(live
        ? {
            SubnetId: instance.subnetId,
            VpcId: instance.vpcId,
            PrivateIpAddress: instance.privateIp,
            PrivateDnsName: privateDns,
            PublicDnsName: association?.PublicDnsName ?? '',
            ...(publicIp ? { PublicIpAddress: publicIp } : {}),
            SourceDestCheck: instance.sourceDestCheck,
            SecurityGroups: groups,
            BlockDeviceMappings: instance.blockDevices.map((d) => ({
              DeviceName: d.deviceName,
              Ebs: {
                VolumeId: d.volumeId,
                DeleteOnTermination: d.deleteOnTermination,
                AttachTime: new Date(d.attachTime),
                Status: 'attached',
              },
            })),
            NetworkInterfaces: [
              {
                NetworkInterfaceId: instance.eniId,
                SubnetId: instance.subnetId,
                VpcId: instance.vpcId,
                OwnerId: this.ctx.accountId,
                Status: 'in-use',
                InterfaceType: 'interface',
                MacAddress: '0a:00:00:00:00:01',
                PrivateIpAddress: instance.privateIp,
                PrivateDnsName: privateDns,
                SourceDestCheck: instance.sourceDestCheck,
                Groups: groups,
                Ipv6Addresses: [],
                Attachment: {
                  AttachmentId: instance.eniAttachmentId,
                  AttachTime: new Date(instance.launchTime),
                  DeleteOnTermination: true,
                  DeviceIndex: 0,
                  NetworkCardIndex: 0,
                  Status: 'attached',
                },
                ...(association ? { Association: association } : {}),
                PrivateIpAddresses: [
                  {
                    Primary: true,
                    PrivateIpAddress: instance.privateIp,
                    PrivateDnsName: privateDns,
                    ...(association ? { Association: association } : {}),
                  },
                ],
              },
            ],
          }
        : {
            BlockDeviceMappings: [],
            NetworkInterfaces: [],
            SecurityGroups: [],
            PrivateDnsName: '',
            PublicDnsName: '',
          }),
    };
  }

  private describeAddress(address: AddressRecord) {
    const instance = address.instanceId ? this.instances.get(address.instanceId) : undefined;
    return {
      AllocationId: address.allocationId,
      PublicIp: address.publicIp,
      Domain: 'vpc',
      PublicIpv4Pool: 'amazon',
      NetworkBorderGroup: this.ctx.region,
      Tags: tagList(address.tags),
      ...(address.associationId && instance
        ? {
            AssociationId: address.associationId,
            InstanceId: instance.instanceId,
            NetworkInterfaceId: instance.eniId,
            NetworkInterfaceOwnerId: this.ctx.accountId,
            PrivateIpAddress: instance.privateIp,
          }
        : {}),
    };
  }

  private routeTableFor(subnetId: string): RouteTableRecord | undefined {
    const subnet = this.subnets.get(subnetId);
    return (
      this.routeTables.find((t) => t.subnetIds.includes(subnetId)) ??
      this.routeTables.find((t) => t.main && t.vpcId === subnet?.vpcId)
    );
  }

  private associate(address: AddressRecord, instance: InstanceRecord): string {
    const previousInstance = address.instanceId;
    // An instance holds one EIP on its primary IP: the one it had is disassociated, still allocated.
    const other = this.addressOf(instance.instanceId);
    if (other && other !== address) {
      delete other.associationId;
      delete other.instanceId;
      this.hooks?.onAddressMoved(other.allocationId);
    }
    address.associationId = this.ctx.ids.hex('eipassoc');
    address.instanceId = instance.instanceId;
    // The auto-assigned public IPv4 is released for good when an EIP arrives.
    delete instance.autoPublicIp;
    if (previousInstance && previousInstance !== instance.instanceId) this.regainPublicIp(previousInstance);
    this.hooks?.onAddressMoved(address.allocationId);
    return address.associationId;
  }

  /** After its EIP leaves, a box that was launched with a public IP gets a new auto-assigned one. */
  private regainPublicIp(instanceId: string): void {
    const instance = this.instances.get(instanceId);
    if (!instance?.autoAssignPublicIp || this.addressOf(instanceId)) return;
    if (instance.state === 'running' || instance.state === 'pending')
      instance.autoPublicIp = this.ctx.ids.address('198.51.100');
  }

  private findAddress(allocationId: string | undefined): AddressRecord {
    const address = allocationId ? this.addresses.get(allocationId) : undefined;
    if (!address)
      throw fail('InvalidAllocationID.NotFound', `The allocation ID '${allocationId ?? ''}' does not exist`);
    return address;
  }

  /** AssociateAddress by NetworkInterfaceId: the instance the interface is attached to. */
  private instanceOfInterface(eniId: string): InstanceRecord {
    const instance = [...this.instances.values()].find((i) => i.eniId === eniId && this.visible(i));
    if (!instance)
      throw fail('InvalidNetworkInterfaceID.NotFound', `The networkInterface ID '${eniId}' does not exist`);
    if (instance.state === 'pending') {
      throw fail(
        'IncorrectInstanceState',
        `The pending-instance-creation instance to which '${eniId}' is attached is not in a valid state for this operation`,
      );
    }
    return instance;
  }

  private dryRun(input: { DryRun?: boolean }) {
    if (input.DryRun)
      throw fail('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.', 412);
  }

  private stateChange(instance: InstanceRecord, previous: InstanceStateName) {
    return {
      InstanceId: instance.instanceId,
      CurrentState: { Code: STATE_CODES[instance.state], Name: instance.state },
      PreviousState: { Code: STATE_CODES[previous], Name: previous },
    };
  }

  // -------------------------------------------------------------------------------------------------
  // API
  // -------------------------------------------------------------------------------------------------

  private readonly api = {
    DescribeImages: (input: DescribeImagesCommandInput) => {
      const ids = input.ImageIds ?? [];
      requireIds(
        ids,
        (id) => this.images.has(id),
        ([id]) => fail('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`),
      );
      // Every image here is the account's own: `self` or the account id select them all, other owners none.
      const owners = input.Owners ?? [];
      const ownedHere = owners.length === 0 || owners.some((o) => o === 'self' || o === this.ctx.accountId);
      const images = [...this.images.values()].filter(
        (image) =>
          ownedHere &&
          image.state === 'available' &&
          (ids.length === 0 || ids.includes(image.imageId)) &&
          matchesFilters(
            input.Filters,
            {
              'image-id': image.imageId,
              name: image.name,
              state: image.state,
              architecture: image.architecture,
            },
            image.tags,
          ),
      );
      return {
        Images: images.map((image) => ({
          ImageId: image.imageId,
          Name: image.name,
          State: image.state,
          ...(image.tags.size > 0 ? { Tags: tagList(image.tags) } : {}),
          OwnerId: this.ctx.accountId,
          Architecture: image.architecture,
          CreationDate: image.creationDate,
          ImageType: 'machine',
          Public: false,
          RootDeviceName: image.rootDeviceName,
          RootDeviceType: 'ebs',
          VirtualizationType: 'hvm',
          Hypervisor: 'xen',
          EnaSupport: true,
          BootMode: 'uefi-preferred',
          ImdsSupport: 'v2.0',
          PlatformDetails: 'Linux/UNIX',
          UsageOperation: 'RunInstances',
          BlockDeviceMappings: [
            {
              DeviceName: image.rootDeviceName,
              Ebs: {
                SnapshotId: image.rootSnapshotId,
                VolumeSize: image.rootSizeGiB,
                VolumeType: 'gp3',
                DeleteOnTermination: true,
                Encrypted: image.rootKmsKeyId !== undefined,
                ...(image.rootKmsKeyId ? { KmsKeyId: image.rootKmsKeyId } : {}),
                Iops: 3000,
                Throughput: 125,
              },
            },
          ],
        })),
      };
    },

    DescribeInstanceTypes: (input: DescribeInstanceTypesCommandInput) => {
      const names = input.InstanceTypes ?? Object.keys(INSTANCE_TYPES);
      const unknown = names.filter((n) => !INSTANCE_TYPES[n]);
      if (unknown.length > 0) {
        throw fail(
          'InvalidInstanceType',
          `The following supplied instance types do not exist: [${unknown.join(', ')}]`,
        );
      }
      return {
        InstanceTypes: names.map((name) => {
          const info = INSTANCE_TYPES[name] as InstanceTypeInfo;
          return {
            InstanceType: name,
            CurrentGeneration: true,
            ProcessorInfo: { SupportedArchitectures: [...info.architectures] },
            VCpuInfo: {
              DefaultVCpus: info.vcpus,
              DefaultCores: Math.max(1, info.vcpus / 2),
              DefaultThreadsPerCore: 2,
            },
            MemoryInfo: { SizeInMiB: info.memoryMiB },
            BurstablePerformanceSupported: info.burstable,
            InstanceStorageSupported: info.instanceStorage,
            ...(info.instanceStorage
              ? {
                  InstanceStorageInfo: {
                    TotalSizeInGB: 50,
                    Disks: [{ SizeInGB: 50, Count: 1, Type: 'ssd' }],
                    NvmeSupport: 'required',
                  },
                }
              : {}),
            HibernationSupported: !info.instanceStorage,
            SupportedRootDeviceTypes: ['ebs'],
          };
        }),
      };
    },

    DescribeSubnets: (input: DescribeSubnetsCommandInput) => {
      const ids = input.SubnetIds ?? [];
      requireIds(
        ids,
        (id) => this.subnets.has(id),
        ([id]) => fail('InvalidSubnetID.NotFound', `The subnet ID '${id}' does not exist`),
      );
      const subnets = [...this.subnets.values()].filter(
        (s) =>
          (ids.length === 0 || ids.includes(s.subnetId)) &&
          matchesFilters(
            input.Filters,
            { 'subnet-id': s.subnetId, 'vpc-id': s.vpcId, 'availability-zone': s.availabilityZone },
            s.tags,
          ),
      );
      return {
        Subnets: subnets.map((s) => ({
          SubnetId: s.subnetId,
          VpcId: s.vpcId,
          CidrBlock: s.cidr,
          AvailabilityZone: s.availabilityZone,
          AvailabilityZoneId: `${this.ctx.region.replace(/-/g, '').slice(0, 4)}-az1`,
          MapPublicIpOnLaunch: s.mapPublicIpOnLaunch,
          State: 'available',
          AvailableIpAddressCount: 250 - s.nextHost,
          DefaultForAz: false,
          OwnerId: this.ctx.accountId,
          Ipv6CidrBlockAssociationSet: [],
          Tags: tagList(s.tags),
        })),
      };
    },

    DescribeRouteTables: (input: DescribeRouteTablesCommandInput) => {
      const ids = input.RouteTableIds ?? [];
      const tables = this.routeTables.filter(
        (t) =>
          (ids.length === 0 || ids.includes(t.routeTableId)) &&
          matchesFilters(input.Filters, {
            // Like AWS, association.subnet-id only finds explicit associations: a subnet on the main
            // route table is found through association.main=true and vpc-id instead.
            'association.subnet-id': t.subnetIds,
            'association.main': String(t.main),
            'vpc-id': t.vpcId,
            'route-table-id': t.routeTableId,
          }),
      );
      return {
        RouteTables: tables.map((t) => ({
          RouteTableId: t.routeTableId,
          VpcId: t.vpcId,
          OwnerId: this.ctx.accountId,
          Routes: t.routes.map((r) => ({ ...r })),
          Associations: [
            ...(t.main
              ? [
                  {
                    Main: true,
                    RouteTableAssociationId: `rtbassoc-main${t.routeTableId.slice(4, 12)}`,
                    RouteTableId: t.routeTableId,
                    AssociationState: { State: 'associated' },
                  },
                ]
              : []),
            ...t.subnetIds.map((subnetId) => ({
              Main: false,
              RouteTableAssociationId: `rtbassoc-${subnetId.slice(7, 24)}`,
              RouteTableId: t.routeTableId,
              SubnetId: subnetId,
              AssociationState: { State: 'associated' },
            })),
          ],
          Tags: [],
          PropagatingVgws: [],
        })),
      };
    },

    DescribeVpcEndpoints: (input: DescribeVpcEndpointsCommandInput) => ({
      VpcEndpoints: this.vpcEndpoints
        .filter(
          (e) =>
            (!input.VpcEndpointIds?.length || input.VpcEndpointIds.includes(e.VpcEndpointId)) &&
            matchesFilters(input.Filters, {
              'vpc-id': e.VpcId,
              'service-name': e.ServiceName,
              'vpc-endpoint-state': 'available',
              'vpc-endpoint-type': 'Interface',
            }),
        )
        .map((e) => ({ ...e, VpcEndpointType: 'Interface', State: 'available', PrivateDnsEnabled: true })),
    }),

    RunInstances: (input: RunInstancesCommandInput) => {
      const token = input.ClientToken;
      if (token !== undefined && token.length > 64) {
        throw fail(
          'InvalidParameterValue',
          'Value for parameter clientToken is invalid. Length exceeds maximum of 64 characters.',
        );
      }
      const { ClientToken: _token, DryRun: _dryRun, ...rest } = input;
      const params = canonicalJson(rest);
      const previous = token ? this.clientTokens.get(token) : undefined;
      if (previous) {
        if (previous.params !== params) {
          throw fail(
            'IdempotentParameterMismatch',
            `Arguments on this idempotent request are inconsistent with arguments used in previous request(s).`,
          );
        }
        const instances = previous.instanceIds.map((id) => this.instances.get(id) as InstanceRecord);
        return {
          ReservationId: previous.reservationId,
          OwnerId: this.ctx.accountId,
          Groups: [],
          Instances: instances.map((i) => this.describeInstance(i)),
        };
      }
      const count = Math.max(1, input.MaxCount ?? 1);
      const reservationId = this.ctx.ids.hex('r');
      const clientToken = token ?? this.ctx.ids.uuid('client-token');
      const launched: InstanceRecord[] = [];
      for (let n = 0; n < count; n++)
        launched.push(
          this.launch({ ...input, ClientToken: clientToken }, reservationId, { skipPending: false }),
        );
      this.clientTokens.set(clientToken, {
        params,
        reservationId,
        instanceIds: launched.map((i) => i.instanceId),
      });
      return {
        ReservationId: reservationId,
        OwnerId: this.ctx.accountId,
        Groups: [],
        Instances: launched.map((i) => this.describeInstance(i)),
      };
    },

    DescribeInstances: (input: DescribeInstancesCommandInput) => {
      const ids = input.InstanceIds ?? [];
      const pool =
        ids.length > 0
          ? this.instancesById(ids)
          : [...this.instances.values()].filter((i) => this.visible(i));
      const selected = pool.filter((instance) =>
        matchesFilters(
          input.Filters,
          {
            'instance-id': instance.instanceId,
            'instance-state-name': instance.state,
            'client-token': instance.clientToken,
            'image-id': instance.imageId,
            'subnet-id': instance.subnetId,
            'vpc-id': instance.vpcId,
            'instance-type': instance.instanceType,
            'ip-address': this.publicIpOf(instance),
            'private-ip-address': instance.privateIp,
          },
          instance.tags,
        ),
      );
      const reservations = new Map<string, InstanceRecord[]>();
      for (const instance of selected) {
        reservations.set(instance.reservationId, [
          ...(reservations.get(instance.reservationId) ?? []),
          instance,
        ]);
      }
      return {
        Reservations: [...reservations].map(([reservationId, instances]) => ({
          ReservationId: reservationId,
          OwnerId: this.ctx.accountId,
          Groups: [],
          Instances: instances.map((i) => this.describeInstance(i)),
        })),
      };
    },

    DescribeInstanceAttribute: (input: DescribeInstanceAttributeCommandInput) => {
      const [instance] = this.instancesById([input.InstanceId ?? '']) as [InstanceRecord];
      const base = { InstanceId: instance.instanceId };
      switch (input.Attribute) {
        case 'userData':
          return { ...base, UserData: instance.userData !== undefined ? { Value: instance.userData } : {} };
        case 'disableApiTermination':
          return { ...base, DisableApiTermination: { Value: instance.disableApiTermination } };
        case 'disableApiStop':
          return { ...base, DisableApiStop: { Value: instance.disableApiStop } };
        case 'instanceInitiatedShutdownBehavior':
          return { ...base, InstanceInitiatedShutdownBehavior: { Value: instance.shutdownBehavior } };
        case 'instanceType':
          return { ...base, InstanceType: { Value: instance.instanceType } };
        case 'sourceDestCheck':
          return { ...base, SourceDestCheck: { Value: instance.sourceDestCheck } };
        case 'rootDeviceName':
          return { ...base, RootDeviceName: { Value: instance.rootDeviceName } };
        case 'ebsOptimized':
          return { ...base, EbsOptimized: { Value: instance.ebsOptimized } };
        case 'groupSet':
          return { ...base, Groups: instance.securityGroupIds.map((GroupId) => ({ GroupId })) };
        default:
          throw fail(
            'InvalidParameterValue',
            `Value (${input.Attribute ?? ''}) for parameter attribute is invalid. Unknown attribute.`,
          );
      }
    },

    DescribeInstanceCreditSpecifications: (input: DescribeInstanceCreditSpecificationsCommandInput) => {
      const instances = this.instancesById(input.InstanceIds ?? []);
      for (const instance of instances) {
        if (instance.cpuCredits === undefined) {
          throw fail(
            'InvalidParameterValue',
            `The instance ID '${instance.instanceId}' is not valid. The instance type '${instance.instanceType}' does not support CPU credits.`,
          );
        }
      }
      return {
        InstanceCreditSpecifications: instances.map((i) => ({
          InstanceId: i.instanceId,
          CpuCredits: i.cpuCredits,
        })),
      };
    },

    DescribeVolumes: (input: DescribeVolumesCommandInput) => {
      const ids = input.VolumeIds ?? [];
      requireIds(
        ids,
        (id) => (this.volumes.get(id)?.state ?? 'deleted') !== 'deleted',
        (missing) => fail('InvalidVolume.NotFound', `The volume '${missing.join(', ')}' does not exist.`),
      );
      const volumes = [...this.volumes.values()].filter(
        (v) =>
          v.state !== 'deleted' &&
          (ids.length === 0 || ids.includes(v.volumeId)) &&
          matchesFilters(
            input.Filters,
            { 'attachment.instance-id': v.attachment?.instanceId, 'volume-id': v.volumeId, status: v.state },
            v.tags,
          ),
      );
      return {
        Volumes: volumes.map((v) => ({
          VolumeId: v.volumeId,
          Size: v.size,
          VolumeType: v.volumeType,
          ...(v.iops !== undefined ? { Iops: v.iops } : {}),
          ...(v.throughput !== undefined ? { Throughput: v.throughput } : {}),
          Encrypted: v.encrypted,
          ...(v.kmsKeyId ? { KmsKeyId: v.kmsKeyId } : {}),
          SnapshotId: v.snapshotId ?? '',
          AvailabilityZone: v.availabilityZone,
          CreateTime: new Date(v.createTime),
          State: v.state,
          MultiAttachEnabled: false,
          Tags: tagList(v.tags),
          Attachments: v.attachment
            ? [
                {
                  VolumeId: v.volumeId,
                  InstanceId: v.attachment.instanceId,
                  Device: v.attachment.device,
                  State: 'attached',
                  AttachTime: new Date(v.attachment.attachTime),
                  DeleteOnTermination: v.attachment.deleteOnTermination,
                },
              ]
            : [],
        })),
      };
    },

    ModifyInstanceAttribute: (input: ModifyInstanceAttributeCommandInput) => {
      const [instance] = this.instancesById([input.InstanceId ?? '']) as [InstanceRecord];
      const requireStopped = (what: string) => {
        if (instance.state !== 'stopped') {
          throw fail(
            'IncorrectInstanceState',
            `The instance '${instance.instanceId}' is not in the 'stopped' state; ${what} can only be changed while stopped.`,
          );
        }
      };
      const flag = (value: string | undefined) => value === 'true';
      if (input.DisableApiTermination?.Value !== undefined)
        instance.disableApiTermination = input.DisableApiTermination.Value;
      if (input.DisableApiStop?.Value !== undefined) instance.disableApiStop = input.DisableApiStop.Value;
      if (input.InstanceInitiatedShutdownBehavior?.Value !== undefined)
        instance.shutdownBehavior = input.InstanceInitiatedShutdownBehavior.Value;
      if (input.SourceDestCheck?.Value !== undefined) instance.sourceDestCheck = input.SourceDestCheck.Value;
      if (input.Groups) instance.securityGroupIds = [...input.Groups];
      if (input.InstanceType?.Value !== undefined) {
        requireStopped('the instance type');
        instance.instanceType = input.InstanceType.Value;
      }
      if (input.UserData?.Value !== undefined) {
        requireStopped('user data');
        instance.userData = Buffer.from(input.UserData.Value).toString('base64');
      }
      switch (input.Attribute) {
        case undefined:
          break;
        case 'disableApiTermination':
          instance.disableApiTermination = flag(input.Value);
          break;
        case 'disableApiStop':
          instance.disableApiStop = flag(input.Value);
          break;
        case 'instanceInitiatedShutdownBehavior':
          instance.shutdownBehavior = input.Value ?? 'stop';
          break;
        case 'sourceDestCheck':
          instance.sourceDestCheck = flag(input.Value);
          break;
        default:
          throw fail(
            'InvalidParameterValue',
            `Value (${input.Attribute}) for parameter attribute is invalid.`,
          );
      }
      return {};
    },

    CreateTags: (input: CreateTagsCommandInput) => {
      checkTagKeys(input.Tags);
      const resources = input.Resources ?? [];
      const targets = resources.map((id) => {
        if (id.startsWith('i-')) return this.instancesById([id])[0]?.tags;
        if (id.startsWith('vol-')) {
          const volume = this.volumes.get(id);
          if (!volume) throw fail('InvalidVolume.NotFound', `The volume '${id}' does not exist.`);
          return volume.tags;
        }
        if (id.startsWith('eipalloc-')) return this.findAddress(id).tags;
        if (id.startsWith('ami-')) {
          const image = this.images.get(id);
          if (!image) throw fail('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`);
          return image.tags;
        }
        throw fail('InvalidID', `The ID '${id}' is not valid`);
      });
      for (const tags of targets)
        for (const tag of input.Tags ?? []) tags?.set(tag.Key ?? '', tag.Value ?? '');
      return {};
    },

    StopInstances: (input: StopInstancesCommandInput) => {
      const instances = this.instancesById(input.InstanceIds ?? []);
      for (const instance of instances) {
        if (instance.disableApiStop) {
          throw fail(
            'OperationNotPermitted',
            `The instance '${instance.instanceId}' may not be stopped. Modify its 'disableApiStop' instance attribute and try again.`,
          );
        }
        if (
          instance.state === 'pending' ||
          instance.state === 'shutting-down' ||
          instance.state === 'terminated'
        ) {
          throw fail(
            'IncorrectInstanceState',
            `This instance '${instance.instanceId}' is not in a state from which it can be stopped.`,
          );
        }
      }
      return {
        StoppingInstances: instances.map((instance) => {
          const previous = instance.state;
          if (previous === 'running') this.stop(instance, 'User initiated');
          return this.stateChange(instance, previous);
        }),
      };
    },

    StartInstances: (input: StartInstancesCommandInput) => {
      const instances = this.instancesById(input.InstanceIds ?? []);
      for (const instance of instances) {
        if (instance.state !== 'stopped' && instance.state !== 'running' && instance.state !== 'pending') {
          throw fail(
            'IncorrectInstanceState',
            `The instance '${instance.instanceId}' is not in a state from which it can be started.`,
          );
        }
      }
      return {
        StartingInstances: instances.map((instance) => {
          const previous = instance.state;
          if (previous === 'stopped') {
            this.setState(instance, 'pending');
            instance.stateTransitionReason = '';
            // Like a launch with a public IP: a box without an EIP gets a new auto-assigned address.
            if (instance.autoAssignPublicIp && !this.addressOf(instance.instanceId))
              instance.autoPublicIp = this.ctx.ids.address('198.51.100');
            this.transition(instance, Ec2Timing.pendingMs, 'running', () => {
              delete instance.stateReason;
            });
          }
          return this.stateChange(instance, previous);
        }),
      };
    },

    /** Status checks of running boxes; with IncludeAllInstances, the others with checks not-applicable. */
    DescribeInstanceStatus: (input: DescribeInstanceStatusCommandInput) => {
      const instances = input.InstanceIds?.length
        ? this.instancesById(input.InstanceIds)
        : [...this.instances.values()].filter((i) => this.visible(i));
      const now = this.ctx.clock.now();
      return {
        InstanceStatuses: instances
          .filter((i) => i.state === 'running' || input.IncludeAllInstances === true)
          .map((i) => {
            if (i.state !== 'running') {
              const none = { Status: 'not-applicable' };
              return {
                InstanceId: i.instanceId,
                AvailabilityZone: i.availabilityZone,
                InstanceState: { Code: STATE_CODES[i.state], Name: i.state },
                SystemStatus: none,
                InstanceStatus: none,
              };
            }
            const status =
              i.runningSince === undefined || now - i.runningSince >= Ec2Timing.statusChecksMs
                ? 'ok'
                : 'initializing';
            const details = [{ Name: 'reachability', Status: status === 'ok' ? 'passed' : 'initializing' }];
            if (i.impairedSince !== undefined) {
              const failed = [
                { Name: 'reachability', Status: 'failed', ImpairedSince: new Date(i.impairedSince) },
              ];
              return {
                InstanceId: i.instanceId,
                AvailabilityZone: i.availabilityZone,
                InstanceState: { Code: STATE_CODES.running, Name: 'running' },
                SystemStatus: { Status: 'ok', Details: [{ Name: 'reachability', Status: 'passed' }] },
                InstanceStatus: { Status: 'impaired', Details: failed },
              };
            }
            return {
              InstanceId: i.instanceId,
              AvailabilityZone: i.availabilityZone,
              InstanceState: { Code: STATE_CODES.running, Name: 'running' },
              SystemStatus: { Status: status, Details: details },
              InstanceStatus: { Status: status, Details: details },
            };
          }),
      };
    },

    TerminateInstances: (input: TerminateInstancesCommandInput) => {
      const instances = this.instancesById(input.InstanceIds ?? []);
      for (const instance of instances) {
        if (instance.disableApiTermination && instance.state !== 'terminated') {
          throw fail(
            'OperationNotPermitted',
            `The instance '${instance.instanceId}' may not be terminated. Modify its 'disableApiTermination' instance attribute and try again.`,
          );
        }
      }
      return {
        TerminatingInstances: instances.map((instance) => {
          const previous = instance.state;
          if (previous !== 'terminated' && previous !== 'shutting-down') this.terminate(instance);
          return this.stateChange(instance, previous);
        }),
      };
    },

    DescribeAddresses: (input: DescribeAddressesCommandInput) => {
      requireIds(
        input.AllocationIds,
        (id) => this.addresses.has(id),
        ([id]) => fail('InvalidAllocationID.NotFound', `The allocation ID '${id}' does not exist`),
      );
      requireIds(
        input.PublicIps,
        (ip) => [...this.addresses.values()].some((a) => a.publicIp === ip),
        ([ip]) => fail('InvalidAddress.NotFound', `Address '${ip}' not found.`),
      );
      const addresses = [...this.addresses.values()].filter((a) => {
        if (input.AllocationIds?.length && !input.AllocationIds.includes(a.allocationId)) return false;
        if (input.PublicIps?.length && !input.PublicIps.includes(a.publicIp)) return false;
        const described: Record<string, unknown> = this.describeAddress(a);
        const field = (key: string) => described[key] as string | undefined;
        return matchesFilters(
          input.Filters,
          {
            'allocation-id': field('AllocationId'),
            'association-id': field('AssociationId'),
            'instance-id': field('InstanceId'),
            'public-ip': field('PublicIp'),
            'network-interface-id': field('NetworkInterfaceId'),
            'private-ip-address': field('PrivateIpAddress'),
            domain: 'vpc',
          },
          a.tags,
        );
      });
      return { Addresses: addresses.map((a) => this.describeAddress(a)) };
    },

    AssociateAddress: (input: AssociateAddressCommandInput) => {
      if (input.InstanceId && input.NetworkInterfaceId) {
        throw fail(
          'InvalidParameterCombination',
          'You may specify an instance ID or a network interface ID, but not both.',
        );
      }
      if (!input.AllocationId) {
        throw fail(
          'InvalidParameterCombination',
          'You must specify an allocation id when mapping an address to a VPC instance',
        );
      }
      const address = this.findAddress(input.AllocationId);
      const instance = input.NetworkInterfaceId
        ? this.instanceOfInterface(input.NetworkInterfaceId)
        : (this.instancesById([input.InstanceId ?? '']) as [InstanceRecord])[0];
      if (
        instance.state === 'pending' ||
        instance.state === 'shutting-down' ||
        instance.state === 'terminated'
      ) {
        throw fail(
          'InvalidInstanceID',
          `The ${instance.state} instance '${instance.instanceId}' is not in a valid state for this operation`,
        );
      }
      if (address.instanceId === instance.instanceId && address.associationId) {
        return { AssociationId: address.associationId };
      }
      if (address.associationId && input.AllowReassociation !== true) {
        throw fail(
          'Resource.AlreadyAssociated',
          `resource ${address.allocationId} is already associated with associate-id ${address.associationId}`,
        );
      }
      return { AssociationId: this.associate(address, instance) };
    },
  };

  /** Every EC2 action honours DryRun the same way: the permission check passes, nothing happens. */
  readonly actions = Object.fromEntries(
    Object.entries(this.api).map(([name, handler]) => [
      name,
      (input: { DryRun?: boolean }) => {
        this.dryRun(input);
        return (handler as (input: unknown) => unknown)(input);
      },
    ]),
  ) as unknown as typeof this.api;
}
