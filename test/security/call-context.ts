import type { Sandbox } from '../../sandbox/aws/sandbox';
import type { CallRecord } from '../../sandbox/contracts';
import type { AuthRequest, ContextValue } from './iam-eval';

/**
 * Turns one call of the sandbox's log into the authorization requests AWS makes for it: the IAM
 * action, each resource ARN the call touches, and the condition keys of each (resource tags as they
 * were when the call was made, request tags, and the keys services add when they act for the caller,
 * such as kms:ViaService). One call is often several requests: RunInstances is authorized on every
 * resource it uses or creates, the tags it writes, the role it passes and the keys of its volumes.
 */

/** What the account looked like at the moment of one call, for the resources that call names. */
export interface StateAtCall {
  /** Tags by resource ARN (instances, Elastic IPs, images). */
  readonly tags: ReadonlyMap<string, Readonly<Record<string, string>>>;
  /** Root snapshot and its key, by image id. */
  readonly images: ReadonlyMap<string, { readonly snapshotId: string; readonly kmsKeyId?: string }>;
  /** The key an S3 object is encrypted with, by `bucket/key` (SSE-KMS objects only). */
  readonly objectKeys: ReadonlyMap<string, string>;
}

export interface AccountFacts {
  readonly region: string;
  readonly accountId: string;
  /**
   * Keys whose key policy leaves authorization to IAM. AWS managed keys (aws/ebs, aws/s3, aws/ssm)
   * allow every principal of the account through their service by key policy, so they need no grant.
   */
  readonly customerKeys: ReadonlySet<string>;
  /** The customer key each encrypted topic uses (the stack's topic and its key). */
  readonly topicKeys: Readonly<Record<string, string>>;
  /** The state machine whose task tokens the callbacks answer. */
  readonly stateMachineArn: string;
  /** The partition key attribute of each DynamoDB table. */
  readonly hashKeys: Readonly<Record<string, string>>;
}

type Input = Record<string, unknown>;
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];

const EC2_READ = /^(Describe|Get|List)/;
const SSM_READ_WITHOUT_RESOURCE = new Set([
  'DescribeInstanceInformation',
  'ListCommands',
  'GetCommandInvocation',
]);

/** Reads, synchronously and without a call record, what `call` will be authorized against. */
export const captureState = (
  sandbox: Sandbox,
  service: string,
  input: Input,
  facts: AccountFacts,
): StateAtCall => {
  const tags = new Map<string, Record<string, string>>();
  const images = new Map<string, { snapshotId: string; kmsKeyId?: string }>();
  const objectKeys = new Map<string, string>();
  const ec2Arn = (type: string, id: string) => `arn:aws:ec2:${facts.region}:${facts.accountId}:${type}/${id}`;
  if (service === 'ec2' || service === 'ssm') {
    const instanceIds = [
      ...strings(input.InstanceIds),
      ...strings(input.Resources),
      ...(str(input.InstanceId) ? [input.InstanceId as string] : []),
    ];
    for (const id of instanceIds) {
      const instance = sandbox.ec2.instances.get(id);
      if (instance) tags.set(ec2Arn('instance', id), Object.fromEntries(instance.tags));
    }
    const allocationId = str(input.AllocationId);
    const address = allocationId ? sandbox.ec2.addresses.get(allocationId) : undefined;
    if (allocationId && address)
      tags.set(ec2Arn('elastic-ip', allocationId), Object.fromEntries(address.tags));
    const imageId = str(input.ImageId);
    const image = imageId ? sandbox.ec2.images.get(imageId) : undefined;
    if (imageId && image) {
      images.set(imageId, {
        snapshotId: image.rootSnapshotId,
        ...(image.rootKmsKeyId ? { kmsKeyId: image.rootKmsKeyId } : {}),
      });
    }
  }
  if (service === 's3') {
    const bucket = str(input.Bucket);
    const key = str(input.Key);
    const kms = bucket && key ? sandbox.s3.details(bucket, key)?.kmsKeyId : undefined;
    if (kms) objectKeys.set(`${bucket}/${key}`, kms);
  }
  return { tags, images, objectKeys };
};

const tagContext = (
  tags: Readonly<Record<string, string>> | undefined,
  prefixes: readonly string[],
): Record<string, string> =>
  Object.fromEntries(
    Object.entries(tags ?? {}).flatMap(([k, v]) =>
      prefixes.map((p) => [`${p}:ResourceTag/${k}`, v] as const),
    ),
  );

const requestTagContext = (
  tags: readonly { Key?: string; Value?: string }[],
): Record<string, ContextValue> => {
  if (tags.length === 0) return {};
  return {
    ...Object.fromEntries(tags.map((t) => [`aws:RequestTag/${t.Key ?? ''}`, t.Value ?? ''])),
    'aws:TagKeys': tags.map((t) => t.Key ?? ''),
  };
};

/** The authorization requests one logged call stands for. Throws on a call it does not know how to read. */
export const requestsFor = (call: CallRecord, state: StateAtCall, facts: AccountFacts): AuthRequest[] => {
  const input = call.input as Input;
  const { region, accountId } = facts;
  const ec2Arn = (type: string, id: string) => `arn:aws:ec2:${region}:${accountId}:${type}/${id}`;
  const viaService = (service: string) => `${service}.${region}.amazonaws.com`;
  const ask = (
    action: string,
    resource: string,
    context: Record<string, ContextValue> = {},
  ): AuthRequest => ({
    action,
    resource,
    context,
  });
  const instance = (id: string) => {
    const arn = ec2Arn('instance', id);
    return ask('', arn, tagContext(state.tags.get(arn), ['aws', 'ec2']));
  };
  const customer = (key: string | undefined): key is string =>
    key !== undefined && facts.customerKeys.has(key);

  switch (call.service) {
    case 'ec2': {
      if (EC2_READ.test(call.action)) return [ask(`ec2:${call.action}`, '*')];
      const action = `ec2:${call.action}`;
      switch (call.action) {
        case 'RunInstances':
          return runInstances(input, state, facts);
        case 'CreateTags': {
          const tags = (input.Tags ?? []) as { Key?: string; Value?: string }[];
          return strings(input.Resources).map((id) => {
            if (!id.startsWith('i-')) throw new Error(`call-context: CreateTags on ${id} is not modelled`);
            const base = instance(id);
            return { ...base, action, context: { ...base.context, ...requestTagContext(tags) } };
          });
        }
        case 'StopInstances':
        case 'StartInstances':
        case 'TerminateInstances':
          return strings(input.InstanceIds).map((id) => ({ ...instance(id), action }));
        case 'ModifyInstanceAttribute':
          return [{ ...instance(str(input.InstanceId) ?? ''), action }];
        case 'AssociateAddress': {
          const allocation = ec2Arn('elastic-ip', str(input.AllocationId) ?? '');
          const requests = [ask(action, allocation, tagContext(state.tags.get(allocation), ['aws', 'ec2']))];
          if (str(input.InstanceId)) requests.push({ ...instance(input.InstanceId as string), action });
          if (str(input.NetworkInterfaceId))
            requests.push(ask(action, ec2Arn('network-interface', input.NetworkInterfaceId as string)));
          return requests;
        }
        default:
          throw new Error(`call-context: ec2:${call.action} is not modelled; add how IAM authorizes it`);
      }
    }

    case 'ssm': {
      const parameter = (name: string) =>
        `arn:aws:ssm:${region}:${accountId}:parameter/${name.replace(/^\//, '')}`;
      if (SSM_READ_WITHOUT_RESOURCE.has(call.action)) return [ask(`ssm:${call.action}`, '*')];
      switch (call.action) {
        case 'GetParameter':
        case 'PutParameter':
        case 'DeleteParameter':
          // A SecureString with the default aws/ssm key needs no KMS grant; a customer key would.
          if (str(input.KeyId))
            throw new Error('call-context: SecureString with a customer key is not modelled');
          return [ask(`ssm:${call.action}`, parameter(str(input.Name) ?? ''))];
        case 'DeleteParameters':
        case 'GetParameters':
          return strings(input.Names).map((name) => ask(`ssm:${call.action}`, parameter(name)));
        case 'SendCommand': {
          const document = str(input.DocumentName) ?? '';
          // AWS-owned documents live in no account.
          const documentArn = document.startsWith('AWS-')
            ? `arn:aws:ssm:${region}::document/${document}`
            : `arn:aws:ssm:${region}:${accountId}:document/${document}`;
          return [
            ask('ssm:SendCommand', documentArn),
            ...strings(input.InstanceIds).map((id) => {
              const arn = ec2Arn('instance', id);
              return ask('ssm:SendCommand', arn, tagContext(state.tags.get(arn), ['aws', 'ssm']));
            }),
          ];
        }
        default:
          throw new Error(`call-context: ssm:${call.action} is not modelled`);
      }
    }

    case 's3': {
      const bucket = str(input.Bucket) ?? '';
      const key = str(input.Key);
      const objectArn = `arn:aws:s3:::${bucket}/${key ?? ''}`;
      const bucketArn = `arn:aws:s3:::${bucket}`;
      const objectKey = state.objectKeys.get(`${bucket}/${key ?? ''}`);
      const viaS3 = { 'kms:ViaService': viaService('s3') };
      const versioned = str(input.VersionId) !== undefined;
      switch (call.action) {
        case 'GetObject':
        case 'HeadObject': {
          const requests = [ask(versioned ? 's3:GetObjectVersion' : 's3:GetObject', objectArn)];
          // Reading the bytes of an SSE-KMS object decrypts its data key; HEAD reads metadata only.
          if (call.action === 'GetObject' && customer(objectKey))
            requests.push(ask('kms:Decrypt', objectKey, viaS3));
          // Without ListBucket S3 answers a missing key with AccessDenied, not the NoSuchKey the code expects.
          if (call.error === 'NoSuchKey' || call.error === 'NotFound')
            requests.push(ask('s3:ListBucket', bucketArn));
          return requests;
        }
        case 'PutObject': {
          const requests = [ask('s3:PutObject', objectArn)];
          const sse = str(input.SSEKMSKeyId);
          if (customer(sse)) requests.push(ask('kms:GenerateDataKey', sse, viaS3));
          else if (input.ServerSideEncryption === 'aws:kms' && sse === undefined)
            throw new Error('call-context: SSE-KMS without a named key (bucket default) is not modelled');
          return requests;
        }
        case 'DeleteObject':
          return [ask(versioned ? 's3:DeleteObjectVersion' : 's3:DeleteObject', objectArn)];
        case 'ListObjectsV2':
        case 'ListObjects':
          return [
            ask('s3:ListBucket', bucketArn, str(input.Prefix) ? { 's3:prefix': input.Prefix as string } : {}),
          ];
        case 'ListObjectVersions':
          return [
            ask(
              's3:ListBucketVersions',
              bucketArn,
              str(input.Prefix) ? { 's3:prefix': input.Prefix as string } : {},
            ),
          ];
        default:
          throw new Error(`call-context: s3:${call.action} is not modelled`);
      }
    }

    case 'dynamodb': {
      const table = str(input.TableName) ?? '';
      const hashKey = facts.hashKeys[table];
      if (!hashKey) throw new Error(`call-context: the partition key of table ${table} is not known`);
      const item = (input.Key ?? input.Item) as Record<string, Record<string, string>> | undefined;
      const leading = item?.[hashKey];
      const value = leading?.S ?? leading?.N;
      if (!['GetItem', 'PutItem', 'DeleteItem', 'UpdateItem'].includes(call.action))
        throw new Error(`call-context: dynamodb:${call.action} is not modelled`);
      return [
        ask(
          `dynamodb:${call.action}`,
          `arn:aws:dynamodb:${region}:${accountId}:table/${table}`,
          value === undefined ? {} : { 'dynamodb:LeadingKeys': [value] },
        ),
      ];
    }

    case 'sns': {
      if (call.action !== 'Publish') throw new Error(`call-context: sns:${call.action} is not modelled`);
      const topic = str(input.TopicArn) ?? '';
      const requests = [ask('sns:Publish', topic)];
      // SNS encrypts each message under the topic's key, acting for the publisher.
      const key = facts.topicKeys[topic];
      if (key) {
        requests.push(
          ask('kms:GenerateDataKey', key, { 'kms:ViaService': viaService('sns') }),
          ask('kms:Decrypt', key, { 'kms:ViaService': viaService('sns') }),
        );
      }
      return requests;
    }

    case 'sfn': {
      // A callback names only its token: IAM checks it against the state machine that issued it.
      if (call.action.startsWith('SendTask')) return [ask(`states:${call.action}`, facts.stateMachineArn)];
      const machine = str(input.stateMachineArn);
      const execution = str(input.executionArn);
      if (['StartExecution', 'ListExecutions'].includes(call.action) && machine)
        return [ask(`states:${call.action}`, machine)];
      if (
        ['DescribeExecution', 'StopExecution', 'GetExecutionHistory', 'RedriveExecution'].includes(
          call.action,
        ) &&
        execution
      )
        return [ask(`states:${call.action}`, execution)];
      throw new Error(`call-context: sfn:${call.action} is not modelled`);
    }

    case 'events': {
      if (call.action !== 'PutEvents') throw new Error(`call-context: events:${call.action} is not modelled`);
      const entries = (input.Entries ?? []) as {
        EventBusName?: string;
        Source?: string;
        DetailType?: string;
      }[];
      return entries.map((e) => {
        const bus = e.EventBusName ?? 'default';
        const busArn = bus.startsWith('arn:')
          ? bus
          : `arn:aws:events:${region}:${accountId}:event-bus/${bus}`;
        return ask('events:PutEvents', busArn, {
          ...(e.Source ? { 'events:source': e.Source } : {}),
          ...(e.DetailType ? { 'events:detail-type': e.DetailType } : {}),
        });
      });
    }

    case 'cloudformation': {
      const stack = str(input.StackName);
      if (call.action !== 'DescribeStacks' || !stack)
        throw new Error(`call-context: cloudformation:${call.action} is not modelled`);
      const stackArn = stack.startsWith('arn:')
        ? stack
        : `arn:aws:cloudformation:${region}:${accountId}:stack/${stack}/*`;
      return [ask('cloudformation:DescribeStacks', stackArn)];
    }

    case 'scheduler': {
      const schedule = `arn:aws:scheduler:${region}:${accountId}:schedule/${str(input.GroupName) ?? 'default'}/${str(input.Name) ?? ''}`;
      const requests = [ask(`scheduler:${call.action}`, schedule)];
      // CreateSchedule hands the schedule its execution role (the Scheduler user guide's iam:PassRole).
      const role = str((input.Target as Input | undefined)?.RoleArn);
      if (call.action === 'CreateSchedule' && role) {
        requests.push(ask('iam:PassRole', role, { 'iam:PassedToService': 'scheduler.amazonaws.com' }));
      }
      return requests;
    }

    default:
      throw new Error(`call-context: ${String(call.service)}:${call.action} is not modelled`);
  }
};

/**
 * RunInstances, as the EC2 user guide lists what it authorizes: the image and its snapshot, the subnet,
 * security groups and key pair it uses, the instance, volumes and interface it creates (under `*`, as
 * they have no id yet, with the tags the request puts on them), CreateTags for those tags
 * (ec2:CreateAction), iam:PassRole for the profile's role, and, for volumes under a customer key, the
 * KMS operations EC2 performs for the caller.
 */
const runInstances = (input: Input, state: StateAtCall, facts: AccountFacts): AuthRequest[] => {
  const { region, accountId } = facts;
  const arn = (type: string, id: string, account = accountId) =>
    `arn:aws:ec2:${region}:${account}:${type}/${id}`;
  const specs = (input.TagSpecifications ?? []) as {
    ResourceType?: string;
    Tags?: { Key?: string; Value?: string }[];
  }[];
  const tagsFor = (type: string) => specs.filter((s) => s.ResourceType === type).flatMap((s) => s.Tags ?? []);
  const action = 'ec2:RunInstances';
  const imageId = str(input.ImageId) ?? '';
  const image = state.images.get(imageId);
  const eth0 = ((input.NetworkInterfaces ?? []) as Input[]).find((n) => (n.DeviceIndex ?? 0) === 0);
  const subnet = str(eth0?.SubnetId) ?? str(input.SubnetId);
  const groups = eth0 ? strings(eth0.Groups) : strings(input.SecurityGroupIds);

  const requests: AuthRequest[] = [
    { action, resource: arn('image', imageId, ''), context: {} },
    ...(image ? [{ action, resource: arn('snapshot', image.snapshotId, ''), context: {} }] : []),
    ...(subnet ? [{ action, resource: arn('subnet', subnet), context: {} }] : []),
    ...groups.map((g) => ({ action, resource: arn('security-group', g), context: {} })),
    ...(str(input.KeyName)
      ? [{ action, resource: arn('key-pair', input.KeyName as string), context: {} }]
      : []),
  ];
  for (const type of ['instance', 'volume', 'network-interface']) {
    const tags = tagsFor(type);
    requests.push({ action, resource: arn(type, '*'), context: requestTagContext(tags) });
    if (tags.length > 0) {
      requests.push({
        action: 'ec2:CreateTags',
        resource: arn(type, '*'),
        context: { ...requestTagContext(tags), 'ec2:CreateAction': 'RunInstances' },
      });
    }
  }

  const profile = input.IamInstanceProfile as { Arn?: string; Name?: string } | undefined;
  const profileName = profile?.Name ?? profile?.Arn?.split('/').pop();
  if (profileName) {
    // The sandbox does not model IAM: its instance profiles hold a role of the same name.
    requests.push({
      action: 'iam:PassRole',
      resource: `arn:aws:iam::${accountId}:role/${profileName}`,
      context: {
        'iam:PassedToService': 'ec2.amazonaws.com',
        'iam:AssociatedResourceArn': arn('instance', '*'),
      },
    });
  }

  const mappings = (input.BlockDeviceMappings ?? []) as { Ebs?: { KmsKeyId?: string } }[];
  const sourceKey = image?.kmsKeyId;
  const volumeKeys = mappings.flatMap((m) => (m.Ebs?.KmsKeyId ? [m.Ebs.KmsKeyId] : []));
  const targetKeys = volumeKeys.length > 0 ? volumeKeys : sourceKey ? [sourceKey] : [];
  const via = { 'kms:ViaService': `ec2.${region}.amazonaws.com` };
  for (const key of new Set([...(sourceKey ? [sourceKey] : []), ...targetKeys])) {
    if (!facts.customerKeys.has(key)) continue;
    requests.push(
      { action: 'kms:CreateGrant', resource: key, context: { ...via, 'kms:GrantIsForAWSResource': true } },
      { action: 'kms:Decrypt', resource: key, context: via },
      { action: 'kms:DescribeKey', resource: key, context: via },
      { action: 'kms:GenerateDataKeyWithoutPlaintext', resource: key, context: via },
    );
  }
  // A snapshot restored under another key is re-encrypted from its key to the new one.
  for (const key of targetKeys) {
    if (sourceKey === undefined || key === sourceKey) continue;
    if (facts.customerKeys.has(sourceKey))
      requests.push({ action: 'kms:ReEncryptFrom', resource: sourceKey, context: via });
    if (facts.customerKeys.has(key))
      requests.push({ action: 'kms:ReEncryptTo', resource: key, context: via });
  }
  return requests;
};
