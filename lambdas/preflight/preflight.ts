import {
  CreateTagsCommand,
  DescribeAddressesCommand,
  DescribeImagesCommand,
  DescribeInstanceTypesCommand,
  DescribeRouteTablesCommand,
  DescribeVpcEndpointsCommand,
  type EC2Client,
  type Image,
  type Instance,
  type InstanceTypeInfo,
  type RouteTable,
  type VpcEndpoint,
} from '@aws-sdk/client-ec2';
import type { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { SNSClient } from '@aws-sdk/client-sns';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { z } from 'zod';
import {
  awsCall,
  describeAwsError,
  failAs,
  hasCode,
  isNotFound,
  rethrowIfTransient,
} from '../shared/aws-errors';
import { assertAgentOnline } from '../shared/commands';
import {
  formatIssues,
  ImageIdSchema,
  issuePath,
  type TargetConfig,
  TargetNameSchema,
  type TerraformConfig,
  type TlsMode,
} from '../shared/config';
import { LOCK_LEASE_SECONDS, runKeys, Tags } from '../shared/constants';
import { describeInstanceById, describeTargetBoxes, type ParkAction, parkCandidate } from '../shared/ec2';
import { ErrorNames, invalidInput, isUnderstudyError, refused, UnderstudyError } from '../shared/errors';
import { httpGet, type ProbeResponse } from '../shared/http';
import { acquireLock, lockHolder, readLock, releaseLock } from '../shared/lock';
import { correlate, logger } from '../shared/logger';
import { phaseBus, publishQuietly, putPhaseEvent } from '../shared/notify';
import { judge, schemeFor } from '../shared/probe';
import {
  type ExecutionContext,
  ExecutionContextSchema,
  type ExecutionInput,
  ExecutionInputSchema,
  type Lock,
  type Plan,
} from '../shared/schemas';
import { loadTargetConfig, parameterValue } from '../shared/targets';
import { parseResourceAddress } from '../shared/tfstate/address';
import { TfStateError } from '../shared/tfstate/errors';
import { findInstance } from '../shared/tfstate/lookup';
import { parseS3StateUrl, stateObjectKey } from '../shared/tfstate/s3-keys';
import { readStateUtf8, type StateV4 } from '../shared/tfstate/state';
import { checkMaintenanceWindow } from '../shared/window';
import { servingPlanFields } from './plan-fields';
import { planRollback } from './rollback-plan';

/**
 * Preflight: everything that can be known before a single resource changes. Every check reads; the
 * first write (the lock, then the adoption tag) happens only once all of them passed, so a refused
 * run leaves the account exactly as it found it.
 */

export const PreflightEventSchema = z.object({
  /** Parsed here, not at the boundary, so that errors name `input.<field>` as the user wrote it. */
  input: z.unknown(),
  execution: ExecutionContextSchema,
});
export type PreflightEvent = z.infer<typeof PreflightEventSchema>;

export interface PreflightClients {
  readonly ec2: EC2Client;
  readonly ssm: SSMClient;
  /** The runs bucket (lock, run records), in the stack's region. */
  readonly s3: S3Client;
  readonly sns: SNSClient;
  /** For the `Replacement Started` event on the Understudy bus. */
  readonly events?: EventBridgeClient;
  /** Clients for a target's Terraform backend: the stack's region, or the backend's own `region`. */
  stateClients(region: string | undefined): { readonly s3: S3Client };
}

export interface PreflightEnv {
  readonly PARAMETER_PREFIX: string;
  readonly RUNS_BUCKET: string;
  readonly TOPIC_ARN: string;
  readonly EVENT_BUS_NAME?: string;
}

/** Interface endpoints the candidate needs without a NAT or internet route (agent event, SSM agent). */
const INTERFACE_SERVICES = ['ssm', 'ec2messages', 'ssmmessages', 'events'] as const;
const DEFAULT_ROUTE = '0.0.0.0/0';

/**
 * A refusal about one setting. Only the message crosses the Lambda boundary into the execution's
 * cause and the outcome message, so it starts with the field, as input errors do.
 */
const refusedAt = (field: string, message: string): UnderstudyError =>
  refused(`${field}: ${message}`, { field });

const parseInput = (raw: unknown): ExecutionInput => {
  const parsed = ExecutionInputSchema.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    const field = first ? issuePath(first.path, 'input') : 'input';
    throw new UnderstudyError(ErrorNames.InvalidInput, formatIssues(parsed.error, 'input').join('; '), {
      field,
    });
  }
  // The name becomes part of an SSM parameter name and an S3 key: hold it to the config's pattern.
  const name = TargetNameSchema.safeParse(parsed.data.target);
  if (!name.success) {
    throw invalidInput('input.target', name.error.issues[0]?.message ?? 'not a valid target name');
  }
  return parsed.data;
};

const loadTarget = (ssm: SSMClient, prefix: string, name: string): Promise<TargetConfig> =>
  loadTargetConfig(ssm, prefix, name, 'input.target');

/** The AMI to launch and the setting it came from, so a refusal of the image names that setting. */
interface ResolvedImage {
  readonly imageId: string;
  readonly field: 'input.imageId' | 'image.imageId' | 'image.ssmParameter';
}

const resolveImageId = async (
  ssm: SSMClient,
  input: ExecutionInput,
  target: TargetConfig,
): Promise<ResolvedImage> => {
  if (input.imageId) return { imageId: input.imageId, field: 'input.imageId' };
  if (target.image.imageId) return { imageId: target.image.imageId, field: 'image.imageId' };
  const name = target.image.ssmParameter;
  if (!name) throw refused(`target ${target.name} names no image (image.imageId or image.ssmParameter)`);
  const value = await parameterValue(ssm, name);
  if (value === undefined) {
    throw refusedAt(
      'image.ssmParameter',
      `image parameter ${name} (target ${target.name}) does not exist; publish the AMI id there or pass input.imageId`,
    );
  }
  if (!ImageIdSchema.safeParse(value).success) {
    throw refusedAt(
      'image.ssmParameter',
      `image parameter ${name} holds "${value.slice(0, 64)}", not an AMI id; publish an ami-... id there`,
    );
  }
  return { imageId: value, field: 'image.ssmParameter' };
};

const describeImage = async (ec2: EC2Client, { imageId, field }: ResolvedImage): Promise<Image> => {
  const missing = () =>
    refusedAt(
      field,
      `image ${imageId} does not exist in this region or is not shared with this account; check the AMI id`,
    );
  const out = await awsCall(
    'DescribeImages',
    () => ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] })),
    (error) =>
      hasCode(error, 'InvalidAMIID.NotFound', 'InvalidAMIID.Malformed', 'InvalidAMIID.Unavailable')
        ? missing()
        : undefined,
  );
  const image = out.Images?.[0];
  if (!image) throw missing();
  if (image.State !== 'available') {
    const why = image.StateReason?.Message ? ` (${image.StateReason.Message})` : '';
    throw refusedAt(
      field,
      `image ${imageId} is ${image.State ?? 'in an unknown state'}${why}, not available; wait for the build to finish or pick another image`,
    );
  }
  if (!image.Architecture || !image.RootDeviceName) {
    throw refusedAt(
      field,
      `image ${imageId} reports no architecture or root device name; it cannot be launched as a clone`,
    );
  }
  if (image.RootDeviceType && image.RootDeviceType !== 'ebs') {
    throw refusedAt(
      field,
      `image ${imageId} is instance-store backed; only EBS-backed images can replace the server`,
    );
  }
  return image;
};

const describeEip = async (ec2: EC2Client, target: TargetConfig) => {
  const out = await awsCall(
    'DescribeAddresses',
    () => ec2.send(new DescribeAddressesCommand({ AllocationIds: [target.allocationId] })),
    (error) =>
      hasCode(error, 'InvalidAllocationID.NotFound', 'InvalidAllocationID.Malformed')
        ? refusedAt(
            'allocationId',
            `Elastic IP ${target.allocationId} (target ${target.name}) does not exist in this region`,
          )
        : undefined,
  );
  const address = out.Addresses?.[0];
  if (!address?.PublicIp) {
    throw refusedAt('allocationId', `Elastic IP ${target.allocationId} does not exist in this region`);
  }
  if (!address.InstanceId) {
    throw refusedAt(
      'allocationId',
      `EIP not associated: Elastic IP ${target.allocationId} (${address.PublicIp}) is not associated with an instance; associate it with the running server first`,
    );
  }
  return { instanceId: address.InstanceId, publicIp: address.PublicIp, associationId: address.AssociationId };
};

const describeInstance = async (
  ec2: EC2Client,
  instanceId: string,
  allocationId: string,
): Promise<Instance> => {
  const gone = () =>
    refusedAt(
      'allocationId',
      `instance ${instanceId}, which holds Elastic IP ${allocationId}, cannot be described (not found)`,
    );
  const instance = await describeInstanceById(ec2, instanceId);
  if (!instance) throw gone();
  if (instance.State?.Name !== 'running') {
    throw refusedAt(
      'allocationId',
      `instance ${instanceId} behind Elastic IP ${allocationId} is ${instance.State?.Name ?? 'in an unknown state'}, not running; start it (or fix the EIP association) before replacing it`,
    );
  }
  if (!instance.ImageId || !instance.InstanceType || !instance.SubnetId || !instance.VpcId) {
    throw refused(`instance ${instanceId} reports no image, type, subnet or VPC; it cannot be cloned`);
  }
  return instance;
};

const describeInstanceType = async (ec2: EC2Client, instanceType: string): Promise<InstanceTypeInfo> => {
  const out = await awsCall('DescribeInstanceTypes', () =>
    ec2.send(new DescribeInstanceTypesCommand({ InstanceTypes: [instanceType as never] })),
  );
  const info = out.InstanceTypes?.[0];
  if (!info) throw refused(`instance type ${instanceType} is not offered in this region`);
  return info;
};

/** Refuses what a clone from an AMI cannot carry over: data disks, instance store, extra ENIs, IPv6. */
const checkShape = (instance: Instance, type: InstanceTypeInfo, target: TargetConfig): void => {
  const id = instance.InstanceId;
  const extraVolumes = (instance.BlockDeviceMappings ?? []).filter(
    (m) => m.DeviceName !== instance.RootDeviceName,
  );
  if (extraVolumes.length > 0 && target.dataVolumes !== 'fresh') {
    const list = extraVolumes.map((m) => `${m.DeviceName} ${m.Ebs?.VolumeId ?? ''}`.trim()).join(', ');
    throw refused(
      `instance ${id} has EBS volumes beyond its root device (${list}); their data would not follow to the new box. Move the data off the server, or set "dataVolumes": "fresh" on target ${target.name} if the new box may start without them`,
      { field: 'dataVolumes' },
    );
  }
  // Ephemeral mappings in the image are ignored on types without instance store; the type decides.
  if (type.InstanceStorageSupported && target.dataVolumes !== 'fresh') {
    throw refused(
      `instance ${id} (${instance.InstanceType}) has instance-store volumes, whose contents do not survive a replacement; set "dataVolumes": "fresh" on target ${target.name} if the new box may start with empty ones`,
      { field: 'dataVolumes' },
    );
  }
  const enis = instance.NetworkInterfaces ?? [];
  if (enis.length > 1) {
    throw refused(
      `instance ${id} has ${enis.length} network interfaces (${enis.map((e) => e.NetworkInterfaceId).join(', ')}); Understudy clones single-interface servers only: detach the extra interfaces first`,
    );
  }
  const ipv6 = [
    instance.Ipv6Address,
    ...enis.flatMap((e) => (e.Ipv6Addresses ?? []).map((a) => a.Ipv6Address)),
  ].filter((a): a is string => typeof a === 'string' && a.length > 0);
  if (ipv6.length > 0) {
    throw refused(
      `instance ${id} has IPv6 addresses (${ipv6.join(', ')}); a clone would get different ones and the Elastic IP does not cover IPv6. Remove them, or replace this server by hand`,
    );
  }
};

const checkArchitecture = (
  image: Image,
  source: ResolvedImage,
  type: InstanceTypeInfo,
  instanceType: string,
): void => {
  const supported = type.ProcessorInfo?.SupportedArchitectures ?? [];
  if (!image.Architecture || !supported.includes(image.Architecture as never)) {
    throw refusedAt(
      source.field,
      `image ${image.ImageId} is built for ${image.Architecture}, but instance type ${instanceType} supports ${supported.join(', ') || 'no known architecture'}; build the image for ${supported[0] ?? 'that type'} or change the server's type`,
    );
  }
};

const routeTableFor = async (
  ec2: EC2Client,
  subnetId: string,
  vpcId: string,
): Promise<RouteTable | undefined> => {
  const own = await awsCall('DescribeRouteTables', () =>
    ec2.send(
      new DescribeRouteTablesCommand({ Filters: [{ Name: 'association.subnet-id', Values: [subnetId] }] }),
    ),
  );
  if (own.RouteTables?.[0]) return own.RouteTables[0];
  // A subnet with no explicit association uses its VPC's main route table.
  const main = await awsCall('DescribeRouteTables', () =>
    ec2.send(
      new DescribeRouteTablesCommand({
        Filters: [
          { Name: 'vpc-id', Values: [vpcId] },
          { Name: 'association.main', Values: ['true'] },
        ],
      }),
    ),
  );
  return main.RouteTables?.[0];
};

const vpcEndpoints = async (ec2: EC2Client, vpcId: string): Promise<VpcEndpoint[]> => {
  const all: VpcEndpoint[] = [];
  let token: string | undefined;
  do {
    const out = await awsCall('DescribeVpcEndpoints', () =>
      ec2.send(
        new DescribeVpcEndpointsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpcId] }], NextToken: token }),
      ),
    );
    all.push(...(out.VpcEndpoints ?? []));
    token = out.NextToken;
  } while (token);
  return all;
};

// The API documents "Available" but sends "available" on the wire; compare without case.
const isAvailable = (endpoint: VpcEndpoint) => (endpoint.State ?? '').toLowerCase() === 'available';

/**
 * Design §2.2: the candidate must reach EventBridge, SSM and S3 while it has no Elastic IP. A NAT (or
 * another routed egress) is enough; an internet gateway needs a public IP on the candidate; otherwise
 * VPC endpoints must cover every service it talks to.
 */
const checkEgress = async (
  ec2: EC2Client,
  instance: Instance,
): Promise<{ needsPublicIp: boolean; via: string }> => {
  const subnetId = instance.SubnetId as string;
  const vpcId = instance.VpcId as string;
  const table = await routeTableFor(ec2, subnetId, vpcId);
  const route = table?.Routes?.find(
    (r) => r.DestinationCidrBlock === DEFAULT_ROUTE && r.State !== 'blackhole',
  );
  if (route?.NatGatewayId) return { needsPublicIp: false, via: route.NatGatewayId };
  if (route?.GatewayId?.startsWith('igw-')) return { needsPublicIp: true, via: route.GatewayId };
  // A NAT instance or a transit gateway to a central egress VPC also carries traffic out.
  const routed = route?.TransitGatewayId ?? route?.InstanceId ?? route?.NetworkInterfaceId;
  if (routed) return { needsPublicIp: false, via: routed };

  const region = await ec2.config.region();
  const endpoints = (await vpcEndpoints(ec2, vpcId)).filter(isAvailable);
  const missing: string[] = [];
  for (const service of INTERFACE_SERVICES) {
    const name = `com.amazonaws.${region}.${service}`;
    const found = endpoints.some(
      (e) => e.ServiceName === name && e.VpcEndpointType === 'Interface' && e.PrivateDnsEnabled === true,
    );
    if (!found) missing.push(name);
  }
  const s3 = `com.amazonaws.${region}.s3`;
  const s3Reachable = endpoints.some(
    (e) =>
      e.ServiceName === s3 &&
      ((e.VpcEndpointType === 'Gateway' &&
        table?.RouteTableId !== undefined &&
        e.RouteTableIds?.includes(table.RouteTableId)) ||
        (e.VpcEndpointType === 'Interface' && e.PrivateDnsEnabled === true)),
  );
  if (!s3Reachable) missing.push(s3);
  if (missing.length > 0) {
    throw refused(
      `subnet ${subnetId} has no route to EventBridge/SSM/S3 (no NAT, no internet gateway, missing endpoints: ${missing.join(', ')}); add a NAT gateway or these VPC endpoints (interface endpoints with private DNS, S3 gateway on route table ${table?.RouteTableId ?? 'main'})`,
    );
  }
  return { needsPublicIp: false, via: 'vpc-endpoints' };
};

const tagValue = (instance: Instance, key: string) => instance.Tags?.find((t) => t.Key === key)?.Value;

/** The baseline request through the EIP, kept whole: the TLS decision needs the certificate it saw. */
const baselineProbe = (target: TargetConfig, publicIp: string): Promise<ProbeResponse> =>
  httpGet({
    address: publicIp,
    scheme: schemeFor(target),
    domain: target.domain,
    path: target.health.path,
    timeoutMs: target.health.requestTimeoutSeconds * 1000,
  });

/**
 * Whether the old box serves a certificate worth restoring: the handshake verified the chain and the
 * domain (otherwise the request fails), and it stays valid for at least the margin the probe demands
 * after the switch. The app's status does not matter here: a broken app can still serve a good
 * certificate.
 */
export const servedCertificate = (
  target: TargetConfig,
  response: ProbeResponse,
): { readonly valid: boolean; readonly detail: string } => {
  if (!response.ok) {
    // TLS errors from OpenSSL may span lines; the refusal is one line.
    return { valid: false, detail: (response.error ?? 'no answer over HTTPS').replace(/\s+/g, ' ').trim() };
  }
  const days = response.certificateDaysLeft;
  if (days === undefined) return { valid: false, detail: 'no certificate seen in the HTTPS answer' };
  const minimum = target.health.certificateMinDaysLeft;
  if (days < minimum) {
    return {
      valid: false,
      detail: `its certificate expires in ${days.toFixed(1)} days, within health.certificateMinDaysLeft (${minimum})`,
    };
  }
  return { valid: true, detail: `certificate valid for ${days.toFixed(1)} more days` };
};

const CHOOSE_MODE =
  'set tls.mode to "dns-01" (with email and hostedZoneId) or "http-01" (with email) to request a new certificate, or "none" for plain HTTP, in understudy.config.json and redeploy';

/**
 * The mode every later step sees. Left out, it is `restore` when the old box serves a valid certificate
 * for the domain; `restore` (chosen or defaulted) is refused when there is nothing valid to restore,
 * since the new box would then fail its local TLS check after a wasted launch.
 */
export const effectiveTlsMode = (
  target: TargetConfig,
  oldInstanceId: string,
  baseline: ProbeResponse,
): TlsMode => {
  const mode = target.tls.mode;
  if (mode !== undefined && mode !== 'restore') return mode;
  const served = servedCertificate(target, baseline);
  if (served.valid) return 'restore';
  const seen = `the old box ${oldInstanceId} does not serve a valid certificate for ${target.domain} (${served.detail})`;
  throw refused(
    mode === undefined
      ? `tls.mode is not set and ${seen}, so there is nothing to restore: ${CHOOSE_MODE}`
      : `tls.mode is "restore" but ${seen}: renew it on the old box (certbot renew) and retry, or ${CHOOSE_MODE}`,
    { field: 'tls.mode' },
  );
};

/**
 * The Terraform state must name the server behind the EIP at `instanceAddress`, or the replacement
 * could not be reconciled afterwards: refused before anything is launched. A plain read, without lock
 * or digest (like `terraform state list`): Reconcile reads it again under the locks before it writes.
 * A state that an earlier run failed to reconcile is refused until it is, so drift never piles up.
 */
const checkTerraformState = async (
  clients: PreflightClients,
  terraform: TerraformConfig,
  oldInstanceId: string,
): Promise<void> => {
  let state: StateV4;
  try {
    const { bucket, key } = parseS3StateUrl(terraform.state);
    const objectKey = stateObjectKey({ ...terraform, bucket, key, lockTimeoutSeconds: 0 });
    const out = await clients
      .stateClients(terraform.region)
      .s3.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey }));
    const bytes = (await out.Body?.transformToByteArray()) ?? new Uint8Array();
    state = readStateUtf8(bytes, `the state s3://${bucket}/${objectKey}`);
  } catch (error) {
    if (error instanceof TfStateError) throw refusedAt('terraform.state', error.message);
    rethrowIfTransient(error, 'reading the Terraform state');
    throw refusedAt(
      'terraform.state',
      `the state could not be read (${describeAwsError(error)}): check the bucket, key, workspace and region, and that the stack may read them`,
    );
  }
  const address = terraform.instanceAddress;
  const found = findInstance(state, parseResourceAddress(address));
  if (!found) {
    throw refusedAt(
      'terraform.instanceAddress',
      `${address} is not in the state ${terraform.state}: set the address of the server's aws_instance (terraform state list shows them)`,
    );
  }
  const named = found.instance.attributes?.id;
  if (named !== oldInstanceId) {
    throw refusedAt(
      'terraform.instanceAddress',
      `the state's ${address} is ${typeof named === 'string' ? named : 'no instance'}, not ${oldInstanceId}, the server behind the Elastic IP: point the address at that server's resource, or bring the state in line first (npx understudy tfstate reconcile)`,
    );
  }
};

/**
 * restore packs the certificate on the old box through SSM Run Command: without an Online agent there,
 * every run would launch and boot a box only to roll back at the pack. Refused up front instead.
 */
const assertOldBoxReachable = async (ssm: SSMClient, oldInstanceId: string): Promise<void> => {
  try {
    await assertAgentOnline(ssm, oldInstanceId);
  } catch (error) {
    if (!isUnderstudyError(error, ErrorNames.AgentNotOnline)) throw error;
    throw refused(
      `tls.mode "restore" reads the certificate on the old box through SSM Run Command, but ${error.message}. ` +
        `Give ${oldInstanceId}'s instance role AmazonSSMManagedInstanceCore (and a route to SSM), or ${CHOOSE_MODE}`,
      { field: 'tls.mode' },
    );
  }
};

/** Let's Encrypt: 5 certificates per exact set of names per 7 days, with no override. */
export const ISSUANCE_LIMIT = 5;
export const ISSUANCE_WINDOW_MS = 7 * 86_400_000;
/** Bounds the listing of one target's records (1,000 keys a page). */
const MAX_RECORD_PAGES = 100;

/**
 * The part of a run record (written by Finish) that says certbot was sent to ask for a certificate
 * (`requested`; records of earlier releases say `issued`). Counting requests rather than confirmed
 * issuances errs on the safe side of Let's Encrypt's limit: a command that failed after certbot may
 * still have obtained one.
 */
const IssuanceRecordSchema = z.object({
  certificate: z
    .object({
      requested: z.literal(true).optional(),
      issued: z.literal(true).optional(),
      names: z.array(z.string()),
      at: z.string(),
    })
    .refine((c) => c.requested === true || c.issued === true),
});

const sameNames = (a: readonly string[], b: readonly string[]): boolean => {
  const left = [...new Set(a)].sort();
  const right = [...new Set(b)].sort();
  return left.length === right.length && left.every((name, i) => name === right[i]);
};

/**
 * Issuance times (epoch ms, ascending) of certificates for exactly `names` that the target's run
 * records show within the window ending at `now`. Only records written within the window are read:
 * Finish writes a record after the issuance it reports, so an older record cannot hold a recent one.
 */
export const recentIssuances = async (
  s3: S3Client,
  bucket: string,
  target: string,
  names: readonly string[],
  now: number,
): Promise<number[]> => {
  const since = now - ISSUANCE_WINDOW_MS;
  // The prefix of runKeys.record(target, <execution>).
  const prefix = `runs/${target}/`;
  const recent: string[] = [];
  let token: string | undefined;
  for (let page = 0; page < MAX_RECORD_PAGES; page += 1) {
    const out = await awsCall('ListObjectsV2', () =>
      s3.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: prefix,
          ...(token ? { ContinuationToken: token } : {}),
        }),
      ),
    );
    for (const object of out.Contents ?? []) {
      const modified = object.LastModified?.getTime();
      if (object.Key?.endsWith('.json') && modified !== undefined && modified >= since)
        recent.push(object.Key);
    }
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
    if (!token) break;
  }

  const times: number[] = [];
  for (const key of recent) {
    let text: string;
    try {
      const out = await awsCall('GetObject', () =>
        s3.send(new GetObjectCommand({ Bucket: bucket, Key: key })),
      );
      text = (await out.Body?.transformToString()) ?? '';
    } catch (error) {
      // Deleted between the listing and the read: it reports nothing any more.
      if (isNotFound(error)) continue;
      throw error;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      logger.warn('skipping a run record that is not JSON', { key });
      continue;
    }
    const record = IssuanceRecordSchema.safeParse(parsed);
    if (!record.success || !sameNames(record.data.certificate.names, names)) continue;
    const at = Date.parse(record.data.certificate.at);
    if (Number.isFinite(at) && at >= since && at <= now) times.push(at);
  }
  return times.sort((a, b) => a - b);
};

/**
 * Refuses an http-01 or dns-01 run whose issuance would be the sixth for the same names within 7 days:
 * Let's Encrypt would refuse it anyway, after the new box was launched (dns-01) or after the EIP moved
 * (http-01). Names when enough of the counted issuances leave the window for one more to fit.
 */
export const guardIssuanceRate = async (
  s3: S3Client,
  bucket: string,
  target: TargetConfig,
  now: number,
): Promise<void> => {
  const mode = target.tls.mode;
  if (mode !== 'http-01' && mode !== 'dns-01') return;
  const names = [target.domain];
  const times = await recentIssuances(s3, bucket, target.name, names, now);
  if (times.length < ISSUANCE_LIMIT) return;
  // The window holds at most 4 once every issuance up to this one has left it.
  const frees = (times[times.length - ISSUANCE_LIMIT] as number) + ISSUANCE_WINDOW_MS;
  throw refused(
    `tls.mode "${mode}" would request a certificate for ${names.join(', ')}, but the run records of target ${target.name} show ${times.length} certificates requested for exactly these names in the last 7 days; ` +
      `Let's Encrypt allows ${ISSUANCE_LIMIT} per week per identical set of names. The window frees up at ${new Date(frees).toISOString()}: retry after that, ` +
      'or set tls.mode to "restore" while the old box still serves a valid certificate',
    { field: 'tls.mode' },
  );
};

/** Runs every check, then (for a real run) takes the lock and adopts the box. */
export const preflight = (
  clients: PreflightClients,
  env: PreflightEnv,
  event: PreflightEvent,
): Promise<Plan> =>
  runPreflight(clients, env, event).catch(
    failAs(ErrorNames.PreflightRefused, 'preflight could not check the target'),
  );

const runPreflight = async (
  clients: PreflightClients,
  env: PreflightEnv,
  event: PreflightEvent,
): Promise<Plan> => {
  const input = parseInput(event.input);
  const execution: ExecutionContext = event.execution;
  correlate({ target: input.target, execution: execution.name });

  const { ec2, ssm, s3, sns } = clients;
  if (input.action === 'rollback') {
    return planRollback(clients, env, input, execution, {
      loadTarget: () => loadTarget(ssm, env.PARAMETER_PREFIX, input.target),
      describeEip: (target) => describeEip(ec2, target),
      baselineProbe,
      checkTerraformState: (target, servingId) =>
        target.terraform ? checkTerraformState(clients, target.terraform, servingId) : Promise.resolve(),
    });
  }

  const configured = await loadTarget(ssm, env.PARAMETER_PREFIX, input.target);
  // The time the trigger started the run, not this attempt's: a retried preflight decides the same way.
  const started = Date.parse(execution.startTime);
  checkMaintenanceWindow(configured, input, new Date(Number.isNaN(started) ? Date.now() : started));
  const source = await resolveImageId(ssm, input, configured);
  const { imageId } = source;
  const image = await describeImage(ec2, source);
  const eip = await describeEip(ec2, configured);
  const instance = await describeInstance(ec2, eip.instanceId, configured.allocationId);
  correlate({ instance: eip.instanceId });
  const instanceType = instance.InstanceType as string;
  const type = await describeInstanceType(ec2, instanceType);
  checkArchitecture(image, source, type, instanceType);
  checkShape(instance, type, configured);

  const owner = tagValue(instance, Tags.target);
  if (owner !== undefined && owner !== configured.name) {
    throw refusedAt(
      'allocationId',
      `instance ${eip.instanceId} is tagged ${Tags.target}=${owner}: it belongs to another target; two targets cannot share one server`,
    );
  }

  const egress = await checkEgress(ec2, instance);
  const probed = await baselineProbe(configured, eip.publicIp);
  const baseline = judge(configured, probed);
  const target: TargetConfig = {
    ...configured,
    tls: { ...configured.tls, mode: effectiveTlsMode(configured, eip.instanceId, probed) },
  };
  logger.info('preflight checks passed', {
    imageId,
    egress: egress.via,
    baselineHealthy: baseline.healthy,
    tlsMode: target.tls.mode,
  });

  const plan: Plan = {
    action: 'replace',
    target,
    image: {
      imageId,
      architecture: image.Architecture as string,
      rootDeviceName: image.RootDeviceName as string,
    },
    ...servingPlanFields(instance, eip, target.allocationId, baseline),
    needsPublicIp: egress.needsPublicIp,
    ...(input.reason ? { reason: input.reason } : {}),
  };

  const lockKey = runKeys.lock(target.name);
  // Self-healing replaces a broken box even when it runs the image already: that is its point.
  if (instance.ImageId === imageId && input.trigger !== 'selfHeal') {
    if (!input.dryRun) await refuseIfAnotherRunHolds(s3, env.RUNS_BUCKET, lockKey, target.name, execution);
    return { ...plan, action: 'no-op' };
  }

  // Read-only, so a dry run reports a refusal the real run would meet.
  await guardIssuanceRate(s3, env.RUNS_BUCKET, target, Date.now());
  if (target.tls.mode === 'restore') await assertOldBoxReachable(ssm, eip.instanceId);
  if (target.terraform) await checkTerraformState(clients, target.terraform, eip.instanceId);

  if (input.dryRun) {
    const holder = await lockHolder(s3, env.RUNS_BUCKET, lockKey);
    return { ...plan, action: 'dry-run', ...(holder ? { lockHeldBy: holder } : {}) };
  }

  const lock = await acquireLock(s3, {
    bucket: env.RUNS_BUCKET,
    key: lockKey,
    owner: execution.arn,
    executionName: execution.name,
    target: target.name,
    leaseSeconds: LOCK_LEASE_SECONDS,
  });
  try {
    if (owner === undefined) {
      await awsCall('CreateTags', () =>
        ec2.send(
          new CreateTagsCommand({
            Resources: [eip.instanceId],
            Tags: [{ Key: Tags.target, Value: target.name }],
          }),
        ),
      );
    }
  } catch (error) {
    // Finish cannot release a lock it never saw (no plan when preflight fails): give it back here.
    await releaseQuietly(s3, lock);
    throw error;
  }
  const leftovers = lock.tookOverFrom ? await parkLeftCandidates(ec2, target, eip.instanceId) : [];
  await announce(sns, env.TOPIC_ARN, plan, lock, execution, leftovers);
  await putPhaseEvent(phaseBus(clients.events, env.EVENT_BUS_NAME), 'started', {
    target: plan.target.name,
    execution: execution.name,
    summary: `replacing ${plan.old.instanceId} with a clone on ${plan.image.imageId}`,
    action: 'replace',
    oldInstanceId: plan.old.instanceId,
    imageId: plan.image.imageId,
    ...(plan.reason ? { reason: plan.reason } : {}),
  });
  return { ...plan, lock };
};

/**
 * The candidates a run that died holding the lock left behind: still labelled candidate, not serving.
 * Only the lock's holder may have a candidate, so after a takeover they belong to nobody and would
 * break "one candidate per target": they are parked as Rollback parks a failed candidate (stopped or
 * terminated per `rollback.failedCandidate`, tagged failed) before this run launches its own.
 */
const parkLeftCandidates = async (
  ec2: EC2Client,
  target: TargetConfig,
  servingId: string,
): Promise<{ instanceId: string; action: ParkAction }[]> => {
  const left = (
    await describeTargetBoxes(ec2, target.name, 'candidate', ['pending', 'running', 'stopping', 'stopped'])
  ).filter((i) => i.InstanceId !== servingId);
  const parked: { instanceId: string; action: ParkAction }[] = [];
  for (const instance of left) {
    parked.push({
      instanceId: instance.InstanceId as string,
      action: await parkCandidate(ec2, instance, target.rollback.failedCandidate),
    });
  }
  return parked;
};

/**
 * A run in its bake has already moved the EIP to the image asked for, and may still move it back: until
 * it ends, "nothing to do" is not known, so a second run is refused naming it, as a replacement would be.
 */
const refuseIfAnotherRunHolds = async (
  s3: S3Client,
  bucket: string,
  key: string,
  target: string,
  execution: ExecutionContext,
): Promise<void> => {
  const held = await readLock(s3, bucket, key);
  if (!held || held.body.owner === execution.arn || Date.parse(held.body.expiresAt) <= Date.now()) return;
  throw new UnderstudyError(
    ErrorNames.LockHeld,
    `target ${target} is locked by execution ${held.body.executionName} (${held.body.owner}) until ${held.body.expiresAt}; the box may already run the image, but that run has not ended: wait for it to finish`,
  );
};

const releaseQuietly = async (s3: S3Client, lock: Lock): Promise<void> => {
  try {
    await releaseLock(s3, lock);
  } catch (error) {
    logger.warn('could not release the lock after a failed adoption', {
      key: lock.key,
      error: describeAwsError(error),
    });
  }
};

/** Progress messages are informative: a failed publish must not fail (and unlock) a run that is ready. */
const announce = async (
  sns: SNSClient,
  topicArn: string,
  plan: Plan,
  lock: Lock,
  execution: ExecutionContext,
  leftovers: readonly { instanceId: string; action: ParkAction }[],
) => {
  const base = { target: plan.target.name, execution: execution.name };
  await publishQuietly(
    sns,
    topicArn,
    {
      ...base,
      kind: 'progress',
      event: 'started',
      summary: `replacing ${plan.old.instanceId} (${plan.old.imageId}) with a clone on ${plan.image.imageId}`,
      details: {
        oldInstanceId: plan.old.instanceId,
        imageId: plan.image.imageId,
        baselineHealthy: plan.baseline.healthy,
        ...(plan.reason ? { reason: plan.reason } : {}),
      },
    },
    'the start notification',
  );
  if (lock.tookOverFrom) {
    await publishQuietly(
      sns,
      topicArn,
      {
        ...base,
        kind: 'warning',
        event: 'lock-taken-over',
        summary:
          `took over the expired lock of ${lock.tookOverFrom}; that run died without releasing it` +
          (leftovers.length > 0
            ? `; its ${leftovers.map((c) => `candidate ${c.instanceId} was ${c.action === 'terminated' ? 'terminated' : 'stopped'}`).join(', ')} and tagged failed`
            : ''),
        details: {
          previousOwner: lock.tookOverFrom,
          ...(leftovers.length > 0 ? { leftCandidates: leftovers } : {}),
        },
      },
      'the lock takeover warning',
    );
  }
};
