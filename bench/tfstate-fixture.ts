// A large, realistic Terraform state for the reconcile benchmark, generated from a seed so every run
// measures the same bytes: thousands of provider-shaped resources in for_each and count modules, with
// the strings Go escapes (`<`, `>`, `&`), non-ASCII text, IAM policy documents as JSON strings, and a
// few integers above 2^53 (which switch the parser to its lossless path, as a real state would).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InstanceV4, JsonObject, JsonValue, ResourceV4, StateV4 } from '../lambdas/shared/tfstate/state';
import { writeState } from '../lambdas/shared/tfstate/state';

const REGION = 'eu-west-1';
const ACCOUNT = '123456789012';
const AWS = 'provider["registry.terraform.io/hashicorp/aws"]';
const KMS = `arn:aws:kms:${REGION}:${ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab`;

/** The instance the benchmark reconciles: the old one of the CLI test fixtures (test/fixtures/tfstate/cli). */
export const TARGET = {
  instanceAddress: 'module.web.aws_instance.this',
  oldInstanceId: 'i-0a1b2c3d4e5f60718',
  oldEni: 'eni-0123456789abcdef0',
  oldIp: '10.0.1.25',
  oldVolume: 'vol-0a00c1111aaaa2222',
  allocationId: 'eipalloc-0123456789abcdef0',
  oldAssociation: 'eipassoc-0aaaa1111bbbb2222',
  publicIp: '203.0.113.10',
} as const;

/** mulberry32: small, fast, and the same sequence on every platform. */
const random = (seed: number) => {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    int: (n: number) => Math.floor(next() * n),
    hex: (length: number) => {
      let out = '';
      for (let i = 0; i < length; i += 1) out += '0123456789abcdef'[Math.floor(next() * 16)];
      return out;
    },
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T,
  };
};
type Random = ReturnType<typeof random>;

/** go-cty writes object attributes (and map keys) sorted. */
const cty = (value: JsonValue): JsonValue => {
  if (Array.isArray(value)) return value.map(cty);
  if (value === null || typeof value !== 'object' || JSON.isRawJSON(value)) return value;
  const out: JsonObject = {};
  for (const key of Object.keys(value).sort()) out[key] = cty((value as JsonObject)[key] as JsonValue);
  return out;
};
const attrs = (value: JsonObject): JsonObject => cty(value) as JsonObject;

const base64Json = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64');
const SDK_TIMEOUTS = (t: Record<string, number>) =>
  base64Json({ 'e2bfb730-ecaa-11e6-8f88-34363bc7c4c0': t, schema_version: '1' });
const INSTANCE_PRIVATE = SDK_TIMEOUTS({
  create: 600000000000,
  delete: 1200000000000,
  read: 900000000000,
  update: 600000000000,
});
const EIP_PRIVATE = base64Json({
  'e2bfb730-ecaa-11e6-8f88-34363bc7c4c0': { delete: 180000000000, read: 900000000000, update: 300000000000 },
});
const SCHEMA_PRIVATE = base64Json({ schema_version: '1' });

const TEAMS = ['Plattform & Betrieb', 'Équipe données', 'Web <frontend>', 'Säkerhet', 'ops'];

const tags = (name: string, team: string) => ({ Name: name, env: 'prod', team });

interface Box {
  id: string;
  eni: string;
  ip: string;
  volume: string;
  subnet: string;
  sg: string;
  name: string;
}

const newBox = (rng: Random, name: string): Box => {
  const a = 1 + rng.int(250);
  const b = 2 + rng.int(250);
  return {
    id: `i-0${rng.hex(16)}`,
    eni: `eni-0${rng.hex(16)}`,
    ip: `10.${rng.int(4)}.${a}.${b}`,
    volume: `vol-0${rng.hex(16)}`,
    subnet: `subnet-0${rng.hex(16)}`,
    sg: `sg-0${rng.hex(16)}`,
    name,
  };
};

const dns = (ip: string) => `ip-${ip.replaceAll('.', '-')}.${REGION}.compute.internal`;
const publicDns = (ip: string) => `ec2-${ip.replaceAll('.', '-')}.${REGION}.compute.amazonaws.com`;

const instanceAttributes = (box: Box, team: string, publicIp: string): JsonObject =>
  attrs({
    ami: 'ami-0aaaaaaaaaaaaaaa1',
    arn: `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/${box.id}`,
    associate_public_ip_address: true,
    availability_zone: `${REGION}a`,
    capacity_reservation_specification: [
      { capacity_reservation_preference: 'open', capacity_reservation_target: [] },
    ],
    cpu_options: [{ amd_sev_snp: '', core_count: 1, threads_per_core: 2 }],
    credit_specification: [{ cpu_credits: 'unlimited' }],
    disable_api_stop: false,
    disable_api_termination: false,
    ebs_block_device: [],
    ebs_optimized: true,
    enable_primary_ipv6: null,
    enclave_options: [{ enabled: false }],
    ephemeral_block_device: [],
    force_destroy: false,
    get_password_data: false,
    hibernation: false,
    host_id: '',
    host_resource_group_arn: null,
    iam_instance_profile: `${box.name}-server`,
    id: box.id,
    instance_initiated_shutdown_behavior: 'stop',
    instance_lifecycle: '',
    instance_market_options: [],
    instance_state: 'running',
    instance_type: 't3.small',
    ipv6_address_count: 0,
    ipv6_addresses: [],
    key_name: 'ops-2024',
    launch_template: [],
    maintenance_options: [{ auto_recovery: 'default' }],
    metadata_options: [
      {
        http_endpoint: 'enabled',
        http_protocol_ipv6: 'disabled',
        http_put_response_hop_limit: 2,
        http_tokens: 'required',
        instance_metadata_tags: 'enabled',
      },
    ],
    monitoring: true,
    network_interface: [],
    outpost_arn: '',
    password_data: '',
    placement_group: '',
    placement_partition_number: 0,
    primary_network_interface_id: box.eni,
    private_dns: dns(box.ip),
    private_dns_name_options: [
      {
        enable_resource_name_dns_a_record: true,
        enable_resource_name_dns_aaaa_record: false,
        hostname_type: 'ip-name',
      },
    ],
    private_ip: box.ip,
    public_dns: publicDns(publicIp),
    public_ip: publicIp,
    region: REGION,
    root_block_device: [
      {
        delete_on_termination: true,
        device_name: '/dev/xvda',
        encrypted: true,
        iops: 4000,
        kms_key_id: KMS,
        tags: {},
        tags_all: {},
        throughput: 250,
        volume_id: box.volume,
        volume_size: 20,
        volume_type: 'gp3',
      },
    ],
    secondary_private_ips: [],
    security_groups: [],
    source_dest_check: true,
    spot_instance_request_id: '',
    subnet_id: box.subnet,
    tags: tags(box.name, team),
    tags_all: tags(box.name, team),
    tenancy: 'default',
    timeouts: null,
    user_data: `#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: "${box.name} — managed by Terraform <do not edit> & co"\n`,
    user_data_base64: null,
    user_data_replace_on_change: false,
    volume_tags: null,
    vpc_security_group_ids: [box.sg],
  });

const eipAttributes = (allocation: string, association: string, box: Box, publicIp: string): JsonObject =>
  attrs({
    address: null,
    allocation_id: allocation,
    arn: `arn:aws:ec2:${REGION}:${ACCOUNT}:elastic-ip/${allocation}`,
    associate_with_private_ip: null,
    association_id: association,
    carrier_ip: '',
    customer_owned_ip: '',
    customer_owned_ipv4_pool: '',
    domain: 'vpc',
    id: allocation,
    instance: box.id,
    ipam_pool_id: null,
    network_border_group: REGION,
    network_interface: box.eni,
    private_dns: dns(box.ip),
    private_ip: box.ip,
    ptr_record: '',
    public_dns: publicDns(publicIp),
    public_ip: publicIp,
    public_ipv4_pool: 'amazon',
    region: REGION,
    tags: { Name: box.name },
    tags_all: { Name: box.name },
    timeouts: null,
  });

const associationAttributes = (allocation: string, association: string, box: Box, publicIp: string) =>
  attrs({
    allocation_id: allocation,
    allow_reassociation: null,
    id: association,
    instance_id: box.id,
    network_interface_id: box.eni,
    private_ip_address: box.ip,
    public_ip: publicIp,
    region: REGION,
  });

const rule = (port: number, cidr: string, description: string) => ({
  cidr_blocks: [cidr],
  description,
  from_port: port,
  ipv6_cidr_blocks: [],
  prefix_list_ids: [],
  protocol: 'tcp',
  security_groups: [],
  self: false,
  to_port: port,
});

const securityGroupAttributes = (box: Box, team: string, vpc: string) =>
  attrs({
    arn: `arn:aws:ec2:${REGION}:${ACCOUNT}:security-group/${box.sg}`,
    description: `${box.name}: HTTP(S) für alle, SSH nur <VPN> & Bastion`,
    egress: [{ ...rule(0, '0.0.0.0/0', ''), protocol: '-1' }],
    id: box.sg,
    ingress: [
      rule(443, '0.0.0.0/0', 'HTTPS'),
      rule(80, '0.0.0.0/0', 'HTTP -> HTTPS'),
      rule(22, '10.8.0.0/16', 'SSH from VPN'),
    ],
    name: `${box.name}-web`,
    name_prefix: '',
    owner_id: ACCOUNT,
    region: REGION,
    revoke_rules_on_delete: false,
    tags: tags(`${box.name}-web`, team),
    tags_all: tags(`${box.name}-web`, team),
    timeouts: null,
    vpc_id: vpc,
  });

const alarmAttributes = (box: Box, metric: string, threshold: JsonValue, team: string) =>
  attrs({
    actions_enabled: true,
    alarm_actions: [`arn:aws:sns:${REGION}:${ACCOUNT}:ops`],
    alarm_description: `${metric} > threshold on ${box.name} (Bereitschaft: ${team})`,
    alarm_name: `${box.name}-${metric.toLowerCase()}`,
    arn: `arn:aws:cloudwatch:${REGION}:${ACCOUNT}:alarm:${box.name}-${metric.toLowerCase()}`,
    comparison_operator: 'GreaterThanThreshold',
    datapoints_to_alarm: 0,
    dimensions: { InstanceId: box.id },
    evaluate_low_sample_count_percentiles: '',
    evaluation_periods: 3,
    extended_statistic: '',
    id: `${box.name}-${metric.toLowerCase()}`,
    insufficient_data_actions: [],
    metric_name: metric,
    metric_query: [],
    namespace: 'AWS/EC2',
    ok_actions: [],
    period: 300,
    region: REGION,
    statistic: 'Average',
    tags: {},
    tags_all: {},
    threshold,
    threshold_metric_id: '',
    treat_missing_data: 'missing',
    unit: '',
  });

const roleAttributes = (rng: Random, box: Box) =>
  attrs({
    arn: `arn:aws:iam::${ACCOUNT}:role/${box.name}-server`,
    assume_role_policy: JSON.stringify({
      Statement: [{ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' } }],
      Version: '2012-10-17',
    }),
    create_date: '2025-06-11T08:12:45Z',
    description: `Instance role for ${box.name} & its <sidecars>`,
    force_detach_policies: false,
    id: `${box.name}-server`,
    inline_policy: [],
    managed_policy_arns: ['arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore'],
    max_session_duration: 3600,
    name: `${box.name}-server`,
    name_prefix: '',
    path: '/',
    permissions_boundary: '',
    tags: {},
    tags_all: {},
    unique_id: `AROA${rng.hex(17).toUpperCase()}`,
  });

const rolePolicyAttributes = (box: Box) =>
  attrs({
    id: `${box.name}-server:s3-read`,
    name: 's3-read',
    name_prefix: '',
    policy: JSON.stringify({
      Statement: [
        {
          Action: ['s3:GetObject', 's3:ListBucket'],
          Condition: { StringEquals: { 'aws:ResourceTag/team': 'Plattform & Betrieb' } },
          Effect: 'Allow',
          Resource: [`arn:aws:s3:::${box.name}-assets`, `arn:aws:s3:::${box.name}-assets/*`],
        },
      ],
      Version: '2012-10-17',
    }),
    role: `${box.name}-server`,
  });

const recordAttributes = (box: Box, zone: string, ip: string) =>
  attrs({
    alias: [],
    allow_overwrite: null,
    cidr_routing_policy: [],
    failover_routing_policy: [],
    fqdn: `${box.name}.example.com`,
    geolocation_routing_policy: [],
    geoproximity_routing_policy: [],
    health_check_id: '',
    id: `${zone}_${box.name}.example.com_A`,
    latency_routing_policy: [],
    multivalue_answer_routing_policy: false,
    name: `${box.name}.example.com`,
    records: [ip],
    set_identifier: '',
    timeouts: null,
    ttl: 300,
    type: 'A',
    weighted_routing_policy: [],
    zone_id: zone,
  });

const instance = (attributes: JsonObject, extra: Partial<InstanceV4> = {}): InstanceV4 => ({
  ...(extra.index_key !== undefined ? { index_key: extra.index_key } : {}),
  schema_version: extra.schema_version ?? 0,
  attributes,
  sensitive_attributes: [],
  identity_schema_version: 0,
  ...(extra.identity ? { identity: extra.identity } : {}),
  ...(extra.private ? { private: extra.private } : {}),
  ...(extra.dependencies ? { dependencies: extra.dependencies } : {}),
});

const resource = (
  module: string | undefined,
  type: string,
  name: string,
  instances: InstanceV4[],
  mode: 'managed' | 'data' = 'managed',
): ResourceV4 => ({
  ...(module ? { module } : {}),
  mode,
  type,
  name,
  provider: AWS,
  instances,
});

const BIG_THRESHOLDS = ['9007199254740993', '18446744073709551615', '12345678901234567890'];

/** One service module: a server with its EIP, association, security group, alarms, role and DNS. */
const serviceModule = (rng: Random, module: string, box: Box, unit: number, eip?: string): ResourceV4[] => {
  const team = rng.pick(TEAMS);
  const allocation = `eipalloc-0${rng.hex(16)}`;
  const association = `eipassoc-0${rng.hex(16)}`;
  const publicIp = eip ?? `198.51.${rng.int(256)}.${rng.int(256)}`;
  const vpc = `vpc-0${rng.hex(16)}`;
  const zone = `Z0${rng.hex(12).toUpperCase()}`;
  const dep = (type: string, name: string) => `${module}.${type}.${name}`;
  const thresholds: Record<string, JsonValue> = {
    CPUUtilization: 80,
    StatusCheckFailed: 1,
    // A byte threshold above 2^53, kept verbatim by the lossless parser (a handful per state).
    NetworkIn: unit % 400 === 7 ? JSON.rawJSON(BIG_THRESHOLDS[unit % 3] as string) : 5e9,
  };
  const identity = (id: string) => ({ account_id: ACCOUNT, id, region: REGION });
  return [
    resource(module, 'aws_cloudwatch_metric_alarm', 'this', [
      ...Object.entries(thresholds).map(([metric, threshold]) =>
        instance(alarmAttributes(box, metric, threshold, team), {
          index_key: metric,
          schema_version: 1,
          private: SCHEMA_PRIVATE,
          dependencies: [dep('aws_instance', 'this')],
        }),
      ),
    ]),
    resource(module, 'aws_eip', 'this', [
      instance(eipAttributes(allocation, association, box, publicIp), {
        private: EIP_PRIVATE,
        identity: identity(allocation),
        dependencies: [dep('aws_instance', 'this')],
      }),
    ]),
    resource(module, 'aws_eip_association', 'this', [
      instance(associationAttributes(allocation, association, box, publicIp), {
        dependencies: [dep('aws_eip', 'this'), dep('aws_instance', 'this')],
      }),
    ]),
    resource(module, 'aws_iam_role', 'this', [instance(roleAttributes(rng, box))]),
    resource(module, 'aws_iam_role_policy', 'this', [
      instance(rolePolicyAttributes(box), { dependencies: [dep('aws_iam_role', 'this')] }),
    ]),
    resource(module, 'aws_instance', 'this', [
      instance(instanceAttributes(box, team, publicIp), {
        schema_version: 1,
        private: INSTANCE_PRIVATE,
        identity: identity(box.id),
        dependencies: [dep('aws_iam_role', 'this'), dep('aws_security_group', 'this')],
      }),
    ]),
    resource(module, 'aws_route53_record', 'this', [
      instance(recordAttributes(box, zone, publicIp), { schema_version: 2 }),
    ]),
    resource(module, 'aws_security_group', 'this', [
      instance(securityGroupAttributes(box, team, vpc), { schema_version: 1, private: SCHEMA_PRIVATE }),
    ]),
  ];
};

/** A count module of batch workers: `aws_instance.worker[0..n]`, indexed by count. */
const batchModule = (rng: Random, module: string, workers: number): ResourceV4[] => [
  resource(
    module,
    'aws_instance',
    'worker',
    Array.from({ length: workers }, (_, index) => {
      const box = newBox(rng, `batch-${index}`);
      return instance(instanceAttributes(box, 'ops', ''), {
        index_key: index,
        schema_version: 1,
        private: INSTANCE_PRIVATE,
        identity: { account_id: ACCOUNT, id: box.id, region: REGION },
      });
    }),
  ),
];

/**
 * The state: the reconcile target `module.web` (the CLI fixtures' old instance) and a root EIP and
 * association bound to it, among `services` for_each service modules and count-indexed batch modules.
 * About 20 KB of state per service: 1500 services make about 30 MB.
 */
export const generateState = (services = 1500, seed = 20260301): StateV4 => {
  const rng = random(seed);
  const resources: ResourceV4[] = [];
  const web: Box = {
    id: TARGET.oldInstanceId,
    eni: TARGET.oldEni,
    ip: TARGET.oldIp,
    volume: TARGET.oldVolume,
    subnet: 'subnet-0aa11bb22cc33dd44',
    sg: 'sg-0eb01111aaaa2222b',
    name: 'web-prod',
  };
  resources.push(
    resource(undefined, 'aws_eip', 'web', [
      instance(eipAttributes(TARGET.allocationId, TARGET.oldAssociation, web, TARGET.publicIp), {
        private: EIP_PRIVATE,
        identity: { account_id: ACCOUNT, id: TARGET.allocationId, region: REGION },
      }),
    ]),
    resource(undefined, 'aws_eip_association', 'web', [
      instance(associationAttributes(TARGET.allocationId, TARGET.oldAssociation, web, TARGET.publicIp), {
        dependencies: ['aws_eip.web', 'module.web.aws_instance.this'],
      }),
    ]),
    resource(
      undefined,
      'aws_iam_policy_document',
      'assume',
      [instance(attrs({ id: '1234567890', json: '{"Version":"2012-10-17"}', version: '2012-10-17' }))],
      'data',
    ),
  );
  resources.push(
    ...serviceModule(rng, 'module.web', web, -1, TARGET.publicIp).filter(
      (r) => r.type !== 'aws_eip' && r.type !== 'aws_eip_association',
    ),
  );
  for (let unit = 0; unit < services; unit += 1) {
    const name = `svc-${unit.toString().padStart(4, '0')}`;
    resources.push(...serviceModule(rng, `module.services["${name}"]`, newBox(rng, name), unit));
    if (unit % 50 === 0) resources.push(...batchModule(rng, `module.batch[${unit / 50}]`, 4));
  }
  const webTarget = resources.find((r) => r.module === 'module.web' && r.type === 'aws_instance');
  const webAttributes = webTarget?.instances[0]?.attributes ?? {};
  return {
    version: 4,
    terraform_version: '1.13.1',
    serial: 1207,
    lineage: '3f0c1b7e-5a2d-4c1e-9b8a-7d6e5f4a3b2c',
    outputs: {
      web_instance_id: { value: TARGET.oldInstanceId, type: 'string' },
      web: {
        value: cty({
          id: TARGET.oldInstanceId,
          private_dns: webAttributes.private_dns ?? null,
          private_ip: TARGET.oldIp,
        }),
        type: ['object', { id: 'string', private_dns: 'string', private_ip: 'string' }],
      },
      service_ips: {
        value: Array.from({ length: 50 }, (_, i) => `10.0.${i}.10`),
        type: ['list', 'string'],
      },
      db_password: { value: 'sécret<&>', type: 'string', sensitive: true },
    },
    resources,
    check_results: null,
  };
};

/** Writes the generated state in Terraform's own layout; returns the file and its size in bytes. */
export const writeFixture = (dir: string, services?: number): { file: string; bytes: number } => {
  const text = writeState(generateState(services));
  const file = join(dir, 'bench.tfstate');
  writeFileSync(file, text);
  return { file, bytes: Buffer.byteLength(text) };
};
