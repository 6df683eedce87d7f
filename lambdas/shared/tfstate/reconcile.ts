import type { Address, Instance, InstanceNetworkInterface, Volume } from '@aws-sdk/client-ec2';
import { parseResourceAddress } from './address';
import { tfStateError } from './errors';
import { isRawNumber } from './json';
import { findInstance, instanceAddressOf } from './lookup';
import {
  compareStrings,
  type InstanceV4,
  type JsonObject,
  type JsonValue,
  nextSerial,
  type OutputV4,
  type ResourceV4,
  type StateV4,
  serialText,
} from './state';

/**
 * Reconcile (design §4): after Understudy replaced the server behind an Elastic IP, make the state
 * describe the new instance the way the provider's own Read would, so the next `terraform plan` is clean.
 *
 * Only what the provider reads from DescribeInstances / DescribeAddresses / DescribeVolumes is written;
 * attributes that configuration owns (design §4: tags, user_data, key_name, timeouts…) keep the old
 * state's values whatever the API reports. Values are replaced in place: an attribute the old object
 * lacks is never added and key order never changes, so the written file differs from the old one only
 * on the lines whose value changed. A taint on the replaced instance is cleared (see below).
 * Objects nobody changed are reused as they are (states can be tens of megabytes).
 */

export interface ReconcileInput {
  /** Terraform address of the `aws_instance` (e.g. `module.app.aws_instance.this[0]`). */
  readonly instanceAddress: string;
  /** The new instance as DescribeInstances returns it. */
  readonly instance: Instance;
  /** The Elastic IP(s) as DescribeAddresses returns them, after the switch. */
  readonly addresses: readonly Address[];
  /** The new instance's volumes (DescribeVolumes): without them only volume ids are refreshed. */
  readonly volumes?: readonly Volume[];
  /** The instance id the state must hold (`--expect-instance`): guards against reconciling the wrong state. */
  readonly expectInstanceId?: string;
}

export interface AttributeChange {
  /** `aws_eip.web`, `module.app.aws_instance.this[0]`, or `output.<name>` for a root output. */
  readonly address: string;
  /** Inside the object: `private_ip`, `root_block_device[0].volume_id`, `identity.id`, `value["ids"][0]`. */
  readonly path: string;
  readonly before: unknown;
  readonly after: unknown;
  /** A sensitive value: `before` and `after` hold the placeholder `(sensitive)`, never the value. */
  readonly sensitive?: boolean;
}

export interface ReconcileReport {
  readonly instanceAddress: string;
  readonly oldInstanceId: string;
  readonly newInstanceId: string;
  readonly alreadyReconciled: boolean;
  readonly serialBefore: string;
  readonly serialAfter: string;
  readonly changes: readonly AttributeChange[];
  /** The old instance's id, ARN, addresses, DNS names, ENI and association ids that were replaced. */
  readonly oldValues: readonly string[];
  /**
   * Other objects whose attributes name one of `oldValues` (an alarm dimension, a DNS record); the
   * next `terraform apply` updates them.
   */
  readonly stillMentioning: readonly { readonly address: string; readonly paths: readonly string[] }[];
}

export interface ReconcileResult {
  readonly changed: boolean;
  readonly state: StateV4;
  readonly report: ReconcileReport;
}

const SENSITIVE = '(sensitive)';

type Updates = Readonly<Record<string, JsonValue | undefined>>;
type Record_ = (path: string, before: JsonValue | undefined, after: JsonValue) => void;

const isObject = (value: JsonValue | undefined): value is JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && !isRawNumber(value);

const sameJson = (a: JsonValue | undefined, b: JsonValue | undefined): boolean => {
  if (a === b) return true;
  if (a === undefined || b === undefined || a === null || b === null) return false;
  if (isRawNumber(a) || isRawNumber(b)) {
    const text = (v: JsonValue) => (isRawNumber(v) ? v.rawJSON : JSON.stringify(v));
    return text(a) === text(b);
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, i) => sameJson(item, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    if (keys.length !== Object.keys(b).length) return false;
    return keys.every((key) => Object.hasOwn(b, key) && sameJson(a[key], b[key]));
  }
  return false;
};

/**
 * `old` with the given values replaced, for keys `old` already has; `undefined` means "keep". Returns
 * `old` itself when nothing differs, so unchanged objects stay shared with the input state.
 */
const patch = (old: JsonObject, updates: Updates, record: Record_, prefix = ''): JsonObject => {
  let next: JsonObject | undefined;
  for (const [key, value] of Object.entries(updates)) {
    if (value === undefined || !Object.hasOwn(old, key) || sameJson(old[key], value)) continue;
    next ??= { ...old };
    next[key] = value;
    record(`${prefix}${key}`, old[key], value);
  }
  return next ?? old;
};

/** Patches the elements of a nested block list (`root_block_device`, `cpu_options`…), element by element. */
const patchBlocks = (
  attributes: JsonObject,
  key: string,
  updatesFor: (element: JsonObject, index: number) => Updates | undefined,
  record: Record_,
): JsonObject => {
  const list = attributes[key];
  if (!Array.isArray(list)) return attributes;
  let nextList: JsonValue[] | undefined;
  list.forEach((element, index) => {
    if (!isObject(element)) return;
    const updates = updatesFor(element, index);
    if (!updates) return;
    const patched = patch(element, updates, record, `${key}[${index}].`);
    if (patched === element) return;
    nextList ??= [...list];
    nextList[index] = patched;
  });
  return nextList ? { ...attributes, [key]: nextList } : attributes;
};

const sortedSet = (values: readonly (string | undefined)[]): string[] =>
  // go-cty writes a set of strings in lexical order.
  [...new Set(values.filter((v): v is string => typeof v === 'string' && v !== ''))].sort(compareStrings);

const stringAt = (object: JsonObject, key: string): string | undefined => {
  const value = object[key];
  return typeof value === 'string' ? value : undefined;
};

/** `arn:<partition>:ec2:<region>:<account>:instance/<id>`, partition/region/account kept from the old ARN. */
const instanceArn = (oldArn: string | undefined, newId: string): string | undefined => {
  const parts = oldArn?.split(':');
  if (parts?.length !== 6 || !parts[5]?.startsWith('instance/')) return undefined;
  return [...parts.slice(0, 5), `instance/${newId}`].join(':');
};

const arnRegion = (arn: string | undefined): string | undefined => {
  const region = arn?.split(':')[3];
  return region ? region : undefined;
};

/** The provider's `PrivateDNSNameForIP` / `PublicDNSNameForIP`: names by formula, not from the API. */
const privateDnsFor = (ip: string, region: string): string =>
  `ip-${ip.replaceAll('.', '-')}.${region === 'us-east-1' ? 'ec2.internal' : `${region}.compute.internal`}`;
const publicDnsFor = (ip: string, region: string): string =>
  `ec2-${ip.replaceAll('.', '-')}.${region === 'us-east-1' ? 'compute-1' : `${region}.compute`}.amazonaws.com`;

const primaryEni = (api: Instance): InstanceNetworkInterface | undefined => {
  const enis = api.NetworkInterfaces ?? [];
  return enis.find((eni) => eni.Attachment?.DeviceIndex === 0) ?? (enis.length === 1 ? enis[0] : undefined);
};

const volumeUpdates = (volume: Volume | undefined): Updates =>
  volume
    ? {
        volume_size: volume.Size,
        volume_type: volume.VolumeType,
        iops: volume.Iops ?? 0,
        throughput: volume.Throughput ?? 0,
        encrypted: volume.Encrypted,
        kms_key_id: volume.KmsKeyId ?? '',
      }
    : {};

/** The `aws_instance` attributes the provider's Read takes from the API, for the new instance. */
const reconcileInstanceAttributes = (
  old: JsonObject,
  api: Instance,
  newId: string,
  volumes: ReadonlyMap<string, Volume>,
  record: Record_,
): JsonObject => {
  const eni = primaryEni(api);
  const placement = api.Placement;
  const groups = api.SecurityGroups ?? eni?.Groups;
  const hasIds = (key: string) => Array.isArray(old[key]) && (old[key] as JsonValue[]).length > 0;
  const monitoring = api.Monitoring?.State;
  const profileArn = api.IamInstanceProfile?.Arn;
  let next = patch(
    old,
    {
      id: newId,
      arn: instanceArn(stringAt(old, 'arn'), newId),
      ami: api.ImageId,
      instance_type: api.InstanceType,
      instance_state: api.State?.Name,
      instance_lifecycle: api.InstanceLifecycle ?? '',
      spot_instance_request_id: api.SpotInstanceRequestId ?? '',
      outpost_arn: api.OutpostArn ?? '',
      availability_zone: placement?.AvailabilityZone,
      tenancy: placement?.Tenancy,
      placement_group: placement ? (placement.GroupName ?? '') : undefined,
      placement_group_id: placement ? (placement.GroupId ?? '') : undefined,
      placement_partition_number: placement ? (placement.PartitionNumber ?? 0) : undefined,
      host_id: placement ? (placement.HostId ?? '') : undefined,
      host_resource_group_arn: placement?.HostResourceGroupArn,
      subnet_id: api.SubnetId,
      private_ip: api.PrivateIpAddress,
      private_dns: api.PrivateDnsName,
      public_ip: api.PublicIpAddress ?? '',
      public_dns: api.PublicDnsName ?? '',
      primary_network_interface_id: eni?.NetworkInterfaceId,
      source_dest_check: eni?.SourceDestCheck ?? api.SourceDestCheck,
      associate_public_ip_address: eni ? eni.Association !== undefined : undefined,
      secondary_private_ips: eni?.PrivateIpAddresses
        ? sortedSet(eni.PrivateIpAddresses.filter((ip) => !ip.Primary).map((ip) => ip.PrivateIpAddress))
        : undefined,
      ipv6_addresses: eni?.Ipv6Addresses
        ? eni.Ipv6Addresses.map((ip) => ip.Ipv6Address).filter((ip): ip is string => !!ip)
        : undefined,
      ipv6_address_count: eni?.Ipv6Addresses ? eni.Ipv6Addresses.length : undefined,
      // IDs in any VPC; names only where the old state had them (default VPC or no subnet).
      vpc_security_group_ids:
        groups && (api.SubnetId || hasIds('vpc_security_group_ids'))
          ? sortedSet(groups.map((g) => g.GroupId))
          : undefined,
      security_groups:
        groups && hasIds('security_groups') ? sortedSet(groups.map((g) => g.GroupName)) : undefined,
      ebs_optimized: api.EbsOptimized,
      monitoring: monitoring ? monitoring === 'enabled' || monitoring === 'pending' : undefined,
      iam_instance_profile: profileArn ? (profileArn.split('/').pop() ?? '') : '',
      hibernation: api.HibernationOptions?.Configured,
      cpu_core_count: api.CpuOptions?.CoreCount,
      cpu_threads_per_core: api.CpuOptions?.ThreadsPerCore,
    },
    record,
  );
  next = patchBlocks(
    next,
    'cpu_options',
    () =>
      api.CpuOptions && {
        core_count: api.CpuOptions.CoreCount,
        threads_per_core: api.CpuOptions.ThreadsPerCore,
        amd_sev_snp: api.CpuOptions.AmdSevSnp ?? '',
      },
    record,
  );
  next = patchBlocks(
    next,
    'metadata_options',
    () =>
      api.MetadataOptions && {
        http_endpoint: api.MetadataOptions.HttpEndpoint,
        http_protocol_ipv6: api.MetadataOptions.HttpProtocolIpv6,
        http_put_response_hop_limit: api.MetadataOptions.HttpPutResponseHopLimit,
        http_tokens: api.MetadataOptions.HttpTokens,
        instance_metadata_tags: api.MetadataOptions.InstanceMetadataTags,
      },
    record,
  );
  next = patchBlocks(
    next,
    'maintenance_options',
    () => api.MaintenanceOptions && { auto_recovery: api.MaintenanceOptions.AutoRecovery },
    record,
  );
  next = patchBlocks(
    next,
    'enclave_options',
    () => api.EnclaveOptions && { enabled: api.EnclaveOptions.Enabled },
    record,
  );
  next = patchBlocks(
    next,
    'capacity_reservation_specification',
    () =>
      api.CapacityReservationSpecification && {
        capacity_reservation_preference: api.CapacityReservationSpecification.CapacityReservationPreference,
      },
    record,
  );
  next = patchBlocks(
    next,
    'private_dns_name_options',
    () =>
      api.PrivateDnsNameOptions && {
        hostname_type: api.PrivateDnsNameOptions.HostnameType,
        enable_resource_name_dns_a_record: api.PrivateDnsNameOptions.EnableResourceNameDnsARecord,
        enable_resource_name_dns_aaaa_record: api.PrivateDnsNameOptions.EnableResourceNameDnsAAAARecord,
      },
    record,
  );
  next = patchBlocks(
    next,
    'primary_network_interface',
    () =>
      eni && {
        network_interface_id: eni.NetworkInterfaceId,
        delete_on_termination: eni.Attachment?.DeleteOnTermination,
      },
    record,
  );
  next = patchBlocks(
    next,
    'network_interface',
    (element) => {
      const match = api.NetworkInterfaces?.find((n) => n.Attachment?.DeviceIndex === element.device_index);
      return (
        match && {
          network_interface_id: match.NetworkInterfaceId,
          delete_on_termination: match.Attachment?.DeleteOnTermination,
        }
      );
    },
    record,
  );
  const mappings = api.BlockDeviceMappings ?? [];
  const root = mappings.find((m) => m.DeviceName === api.RootDeviceName);
  next = patchBlocks(
    next,
    'root_block_device',
    (_element, index) =>
      index === 0 && root?.Ebs?.VolumeId
        ? {
            volume_id: root.Ebs.VolumeId,
            device_name: root.DeviceName,
            delete_on_termination: root.Ebs.DeleteOnTermination,
            ...volumeUpdates(volumes.get(root.Ebs.VolumeId)),
          }
        : undefined,
    record,
  );
  next = patchBlocks(
    next,
    'ebs_block_device',
    (element) => {
      const mapping = mappings.find((m) => m.DeviceName === element.device_name && m !== root);
      const volumeId = mapping?.Ebs?.VolumeId;
      if (!volumeId) return undefined;
      const volume = volumes.get(volumeId);
      return {
        volume_id: volumeId,
        delete_on_termination: mapping.Ebs?.DeleteOnTermination,
        ...volumeUpdates(volume),
        snapshot_id: volume ? (volume.SnapshotId ?? '') : undefined,
      };
    },
    record,
  );
  return next;
};

/** The region the provider would use in names: v6 `region`, else the ARN's, else the instance's. */
const regionOf = (attributes: JsonObject, fallback: string | undefined): string | undefined =>
  stringAt(attributes, 'region') || arnRegion(stringAt(attributes, 'arn')) || fallback;

const eipUpdates = (old: JsonObject, address: Address, region: string | undefined): Updates => {
  const privateIp = address.PrivateIpAddress ?? '';
  const publicIp = address.PublicIp;
  return {
    association_id: address.AssociationId ?? '',
    instance: address.InstanceId ?? '',
    network_interface: address.NetworkInterfaceId ?? '',
    private_ip: privateIp,
    private_dns: privateIp === '' ? null : region ? privateDnsFor(privateIp, region) : undefined,
    public_ip: publicIp,
    public_dns:
      publicIp && region && publicIp !== stringAt(old, 'public_ip')
        ? publicDnsFor(publicIp, region)
        : undefined,
  };
};

const associationUpdates = (address: Address): Updates => ({
  id: address.AssociationId,
  association_id: address.AssociationId,
  instance_id: address.InstanceId ?? '',
  network_interface_id: address.NetworkInterfaceId ?? '',
  private_ip_address: address.PrivateIpAddress ?? '',
  public_ip: address.PublicIp,
});

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const keyStep = (key: string, first: boolean): string =>
  IDENTIFIER.test(key) ? `${first ? '' : '.'}${key}` : `[${JSON.stringify(key)}]`;

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;
const WORD = '[A-Za-z0-9-]';

/**
 * `token` as a whole token only: `10.0.1.25` not inside `10.0.1.250` or `110.0.1.25`, `i-0abc` not
 * inside `i-0abcd`. A "." continues an IP or a DNS name only when a token character lies beyond it, so
 * "at 10.0.1.25." still names the address while `ip-10-0-1-25.ec2.internal.corp` is another name.
 */
const tokenPattern = (token: string): string => {
  const text = escapeRegExp(token);
  if (IPV4.test(token)) return `(?<![0-9])(?<![0-9]\\.)${text}(?![0-9])(?!\\.[0-9])`;
  if (token.includes('.')) return `(?<!${WORD})(?<!${WORD}\\.)${text}(?!${WORD})(?!\\.${WORD})`;
  return `(?<!${WORD})${text}(?!${WORD})`;
};

/** The old instance's values (id, ARN, IPs, DNS names, ENI, association ids) and what replaces each. */
class OldValues {
  private readonly whole: RegExp;
  /** Substring test, cheap enough for every object of a large state; `whole` then confirms. */
  private readonly anywhere: RegExp;

  constructor(private readonly replacements: ReadonlyMap<string, string>) {
    // Longest first, so an ARN wins over the instance id it ends with.
    const tokens = [...replacements.keys()].sort((a, b) => b.length - a.length);
    this.whole = new RegExp(tokens.map(tokenPattern).join('|'), 'g');
    this.anywhere = new RegExp(tokens.map(escapeRegExp).join('|'));
  }

  get values(): string[] {
    return [...this.replacements.keys()];
  }

  replace(text: string): string {
    return text.replace(this.whole, (token) => this.replacements.get(token) ?? token);
  }

  /** Whether `text` (a string value) names an old value as a whole token. */
  names(text: string): boolean {
    this.whole.lastIndex = 0;
    return this.whole.test(text);
  }

  /** False only when no old value occurs in `text` at all (e.g. an object's JSON). */
  mightName(text: string): boolean {
    return this.anywhere.test(text);
  }
}

/** Paths of the strings inside `value` that name an old value. */
const pathsMentioning = (
  value: JsonValue | undefined,
  old: OldValues,
  path = '',
  out: string[] = [],
): string[] => {
  if (typeof value === 'string') {
    if (old.names(value)) out.push(path);
  } else if (Array.isArray(value)) {
    value.forEach((item, i) => {
      pathsMentioning(item, old, `${path}[${i}]`, out);
    });
  } else if (isObject(value)) {
    for (const key of Object.keys(value))
      pathsMentioning(value[key], old, `${path}${keyStep(key, path === '')}`, out);
  }
  return out;
};

/**
 * `value` with the old values replaced inside every string, at any depth; `value` itself when nothing
 * matched. Map keys are left as they are (renaming one would also change the output's type and order).
 */
const replaceStrings = (
  value: JsonValue,
  old: OldValues,
  path: string,
  found: (path: string, before: string, after: string) => void,
): JsonValue => {
  if (typeof value === 'string') {
    const after = old.replace(value);
    if (after === value) return value;
    found(path, value, after);
    return after;
  }
  if (Array.isArray(value)) {
    let next: JsonValue[] | undefined;
    value.forEach((item, i) => {
      const replaced = replaceStrings(item, old, `${path}[${i}]`, found);
      if (replaced === item) return;
      next ??= [...value];
      next[i] = replaced;
    });
    return next ?? value;
  }
  if (isObject(value)) {
    let next: JsonObject | undefined;
    for (const key of Object.keys(value)) {
      const item = value[key] as JsonValue;
      const replaced = replaceStrings(item, old, `${path}${keyStep(key, false)}`, found);
      if (replaced === item) continue;
      next ??= { ...value };
      next[key] = replaced;
    }
    return next ?? value;
  }
  return value;
};

/** Top-level attribute names that `sensitive_attributes` marks (their values never reach the report). */
const sensitiveNames = (instance: InstanceV4): ReadonlySet<string> => {
  const names = new Set<string>();
  for (const path of instance.sensitive_attributes ?? []) {
    const step = Array.isArray(path) ? path[0] : undefined;
    if (isObject(step) && step.type === 'get_attr' && typeof step.value === 'string') names.add(step.value);
  }
  return names;
};

/** Collects changes for one object; `sensitive` names are reported without their values. */
const recorder =
  (changes: AttributeChange[], address: string, sensitive: ReadonlySet<string> = new Set()): Record_ =>
  (path, before, after) => {
    const name = path.split(/[.[]/, 1)[0] ?? path;
    changes.push(
      sensitive.has(name)
        ? { address, path, before: SENSITIVE, after: SENSITIVE, sensitive: true }
        : { address, path, before: before ?? null, after },
    );
  };

/** Copy-on-write replacement of instance objects, grouped by resource. */
class Replacements {
  private readonly byResource = new Map<ResourceV4, Map<InstanceV4, InstanceV4>>();

  set(resource: ResourceV4, before: InstanceV4, after: InstanceV4): void {
    if (before === after) return;
    let instances = this.byResource.get(resource);
    if (!instances) {
      instances = new Map();
      this.byResource.set(resource, instances);
    }
    instances.set(before, after);
  }

  get(resource: ResourceV4, instance: InstanceV4): InstanceV4 {
    return this.byResource.get(resource)?.get(instance) ?? instance;
  }

  get size(): number {
    return this.byResource.size;
  }

  apply(resources: readonly ResourceV4[]): ResourceV4[] {
    return resources.map((resource) => {
      const instances = this.byResource.get(resource);
      return instances
        ? {
            ...resource,
            instances: resource.instances.map((instance) => instances.get(instance) ?? instance),
          }
        : resource;
    });
  }
}

/**
 * Rewrites the state so the `aws_instance` at `input.instanceAddress` describes `input.instance`, the
 * Elastic IPs bound to the old instance point at the new one, and root outputs naming the old instance
 * name the new one. Pure: the input state is never mutated, and unchanged objects are shared with it.
 * Refuses (TfStateError) an address that names nothing or no `aws_instance`, a state holding an instance
 * other than `expectInstanceId`, and DescribeAddresses output that does not cover a bound EIP.
 */
export const reconcileState = (state: StateV4, input: ReconcileInput): ReconcileResult => {
  const newId = input.instance.InstanceId;
  if (!newId) {
    throw tfStateError('InvalidDescribeOutput', 'the new instance has no InstanceId');
  }
  const address = parseResourceAddress(input.instanceAddress);
  const found = findInstance(state, address);
  if (!found) {
    throw tfStateError(
      'AddressNotFound',
      `${input.instanceAddress} is not in the state: nothing was changed`,
    );
  }
  const { resource, instance } = found;
  const canonical = instanceAddressOf(resource, instance);
  if (resource.mode !== 'managed' || resource.type !== 'aws_instance') {
    throw tfStateError(
      'InvalidAddress',
      `${canonical} is ${resource.mode === 'data' ? 'a data source' : `an ${resource.type}`}, not a managed aws_instance`,
    );
  }
  const oldAttributes = instance.attributes;
  const stateId = oldAttributes ? stringAt(oldAttributes, 'id') : undefined;
  if (!oldAttributes || !stateId) {
    throw tfStateError(
      'UnsupportedState',
      `${canonical} has no "attributes" with an "id" (a Terraform 0.11 object?): run "terraform apply -refresh-only" with a current Terraform first`,
    );
  }
  const expected = input.expectInstanceId;
  if (expected !== undefined && expected !== stateId && stateId !== newId) {
    throw tfStateError(
      'ExpectedInstanceDiffers',
      `${canonical} holds ${stateId}, not the expected ${expected}: nothing was changed`,
    );
  }
  // When the state already names the new instance, the id it replaced is known only from --expect-instance.
  const oldId = stateId !== newId ? stateId : (expected ?? stateId);
  const oldIds = new Set([stateId, oldId]);

  const changes: AttributeChange[] = [];
  const replacements = new Replacements();
  const volumes = new Map(
    (input.volumes ?? []).flatMap((v) => (v.VolumeId ? [[v.VolumeId, v] as const] : [])),
  );

  const instanceSensitive = sensitiveNames(instance);
  const recordInstance = recorder(changes, canonical, instanceSensitive);
  const newAttributes = reconcileInstanceAttributes(
    oldAttributes,
    input.instance,
    newId,
    volumes,
    recordInstance,
  );
  const newIdentity =
    instance.identity && Object.hasOwn(instance.identity, 'id')
      ? patch(instance.identity, { id: newId }, recordInstance, 'identity.')
      : instance.identity;
  // A taint marks the old server for replacement; the new one IS that replacement, and keeping the
  // taint would make the next apply destroy it. A taint on an object already naming the new instance
  // was put there after the replacement, so it stays.
  const clearTaint = stateId !== newId && instance.status !== undefined;
  if (clearTaint) {
    changes.push({ address: canonical, path: 'status', before: instance.status, after: null });
  }
  if (newAttributes !== oldAttributes || newIdentity !== instance.identity || clearTaint) {
    const reconciled: InstanceV4 = {
      ...instance,
      attributes: newAttributes,
      ...(newIdentity ? { identity: newIdentity } : {}),
    };
    if (clearTaint) delete reconciled.status;
    replacements.set(resource, instance, reconciled);
  }

  // Old value -> new value, for outputs and for the "still mentioning" scan.
  const moved = new Map<string, string>();
  const move = (before: string | undefined, after: string | undefined) => {
    if (before && after && before !== after) moved.set(before, after);
  };
  // Values of attributes marked sensitive are replaced like the others but never named in the report.
  const unnamed = new Set<string>();
  move(oldId, newId);
  for (const key of [
    'id',
    'arn',
    'private_ip',
    'private_dns',
    'public_ip',
    'public_dns',
    'primary_network_interface_id',
  ]) {
    const before = stringAt(oldAttributes, key);
    move(before, stringAt(newAttributes, key));
    if (before && instanceSensitive.has(key)) unnamed.add(before);
  }

  // Re-point the Elastic IPs and associations bound to the old instance (by id or by its primary ENI).
  const oldEnis = new Set([stringAt(oldAttributes, 'primary_network_interface_id')].filter((e) => !!e));
  const boundToOld = (instanceId: string | undefined, eniId: string | undefined) =>
    (!!instanceId && oldIds.has(instanceId)) || (!!eniId && oldEnis.has(eniId));
  const byAllocation = new Map(input.addresses.map((a) => [a.AllocationId, a]));
  const fallbackRegion = arnRegion(stringAt(oldAttributes, 'arn'));
  for (const eipResource of state.resources) {
    if (eipResource.mode !== 'managed') continue;
    const isEip = eipResource.type === 'aws_eip';
    if (!isEip && eipResource.type !== 'aws_eip_association') continue;
    for (const eip of eipResource.instances) {
      const attributes = eip.attributes;
      if (!attributes || eip.deposed !== undefined) continue;
      const instanceId = stringAt(attributes, isEip ? 'instance' : 'instance_id');
      const eniId = stringAt(attributes, isEip ? 'network_interface' : 'network_interface_id');
      if (!boundToOld(instanceId, eniId)) continue;
      const eipAddress = instanceAddressOf(eipResource, eip);
      const allocationId =
        stringAt(attributes, 'allocation_id') || (isEip ? stringAt(attributes, 'id') : undefined);
      const api = allocationId ? byAllocation.get(allocationId) : undefined;
      const stillOld = instanceId !== newId;
      if (!api) {
        if (!stillOld) continue;
        throw tfStateError(
          'InvalidDescribeOutput',
          `${eipAddress} (${allocationId ?? 'no allocation id'}) is bound to ${instanceId || eniId} but the DescribeAddresses output does not include it: describe that address too; nothing was changed`,
        );
      }
      if (api.InstanceId !== newId || (!isEip && !api.AssociationId)) {
        throw tfStateError(
          'InvalidDescribeOutput',
          `${eipAddress}: DescribeAddresses shows ${allocationId} associated with ${api.InstanceId ?? 'nothing'}, not the new instance ${newId}: describe the address after the switch; nothing was changed`,
        );
      }
      const updates = isEip
        ? eipUpdates(attributes, api, regionOf(attributes, fallbackRegion))
        : associationUpdates(api);
      const record = recorder(changes, eipAddress, sensitiveNames(eip));
      const patched = patch(attributes, updates, record);
      if (patched === attributes) continue;
      move(stringAt(attributes, 'association_id'), stringAt(patched, 'association_id'));
      // An association's id is its association id: a Terraform 1.12+ identity holding it follows.
      const oldObjectId = stringAt(attributes, 'id');
      const newObjectId = stringAt(patched, 'id');
      const identity =
        eip.identity && oldObjectId !== newObjectId && newObjectId && eip.identity.id === oldObjectId
          ? patch(eip.identity, { id: newObjectId }, record, 'identity.')
          : eip.identity;
      replacements.set(eipResource, eip, {
        ...eip,
        attributes: patched,
        ...(identity ? { identity } : {}),
      });
    }
  }

  // Root outputs: the old instance's values follow it wherever they appear in a string.
  const old = moved.size > 0 ? new OldValues(moved) : undefined;
  let outputs = state.outputs;
  if (old) {
    for (const name of Object.keys(state.outputs)) {
      const output = state.outputs[name] as OutputV4;
      const sensitive = output.sensitive === true;
      const value = replaceStrings(output.value, old, 'value', (path, before, after) => {
        changes.push(
          sensitive
            ? { address: `output.${name}`, path, before: SENSITIVE, after: SENSITIVE, sensitive: true }
            : { address: `output.${name}`, path, before, after },
        );
      });
      if (value === output.value) continue;
      if (outputs === state.outputs) outputs = { ...state.outputs };
      outputs[name] = { ...output, value };
    }
  }

  const changed = changes.length > 0;
  const resources = replacements.size > 0 ? replacements.apply(state.resources) : state.resources;
  const next: StateV4 = changed ? { ...state, serial: nextSerial(state.serial), outputs, resources } : state;

  // Everything else naming an old value is reported, not rewritten: it belongs to its own resource's Read.
  // One JSON text per object and one combined test keep this linear in the size of the state.
  const stillMentioning: { address: string; paths: string[] }[] = [];
  if (old) {
    const reconciled = replacements.get(resource, instance);
    for (const other of next.resources) {
      for (const object of other.instances) {
        if (object === instance || object === reconciled) continue;
        const attributes = object.attributes ?? object.attributes_flat;
        if (!attributes || !old.mightName(JSON.stringify(attributes))) continue;
        const paths = pathsMentioning(attributes as JsonValue, old);
        if (paths.length > 0) stillMentioning.push({ address: instanceAddressOf(other, object), paths });
      }
    }
    for (const name of Object.keys(next.outputs)) {
      const output = next.outputs[name] as OutputV4;
      const paths = pathsMentioning(output.value, old, 'value');
      if (paths.length === 0) continue;
      stillMentioning.push({ address: `output.${name}`, paths: output.sensitive ? [SENSITIVE] : paths });
    }
  }

  return {
    changed,
    state: next,
    report: {
      instanceAddress: canonical,
      oldInstanceId: oldId,
      newInstanceId: newId,
      alreadyReconciled: !changed && stateId === newId,
      serialBefore: serialText(state.serial),
      serialAfter: serialText(next.serial),
      changes,
      oldValues: old ? old.values.filter((value) => !unnamed.has(value)) : [],
      stillMentioning,
    },
  };
};
