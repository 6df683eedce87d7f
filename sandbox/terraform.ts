import { createHash } from 'node:crypto';
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import {
  DescribeAddressesCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  type Instance,
  type Volume,
} from '@aws-sdk/client-ec2';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { clients, dynamodbClient } from '../lambdas/shared/clients';
import type { TerraformConfig } from '../lambdas/shared/config';
import {
  type JsonObject,
  type JsonValue,
  readState,
  type StateV4,
  serialText,
  writeState,
} from '../lambdas/shared/tfstate/state';

/**
 * What `terraform apply` leaves behind for the sandbox's `web` server: a format-4 state in S3 with the
 * instance (AWS provider v6 shape, in a module), its Elastic IP, an alarm on the instance and outputs,
 * written by the attributes the provider reads from the same Describe calls; plus the DynamoDB digest
 * item the S3 backend keeps. The demo and the workflow tests reconcile this state after a replacement.
 */

export const DEMO_TERRAFORM = {
  bucket: 'acme-terraform-state',
  key: 'web/terraform.tfstate',
  table: 'acme-terraform-locks',
  instanceAddress: 'module.web.aws_instance.this',
} as const;

export const demoTerraformConfig = (): TerraformConfig => ({
  state: `s3://${DEMO_TERRAFORM.bucket}/${DEMO_TERRAFORM.key}`,
  workspace: 'default',
  workspaceKeyPrefix: 'env:',
  instanceAddress: DEMO_TERRAFORM.instanceAddress,
  useLockfile: true,
  dynamodbTable: DEMO_TERRAFORM.table,
  lockTimeoutSeconds: 60,
});

const PROVIDER = 'provider["registry.terraform.io/hashicorp/aws"]';
// SDKv2 private data: the resource's timeouts in nanoseconds plus its schema version.
const INSTANCE_PRIVATE = Buffer.from(
  JSON.stringify({
    'e2bfb730-ecaa-11e6-8f88-34363bc7c4c0': {
      create: 600_000_000_000,
      delete: 1_200_000_000_000,
      read: 900_000_000_000,
      update: 600_000_000_000,
    },
    schema_version: '1',
  }),
).toString('base64');

/** go-cty writes object attributes in sorted order, at every depth. */
const sortedDeep = <T extends JsonValue>(value: T): T => {
  if (Array.isArray(value)) return value.map(sortedDeep) as T;
  if (value === null || typeof value !== 'object' || JSON.isRawJSON(value)) return value;
  const out: JsonObject = {};
  for (const key of Object.keys(value).sort()) out[key] = sortedDeep((value as JsonObject)[key] as JsonValue);
  return out as T;
};

const dnsLabel = (ip: string) => ip.replaceAll('.', '-');
const tagMap = (tags: Instance['Tags'] | Volume['Tags']): JsonObject =>
  Object.fromEntries((tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));

const instanceAttributes = (
  i: Instance,
  region: string,
  account: string,
  root: Volume | undefined,
): JsonObject => {
  const eni = i.NetworkInterfaces?.find((n) => n.Attachment?.DeviceIndex === 0);
  const rootMapping = i.BlockDeviceMappings?.find((b) => b.DeviceName === i.RootDeviceName);
  const attributes: JsonObject = {
    ami: i.ImageId ?? '',
    arn: `arn:aws:ec2:${region}:${account}:instance/${i.InstanceId}`,
    associate_public_ip_address: eni?.Association !== undefined,
    availability_zone: i.Placement?.AvailabilityZone ?? '',
    capacity_reservation_specification: [
      { capacity_reservation_preference: 'open', capacity_reservation_target: [] },
    ],
    cpu_options: [{ amd_sev_snp: '', core_count: 1, threads_per_core: 2 }],
    credit_specification: [{ cpu_credits: 'unlimited' }],
    disable_api_stop: false,
    disable_api_termination: false,
    ebs_block_device: [],
    ebs_optimized: false,
    enable_primary_ipv6: null,
    enclave_options: [{ enabled: false }],
    ephemeral_block_device: [],
    force_destroy: false,
    get_password_data: false,
    hibernation: false,
    host_id: '',
    host_resource_group_arn: null,
    iam_instance_profile: (i.IamInstanceProfile?.Arn ?? '').split('/').pop() ?? '',
    id: i.InstanceId ?? '',
    instance_initiated_shutdown_behavior: 'stop',
    instance_lifecycle: '',
    instance_market_options: [],
    instance_state: i.State?.Name ?? '',
    instance_type: i.InstanceType ?? '',
    ipv6_address_count: 0,
    ipv6_addresses: [],
    key_name: i.KeyName ?? '',
    launch_template: [],
    maintenance_options: [{ auto_recovery: 'default' }],
    metadata_options: [
      {
        http_endpoint: 'enabled',
        http_protocol_ipv6: 'disabled',
        http_put_response_hop_limit: i.MetadataOptions?.HttpPutResponseHopLimit ?? 1,
        http_tokens: i.MetadataOptions?.HttpTokens ?? 'required',
        instance_metadata_tags: 'disabled',
      },
    ],
    monitoring: false,
    network_interface: [],
    outpost_arn: '',
    password_data: '',
    placement_group: '',
    placement_partition_number: 0,
    primary_network_interface_id: eni?.NetworkInterfaceId ?? '',
    private_dns: i.PrivateDnsName ?? '',
    private_dns_name_options: [
      {
        enable_resource_name_dns_a_record: false,
        enable_resource_name_dns_aaaa_record: false,
        hostname_type: 'ip-name',
      },
    ],
    private_ip: i.PrivateIpAddress ?? '',
    public_dns: i.PublicDnsName ?? '',
    public_ip: i.PublicIpAddress ?? '',
    region,
    root_block_device: [
      {
        delete_on_termination: rootMapping?.Ebs?.DeleteOnTermination ?? true,
        device_name: i.RootDeviceName ?? '/dev/xvda',
        encrypted: root?.Encrypted ?? false,
        iops: root?.Iops ?? 3000,
        kms_key_id: root?.KmsKeyId ?? '',
        tags: tagMap(root?.Tags),
        tags_all: tagMap(root?.Tags),
        throughput: root?.Throughput ?? 125,
        volume_id: root?.VolumeId ?? rootMapping?.Ebs?.VolumeId ?? '',
        volume_size: root?.Size ?? 8,
        volume_type: root?.VolumeType ?? 'gp3',
      },
    ],
    secondary_private_ips: [],
    security_groups: [],
    source_dest_check: true,
    spot_instance_request_id: '',
    subnet_id: i.SubnetId ?? '',
    tags: tagMap(i.Tags?.filter((t) => !t.Key?.startsWith('understudy:'))),
    tags_all: tagMap(i.Tags?.filter((t) => !t.Key?.startsWith('understudy:'))),
    tenancy: i.Placement?.Tenancy ?? 'default',
    timeouts: null,
    // Provider v6 keeps user data in clear text; this is the seeded cloud-config's first line only.
    user_data: '#cloud-config',
    user_data_base64: null,
    user_data_replace_on_change: false,
    volume_tags: null,
    vpc_security_group_ids: (i.SecurityGroups ?? []).map((g) => g.GroupId ?? '').sort(),
  };
  return sortedDeep(attributes);
};

export interface TerraformSeed {
  readonly instanceId: string;
  readonly allocationId: string;
}

/** Writes the state (and its digest) that `terraform apply` would have left for the seeded server. */
export const terraformApply = async (
  sandbox: {
    createBucket(name: string): void;
    createTable(name: string, hashKey: string): void;
    readonly region: string;
    readonly accountId: string;
  },
  seed: TerraformSeed,
): Promise<{ serial: string }> => {
  const { ec2, s3 } = clients();
  sandbox.createBucket(DEMO_TERRAFORM.bucket);
  sandbox.createTable(DEMO_TERRAFORM.table, 'LockID');
  const { region, accountId } = sandbox;
  const described = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [seed.instanceId] }));
  const instance = described.Reservations?.[0]?.Instances?.[0];
  if (!instance) throw new Error(`the sandbox does not know ${seed.instanceId}`);
  const volumes = await ec2.send(
    new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [seed.instanceId] }] }),
  );
  const root = volumes.Volumes?.find((v) => v.Attachments?.some((a) => a.Device === instance.RootDeviceName));
  const address = (await ec2.send(new DescribeAddressesCommand({ AllocationIds: [seed.allocationId] })))
    .Addresses?.[0];
  if (!address?.PublicIp) throw new Error(`the sandbox does not know ${seed.allocationId}`);
  const privateIp = address.PrivateIpAddress ?? '';

  const state: StateV4 = {
    version: 4,
    terraform_version: '1.13.4',
    serial: 41,
    lineage: '5f0c1e0a-7d2b-4c55-9a51-3b7e0c9d2a11',
    outputs: {
      instance_id: { value: seed.instanceId, type: 'string' },
      private_ip: { value: instance.PrivateIpAddress ?? '', type: 'string' },
      public_ip: { value: address.PublicIp, type: 'string' },
    },
    resources: [
      {
        mode: 'managed',
        type: 'aws_cloudwatch_metric_alarm',
        name: 'web_status',
        provider: PROVIDER,
        instances: [
          {
            schema_version: 1,
            attributes: sortedDeep({
              actions_enabled: true,
              alarm_actions: [],
              alarm_description: 'web <status> check & recovery',
              alarm_name: 'web-status-check',
              arn: `arn:aws:cloudwatch:${region}:${accountId}:alarm:web-status-check`,
              comparison_operator: 'GreaterThanOrEqualToThreshold',
              dimensions: { InstanceId: seed.instanceId },
              evaluation_periods: 2,
              id: 'web-status-check',
              metric_name: 'StatusCheckFailed',
              namespace: 'AWS/EC2',
              period: 60,
              region,
              statistic: 'Maximum',
              tags: {},
              tags_all: {},
              threshold: 1,
            }),
            sensitive_attributes: [],
            identity_schema_version: 0,
            dependencies: ['module.web.aws_instance.this'],
          },
        ],
      },
      {
        module: 'module.web',
        mode: 'managed',
        type: 'aws_eip',
        name: 'this',
        provider: PROVIDER,
        instances: [
          {
            schema_version: 0,
            attributes: sortedDeep({
              address: null,
              allocation_id: seed.allocationId,
              arn: `arn:aws:ec2:${region}:${accountId}:elastic-ip/${seed.allocationId}`,
              associate_with_private_ip: null,
              association_id: address.AssociationId ?? '',
              carrier_ip: '',
              customer_owned_ip: '',
              customer_owned_ipv4_pool: '',
              domain: 'vpc',
              id: seed.allocationId,
              instance: seed.instanceId,
              ipam_pool_id: null,
              network_border_group: region,
              network_interface: address.NetworkInterfaceId ?? '',
              private_dns: `ip-${dnsLabel(privateIp)}.${region}.compute.internal`,
              private_ip: privateIp,
              ptr_record: '',
              public_dns: `ec2-${dnsLabel(address.PublicIp)}.${region}.compute.amazonaws.com`,
              public_ip: address.PublicIp,
              public_ipv4_pool: 'amazon',
              region,
              tags: { Name: 'web' },
              tags_all: { Name: 'web' },
              timeouts: null,
            }),
            sensitive_attributes: [],
            identity_schema_version: 0,
            private:
              'eyJlMmJmYjczMC1lY2FhLTExZTYtOGY4OC0zNDM2M2JjN2M0YzAiOnsiZGVsZXRlIjoxODAwMDAwMDAwMDAsInJlYWQiOjkwMDAwMDAwMDAwMCwidXBkYXRlIjozMDAwMDAwMDAwMDB9fQ==',
            dependencies: ['module.web.aws_instance.this'],
          },
        ],
      },
      {
        module: 'module.web',
        mode: 'managed',
        type: 'aws_instance',
        name: 'this',
        provider: PROVIDER,
        instances: [
          {
            schema_version: 1,
            attributes: instanceAttributes(instance, region, accountId, root),
            sensitive_attributes: [],
            identity_schema_version: 0,
            identity: { account_id: accountId, id: seed.instanceId, region },
            private: INSTANCE_PRIVATE,
          },
        ],
      },
    ],
    check_results: null,
  };
  const body = writeState(state);
  await s3.send(
    new PutObjectCommand({
      Bucket: DEMO_TERRAFORM.bucket,
      Key: DEMO_TERRAFORM.key,
      Body: body,
      ContentType: 'application/json',
      ServerSideEncryption: 'AES256',
    }),
  );
  await dynamodbClient().send(
    new PutItemCommand({
      TableName: DEMO_TERRAFORM.table,
      Item: {
        LockID: { S: `${DEMO_TERRAFORM.bucket}/${DEMO_TERRAFORM.key}-md5` },
        Digest: { S: createHash('md5').update(body).digest('hex') },
      },
    }),
  );
  return { serial: serialText(state.serial) };
};

/** The state's serial as it is in S3 now (read through the SDK, as `terraform state pull` would). */
export const currentSerial = async (): Promise<string> => {
  const out = await clients().s3.send(
    new GetObjectCommand({ Bucket: DEMO_TERRAFORM.bucket, Key: DEMO_TERRAFORM.key }),
  );
  return serialText(readState((await out.Body?.transformToString()) ?? '').serial);
};
