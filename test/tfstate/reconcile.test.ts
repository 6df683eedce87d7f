import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Address, Instance, Volume } from '@aws-sdk/client-ec2';
import {
  addressesFromDescribe,
  instanceFromDescribe,
  volumesFromDescribe,
} from '../../lambdas/shared/tfstate/describe';
import { type ReconcileInput, reconcileState } from '../../lambdas/shared/tfstate/reconcile';
import { formatReconcileReport } from '../../lambdas/shared/tfstate/report';
import {
  type InstanceV4,
  type JsonObject,
  type OutputV4,
  readState,
  type StateV4,
  writeState,
} from '../../lambdas/shared/tfstate/state';
import { refusal } from './refusal';

const DIR = join(__dirname, '../fixtures/tfstate/reconcile');
const text = (name: string) => readFileSync(join(DIR, name), 'utf8');
const json = (name: string): unknown => JSON.parse(text(name));

const V5_TEXT = text('v5-root-count.tfstate');
const V6_TEXT = text('v6-module-for-each.tfstate');

// v5: root module, count, aws_eip bound through `instance`, eu-west-1.
const V5_ADDRESS = 'aws_instance.web[0]';
const V5_OLD = 'i-0a1b2c3d4e5f60718';
const V5_NEW = 'i-0f9e8d7c6b5a49382';
const V5_SIBLING = 'i-0c2d3e4f5a6b7c8d9';
// v6: nested module, for_each, aws_eip + aws_eip_association, identity, us-east-1.
const MODULE = 'module.app.module.server';
const V6_ADDRESS = `${MODULE}.aws_instance.this["blue"]`;
const V6_OLD = 'i-0b10e5e5e5e5e5e51';
const V6_NEW = 'i-0b20f6f6f6f6f6f62';

const v5Instance = (): Instance => instanceFromDescribe(json('v5-describe-instances.json'));
const v5Addresses = (): Address[] => addressesFromDescribe(json('v5-describe-addresses.json'));
const v5Volumes = (): Volume[] => volumesFromDescribe(json('v5-describe-volumes.json'));
const v6Instance = (): Instance => instanceFromDescribe(json('v6-describe-instances.json'));
const v6Addresses = (): Address[] => addressesFromDescribe(json('v6-describe-addresses.json'));

const v5Input = (extra: Partial<ReconcileInput> = {}): ReconcileInput => ({
  instanceAddress: V5_ADDRESS,
  instance: v5Instance(),
  addresses: v5Addresses(),
  volumes: v5Volumes(),
  ...extra,
});
const v6Input = (extra: Partial<ReconcileInput> = {}): ReconcileInput => ({
  instanceAddress: V6_ADDRESS,
  instance: v6Instance(),
  addresses: v6Addresses(),
  ...extra,
});

/** Freezes the whole parsed state, so any write to the input throws in strict mode. */
const deepFreeze = <T>(value: T): T => {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
};
const v5State = (): StateV4 => deepFreeze(readState(V5_TEXT));
const v6State = (): StateV4 => deepFreeze(readState(V6_TEXT));

const object = (
  state: StateV4,
  module: string | undefined,
  type: string,
  name: string,
  key?: number | string,
) => {
  const resource = state.resources.find(
    (r) => r.module === module && r.type === type && r.name === name && r.mode === 'managed',
  );
  const instance = resource?.instances.find((i) => i.index_key === key && i.deposed === undefined);
  if (!instance) throw new Error(`no ${type}.${name}[${String(key)}] in the fixture`);
  return instance;
};
const attributes = (instance: InstanceV4): JsonObject => {
  if (!instance.attributes) throw new Error('fixture object without attributes');
  return instance.attributes;
};
const webAttributes = (state: StateV4, key = 0) =>
  attributes(object(state, undefined, 'aws_instance', 'web', key));
const blue = (state: StateV4, type = 'aws_instance') => object(state, MODULE, type, 'this', 'blue');
const green = (state: StateV4, type = 'aws_instance') => object(state, MODULE, type, 'this', 'green');

/** `state` with the current object at `type.name[key]` (in `module`) replaced by `change(object)`. */
const withObject = (
  state: StateV4,
  module: string | undefined,
  type: string,
  name: string,
  key: number | string | undefined,
  change: (instance: InstanceV4) => InstanceV4,
): StateV4 =>
  deepFreeze({
    ...state,
    resources: state.resources.map((resource) =>
      resource.module === module && resource.type === type && resource.name === name
        ? {
            ...resource,
            instances: resource.instances.map((instance) =>
              instance.index_key === key && instance.deposed === undefined ? change(instance) : instance,
            ),
          }
        : resource,
    ),
  });
const withOutputs = (state: StateV4, outputs: Record<string, OutputV4>): StateV4 =>
  deepFreeze({ ...state, outputs: { ...state.outputs, ...outputs } });
const taintedWeb = (state: StateV4) =>
  withObject(state, undefined, 'aws_instance', 'web', 0, (web) => ({ ...web, status: 'tainted' }));

/** The lines that differ between two files of equal length, as `before => after` pairs (trimmed). */
const lineDiff = (before: string, after: string): string[] => {
  const a = before.split('\n');
  const b = after.split('\n');
  expect(b).toHaveLength(a.length);
  return a.flatMap((line, i) => (line === b[i] ? [] : [`${line.trim()} => ${(b[i] ?? '').trim()}`]));
};

describe('reconcile on a provider v5 state (root module, count, aws_eip with instance)', () => {
  it('writes the new id, the ARN with the old partition/region/account, the AMI, private IP/DNS and primary ENI', () => {
    const { state } = reconcileState(v5State(), v5Input());
    const web = webAttributes(state);

    expect(web).toMatchObject({
      id: V5_NEW,
      arn: `arn:aws:ec2:eu-west-1:123456789012:instance/${V5_NEW}`,
      ami: 'ami-0bbbbbbbbbbbbbbb2',
      private_ip: '10.0.1.47',
      private_dns: 'ip-10-0-1-47.eu-west-1.compute.internal',
      primary_network_interface_id: 'eni-0fedcba9876543210',
      public_ip: '203.0.113.10',
      public_dns: 'ec2-203-0-113-10.eu-west-1.compute.amazonaws.com',
      vpc_security_group_ids: ['sg-0ad03333cccc4444d', 'sg-0eb01111aaaa2222b'],
      instance_state: 'running',
      iam_instance_profile: 'web-server',
      monitoring: true,
    });
  });

  it('refreshes the root volume from DescribeVolumes and the data volume matched by device name', () => {
    const web = webAttributes(reconcileState(v5State(), v5Input()).state);

    expect(web.root_block_device).toEqual([
      expect.objectContaining({
        volume_id: 'vol-0b11d5555eeee6666',
        volume_size: 30,
        volume_type: 'gp3',
        iops: 3000,
      }),
    ]);
    expect(web.ebs_block_device).toEqual([
      expect.objectContaining({
        device_name: '/dev/sdf',
        volume_id: 'vol-0b11d7777ffff8888',
        snapshot_id: 'snap-0b2e0000000000003',
        delete_on_termination: false,
        tags: { Name: 'web-0-data' },
      }),
    ]);
  });

  it('without DescribeVolumes refreshes only the volume ids and keeps size, snapshot and type', () => {
    const web = webAttributes(reconcileState(v5State(), v5Input({ volumes: undefined })).state);

    expect(web.root_block_device).toEqual([
      expect.objectContaining({ volume_id: 'vol-0b11d5555eeee6666', volume_size: 20, volume_type: 'gp3' }),
    ]);
    expect(web.ebs_block_device).toEqual([
      expect.objectContaining({ volume_id: 'vol-0b11d7777ffff8888', snapshot_id: 'snap-0a1d0000000000002' }),
    ]);
  });

  it('keeps config-owned attributes: tags, tags_all, hashed user_data, key_name, timeouts and API-attribute-only fields', () => {
    const before = webAttributes(v5State());
    const { state, report } = reconcileState(v5State(), v5Input());
    const after = webAttributes(state);

    for (const key of [
      'tags',
      'tags_all',
      'user_data',
      'user_data_base64',
      'user_data_replace_on_change',
      'get_password_data',
      'timeouts',
      'key_name',
      'disable_api_termination',
      'credit_specification',
      'launch_template',
      'volume_tags',
    ]) {
      expect([key, after[key]]).toEqual([key, before[key]]);
    }
    expect(after.user_data).toBe('a106db0ca5e72fe53e2acb8294e12ac876d8faea');
    // The clone reports another key pair than the configured one; the state keeps the configured one.
    expect(v5Instance().KeyName).toBe('ops-2025');
    expect(after.key_name).toBe('ops-2024');
    expect(report.changes.map((change) => change.path)).not.toContain('key_name');
  });

  it('keeps key_name when DescribeInstances omits KeyName', () => {
    const instance = v5Instance();
    delete instance.KeyName;

    const web = webAttributes(reconcileState(v5State(), v5Input({ instance })).state);

    expect(web.key_name).toBe('ops-2024');
  });

  it('never adds an attribute the old object lacks and keeps every key order', () => {
    const instance = v5Instance();
    // placement_group_id and region exist only in v6 states; the API has a placement group id anyway.
    instance.Placement = { ...instance.Placement, GroupId: 'pg-0123456789abcdef0' };
    const before = v5State();

    const { state } = reconcileState(before, v5Input({ instance }));

    expect(Object.keys(webAttributes(state))).toEqual(Object.keys(webAttributes(before)));
    expect(webAttributes(state)).not.toHaveProperty('placement_group_id');
    const eipKeys = (s: StateV4) => Object.keys(attributes(object(s, undefined, 'aws_eip', 'web')));
    expect(eipKeys(state)).toEqual(eipKeys(before));
    expect(Object.keys(state.outputs)).toEqual(Object.keys(before.outputs));
  });

  it('leaves the sibling count instance aws_instance.web[1] as the very same object', () => {
    const before = v5State();

    const { state } = reconcileState(before, v5Input());

    expect(object(state, undefined, 'aws_instance', 'web', 1)).toBe(
      object(before, undefined, 'aws_instance', 'web', 1),
    );
    expect(webAttributes(state, 1).id).toBe(V5_SIBLING);
  });

  it('re-points aws_eip.web from the DescribeAddresses entry with its allocation id, private_dns by formula', () => {
    const { state } = reconcileState(v5State(), v5Input());
    const eip = attributes(object(state, undefined, 'aws_eip', 'web'));

    expect(eip).toMatchObject({
      id: 'eipalloc-0123456789abcdef0',
      association_id: 'eipassoc-0bbbb3333cccc4444',
      instance: V5_NEW,
      network_interface: 'eni-0fedcba9876543210',
      private_ip: '10.0.1.47',
      private_dns: 'ip-10-0-1-47.eu-west-1.compute.internal',
      public_ip: '203.0.113.10',
      public_dns: 'ec2-203-0-113-10.eu-west-1.compute.amazonaws.com',
      vpc: true,
      domain: 'vpc',
    });
  });

  it('replaces the old id, private IP and private DNS in string, list, map and object outputs, inside longer strings too', () => {
    const { state } = reconcileState(v5State(), v5Input());

    expect(state.outputs.instance_id?.value).toBe(V5_NEW);
    expect(state.outputs.private_ips?.value).toEqual(['10.0.1.47', '10.0.1.26']);
    expect(state.outputs.endpoints?.value).toEqual({
      'web-0': 'ip-10-0-1-47.eu-west-1.compute.internal',
      'web-1': 'ip-10-0-1-26.eu-west-1.compute.internal',
    });
    expect(state.outputs.server?.value).toEqual({
      id: V5_NEW,
      name: 'Zoë <web-0> & co',
      private_ip: '10.0.1.47',
      public_ip: '203.0.113.10',
      ssh: 'ssh ec2-user@10.0.1.47',
    });
    expect(state.outputs.bastion_target?.value).toBe('10.0.1.47');
  });

  it('reports a changed sensitive output without its values', () => {
    const { report } = reconcileState(v5State(), v5Input());
    const sensitive = report.changes.filter((change) => change.address === 'output.bastion_target');

    expect(sensitive).toEqual([
      {
        address: 'output.bastion_target',
        path: 'value',
        before: '(sensitive)',
        after: '(sensitive)',
        sensitive: true,
      },
    ]);
    expect(formatReconcileReport(report)).toContain('  output.bastion_target\n    value: (sensitive)\n');
  });

  it('adds one to the serial and keeps lineage, terraform_version, check_results, private, schema_version and dependencies', () => {
    const before = v5State();

    const { state, changed, report } = reconcileState(before, v5Input());

    expect(changed).toBe(true);
    expect(state.serial).toBe(42);
    expect(report).toMatchObject({ serialBefore: '41', serialAfter: '42', alreadyReconciled: false });
    expect(state.lineage).toBe(before.lineage);
    expect(state.terraform_version).toBe('1.9.8');
    expect(state.check_results).toBe(before.check_results);
    const [oldWeb, newWeb] = [
      object(before, undefined, 'aws_instance', 'web', 0),
      object(state, undefined, 'aws_instance', 'web', 0),
    ];
    expect(newWeb.private).toBe(oldWeb.private);
    expect(newWeb.schema_version).toBe(1);
    expect(newWeb.sensitive_attributes).toBe(oldWeb.sensitive_attributes);
    const [oldEip, newEip] = [
      object(before, undefined, 'aws_eip', 'web'),
      object(state, undefined, 'aws_eip', 'web'),
    ];
    expect(newEip.dependencies).toBe(oldEip.dependencies);
    expect(newEip.private).toBe(oldEip.private);
  });

  it('reports the CloudWatch alarm whose dimensions name the old instance, and leaves the alarm unchanged', () => {
    const before = v5State();

    const { state, report } = reconcileState(before, v5Input());

    expect(report.stillMentioning).toEqual([
      { address: 'aws_cloudwatch_metric_alarm.web_cpu', paths: ['dimensions.InstanceId'] },
    ]);
    expect(state.resources[0]).toBe(before.resources[0]);
    expect(report.changes.some((change) => change.address.startsWith('aws_cloudwatch_metric_alarm'))).toBe(
      false,
    );
  });

  it('changes only the lines holding changed values; every other byte is as Terraform wrote it', () => {
    const { state } = reconcileState(v5State(), v5Input());

    expect(writeState(v5State())).toBe(V5_TEXT);
    expect(lineDiff(V5_TEXT, writeState(state)).sort()).toEqual(
      [
        '"serial": 41, => "serial": 42,',
        // outputs: bastion_target (sensitive), endpoints["web-0"], instance_id, private_ips[0], server.id/.private_ip/.ssh
        '"value": "10.0.1.25", => "value": "10.0.1.47",',
        '"web-0": "ip-10-0-1-25.eu-west-1.compute.internal", => "web-0": "ip-10-0-1-47.eu-west-1.compute.internal",',
        `"value": "${V5_OLD}", => "value": "${V5_NEW}",`,
        '"10.0.1.25", => "10.0.1.47",',
        '"ssh": "ssh ec2-user@10.0.1.25" => "ssh": "ssh ec2-user@10.0.1.47"',
        `"id": "${V5_OLD}", => "id": "${V5_NEW}",`,
        '"private_ip": "10.0.1.25", => "private_ip": "10.0.1.47",',
        // aws_eip.web
        '"association_id": "eipassoc-0aaaa1111bbbb2222", => "association_id": "eipassoc-0bbbb3333cccc4444",',
        `"instance": "${V5_OLD}", => "instance": "${V5_NEW}",`,
        '"network_interface": "eni-0123456789abcdef0", => "network_interface": "eni-0fedcba9876543210",',
        '"private_dns": "ip-10-0-1-25.eu-west-1.compute.internal", => "private_dns": "ip-10-0-1-47.eu-west-1.compute.internal",',
        '"private_ip": "10.0.1.25", => "private_ip": "10.0.1.47",',
        // aws_instance.web[0]
        '"ami": "ami-0aaaaaaaaaaaaaaa1", => "ami": "ami-0bbbbbbbbbbbbbbb2",',
        `"arn": "arn:aws:ec2:eu-west-1:123456789012:instance/${V5_OLD}", => "arn": "arn:aws:ec2:eu-west-1:123456789012:instance/${V5_NEW}",`,
        '"snapshot_id": "snap-0a1d0000000000002", => "snapshot_id": "snap-0b2e0000000000003",',
        '"volume_id": "vol-0a00c3333bbbb4444", => "volume_id": "vol-0b11d7777ffff8888",',
        `"id": "${V5_OLD}", => "id": "${V5_NEW}",`,
        '"primary_network_interface_id": "eni-0123456789abcdef0", => "primary_network_interface_id": "eni-0fedcba9876543210",',
        '"private_dns": "ip-10-0-1-25.eu-west-1.compute.internal", => "private_dns": "ip-10-0-1-47.eu-west-1.compute.internal",',
        '"private_ip": "10.0.1.25", => "private_ip": "10.0.1.47",',
        '"volume_id": "vol-0a00c1111aaaa2222", => "volume_id": "vol-0b11d5555eeee6666",',
        '"volume_size": 20, => "volume_size": 30,',
      ].sort(),
    );
  });

  it('writes the big integer output and the non-ASCII and <&> strings exactly as before', () => {
    const written = writeState(reconcileState(v5State(), v5Input()).state);

    expect(written).toContain('"value": 18446744073709551615,');
    expect(written).toContain('"Owner": "Zoë Ødegård \\u003cops\\u0026web\\u003e"');
    expect(written).toContain('"name": "Zoë \\u003cweb-0\\u003e \\u0026 co",');
  });

  it('never mutates the input state (it is deep-frozen here, so any write throws)', () => {
    const { state } = reconcileState(v5State(), v5Input());

    expect(webAttributes(state).id).toBe(V5_NEW);
  });

  it('writes security group names only where the old state held names (default VPC), IDs everywhere', () => {
    const instance = v5Instance();
    instance.SecurityGroups = [{ GroupId: 'sg-0ffff0000aaaa1111', GroupName: 'web-v2' }];

    const web = webAttributes(reconcileState(v5State(), v5Input({ instance })).state);
    const v6 = v6Instance();
    v6.SecurityGroups = [{ GroupId: 'sg-0ffff0000bbbb2222', GroupName: 'app' }];
    const blueAttributes = attributes(blue(reconcileState(v6State(), v6Input({ instance: v6 })).state));

    expect(web.vpc_security_group_ids).toEqual(['sg-0ffff0000aaaa1111']);
    expect(web.security_groups).toEqual([]);
    expect(blueAttributes.vpc_security_group_ids).toEqual(['sg-0ffff0000bbbb2222']);
    expect(blueAttributes.security_groups).toEqual(['app']);
  });
});

describe('reconcile clears the taint of the replaced instance', () => {
  it('writes the new instance untainted and reports the cleared status', () => {
    const { state, report } = reconcileState(taintedWeb(v5State()), v5Input());

    const web = object(state, undefined, 'aws_instance', 'web', 0);
    expect(web.status).toBeUndefined();
    expect(attributes(web).id).toBe(V5_NEW);
    expect(report.changes).toContainEqual({
      address: V5_ADDRESS,
      path: 'status',
      before: 'tainted',
      after: null,
    });
    // The written object is byte-for-byte the one reconciled from an untainted state.
    expect(writeState(state)).toBe(writeState(reconcileState(v5State(), v5Input()).state));
  });

  it('says in the report that the new instance is no longer tainted', () => {
    const text = formatReconcileReport(reconcileState(taintedWeb(v5State()), v5Input()).report);

    expect(text).toContain(
      `    status: "tainted" -> null\n    (no longer "tainted": ${V5_NEW} is the replacement for ${V5_OLD}, so the next apply keeps it)\n`,
    );
  });

  it('keeps a taint put on an object that already names the new instance', () => {
    const reconciled = reconcileState(v5State(), v5Input()).state;
    const tainted = taintedWeb(reconciled);

    const second = reconcileState(tainted, v5Input());

    expect(second.changed).toBe(false);
    expect(second.state).toBe(tainted);
    expect(object(second.state, undefined, 'aws_instance', 'web', 0).status).toBe('tainted');
  });
});

describe('reconcile replaces old values inside longer output strings, as whole tokens only', () => {
  const NOTES: Record<string, string> = {
    sentence: 'web-0 answers at 10.0.1.25.',
    url: 'http://10.0.1.25:8080/health',
    range: '10.0.1.25-10.0.1.30',
    csv: '10.0.1.25,10.0.1.26',
    dns: 'ssh://ec2-user@ip-10-0-1-25.eu-west-1.compute.internal:22',
    id: `instance ${V5_OLD}.`,
    arn: `allow arn:aws:ec2:eu-west-1:123456789012:instance/${V5_OLD};`,
    eni: 'eni=eni-0123456789abcdef0;',
    association: 'association eipassoc-0aaaa1111bbbb2222 (eu-west-1)',
  };
  const NEAR_MISSES = [
    '10.0.1.250',
    '110.0.1.25',
    '10.0.1.25.4',
    '5.10.0.1.25',
    `${V5_OLD}0`,
    `x${V5_OLD}`,
    `${V5_OLD}-old`,
    'eni-0123456789abcdef01',
    'ip-10-0-1-25.eu-west-1.compute.internal.example.com',
    'my-ip-10-0-1-25.eu-west-1.compute.internal',
  ];
  const state = () =>
    withOutputs(v5State(), {
      notes: { value: NOTES, type: ['map', 'string'] },
      near_misses: { value: NEAR_MISSES, type: ['list', 'string'] },
      bastion_url: { value: 'ssh://jump@10.0.1.25:22', type: 'string', sensitive: true },
    });

  it('replaces the id, ARN, private IP and DNS, ENI and association id wherever they stand in a string', () => {
    const { state: after, report } = reconcileState(state(), v5Input());

    expect(after.outputs.notes?.value).toEqual({
      sentence: 'web-0 answers at 10.0.1.47.',
      url: 'http://10.0.1.47:8080/health',
      range: '10.0.1.47-10.0.1.30',
      csv: '10.0.1.47,10.0.1.26',
      dns: 'ssh://ec2-user@ip-10-0-1-47.eu-west-1.compute.internal:22',
      id: `instance ${V5_NEW}.`,
      arn: `allow arn:aws:ec2:eu-west-1:123456789012:instance/${V5_NEW};`,
      eni: 'eni=eni-0fedcba9876543210;',
      association: 'association eipassoc-0bbbb3333cccc4444 (eu-west-1)',
    });
    expect(report.changes).toContainEqual({
      address: 'output.notes',
      path: 'value.sentence',
      before: 'web-0 answers at 10.0.1.25.',
      after: 'web-0 answers at 10.0.1.47.',
    });
  });

  it('leaves strings where an old value only continues into a longer token', () => {
    const before = state();

    const { state: after, report } = reconcileState(before, v5Input());

    expect(after.outputs.near_misses).toBe(before.outputs.near_misses);
    expect(report.changes.filter((change) => change.address === 'output.near_misses')).toEqual([]);
    expect(report.stillMentioning.map((mention) => mention.address)).not.toContain('output.near_misses');
  });

  it('replaces inside a sensitive output and reports it without its values', () => {
    const { state: after, report } = reconcileState(state(), v5Input());

    expect(after.outputs.bastion_url?.value).toBe('ssh://jump@10.0.1.47:22');
    expect(report.changes.filter((change) => change.address === 'output.bastion_url')).toEqual([
      {
        address: 'output.bastion_url',
        path: 'value',
        before: '(sensitive)',
        after: '(sensitive)',
        sensitive: true,
      },
    ]);
    expect(formatReconcileReport(report)).not.toContain('jump@');
  });
});

describe('reconcile reports other resources still naming any old value', () => {
  const alarmSaying = (description: string) =>
    withObject(v5State(), undefined, 'aws_cloudwatch_metric_alarm', 'web_cpu', undefined, (alarm) => ({
      ...alarm,
      attributes: { ...attributes(alarm), alarm_description: description },
    }));

  it('finds the old private IP and ENI in a string of another resource, not only the old id', () => {
    const { report } = reconcileState(
      alarmSaying('CPU \u003e 80 % on web-0 (10.0.1.25, eni-0123456789abcdef0)'),
      v5Input(),
    );

    expect(report.stillMentioning).toEqual([
      {
        address: 'aws_cloudwatch_metric_alarm.web_cpu',
        paths: ['alarm_description', 'dimensions.InstanceId'],
      },
    ]);
  });

  it('does not report an address or id that only continues into a longer one', () => {
    const { report } = reconcileState(
      alarmSaying(`CPU on 10.0.1.250 or 110.0.1.25 (${V5_OLD}9, eni-0123456789abcdef01)`),
      v5Input(),
    );

    expect(report.stillMentioning).toEqual([
      { address: 'aws_cloudwatch_metric_alarm.web_cpu', paths: ['dimensions.InstanceId'] },
    ]);
  });
});

describe('reconcile on a provider v6 state (nested module, for_each, aws_eip_association, identity)', () => {
  it('moves identity.id with attributes.id and keeps the identity account_id and region', () => {
    const { state } = reconcileState(v6State(), v6Input());

    expect(blue(state).identity).toEqual({ account_id: '210987654321', id: V6_NEW, region: 'us-east-1' });
    expect(attributes(blue(state)).id).toBe(V6_NEW);
    expect(blue(state).identity_schema_version).toBe(0);
    expect(blue(state).schema_version).toBe(2);
  });

  it('keeps clear-text user_data, region and force_destroy', () => {
    const before = attributes(blue(v6State()));

    const after = attributes(blue(reconcileState(v6State(), v6Input()).state));

    expect(after.user_data).toBe(before.user_data);
    expect(after.user_data).toContain('Grüße aus <blue> & co');
    expect(after.region).toBe('us-east-1');
    expect(after.force_destroy).toBe(false);
  });

  it('updates the v6 primary_network_interface block with the new ENI', () => {
    const after = attributes(blue(reconcileState(v6State(), v6Input()).state));

    expect(after.primary_network_interface).toEqual([
      { delete_on_termination: true, network_interface_id: 'eni-0b20f0000000000b2' },
    ]);
  });

  it('re-points the aws_eip (instance read back) and the aws_eip_association, new association id as id', () => {
    const { state } = reconcileState(v6State(), v6Input());

    expect(attributes(blue(state, 'aws_eip'))).toMatchObject({
      association_id: 'eipassoc-0b1e00000000000b2',
      instance: V6_NEW,
      network_interface: 'eni-0b20f0000000000b2',
      private_ip: '172.31.20.54',
      // us-east-1 names its private DNS ec2.internal.
      private_dns: 'ip-172-31-20-54.ec2.internal',
      region: 'us-east-1',
    });
    expect(attributes(blue(state, 'aws_eip_association'))).toEqual({
      allocation_id: 'eipalloc-0b1e0000000000001',
      allow_reassociation: null,
      association_id: 'eipassoc-0b1e00000000000b2',
      id: 'eipassoc-0b1e00000000000b2',
      instance_id: V6_NEW,
      network_interface_id: 'eni-0b20f0000000000b2',
      private_ip_address: '172.31.20.54',
      public_ip: '198.51.100.20',
      region: 'us-east-1',
    });
  });

  it('moves the identity.id of an aws_eip_association with its new association id', () => {
    // Terraform 1.12+ with a provider version that gives the association an identity.
    const withIdentity = withObject(v6State(), MODULE, 'aws_eip_association', 'this', 'blue', (assoc) => ({
      ...assoc,
      identity_schema_version: 0,
      identity: { account_id: '210987654321', id: 'eipassoc-0b1e00000000000a1', region: 'us-east-1' },
    }));

    const { state, report } = reconcileState(withIdentity, v6Input());

    const association = blue(state, 'aws_eip_association');
    expect(attributes(association).id).toBe('eipassoc-0b1e00000000000b2');
    expect(association.identity).toEqual({
      account_id: '210987654321',
      id: 'eipassoc-0b1e00000000000b2',
      region: 'us-east-1',
    });
    expect(report.changes).toContainEqual({
      address: `${MODULE}.aws_eip_association.this["blue"]`,
      path: 'identity.id',
      before: 'eipassoc-0b1e00000000000a1',
      after: 'eipassoc-0b1e00000000000b2',
    });
  });

  it('leaves the green for_each siblings (instance, EIP, association) as the very same objects', () => {
    const before = v6State();

    const { state } = reconcileState(before, v6Input());

    for (const type of ['aws_instance', 'aws_eip', 'aws_eip_association']) {
      expect(green(state, type)).toBe(green(before, type));
    }
    expect(state.outputs.instance_ids?.value).toEqual({ blue: V6_NEW, green: 'i-0c30a7a7a7a7a7a73' });
  });

  it('adds one to a serial above 2^53 exactly', () => {
    const { report } = reconcileState(v6State(), v6Input());

    expect(report.serialBefore).toBe('9007199254740993');
    expect(report.serialAfter).toBe('9007199254740994');
  });

  it('changes only the lines holding changed values', () => {
    const { state } = reconcileState(v6State(), v6Input());

    const diff = lineDiff(V6_TEXT, writeState(state));

    expect(diff).toHaveLength(22);
    expect(diff).toContain('"serial": 9007199254740993, => "serial": 9007199254740994,');
    expect(diff).toContain(`"id": "${V6_OLD}", => "id": "${V6_NEW}",`);
    expect(diff.filter((line) => line.includes(V6_OLD))).toHaveLength(6);
    expect(diff.every((line) => !line.includes('green') && !line.includes('user_data'))).toBe(true);
  });
});

describe('reconcile refuses with a reason instead of returning a state', () => {
  it('refuses an address that is not in the state', () => {
    const error = refusal(() =>
      reconcileState(v5State(), v5Input({ instanceAddress: 'aws_instance.web[2]' })),
    );

    expect(error.reason).toBe('AddressNotFound');
    expect(error.message).toBe('aws_instance.web[2] is not in the state: nothing was changed');
  });

  it('refuses an address that does not parse', () => {
    expect(
      refusal(() => reconcileState(v5State(), v5Input({ instanceAddress: 'aws_instance.' }))).reason,
    ).toBe('InvalidAddress');
  });

  it('refuses an address that names something other than an aws_instance', () => {
    const error = refusal(() => reconcileState(v5State(), v5Input({ instanceAddress: 'aws_eip.web' })));

    expect(error.reason).toBe('InvalidAddress');
    expect(error.message).toContain('aws_eip.web is an aws_eip, not a managed aws_instance');
  });

  it('refuses when the state holds an instance other than the expected one', () => {
    const error = refusal(() =>
      reconcileState(v5State(), v5Input({ expectInstanceId: 'i-0123456789abcdef0' })),
    );

    expect(error.reason).toBe('ExpectedInstanceDiffers');
    expect(error.message).toBe(
      `aws_instance.web[0] holds ${V5_OLD}, not the expected i-0123456789abcdef0: nothing was changed`,
    );
  });

  it('accepts the expected instance when the state holds it', () => {
    expect(reconcileState(v5State(), v5Input({ expectInstanceId: V5_OLD })).changed).toBe(true);
  });

  it('refuses when an EIP bound to the old instance is missing from DescribeAddresses', () => {
    const addresses = v6Addresses().filter(
      (address) => address.AllocationId !== 'eipalloc-0b1e0000000000001',
    );

    const error = refusal(() => reconcileState(v6State(), v6Input({ addresses })));

    expect(error.reason).toBe('InvalidDescribeOutput');
    expect(error.message).toContain(
      `${MODULE}.aws_eip.this["blue"] (eipalloc-0b1e0000000000001) is bound to ${V6_OLD}`,
    );
  });

  it('refuses DescribeAddresses output taken before the switch (the EIP still on the old instance)', () => {
    const addresses = v5Addresses().map((address) => ({ ...address, InstanceId: V5_OLD }));

    const error = refusal(() => reconcileState(v5State(), v5Input({ addresses })));

    expect(error.reason).toBe('InvalidDescribeOutput');
    expect(error.message).toContain(`associated with ${V5_OLD}, not the new instance ${V5_NEW}`);
  });
});

describe('reconcile is idempotent', () => {
  it.each([
    ['v5', v5State, v5Input],
    ['v6', v6State, v6Input],
  ])(
    'a second %s run changes nothing, keeps the serial and writes byte-identical output',
    (_name, load, input) => {
      const first = reconcileState(load(), input());

      const second = reconcileState(deepFreeze(first.state), input());

      expect(second.changed).toBe(false);
      expect(second.state).toBe(first.state);
      expect(second.report).toMatchObject({ alreadyReconciled: true, changes: [] });
      expect(second.report.serialAfter).toBe(first.report.serialAfter);
      expect(writeState(second.state)).toBe(writeState(first.state));
    },
  );

  it('accepts --expect-instance naming the old instance on an already reconciled state', () => {
    const first = reconcileState(v5State(), v5Input());

    const second = reconcileState(first.state, v5Input({ expectInstanceId: V5_OLD }));

    expect(second.changed).toBe(false);
    expect(second.report).toMatchObject({
      alreadyReconciled: true,
      oldInstanceId: V5_OLD,
      newInstanceId: V5_NEW,
    });
    // The alarm still names the old instance until the next apply.
    expect(second.report.stillMentioning.map((m) => m.address)).toEqual([
      'aws_cloudwatch_metric_alarm.web_cpu',
    ]);
  });

  it('still finishes the re-pointing when only the instance had been reconciled', () => {
    const first = reconcileState(v5State(), v5Input());
    const halfDone: StateV4 = { ...first.state, outputs: v5State().outputs };

    const second = reconcileState(halfDone, v5Input({ expectInstanceId: V5_OLD }));

    expect(second.changed).toBe(true);
    expect(second.report.alreadyReconciled).toBe(false);
    expect(second.state.outputs.instance_id?.value).toBe(V5_NEW);
    expect(second.report.serialAfter).toBe('43');
  });
});

describe('the reconcile report', () => {
  it('names the instance, the serial change, each changed object and the resources still mentioning the old id', () => {
    const text = formatReconcileReport(reconcileState(v5State(), v5Input()).report);

    expect(text.split('\n')[0]).toBe(`aws_instance.web[0]: ${V5_OLD} -> ${V5_NEW} (serial 41 -> 42)`);
    expect(text).toContain(
      '  aws_eip.web\n    association_id: "eipassoc-0aaaa1111bbbb2222" -> "eipassoc-0bbbb3333cccc4444"\n',
    );
    expect(text).toContain('    root_block_device[0].volume_size: 20 -> 30\n');
    expect(text).toContain('  output.endpoints\n    value.web-0: ');
    expect(text).toContain(
      `Still mentioning the old instance (${V5_OLD}, arn:aws:ec2:eu-west-1:123456789012:instance/${V5_OLD}, 10.0.1.25, ip-10-0-1-25.eu-west-1.compute.internal, eni-0123456789abcdef0, eipassoc-0aaaa1111bbbb2222); the next terraform apply updates them:\n  aws_cloudwatch_metric_alarm.web_cpu: dimensions.InstanceId\n`,
    );
  });

  it('says so when the state was already reconciled', () => {
    const first = reconcileState(v6State(), v6Input());

    const text = formatReconcileReport(reconcileState(first.state, v6Input()).report);

    expect(text).toBe(
      `${V6_ADDRESS} already describes ${V6_NEW}: nothing to change (serial 9007199254740994 kept).\n`,
    );
  });
});
