import { ArnFormat, Stack } from 'aws-cdk-lib';
import type * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { TargetConfig } from '../lambdas/shared/config';
import { parameterNames, runKeys, Tags } from '../lambdas/shared/constants';
import { PHASE_DETAIL_TYPES, PHASE_EVENT_SOURCE } from '../lambdas/shared/notify';
import { BACKUP_INFIX, DIGEST_SUFFIX, LOCK_FILE_SUFFIX } from '../lambdas/shared/tfstate/s3-backend';
import { parseS3StateUrl, stateObjectKey } from '../lambdas/shared/tfstate/s3-keys';
import { TRANSFER_PREFIX } from '../lambdas/shared/tls';
import { acknowledgeWildcards, type JustifiedStatement } from './nag-findings';
import { pascalCase, STEP_NAMES, type StepName } from './steps';

export interface StepPermissionsProps {
  /** The role of each step's function; each gets one policy with what its step calls, nothing more. */
  readonly roles: Readonly<Record<StepName, iam.IRole>>;
  /** Configured targets: their names scope every tag condition, their EIPs the address statements. */
  readonly targets: readonly TargetConfig[];
  /** SSM prefix of the stack, e.g. `/understudy/Understudy`. */
  readonly parameterPrefix: string;
  readonly runsBucket: s3.IBucket;
  readonly topic: sns.ITopic;
  /** The key the topic is encrypted with; publishers need it through SNS. */
  readonly topicKey: kms.IKey;
  /** Target of SendTaskSuccess / Failure / Heartbeat. */
  readonly stateMachine: sfn.IStateMachine;
  /** The Understudy bus, where the started, switched, rolled-back and finished phases are announced. */
  readonly eventBus: events.IEventBus;
  /** End-of-window schedules (lib/retirement.ts): where Retire and the rollback steps create them, and their role. */
  readonly retirement: { readonly scheduleArns: string; readonly role: iam.IRole };
}

const DESCRIBE_REASON =
  'EC2 Describe* and these SSM read calls have no resource-level permissions (Service Authorization Reference), so they take Resource "*"';
const TAGGED_INSTANCE_REASON =
  'instance/* is narrowed by an understudy:target tag condition: only boxes of configured targets match';

/**
 * Hand-written least-privilege IAM, one policy per step. Kept apart from the roles' default policies on
 * purpose: the signal and await-readiness policies name the state machine, which itself names the
 * functions; in the role's own default policy that would make each function wait for the state machine
 * and the state machine for the functions (a CloudFormation cycle).
 */
export class StepPermissions extends Construct {
  readonly policies: Readonly<Record<StepName, iam.Policy>>;

  constructor(scope: Construct, id: string, props: StepPermissionsProps) {
    super(scope, id);
    const statements = stepStatements(this, props);
    const policies: Partial<Record<StepName, iam.Policy>> = {};
    for (const step of STEP_NAMES) {
      const justified = statements[step];
      const policy = new iam.Policy(this, pascalCase(step), {
        roles: [props.roles[step]],
        statements: justified.map((j) => j.statement),
      });
      acknowledgeWildcards(policy, justified);
      policies[step] = policy;
    }
    this.policies = policies as Record<StepName, iam.Policy>;
  }
}

/**
 * What a step needs on each target's Terraform backend. `write` (Reconcile): the state object and its
 * backups (read, write), the `.tflock` object (also delete), the DynamoDB lock and digest items, and the
 * bucket's KMS key through S3. `read` (Preflight, which checks the instance address before anything
 * changes): the state object and decryption only. Nothing else in the bucket or table.
 */
const terraformStateAccess = (
  stack: Stack,
  targets: readonly TargetConfig[],
  access: 'read' | 'write',
): JustifiedStatement[] => {
  const write = access === 'write';
  const backends = targets.flatMap((t) => (t.terraform ? [{ target: t.name, terraform: t.terraform }] : []));
  if (backends.length === 0) return [];
  const s3Arn = (resource: string) => stack.formatArn({ service: 's3', region: '', account: '', resource });
  const objects = backends.map(({ terraform }) => {
    const { bucket, key } = parseS3StateUrl(terraform.state);
    const objectKey = stateObjectKey({ ...terraform, bucket, key, lockTimeoutSeconds: 0 });
    return { bucket, objectKey, path: `${bucket}/${objectKey}` };
  });
  const statements: JustifiedStatement[] = [
    ...(write
      ? [
          {
            statement: new iam.PolicyStatement({
              sid: 'ReadAndWriteTerraformState',
              actions: ['s3:GetObject', 's3:PutObject'],
              resources: objects.flatMap((o) => [
                s3Arn(o.path),
                s3Arn(`${o.path}${LOCK_FILE_SUFFIX}`),
                s3Arn(`${o.path}${BACKUP_INFIX}*`),
              ]),
            }),
            wildcardReason: 'backups of the state are named after the run and the serial, known at run time',
          },
          {
            statement: new iam.PolicyStatement({
              sid: 'ReleaseTerraformLockFile',
              actions: ['s3:DeleteObject'],
              resources: objects.map((o) => s3Arn(`${o.path}${LOCK_FILE_SUFFIX}`)),
            }),
          },
        ]
      : [
          {
            statement: new iam.PolicyStatement({
              sid: 'ReadTerraformState',
              actions: ['s3:GetObject'],
              resources: objects.map((o) => s3Arn(o.path)),
            }),
          },
        ]),
    {
      // Without ListBucket a missing object reads as AccessDenied, and "no lock file" could not be told
      // apart from "not allowed". S3 checks it for the GetObject itself, where no s3:prefix is in the
      // request context, so it cannot be narrowed by prefix; Terraform's S3 backend needs the same.
      statement: new iam.PolicyStatement({
        sid: 'TellMissingStateObjectsApart',
        actions: ['s3:ListBucket'],
        resources: [...new Set(objects.map((o) => s3Arn(o.bucket)))],
      }),
    },
  ];
  // Reading needs no table: preflight reads the state without the lock or the digest.
  const tables = backends.flatMap(({ terraform }, i) =>
    write && terraform.dynamodbTable
      ? [
          {
            table: terraform.dynamodbTable,
            region: terraform.region,
            path: (objects[i] as { path: string }).path,
          },
        ]
      : [],
  );
  if (tables.length > 0) {
    statements.push({
      statement: new iam.PolicyStatement({
        sid: 'TakeTerraformLockAndDigestItems',
        actions: ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem'],
        resources: [
          ...new Set(
            tables.map((t) =>
              stack.formatArn({
                service: 'dynamodb',
                resource: 'table',
                resourceName: t.table,
                ...(t.region ? { region: t.region } : {}),
              }),
            ),
          ),
        ],
        conditions: {
          'ForAllValues:StringEquals': {
            'dynamodb:LeadingKeys': tables.flatMap((t) => [t.path, `${t.path}${DIGEST_SUFFIX}`]),
          },
        },
      }),
    });
  }
  const keys = [
    ...new Set(backends.flatMap(({ terraform }) => (terraform.kmsKeyArn ? [terraform.kmsKeyArn] : []))),
  ];
  // S3 uses the key in the bucket's region, which is the backend's region when it names one.
  const viaS3 = [
    ...new Set(
      backends
        .filter(({ terraform }) => terraform.kmsKeyArn)
        .map(({ terraform }) => `s3.${terraform.region ?? stack.region}.${stack.urlSuffix}`),
    ),
  ];
  if (keys.length > 0) {
    statements.push({
      statement: new iam.PolicyStatement({
        sid: 'UseStateBucketKey',
        actions: write ? ['kms:Decrypt', 'kms:GenerateDataKey'] : ['kms:Decrypt'],
        resources: keys,
        conditions: { StringEquals: { 'kms:ViaService': viaS3 } },
      }),
    });
  }
  return statements;
};

/** The statements of every step, built against `scope`'s stack (account, region, partition). */
const stepStatements = (
  scope: Construct,
  props: StepPermissionsProps,
): Record<StepName, JustifiedStatement[]> => {
  const stack = Stack.of(scope);
  const targetNames = props.targets.map((t) => t.name);
  if (targetNames.length === 0)
    throw new Error('declare at least one target: every EC2 permission is scoped to one');

  const ec2Arn = (resource: string, account?: string) =>
    stack.formatArn({
      service: 'ec2',
      resource,
      resourceName: '*',
      ...(account === undefined ? {} : { account }),
    });
  const instances = ec2Arn('instance');
  const parameterArn = (name: string, account?: string) =>
    stack.formatArn({
      service: 'ssm',
      resource: 'parameter',
      resourceName: name.replace(/^\//, ''),
      arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
      ...(account === undefined ? {} : { account }),
    });
  const names = parameterNames(props.parameterPrefix);
  const eipArns = props.targets.map((t) =>
    stack.formatArn({ service: 'ec2', resource: 'elastic-ip', resourceName: t.allocationId }),
  );

  const tagged = { [`aws:ResourceTag/${Tags.target}`]: targetNames };

  const allow = (sid: string, actions: string[], resources: string[], conditions?: Record<string, unknown>) =>
    new iam.PolicyStatement({ sid, actions, resources, ...(conditions === undefined ? {} : { conditions }) });

  const describe = (sid: string, actions: string[]): JustifiedStatement => ({
    statement: allow(sid, actions, ['*']),
    wildcardReason: DESCRIBE_REASON,
  });

  // Only the phase detail-types: a step that could put `Replacement Requested` could start runs itself.
  const phaseEvents: JustifiedStatement = {
    statement: allow('PutPhaseEvents', ['events:PutEvents'], [props.eventBus.eventBusArn], {
      StringEquals: {
        'events:source': PHASE_EVENT_SOURCE,
        'events:detail-type': Object.values(PHASE_DETAIL_TYPES),
      },
    }),
  };

  const publish: JustifiedStatement[] = [
    { statement: allow('PublishNotifications', ['sns:Publish'], [props.topic.topicArn]) },
    {
      statement: allow(
        'EncryptNotifications',
        ['kms:GenerateDataKey', 'kms:Decrypt'],
        [props.topicKey.keyArn],
        {
          StringEquals: { 'kms:ViaService': `sns.${stack.region}.${stack.urlSuffix}` },
        },
      ),
    },
  ];

  const lockObjects = [props.runsBucket.arnForObjects(runKeys.lock('*'))];
  const lockWildcard = 'one lock object per target under locks/, named after the target at run time';
  // restore: one object per execution under tls/. The boxes never hold these rights: they use URLs the
  // pack and prepare functions presign, which S3 authorises as those functions' roles.
  const transferObjects = [props.runsBucket.arnForObjects(`${TRANSFER_PREFIX}*`)];
  const transferWildcard =
    'one certificate transfer object per execution under tls/, named after the execution at run time';
  // Without ListBucket a missing object reads as AccessDenied instead of NoSuchKey, and "no lock yet"
  // could not be told apart from "not allowed".
  const listRuns: JustifiedStatement = {
    statement: allow('TellMissingObjectsApart', ['s3:ListBucket'], [props.runsBucket.bucketArn]),
  };
  // Every task renews the target lock's lease (conditional put); only preflight and finish release it.
  const renewLock: JustifiedStatement[] = [
    {
      statement: allow('RenewTargetLock', ['s3:GetObject', 's3:PutObject'], lockObjects),
      wildcardReason: lockWildcard,
    },
    listRuns,
  ];
  const takeAndReleaseLock: JustifiedStatement[] = [
    {
      statement: allow(
        'TakeAndReleaseTargetLock',
        ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
        lockObjects,
      ),
      wildcardReason: lockWildcard,
    },
    listRuns,
  ];

  // The token is a credential for the execution: only await-readiness writes it and only the signal
  // reads it. The early event travels the other way.
  const tokens = parameterArn(names.token('*'));
  const earlyEvents = parameterArn(names.earlyEvent('*'));
  const tokenWildcard = 'one task token per candidate instance id under the stack prefix, named at run time';
  const earlyEventWildcard =
    'one early readiness event per candidate instance id under the stack prefix, named at run time';
  const completeTask = (...calls: ('Success' | 'Failure' | 'Heartbeat')[]): JustifiedStatement => ({
    statement: allow(
      'CompleteReadinessTask',
      calls.map((call) => `states:SendTask${call}`),
      [props.stateMachine.stateMachineArn],
    ),
  });

  const moveAddress: JustifiedStatement[] = [
    { statement: allow('AssociateTargetAddresses', ['ec2:AssociateAddress'], eipArns) },
    {
      statement: allow('AssociateToTargetInstances', ['ec2:AssociateAddress'], [instances], {
        StringEquals: tagged,
      }),
      wildcardReason: TAGGED_INSTANCE_REASON,
    },
  ];

  const runCommand: JustifiedStatement[] = [
    describe('FindOnlineAgentsAndCommands', ['ssm:DescribeInstanceInformation', 'ssm:ListCommands']),
    {
      statement: allow(
        'UseShellDocument',
        ['ssm:SendCommand'],
        [
          stack.formatArn({
            service: 'ssm',
            account: '',
            resource: 'document',
            resourceName: 'AWS-RunShellScript',
          }),
        ],
      ),
    },
    {
      statement: allow('CommandTargetInstances', ['ssm:SendCommand'], [instances], {
        StringEquals: { [`ssm:resourceTag/${Tags.target}`]: targetNames },
      }),
      wildcardReason: TAGGED_INSTANCE_REASON,
    },
  ];

  // Everything but the target tag itself: a step may relabel a box it manages, never move it into or
  // out of Understudy's reach.
  const relabel = (sid: string): JustifiedStatement => ({
    statement: allow(sid, ['ec2:CreateTags'], [instances], {
      StringEquals: tagged,
      'ForAllValues:StringEquals': { 'aws:TagKeys': [Tags.role, Tags.execution, Tags.retireAfter] },
    }),
    wildcardReason: `${TAGGED_INSTANCE_REASON}; the understudy:target tag itself cannot be changed`,
  });

  // Only a candidate can be parked: the serving box never carries role=candidate or failed.
  const parkCandidate = (sid: string): JustifiedStatement => ({
    statement: allow(
      sid,
      ['ec2:StopInstances', 'ec2:TerminateInstances', 'ec2:ModifyInstanceAttribute'],
      [instances],
      { StringEquals: { ...tagged, [`aws:ResourceTag/${Tags.role}`]: ['candidate', 'failed'] } },
    ),
    wildcardReason: `${TAGGED_INSTANCE_REASON}, and only while it is tagged understudy:role=candidate or failed`,
  });

  // Earlier retired boxes, and failed candidates past retention.failedCandidateDays.
  const terminateRetired: JustifiedStatement = {
    statement: allow('TerminateEarlierRetiredBoxes', ['ec2:TerminateInstances'], [instances], {
      StringEquals: { ...tagged, [`aws:ResourceTag/${Tags.role}`]: ['retired', 'failed'] },
    }),
    wildcardReason: `${TAGGED_INSTANCE_REASON}, and only while it is tagged understudy:role=retired or failed`,
  };
  // The schedules live in the stack's own group; CreateSchedule hands them the retirement role.
  const endOfWindow = (actions: string[]): JustifiedStatement[] => [
    {
      statement: allow('ManageEndOfWindowSchedules', actions, [props.retirement.scheduleArns]),
      wildcardReason: "one schedule per target and retired instance in the stack's group, named at run time",
    },
    ...(actions.includes('scheduler:CreateSchedule')
      ? [
          {
            statement: allow('PassRetirementRole', ['iam:PassRole'], [props.retirement.role.roleArn], {
              StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' },
            }),
          },
        ]
      : []),
  ];

  // A built image is resolved like a brought one, from the parameter its pipeline writes.
  const imageParameters = props.targets.flatMap((t) =>
    t.image.ssmParameter !== undefined
      ? [t.image.ssmParameter]
      : t.image.build !== undefined
        ? [names.image(t.name)]
        : [],
  );
  // AWS public parameters (/aws/service/...) live in no account.
  const imageParameterArns = [...new Set(imageParameters)].map((name) =>
    name.startsWith('/aws/') ? parameterArn(name, '') : parameterArn(name),
  );

  return {
    preflight: [
      phaseEvents,
      {
        statement: allow('ReadTargetSettings', ['ssm:GetParameter'], [parameterArn(names.target('*'))]),
        wildcardReason:
          'one parameter per configured target under the stack prefix, looked up by the name in the input',
      },
      ...(imageParameterArns.length > 0
        ? [{ statement: allow('ResolveImageParameters', ['ssm:GetParameter'], imageParameterArns) }]
        : []),
      describe('InspectCurrentBox', [
        'ec2:DescribeAddresses',
        'ec2:DescribeImages',
        'ec2:DescribeInstanceAttribute',
        'ec2:DescribeInstances',
        'ec2:DescribeInstanceTypes',
        'ec2:DescribeRouteTables',
        'ec2:DescribeVpcEndpoints',
      ]),
      // restore: the old box's SSM agent must be Online for the certificate to be packed there.
      describe('CheckOldBoxAgent', ['ssm:DescribeInstanceInformation']),
      ...terraformStateAccess(stack, props.targets, 'read'),
      ...takeAndReleaseLock,
      // After taking over the lock of a run that died, that run's candidates are parked as failed.
      parkCandidate('ParkLeftCandidate'),
      relabel('LabelLeftCandidate'),
      {
        // The Let's Encrypt rate-limit guard counts the issuances the target's recent run records show;
        // the ListBucket above covers listing runs/<target>/.
        statement: allow(
          'ReadRunRecords',
          ['s3:GetObject'],
          [props.runsBucket.arnForObjects(runKeys.record('*', '*'))],
        ),
        wildcardReason: 'run records are keyed by target and execution name, known at run time',
      },
      {
        // The box behind the EIP carries no Understudy tag the first time, so this cannot be scoped by a
        // tag value: the box must have no target tag at all (so a box of another target cannot be
        // claimed), and the request may only add the target tag, with a configured target name.
        statement: allow('AdoptCurrentBox', ['ec2:CreateTags'], [instances], {
          StringEquals: { [`aws:RequestTag/${Tags.target}`]: targetNames },
          'ForAllValues:StringEquals': { 'aws:TagKeys': [Tags.target] },
          Null: { [`aws:ResourceTag/${Tags.target}`]: 'true' },
        }),
        wildcardReason:
          'the box to adopt is found at run time; it must be untagged, and the request may only set understudy:target to a configured target name',
      },
      ...publish,
    ],

    launch: [
      describe('InspectCloneSource', [
        'ec2:DescribeImages',
        'ec2:DescribeInstanceAttribute',
        'ec2:DescribeInstanceCreditSpecifications',
        'ec2:DescribeInstances',
        'ec2:DescribeVolumes',
      ]),
      {
        // Tag-on-create: the new instance and its volumes must carry a configured target name.
        statement: allow('LaunchTaggedCandidate', ['ec2:RunInstances'], [instances, ec2Arn('volume')], {
          StringEquals: { [`aws:RequestTag/${Tags.target}`]: targetNames },
        }),
        wildcardReason:
          'a new instance has no id before launch; the request must tag it with a configured target name',
      },
      {
        // No request-tag condition here: these resources are used, not created, and a tag condition on
        // them makes every launch fail.
        statement: allow(
          'LaunchFromCloneSource',
          ['ec2:RunInstances'],
          [
            stack.formatArn({ service: 'ec2', account: '', resource: 'image', resourceName: '*' }),
            stack.formatArn({ service: 'ec2', account: '', resource: 'snapshot', resourceName: '*' }),
            ec2Arn('key-pair'),
            ec2Arn('network-interface'),
            ec2Arn('security-group'),
            ec2Arn('subnet'),
          ],
        ),
        wildcardReason:
          'the AMI, its snapshots, and the subnet, security groups, key pair and interface copied from the current box are known only at run time',
      },
      {
        statement: allow(
          'TagOnLaunchOnly',
          ['ec2:CreateTags'],
          [instances, ec2Arn('volume'), ec2Arn('network-interface')],
          {
            StringEquals: { 'ec2:CreateAction': 'RunInstances' },
          },
        ),
        wildcardReason:
          'tags may only be written as part of RunInstances (ec2:CreateAction), on what it creates',
      },
      {
        statement: allow(
          'PassInstanceProfileRole',
          ['iam:PassRole'],
          [stack.formatArn({ service: 'iam', region: '', resource: 'role', resourceName: '*' })],
          { StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com' } },
        ),
        wildcardReason:
          "the current box's instance profile is copied at run time; the role can only be passed to EC2 (iam:PassedToService)",
      },
      {
        statement: allow(
          'UseVolumeKeysThroughEc2',
          [
            'kms:CreateGrant',
            'kms:Decrypt',
            'kms:DescribeKey',
            'kms:GenerateDataKeyWithoutPlaintext',
            'kms:ReEncryptFrom',
            'kms:ReEncryptTo',
          ],
          [stack.formatArn({ service: 'kms', resource: 'key', resourceName: '*' })],
          { StringEquals: { 'kms:ViaService': `ec2.${stack.region}.${stack.urlSuffix}` } },
        ),
        wildcardReason:
          'volumes encrypted with a customer key use the key of the current box, known at run time; only through EC2 (kms:ViaService)',
      },
      ...renewLock,
    ],

    'await-running': [
      describe('WatchCandidate', ['ec2:DescribeInstances']),
      {
        statement: allow('AdjustCandidate', ['ec2:ModifyInstanceAttribute'], [instances], {
          StringEquals: { ...tagged, [`aws:ResourceTag/${Tags.role}`]: 'candidate' },
        }),
        wildcardReason: `${TAGGED_INSTANCE_REASON}, and only while it is tagged understudy:role=candidate`,
      },
    ],

    'await-readiness': [
      { statement: allow('KeepTaskToken', ['ssm:PutParameter'], [tokens]), wildcardReason: tokenWildcard },
      {
        // An agent event that beat the token is used right away.
        statement: allow('ReadEarlyEvent', ['ssm:GetParameter'], [earlyEvents]),
        wildcardReason: earlyEventWildcard,
      },
      completeTask('Success', 'Failure'),
      ...renewLock,
    ],

    signal: [
      { statement: allow('LookUpTaskToken', ['ssm:GetParameter'], [tokens]), wildcardReason: tokenWildcard },
      // An event that beats the token is kept only for an instance tagged as a candidate.
      describe('CheckCandidateTags', ['ec2:DescribeInstances']),
      {
        // An agent event that beats the token is kept for await-readiness.
        statement: allow('KeepEarlyEvent', ['ssm:PutParameter'], [earlyEvents]),
        wildcardReason: earlyEventWildcard,
      },
      completeTask('Success', 'Failure', 'Heartbeat'),
    ],

    'pack-certificate': [
      ...runCommand,
      {
        statement: allow('PresignCertificateUpload', ['s3:PutObject'], transferObjects),
        wildcardReason: transferWildcard,
      },
      ...renewLock,
    ],

    prepare: [
      ...runCommand,
      {
        statement: allow('PresignCertificateDownload', ['s3:GetObject'], transferObjects),
        wildcardReason: transferWildcard,
      },
      ...renewLock,
    ],

    'await-command': [describe('ReadCommandResult', ['ssm:GetCommandInvocation'])],

    switch: [
      describe('ConfirmAddress', ['ec2:DescribeAddresses']),
      ...moveAddress,
      ...renewLock,
      ...publish,
      phaseEvents,
    ],

    certificate: [...runCommand, ...renewLock],

    hook: [...runCommand, ...renewLock],

    'request-approval': [
      {
        // Only this function writes the approval token; the operator's `approve|reject` reads it.
        statement: allow('KeepApprovalToken', ['ssm:PutParameter'], [parameterArn(names.approval('*'))]),
        wildcardReason:
          'one approval task token per configured target under the stack prefix, named at run time',
      },
      ...renewLock,
      ...publish,
    ],

    probe: [...renewLock, ...publish],

    rollback: [
      describe('InspectAddressAndBoxes', [
        'ec2:DescribeAddresses',
        'ec2:DescribeInstanceAttribute',
        'ec2:DescribeInstances',
      ]),
      ...moveAddress,
      parkCandidate('ParkFailedCandidate'),
      relabel('LabelFailedCandidate'),
      ...renewLock,
      ...publish,
      phaseEvents,
    ],

    reconcile: [
      describe('ReadNewServer', ['ec2:DescribeAddresses', 'ec2:DescribeInstances', 'ec2:DescribeVolumes']),
      ...terraformStateAccess(stack, props.targets, 'write'),
      ...renewLock,
    ],

    retire: [
      describe('InspectOldBox', ['ec2:DescribeInstanceAttribute', 'ec2:DescribeInstances']),
      {
        statement: allow('StopOldBox', ['ec2:StopInstances'], [instances], { StringEquals: tagged }),
        wildcardReason: TAGGED_INSTANCE_REASON,
      },
      // The old box becomes retired, the new one serving: both carry the target tag, whatever their role.
      relabel('LabelRetiredAndServingBoxes'),
      // An earlier run's retired box goes when this run succeeds; never a box labelled anything else.
      terminateRetired,
      ...endOfWindow(['scheduler:CreateSchedule', 'scheduler:GetSchedule', 'scheduler:DeleteSchedule']),
      ...renewLock,
      ...publish,
    ],

    // Rollback within the window (design §2.10).
    'start-retired': [
      describe('InspectRetiredBox', ['ec2:DescribeInstances']),
      {
        statement: allow('StartRetiredBox', ['ec2:StartInstances'], [instances], {
          StringEquals: { ...tagged, [`aws:ResourceTag/${Tags.role}`]: 'retired' },
        }),
        wildcardReason: `${TAGGED_INSTANCE_REASON}, and only while it is tagged understudy:role=retired`,
      },
      ...endOfWindow(['scheduler:DeleteSchedule']),
      ...renewLock,
    ],

    'await-restored': [
      describe('InspectRestoredBox', ['ec2:DescribeInstances', 'ec2:DescribeInstanceStatus']),
      ...runCommand,
      ...renewLock,
    ],

    'revert-restore': [
      describe('InspectAddressAndBoxes', ['ec2:DescribeAddresses', 'ec2:DescribeInstances']),
      ...moveAddress,
      {
        statement: allow('StopRetiredBoxAgain', ['ec2:StopInstances'], [instances], {
          StringEquals: { ...tagged, [`aws:ResourceTag/${Tags.role}`]: 'retired' },
        }),
        wildcardReason: `${TAGGED_INSTANCE_REASON}, and only while it is tagged understudy:role=retired`,
      },
      ...endOfWindow(['scheduler:CreateSchedule', 'scheduler:GetSchedule']),
      ...renewLock,
      ...publish,
      phaseEvents,
    ],

    finish: [
      phaseEvents,
      ...takeAndReleaseLock,
      {
        statement: allow(
          'WriteRunRecord',
          ['s3:PutObject'],
          [props.runsBucket.arnForObjects(runKeys.record('*', '*'))],
        ),
        wildcardReason: 'run records are keyed by target and execution name, known at run time',
      },
      {
        statement: allow(
          'CleanUpTaskTokens',
          ['ssm:DeleteParameters'],
          [tokens, earlyEvents, parameterArn(names.approval('*'))],
        ),
        wildcardReason: `${tokenWildcard}; ${earlyEventWildcard}; one approval token per target, named at run time`,
      },
      {
        // The bucket is versioned: the transfer (a private key) is removed version by version, not hidden
        // behind a delete marker.
        statement: allow(
          'ListCertificateTransferVersions',
          ['s3:ListBucketVersions'],
          [props.runsBucket.bucketArn],
          {
            StringLike: { 's3:prefix': [`${TRANSFER_PREFIX}*`] },
          },
        ),
      },
      {
        statement: allow('DeleteCertificateTransfer', ['s3:DeleteObjectVersion'], transferObjects),
        wildcardReason: transferWildcard,
      },
      ...publish,
    ],
  };
};
