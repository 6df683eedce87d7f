import type { Address, Instance, Volume } from '@aws-sdk/client-ec2';
import { z } from 'zod';
import { tfStateError } from './errors';

/**
 * The JSON that `aws ec2 describe-instances`, `describe-addresses` and `describe-volumes` print
 * (PascalCase, the SDK's own shapes), as reconcile's input. Only the fields reconcile reads are held to
 * a type; everything else is let through untouched, since the API keeps adding fields. The CLI prints
 * timestamps as ISO strings where the SDK has `Date`s: both are accepted and the strings become `Date`s.
 */

const Timestamp = z.union([z.string(), z.date()]).transform((value, context) => {
  const date = typeof value === 'string' ? new Date(value) : value;
  if (Number.isNaN(date.getTime())) {
    context.addIssue({ code: 'custom', message: `"${String(value)}" is not a timestamp` });
    return z.NEVER;
  }
  return date;
});

const Text = z.string();
const Flag = z.boolean();
const Count = z.number().int().nonnegative();

const GroupSchema = z.looseObject({ GroupId: Text.optional(), GroupName: Text.optional() });

const NetworkInterfaceSchema = z.looseObject({
  NetworkInterfaceId: Text,
  Association: z.looseObject({ PublicIp: Text.optional(), PublicDnsName: Text.optional() }).optional(),
  Attachment: z
    .looseObject({
      AttachTime: Timestamp.optional(),
      DeleteOnTermination: Flag.optional(),
      DeviceIndex: Count.optional(),
      NetworkCardIndex: Count.optional(),
    })
    .optional(),
  Groups: z.array(GroupSchema).optional(),
  Ipv6Addresses: z.array(z.looseObject({ Ipv6Address: Text })).optional(),
  PrivateIpAddress: Text.optional(),
  PrivateIpAddresses: z.array(z.looseObject({ Primary: Flag.optional(), PrivateIpAddress: Text })).optional(),
  SourceDestCheck: Flag.optional(),
  SubnetId: Text.optional(),
});

const InstanceSchema = z.looseObject({
  InstanceId: Text.regex(/^i-[0-9a-f]+$/, 'expected an instance id such as i-0123456789abcdef0'),
  ImageId: Text.optional(),
  InstanceType: Text.optional(),
  KeyName: Text.optional(),
  LaunchTime: Timestamp.optional(),
  UsageOperationUpdateTime: Timestamp.optional(),
  State: z.looseObject({ Name: Text }).optional(),
  Placement: z
    .looseObject({
      AvailabilityZone: Text.optional(),
      GroupName: Text.optional(),
      GroupId: Text.optional(),
      PartitionNumber: Count.optional(),
      HostId: Text.optional(),
      HostResourceGroupArn: Text.optional(),
      Tenancy: Text.optional(),
    })
    .optional(),
  SubnetId: Text.optional(),
  PrivateIpAddress: Text.optional(),
  PrivateDnsName: Text.optional(),
  PublicIpAddress: Text.optional(),
  PublicDnsName: Text.optional(),
  SecurityGroups: z.array(GroupSchema).optional(),
  NetworkInterfaces: z.array(NetworkInterfaceSchema).optional(),
  SourceDestCheck: Flag.optional(),
  RootDeviceName: Text.optional(),
  BlockDeviceMappings: z
    .array(
      z.looseObject({
        DeviceName: Text,
        Ebs: z
          .looseObject({
            VolumeId: Text,
            DeleteOnTermination: Flag.optional(),
            AttachTime: Timestamp.optional(),
          })
          .optional(),
      }),
    )
    .optional(),
  EbsOptimized: Flag.optional(),
  Monitoring: z.looseObject({ State: Text }).optional(),
  IamInstanceProfile: z.looseObject({ Arn: Text.optional() }).optional(),
  CpuOptions: z
    .looseObject({
      CoreCount: Count.optional(),
      ThreadsPerCore: Count.optional(),
      AmdSevSnp: Text.optional(),
    })
    .optional(),
  MetadataOptions: z
    .looseObject({
      HttpEndpoint: Text.optional(),
      HttpProtocolIpv6: Text.optional(),
      HttpPutResponseHopLimit: Count.optional(),
      HttpTokens: Text.optional(),
      InstanceMetadataTags: Text.optional(),
    })
    .optional(),
  MaintenanceOptions: z.looseObject({ AutoRecovery: Text.optional() }).optional(),
  EnclaveOptions: z.looseObject({ Enabled: Flag.optional() }).optional(),
  HibernationOptions: z.looseObject({ Configured: Flag.optional() }).optional(),
  CapacityReservationSpecification: z
    .looseObject({ CapacityReservationPreference: Text.optional() })
    .optional(),
  PrivateDnsNameOptions: z
    .looseObject({
      HostnameType: Text.optional(),
      EnableResourceNameDnsARecord: Flag.optional(),
      EnableResourceNameDnsAAAARecord: Flag.optional(),
    })
    .optional(),
  InstanceLifecycle: Text.optional(),
  SpotInstanceRequestId: Text.optional(),
  OutpostArn: Text.optional(),
});

const DescribeInstancesSchema = z.looseObject({
  Reservations: z.array(z.looseObject({ Instances: z.array(z.unknown()) })),
});

const AddressSchema = z.looseObject({
  // EC2-Classic addresses (no allocation id) are retired; reconcile matches state to API by this id.
  AllocationId: Text.regex(
    /^eipalloc-[0-9a-f]+$/,
    'expected an allocation id such as eipalloc-0123456789abcdef0',
  ),
  AssociationId: Text.optional(),
  InstanceId: Text.optional(),
  NetworkInterfaceId: Text.optional(),
  PrivateIpAddress: Text.optional(),
  PublicIp: Text,
  Domain: Text.optional(),
});

const DescribeAddressesSchema = z.looseObject({
  Addresses: z.array(AddressSchema).min(1, 'expected at least one address'),
});

const VolumeSchema = z.looseObject({
  VolumeId: Text,
  Size: Count.optional(),
  VolumeType: Text.optional(),
  Iops: Count.optional(),
  Throughput: Count.optional(),
  Encrypted: Flag.optional(),
  KmsKeyId: Text.optional(),
  SnapshotId: Text.optional(),
  CreateTime: Timestamp.optional(),
  Attachments: z.array(z.looseObject({ AttachTime: Timestamp.optional() })).optional(),
});

const DescribeVolumesSchema = z.looseObject({ Volumes: z.array(VolumeSchema) });

/** `Reservations[0].Instances[1].InstanceId`, the way a reader finds it in the file. */
const fieldPath = (path: readonly PropertyKey[]): string =>
  path
    .map((step, index) =>
      typeof step === 'number' ? `[${step}]` : `${index === 0 ? '' : '.'}${String(step)}`,
    )
    .join('') || '(top level)';

const parseWith = <T>(schema: z.ZodType<T>, json: unknown, source: string, what: string): T => {
  const result = schema.safeParse(json);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const where = issue ? fieldPath(issue.path) : '(top level)';
  throw tfStateError(
    'InvalidDescribeOutput',
    `${source} is not usable ${what} output: ${where}: ${issue?.message ?? 'invalid'}`,
  );
};

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The one instance in `aws ec2 describe-instances` output (`{"Reservations":[{"Instances":[…]}]}`), or a
 * bare instance object. Refuses output holding no instance or several: reconcile must know which one
 * the state is to describe.
 */
export const instanceFromDescribe = (json: unknown, source = 'the describe-instances output'): Instance => {
  let candidate: unknown = json;
  let prefix: readonly PropertyKey[] = [];
  if (isRecord(json) && 'Reservations' in json) {
    const described = parseWith(DescribeInstancesSchema, json, source, 'describe-instances');
    const found = described.Reservations.flatMap((reservation, r) =>
      reservation.Instances.map((instance, i) => ({ instance, path: ['Reservations', r, 'Instances', i] })),
    );
    if (found.length !== 1) {
      throw tfStateError(
        'InvalidDescribeOutput',
        `${source} is not usable describe-instances output: Reservations[].Instances: expected exactly one instance, found ${found.length} (filter with --instance-ids)`,
      );
    }
    candidate = found[0]?.instance;
    prefix = found[0]?.path ?? [];
  } else if (!isRecord(json) || !('InstanceId' in json)) {
    throw tfStateError(
      'InvalidDescribeOutput',
      `${source} is not usable describe-instances output: (top level): expected "Reservations" or an instance object with "InstanceId"`,
    );
  }
  const result = InstanceSchema.safeParse(candidate);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw tfStateError(
      'InvalidDescribeOutput',
      `${source} is not usable describe-instances output: ${fieldPath([...prefix, ...(issue?.path ?? [])])}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return result.data as Instance;
};

/** The addresses in `aws ec2 describe-addresses` output (`{"Addresses":[…]}`, at least one). */
export const addressesFromDescribe = (json: unknown, source = 'the describe-addresses output'): Address[] =>
  parseWith(DescribeAddressesSchema, json, source, 'describe-addresses').Addresses as Address[];

/** The volumes in `aws ec2 describe-volumes` output (`{"Volumes":[…]}`). */
export const volumesFromDescribe = (json: unknown, source = 'the describe-volumes output'): Volume[] =>
  parseWith(DescribeVolumesSchema, json, source, 'describe-volumes').Volumes as Volume[];
