import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Template } from 'aws-cdk-lib/assertions';
import { asList, flatten } from '../../lib/nag-findings';
import { STEP_NAMES, type StepName } from '../../lib/steps';
import type { UnderstudyStack } from '../../lib/understudy-stack';
import {
  ACCOUNT,
  covers,
  exampleConfig,
  logicalId,
  REGION,
  REPO,
  type Statement,
  statementsOfRole,
  synthesize,
} from './stack-fixture';

let stack: UnderstudyStack;
let template: Template;
const stepStatements = (step: StepName): Statement[] =>
  statementsOfRole(template, logicalId(stack.lambdas.steps[step].role));
const allPolicyStatements = (): Statement[] => [
  ...Object.values(template.findResources('AWS::IAM::Policy')).flatMap(
    (p) => p.Properties.PolicyDocument.Statement,
  ),
  ...Object.values(template.findResources('AWS::IAM::ManagedPolicy')).flatMap(
    (p) => p.Properties.PolicyDocument.Statement,
  ),
];

const INSTANCES = `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/*`;
const TARGETS = ['web', 'api'];
const PREFIX_ARN = `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/understudy/Understudy`;

const grants = (statements: Statement[], action: string, arn: string): Statement[] =>
  statements.filter(
    (s) =>
      s.Effect === 'Allow' &&
      asList(s.Action).includes(action) &&
      asList(s.Resource).some((r) => covers(flatten(r), arn)),
  );

// CDK writes these into each function's own role: its log group and X-Ray (tracing: ACTIVE).
const CDK_BASELINE = [
  'logs:CreateLogStream',
  'logs:PutLogEvents',
  'xray:PutTraceSegments',
  'xray:PutTelemetryRecords',
];

beforeAll(() => {
  ({ stack, template } = synthesize());
});

describe('policy shape', () => {
  test('every statement allows; none denies or uses NotAction / NotResource', () => {
    for (const s of allPolicyStatements()) {
      expect(s.Effect).toBe('Allow');
      expect(s).not.toHaveProperty('NotAction');
      expect(s).not.toHaveProperty('NotResource');
    }
  });

  test('no statement anywhere in the stack grants a wildcard action', () => {
    const actions = allPolicyStatements().flatMap((s) => asList(s.Action));
    expect(actions.filter((a) => a.includes('*'))).toEqual([]);
  });

  test('no role can disassociate an Elastic IP (the switch is one AssociateAddress)', () => {
    const actions = allPolicyStatements().flatMap((s) => asList(s.Action));
    expect(actions).not.toContain('ec2:DisassociateAddress');
  });
});

describe('EC2 mutations are scoped by the understudy:target tag', () => {
  const MUTATING = /^ec2:(?!Describe)/;

  test('every mutating EC2 statement on instances carries a target-tag or launch-only condition', () => {
    const mutating = STEP_NAMES.flatMap(stepStatements).filter(
      (s) =>
        asList(s.Action).some((a) => MUTATING.test(a)) && asList(s.Resource).map(flatten).includes(INSTANCES),
    );
    expect(mutating.length).toBeGreaterThan(8);
    for (const s of mutating) {
      const equals = s.Condition?.StringEquals ?? {};
      const scoped =
        equals['aws:ResourceTag/understudy:target'] ??
        equals['aws:RequestTag/understudy:target'] ??
        (equals['ec2:CreateAction'] === 'RunInstances' ? TARGETS : undefined);
      expect({ sid: s.Sid, scoped }).toEqual({ sid: s.Sid, scoped: TARGETS });
    }
  });

  test('no mutating EC2 action is ever granted on "*"', () => {
    const onStar = allPolicyStatements().filter(
      (s) => asList(s.Action).some((a) => MUTATING.test(a)) && asList(s.Resource).includes('*'),
    );
    expect(onStar).toEqual([]);
  });

  test('launch tags on create: the new instance and volumes must carry a target name; used resources carry no tag condition', () => {
    const runs = stepStatements('launch').filter((s) => asList(s.Action).includes('ec2:RunInstances'));
    const created = runs.find((s) => asList(s.Resource).map(flatten).includes(INSTANCES));
    const used = runs.find((s) => s !== created);
    expect(asList(created?.Resource).map(flatten).sort()).toEqual(
      [INSTANCES, `arn:aws:ec2:${REGION}:${ACCOUNT}:volume/*`].sort(),
    );
    expect(created?.Condition).toEqual({ StringEquals: { 'aws:RequestTag/understudy:target': TARGETS } });
    expect(asList(used?.Resource).map(flatten)).toEqual(
      expect.arrayContaining([
        `arn:aws:ec2:${REGION}::image/*`,
        `arn:aws:ec2:${REGION}:${ACCOUNT}:subnet/*`,
        `arn:aws:ec2:${REGION}:${ACCOUNT}:security-group/*`,
        `arn:aws:ec2:${REGION}:${ACCOUNT}:network-interface/*`,
        `arn:aws:ec2:${REGION}:${ACCOUNT}:key-pair/*`,
      ]),
    );
    expect(used?.Condition).toBeUndefined();
  });

  test('launch may tag only as part of RunInstances', () => {
    const tagging = stepStatements('launch').filter((s) => asList(s.Action).includes('ec2:CreateTags'));
    expect(tagging).toHaveLength(1);
    expect(tagging[0]?.Condition).toEqual({ StringEquals: { 'ec2:CreateAction': 'RunInstances' } });
  });

  test('preflight may adopt an untagged box, but only by adding the target tag with a configured name', () => {
    const adopt = stepStatements('preflight').filter(
      (s) => asList(s.Action).includes('ec2:CreateTags') && s.Condition?.Null !== undefined,
    );
    expect(adopt).toHaveLength(1);
    expect(adopt[0]?.Condition).toEqual({
      StringEquals: { 'aws:RequestTag/understudy:target': TARGETS },
      'ForAllValues:StringEquals': { 'aws:TagKeys': ['understudy:target'] },
      // A box that already carries a target tag (another target's, or its own) cannot be re-tagged.
      Null: { 'aws:ResourceTag/understudy:target': 'true' },
    });
  });

  test('preflight, rollback and retire may relabel their boxes but never rewrite the target tag', () => {
    for (const step of ['preflight', 'rollback', 'retire'] as const) {
      const tagging = stepStatements(step).filter(
        (s) => asList(s.Action).includes('ec2:CreateTags') && s.Condition?.Null === undefined,
      );
      expect(tagging).toHaveLength(1);
      const keys = tagging[0]?.Condition?.['ForAllValues:StringEquals']?.['aws:TagKeys'];
      expect(keys).toEqual(expect.arrayContaining(['understudy:role', 'understudy:retire-after']));
      expect(keys).not.toContain('understudy:target');
    }
  });

  test('retire may label the new box serving: the relabel right covers any box of a configured target, whatever its role', () => {
    const tagging = stepStatements('retire').filter((s) => asList(s.Action).includes('ec2:CreateTags'));
    expect(tagging).toHaveLength(1);
    expect(asList(tagging[0]?.Resource).map(flatten)).toEqual([INSTANCES]);
    expect(tagging[0]?.Condition?.StringEquals).toEqual({ 'aws:ResourceTag/understudy:target': TARGETS });
    expect(tagging[0]?.Condition?.['ForAllValues:StringEquals']?.['aws:TagKeys']).toContain(
      'understudy:role',
    );
  });

  test('rollback, and preflight after a lock takeover, can stop or terminate only a box labelled candidate or failed, never the serving one', () => {
    for (const step of ['preflight', 'rollback'] as const) {
      const parking = stepStatements(step).filter((s) => asList(s.Action).includes('ec2:TerminateInstances'));
      expect(parking).toHaveLength(1);
      expect(parking[0]?.Condition?.StringEquals?.['aws:ResourceTag/understudy:role']).toEqual([
        'candidate',
        'failed',
      ]);
    }
    expect(
      STEP_NAMES.filter((s) => grants(stepStatements(s), 'ec2:TerminateInstances', INSTANCES).length > 0),
    ).toEqual(['preflight', 'rollback', 'retire']);
  });

  test('retire terminates only a box labelled retired or failed, and the rollback steps start or stop only a retired one', () => {
    const only = (step: StepName, action: string, roles: string | string[] = 'retired') => {
      const found = stepStatements(step).filter((s) => asList(s.Action).includes(action));
      expect(found).toHaveLength(1);
      expect(found[0]?.Condition?.StringEquals).toEqual({
        'aws:ResourceTag/understudy:target': TARGETS,
        'aws:ResourceTag/understudy:role': roles,
      });
    };
    // Retire also ends failed candidates past retention.failedCandidateDays; never a serving box.
    only('retire', 'ec2:TerminateInstances', ['retired', 'failed']);
    only('start-retired', 'ec2:StartInstances');
    only('revert-restore', 'ec2:StopInstances');
    expect(
      STEP_NAMES.filter((s) => grants(stepStatements(s), 'ec2:StartInstances', INSTANCES).length > 0),
    ).toEqual(['start-retired']);
  });

  test('the Elastic IP can be moved only between configured allocations and tagged instances', () => {
    for (const step of ['switch', 'rollback'] as const) {
      const associate = stepStatements(step).filter((s) => asList(s.Action).includes('ec2:AssociateAddress'));
      const eip = associate.find((s) => s.Condition === undefined);
      expect(asList(eip?.Resource).map(flatten).sort()).toEqual(
        [
          `arn:aws:ec2:${REGION}:${ACCOUNT}:elastic-ip/eipalloc-0123456789abcdef0`,
          `arn:aws:ec2:${REGION}:${ACCOUNT}:elastic-ip/eipalloc-0fedcba987654321f`,
        ].sort(),
      );
      const instance = associate.find((s) => s !== eip);
      expect(asList(instance?.Resource).map(flatten)).toEqual([INSTANCES]);
      expect(instance?.Condition).toEqual({ StringEquals: { 'aws:ResourceTag/understudy:target': TARGETS } });
    }
  });
});

describe('other services', () => {
  test('iam:PassRole is granted to launch towards EC2, and to the schedule creators for the retirement role only', () => {
    const passers = allPolicyStatements().filter((s) => asList(s.Action).includes('iam:PassRole'));
    const toEc2 = passers.filter(
      (s) => s.Condition?.StringEquals?.['iam:PassedToService'] === 'ec2.amazonaws.com',
    );
    expect(toEc2).toHaveLength(1);
    expect(stepStatements('launch')).toContainEqual(toEc2[0]);
    const toScheduler = passers.filter((s) => s !== toEc2[0]);
    expect(
      STEP_NAMES.filter((step) =>
        toScheduler.some((p) =>
          stepStatements(step).some((s) => s === p || JSON.stringify(s) === JSON.stringify(p)),
        ),
      ),
    ).toEqual(['retire', 'revert-restore']);
    for (const statement of toScheduler) {
      expect(statement.Condition).toEqual({
        StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' },
      });
      expect(asList(statement.Resource).map(flatten)).toEqual([`<${logicalId(stack.retirement.role)}.Arn>`]);
    }
  });

  test('SendCommand reaches only the shell document and instances tagged with a configured target', () => {
    for (const step of ['pack-certificate', 'prepare', 'certificate', 'await-restored', 'hook'] as const) {
      const send = stepStatements(step).filter((s) => asList(s.Action).includes('ssm:SendCommand'));
      const document = send.find((s) => s.Condition === undefined);
      expect(asList(document?.Resource).map(flatten)).toEqual([
        `arn:aws:ssm:${REGION}::document/AWS-RunShellScript`,
      ]);
      const instances = send.find((s) => s !== document);
      expect(asList(instances?.Resource).map(flatten)).toEqual([INSTANCES]);
      expect(instances?.Condition).toEqual({
        StringEquals: { 'ssm:resourceTag/understudy:target': TARGETS },
      });
    }
    const senders = STEP_NAMES.filter(
      (s) => grants(stepStatements(s), 'ssm:SendCommand', INSTANCES).length > 0,
    );
    // await-restored: the local app check on a retired box brought back by a rollback.
    // hook: the target's lifecycle hooks on the new box and on the box it replaces.
    expect(senders.sort()).toEqual(['await-restored', 'certificate', 'hook', 'pack-certificate', 'prepare']);
  });

  test('the approval token is written only by request-approval, and no step reads it', () => {
    const approval = `${PREFIX_ARN}/approvals/web`;
    const able = (action: string) =>
      STEP_NAMES.filter((s) => grants(stepStatements(s), action, approval).length > 0).sort();
    expect(able('ssm:PutParameter')).toEqual(['request-approval']);
    expect(able('ssm:GetParameter')).toEqual([]);
  });

  test('a task token is written only by await-readiness, read only by the signal function, and deleted only by finish', () => {
    const token = `${PREFIX_ARN}/tokens/i-0123456789abcdef0`;
    const able = (action: string) =>
      STEP_NAMES.filter((s) => grants(stepStatements(s), action, token).length > 0).sort();
    expect(able('ssm:PutParameter')).toEqual(['await-readiness']);
    expect(able('ssm:GetParameter')).toEqual(['signal']);
    expect(able('ssm:DeleteParameters')).toEqual(['finish']);
  });

  test('an early readiness event is written only by the signal function, read only by await-readiness, and deleted only by finish', () => {
    const early = `${PREFIX_ARN}/events/i-0123456789abcdef0`;
    const able = (action: string) =>
      STEP_NAMES.filter((s) => grants(stepStatements(s), action, early).length > 0).sort();
    expect(able('ssm:PutParameter')).toEqual(['signal']);
    expect(able('ssm:GetParameter')).toEqual(['await-readiness']);
    expect(able('ssm:DeleteParameters')).toEqual(['finish']);
  });

  test('no function can read SSM parameters outside the stack prefix except the configured AMI parameter', () => {
    const outside = STEP_NAMES.flatMap((step) =>
      stepStatements(step)
        .filter((s) => asList(s.Action).includes('ssm:GetParameter'))
        .flatMap((s) => asList(s.Resource).map(flatten))
        .filter((r) => !r.startsWith(`${PREFIX_ARN}/`))
        .map((r) => `${step} ${r}`),
    );
    expect(outside).toEqual([`preflight arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/golden/web/ami`]);
  });

  test('only signal and await-readiness complete tasks, and only on this state machine', () => {
    const machine = `<${logicalId(stack.orchestrator.stateMachine)}>`;
    for (const step of STEP_NAMES) {
      const sends = stepStatements(step).filter((s) => asList(s.Action).some((a) => a.startsWith('states:')));
      if (step === 'signal' || step === 'await-readiness') {
        expect(sends.flatMap((s) => asList(s.Resource)).map(flatten)).toEqual([machine]);
      } else {
        expect({ step, sends }).toEqual({ step, sends: [] });
      }
    }
  });

  test('only preflight and finish may release (delete) a lock, and only finish writes run records', () => {
    const bucket = `<${logicalId(stack.runs.bucket)}.Arn>`;
    const deleters = STEP_NAMES.filter(
      (s) => grants(stepStatements(s), 's3:DeleteObject', `${bucket}/locks/web.json`).length > 0,
    );
    expect(deleters.sort()).toEqual(['finish', 'preflight']);
    const recorders = STEP_NAMES.filter(
      (s) => grants(stepStatements(s), 's3:PutObject', `${bucket}/runs/web/exec-1.json`).length > 0,
    );
    expect(recorders).toEqual(['finish']);
  });

  test("S3 access stays inside the runs bucket (locks/, runs/, tls/) and each target's Terraform state, its lock file and backups", () => {
    const bucket = `<${logicalId(stack.runs.bucket)}.Arn>`;
    const resources = STEP_NAMES.flatMap(stepStatements)
      .filter((s) => asList(s.Action).some((a) => a.startsWith('s3:')))
      .flatMap((s) => asList(s.Resource).map(flatten));
    const state = (key: string) => [
      `arn:aws:s3:::acme-terraform-state/${key}`,
      `arn:aws:s3:::acme-terraform-state/${key}.tflock`,
      `arn:aws:s3:::acme-terraform-state/${key}.understudy-backups/*`,
    ];
    expect([...new Set(resources)].sort()).toEqual(
      [
        bucket,
        `${bucket}/locks/*.json`,
        `${bucket}/runs/*/*.json`,
        `${bucket}/tls/*`,
        'arn:aws:s3:::acme-terraform-state',
        ...state('web/terraform.tfstate'),
        // The api target uses the prod workspace: `<workspaceKeyPrefix>/<workspace>/<key>`.
        ...state('env:/prod/api/terraform.tfstate'),
      ].sort(),
    );
  });

  test('only reconcile writes a Terraform state, and deletes nothing there but the lock file', () => {
    const writing = STEP_NAMES.filter((step) =>
      stepStatements(step).some(
        (s) =>
          asList(s.Action).some((a) => a !== 's3:GetObject' && a !== 's3:ListBucket') &&
          asList(s.Resource).some((r) => flatten(r).includes('acme-terraform-state')),
      ),
    );
    expect(writing).toEqual(['reconcile']);
    const deletes = stepStatements('reconcile')
      .filter((s) => asList(s.Action).includes('s3:DeleteObject'))
      .flatMap((s) => asList(s.Resource).map(flatten));
    expect(deletes.sort()).toEqual(
      [
        'arn:aws:s3:::acme-terraform-state/env:/prod/api/terraform.tfstate.tflock',
        'arn:aws:s3:::acme-terraform-state/web/terraform.tfstate.tflock',
      ].sort(),
    );
  });

  test('preflight may only read the state objects (to check the instance address), and no lock or digest', () => {
    const onState = stepStatements('preflight').filter((s) =>
      asList(s.Resource).some((r) => flatten(r).includes('acme-terraform-state')),
    );
    expect(onState.flatMap((s) => asList(s.Action)).sort()).toEqual(['s3:GetObject', 's3:ListBucket']);
    expect(onState.flatMap((s) => asList(s.Resource).map(flatten)).sort()).toEqual(
      [
        'arn:aws:s3:::acme-terraform-state',
        'arn:aws:s3:::acme-terraform-state/env:/prod/api/terraform.tfstate',
        'arn:aws:s3:::acme-terraform-state/web/terraform.tfstate',
      ].sort(),
    );
    expect(
      stepStatements('preflight').some((s) => asList(s.Action).some((a) => a.startsWith('dynamodb:'))),
    ).toBe(false);
  });

  test('the DynamoDB grant reaches only the lock and digest items of the configured state', () => {
    const [statement] = stepStatements('reconcile').filter((s) =>
      asList(s.Action).some((a) => a.startsWith('dynamodb:')),
    );
    expect(flatten(asList(statement?.Resource)[0])).toBe(
      'arn:aws:dynamodb:eu-west-1:123456789012:table/acme-terraform-locks',
    );
    expect(statement?.Condition?.['ForAllValues:StringEquals']?.['dynamodb:LeadingKeys']).toEqual([
      'acme-terraform-state/web/terraform.tfstate',
      'acme-terraform-state/web/terraform.tfstate-md5',
    ]);
  });

  test('publishing goes to the Understudy topic, and its key is usable only through SNS', () => {
    const topic = `<${logicalId(stack.notifications.topic)}>`;
    const publishers = STEP_NAMES.filter((s) => grants(stepStatements(s), 'sns:Publish', topic).length > 0);
    expect(publishers.sort()).toEqual([
      'finish',
      'preflight',
      'probe',
      'request-approval',
      'retire',
      'revert-restore',
      'rollback',
      'switch',
    ]);
    for (const step of publishers) {
      const statements = stepStatements(step);
      expect(grants(statements, 'sns:Publish', topic)).toHaveLength(1);
      const key = statements.find((s) => asList(s.Action).includes('kms:GenerateDataKey'));
      expect(asList(key?.Resource).map(flatten)).toEqual([`<${logicalId(stack.notifications.key)}.Arn>`]);
      expect(flatten(key?.Condition?.StringEquals?.['kms:ViaService'])).toBe(
        `sns.${REGION}.<AWS::URLSuffix>`,
      );
    }
  });
});

describe("each step role is granted exactly what its step's code calls", () => {
  const SERVICE_PREFIX: Record<string, string> = {
    ec2: 'ec2',
    ssm: 'ssm',
    s3: 's3',
    sns: 'sns',
    sfn: 'states',
    eventbridge: 'events',
    dynamodb: 'dynamodb',
    scheduler: 'scheduler',
  };

  /** API calls authorised under another action's name (Service Authorization Reference). */
  const IAM_ACTION_OF: Record<string, string> = {
    's3:HeadObject': 's3:GetObject',
    's3:ListObjectsV2': 's3:ListBucket',
    's3:ListObjectVersions': 's3:ListBucketVersions',
  };

  /**
   * Needs that come from the data rather than the call: the Terraform state bucket of the example's
   * `web` target encrypts with a customer key, which S3 uses on the reader's and writer's behalf; and
   * finish's DeleteObject of a transfer names a VersionId, which S3 authorises as DeleteObjectVersion.
   */
  const IMPLIED_BY_STEP: Partial<Record<StepName, string[]>> = {
    reconcile: ['kms:Decrypt', 'kms:GenerateDataKey'],
    preflight: ['kms:Decrypt'],
    finish: ['s3:DeleteObjectVersion'],
  };

  /**
   * IAM actions an API call needs besides its own name. Each entry is a documented requirement of the
   * call as Understudy makes it, not a convenience.
   */
  const IMPLIED: Record<string, string[]> = {
    // The schedule runs as the retirement role, which the creator must be allowed to pass.
    'scheduler:CreateSchedule': ['iam:PassRole'],
    // Without ListBucket a missing lock reads as AccessDenied instead of NoSuchKey.
    's3:GetObject': ['s3:ListBucket'],
    // The topic is encrypted with a customer key; SNS uses it on the publisher's behalf.
    'sns:Publish': ['kms:GenerateDataKey', 'kms:Decrypt'],
    // Tag-on-create, the copied instance profile, and volumes encrypted with a customer key.
    'ec2:RunInstances': [
      'ec2:CreateTags',
      'iam:PassRole',
      'kms:CreateGrant',
      'kms:Decrypt',
      'kms:DescribeKey',
      'kms:GenerateDataKeyWithoutPlaintext',
      'kms:ReEncryptFrom',
      'kms:ReEncryptTo',
    ],
  };

  /** Source files a step's bundle is built from: its folder and everything it imports, transitively. */
  const sourcesOf = (step: StepName): string[] => {
    const seen = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file) || !existsSync(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      for (const [, spec] of text.matchAll(/from '(\.{1,2}\/[^']+)'/g)) {
        visit(`${resolve(dirname(file), spec ?? '')}.ts`);
      }
    };
    const folder = join(REPO, 'lambdas', step);
    for (const file of readdirSync(folder).filter((f) => f.endsWith('.ts'))) visit(join(folder, file));
    return [...seen];
  };

  const TOP_LEVEL = /^(?:export )?(?:const|let|async function|function|class) (\w+)/;

  /**
   * Code that can run for a step. A file from outside the step's folder (shared helpers, or the signal's
   * hand-off module that await-readiness borrows) holds calls for several steps, so each of its top-level
   * declarations counts only once the step's own code, or a declaration already counted, names it.
   */
  const reachableCode = (step: StepName): string[] => {
    const ownFolder = join(REPO, 'lambdas', step);
    const own: string[] = [];
    const segments: { name: string; text: string }[] = [];
    for (const file of sourcesOf(step)) {
      const text = readFileSync(file, 'utf8');
      if (dirname(file) === ownFolder) {
        own.push(text);
        continue;
      }
      const parts = text.split(/^(?=(?:export )?(?:const|let|async function|function|class) )/m);
      for (const part of parts) {
        const name = TOP_LEVEL.exec(part)?.[1];
        if (name === undefined) own.push(part);
        else segments.push({ name, text: part });
      }
    }
    const reached = [...own];
    let pending = segments;
    for (let grew = true; grew; ) {
      grew = false;
      const body = reached.join('\n');
      const next = pending.filter((seg) => !new RegExp(`\\b${seg.name}\\b`).test(body));
      if (next.length < pending.length) {
        reached.push(...pending.filter((seg) => !next.includes(seg)).map((seg) => seg.text));
        pending = next;
        grew = true;
      }
    }
    return reached;
  };

  /** `new XCommand(` of an SDK client package, as the IAM action it needs. */
  const actionsCalledBy = (step: StepName): string[] => {
    const serviceOf = new Map<string, string>();
    for (const file of sourcesOf(step)) {
      const text = readFileSync(file, 'utf8');
      for (const [, names, pkg] of text.matchAll(
        /import\s*\{([^}]*)\}\s*from '@aws-sdk\/client-([a-z0-9-]+)'/g,
      )) {
        for (const name of (names ?? '').split(',').map((n) => n.replace(/^\s*type\s+/, '').trim())) {
          serviceOf.set(name, SERVICE_PREFIX[pkg ?? ''] ?? `unknown-${pkg}`);
        }
      }
    }
    const called = reachableCode(step).flatMap((text) =>
      [...text.matchAll(/new (\w+)Command\(/g)].flatMap(([, op]) => {
        const service = serviceOf.get(`${op}Command`);
        if (service === undefined) return [];
        const action = `${service}:${op}`;
        return [IAM_ACTION_OF[action] ?? action];
      }),
    );
    return [...new Set(called)];
  };

  test('the scan sees the calls it is meant to police, and only those a step can reach', () => {
    expect(actionsCalledBy('switch')).toContain('ec2:AssociateAddress');
    expect(actionsCalledBy('finish')).toContain('s3:DeleteObject');
    expect(actionsCalledBy('probe')).not.toContain('s3:DeleteObject');
    expect(actionsCalledBy('await-readiness')).toEqual(
      expect.arrayContaining(['ssm:PutParameter', 'ssm:GetParameter', 'states:SendTaskSuccess']),
    );
    expect(actionsCalledBy('await-readiness')).not.toContain('states:SendTaskHeartbeat');
  });

  test.each(STEP_NAMES)('%s', (step) => {
    const granted = new Set(stepStatements(step).flatMap((s) => asList(s.Action)));
    const called = actionsCalledBy(step);
    const needed = new Set([
      ...called,
      ...called.flatMap((a) => IMPLIED[a] ?? []),
      ...(IMPLIED_BY_STEP[step] ?? []),
      ...CDK_BASELINE,
    ]);
    expect({
      calledButNotGranted: [...needed].filter((a) => !granted.has(a)).sort(),
      grantedButNeverCalled: [...granted].filter((a) => !needed.has(a)).sort(),
    }).toEqual({ calledButNotGranted: [], grantedButNeverCalled: [] });
  });
});

describe('a Terraform backend in another region', () => {
  it("names the lock table and the KMS path in the backend's region, not the stack's", () => {
    const config = exampleConfig();
    const [web, api] = config.targets;
    if (!web?.terraform || !api) throw new Error('the example config changed: web must use Terraform');
    const elsewhere = {
      ...config,
      targets: [{ ...web, terraform: { ...web.terraform, region: 'us-east-1' } }, api],
    };
    const synthesized = synthesize({ config: elsewhere });
    const statements = statementsOfRole(
      synthesized.template,
      logicalId(synthesized.stack.lambdas.steps.reconcile.role),
    );

    const table = statements.find((s) => s.Sid === 'TakeTerraformLockAndDigestItems');
    expect(asList(table?.Resource).map(flatten)).toEqual([
      `arn:aws:dynamodb:us-east-1:${ACCOUNT}:table/acme-terraform-locks`,
    ]);
    const kms = statements.find((s) => s.Sid === 'UseStateBucketKey');
    expect(asList(kms?.Condition?.StringEquals?.['kms:ViaService']).map(flatten)).toEqual([
      's3.us-east-1.<AWS::URLSuffix>',
    ]);
  });
});
