import type { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { TargetSchema, type UnderstudyConfig } from '../../lambdas/shared/config';
import { dns01Statements } from '../../lib/dns01-policy';
import { asList, flatten } from '../../lib/nag-findings';
import { STEP_NAMES, type StepName } from '../../lib/steps';
import type { UnderstudyStack } from '../../lib/understudy-stack';
import {
  ACCOUNT,
  covers,
  exampleConfig,
  logicalId,
  type Statement,
  statementsOfRole,
  synthesize,
} from './stack-fixture';

/** The example's targets plus one in dns-01 mode, whose instances get the Route 53 policy. */
const ZONE = 'Z0123456789ABCDEFGHIJ';
const shop = TargetSchema.parse({
  name: 'shop-eu',
  allocationId: 'eipalloc-0aaaaaaaaaaaaaaa1',
  domain: 'shop.example.com',
  image: { imageId: 'ami-0123456789abcdef0' },
  tls: { mode: 'dns-01', email: 'ops@example.com', hostedZoneId: ZONE },
});
const withDns01 = (): UnderstudyConfig => {
  const config = exampleConfig();
  return { ...config, targets: [...config.targets, shop] };
};

let stack: UnderstudyStack;
let template: Template;

beforeAll(() => {
  ({ stack, template } = synthesize({ config: withDns01() }, true));
});

const stepStatements = (step: StepName): Statement[] =>
  statementsOfRole(template, logicalId(stack.lambdas.steps[step].role));
const bucket = () => `<${logicalId(stack.runs.bucket)}.Arn>`;
const stepsAllowed = (action: string, arn: string): StepName[] =>
  STEP_NAMES.filter((step) =>
    stepStatements(step).some(
      (s) => asList(s.Action).includes(action) && asList(s.Resource).some((r) => covers(flatten(r), arn)),
    ),
  ).sort();

describe('the certificate transfer in the runs bucket (restore)', () => {
  const transfer = () => `${bucket()}/tls/web-run-1/0123456789abcdef.tar.gz`;

  test('the bucket policy denies reading or writing a transfer to every principal but the two signing roles', () => {
    const policies = Object.values(template.findResources('AWS::S3::BucketPolicy')).filter(
      (p) => flatten(p.Properties.Bucket) === `<${logicalId(stack.runs.bucket)}>`,
    );
    const statements = policies.flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
    const deny = statements.find((s) => s.Sid === 'CertificateTransferOnlyForItsSigners');
    expect(deny).toMatchObject({ Effect: 'Deny', Principal: { AWS: '*' } });
    expect(asList(deny?.Action).sort()).toEqual(['s3:GetObject', 's3:GetObjectVersion', 's3:PutObject']);
    expect(asList(deny?.Resource).map(flatten)).toEqual([`${bucket()}/tls/*`]);
    const allowedSigners = asList(deny?.Condition?.ArnNotEquals?.['aws:PrincipalArn']).map(flatten);
    expect(allowedSigners.sort()).toEqual(
      [
        `<${logicalId(stack.lambdas.steps['pack-certificate'].role)}.Arn>`,
        `<${logicalId(stack.lambdas.steps.prepare.role)}.Arn>`,
      ].sort(),
    );
  });

  test('only pack-certificate may write a transfer object, only prepare read one, only finish delete one', () => {
    expect(stepsAllowed('s3:PutObject', transfer())).toEqual(['pack-certificate']);
    expect(stepsAllowed('s3:GetObject', transfer())).toEqual(['prepare']);
    expect(stepsAllowed('s3:DeleteObjectVersion', transfer())).toEqual(['finish']);
    expect(stepsAllowed('s3:DeleteObject', transfer())).toEqual([]);
  });

  test('each transfer right is its own statement on tls/* alone, with a reason for the wildcard', () => {
    const onTransfers = STEP_NAMES.flatMap((step) =>
      stepStatements(step)
        .filter((s) => asList(s.Resource).some((r) => flatten(r).includes('/tls/')))
        .map((s) => ({
          step,
          sid: s.Sid,
          actions: asList(s.Action),
          resources: asList(s.Resource).map(flatten),
        })),
    );
    expect(onTransfers.sort((a, b) => a.step.localeCompare(b.step))).toEqual([
      {
        step: 'finish',
        sid: 'DeleteCertificateTransfer',
        actions: ['s3:DeleteObjectVersion'],
        resources: [`${bucket()}/tls/*`],
      },
      {
        step: 'pack-certificate',
        sid: 'PresignCertificateUpload',
        actions: ['s3:PutObject'],
        resources: [`${bucket()}/tls/*`],
      },
      {
        step: 'prepare',
        sid: 'PresignCertificateDownload',
        actions: ['s3:GetObject'],
        resources: [`${bucket()}/tls/*`],
      },
    ]);
  });

  test('pack-certificate sends commands only to tagged boxes, and renews the lock like every command step', () => {
    const statements = stepStatements('pack-certificate');
    expect(statements.find((s) => s.Sid === 'CommandTargetInstances')?.Condition).toEqual({
      StringEquals: { 'ssm:resourceTag/understudy:target': ['web', 'api', 'shop-eu'] },
    });
    expect(stepsAllowed('s3:PutObject', `${bucket()}/locks/web.json`)).toContain('pack-certificate');
    expect(stepsAllowed('s3:DeleteObject', `${bucket()}/locks/web.json`)).not.toContain('pack-certificate');
  });

  test("preflight may read the target's run records (rate-limit guard) but write none; finish only writes them", () => {
    const record = `${bucket()}/runs/web/web-run-0.json`;
    expect(stepsAllowed('s3:GetObject', record)).toEqual(['preflight']);
    expect(stepsAllowed('s3:PutObject', record)).toEqual(['finish']);
    expect(stepStatements('preflight').find((s) => s.Sid === 'ReadRunRecords')?.Action).toBe('s3:GetObject');
  });

  test('a lifecycle rule expires transfers after one day, their noncurrent versions a day later, then the markers', () => {
    const rules = template.toJSON().Resources[logicalId(stack.runs.bucket)].Properties.LifecycleConfiguration
      .Rules as Record<string, unknown>[];
    const forTransfers = rules.filter((r) => r.Prefix === 'tls/');
    expect(forTransfers).toEqual([
      {
        Id: 'expire-certificate-transfers',
        Prefix: 'tls/',
        Status: 'Enabled',
        ExpirationInDays: 1,
        NoncurrentVersionExpiration: { NoncurrentDays: 1 },
      },
      {
        Id: 'remove-certificate-transfer-markers',
        Prefix: 'tls/',
        Status: 'Enabled',
        ExpiredObjectDeleteMarker: true,
      },
    ]);
    // Locks and run records keep their history: the 90-day rule still covers the whole bucket.
    expect(rules.find((r) => r.Id === 'expire-old-versions')).toMatchObject({
      NoncurrentVersionExpiration: { NoncurrentDays: 90 },
    });
    expect(rules.find((r) => r.Id === 'expire-old-versions')).not.toHaveProperty('ExpirationInDays');
  });
});

describe('the dns-01 instance policy', () => {
  const policies = () => template.findResources('AWS::IAM::ManagedPolicy');
  const dns01Policy = () => template.toJSON().Resources[logicalId(stack.dns01.policies['shop-eu'] as never)];

  test('exists once per dns-01 target, and for no other target', () => {
    expect(Object.keys(stack.dns01.policies)).toEqual(['shop-eu']);
    const route53 = Object.values(policies()).filter((p) =>
      (p.Properties.PolicyDocument.Statement as Statement[]).some((s) =>
        asList(s.Action).some((a) => a.startsWith('route53:')),
      ),
    );
    expect(route53).toHaveLength(1);
  });

  test('lets certbot change only the TXT record _acme-challenge.<domain> in the target hosted zone', () => {
    expect(dns01Policy().Properties.PolicyDocument.Statement).toEqual([
      {
        Sid: 'AnswerAcmeChallenge',
        Effect: 'Allow',
        Action: 'route53:ChangeResourceRecordSets',
        // Route 53 is global: no region, no account.
        Resource: `arn:aws:route53:::hostedzone/${ZONE}`,
        Condition: {
          'ForAllValues:StringEquals': {
            'route53:ChangeResourceRecordSetsNormalizedRecordNames': ['_acme-challenge.shop.example.com'],
            'route53:ChangeResourceRecordSetsRecordTypes': ['TXT'],
          },
        },
      },
      {
        Sid: 'WaitForChangeInSync',
        Effect: 'Allow',
        Action: 'route53:GetChange',
        Resource: 'arn:aws:route53:::change/*',
      },
      { Sid: 'FindHostedZone', Effect: 'Allow', Action: 'route53:ListHostedZones', Resource: '*' },
    ]);
  });

  test('is left for the user to attach: the stack attaches it to no role, user or group', () => {
    const properties = dns01Policy().Properties;
    expect(properties.Roles).toBeUndefined();
    expect(properties.Users).toBeUndefined();
    expect(properties.Groups).toBeUndefined();
    expect(properties.Description).toContain('_acme-challenge.shop.example.com');
  });

  test('a stack output names its ARN', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown; Description?: string }>;
    const output = outputs.Dns01PolicyArnShopEu;
    expect(flatten(output?.Value)).toBe(`<${logicalId(stack.dns01.policies['shop-eu'] as never)}>`);
    expect(output?.Description).toContain('shop-eu');
    expect(Object.keys(outputs).filter((k) => k.startsWith('Dns01PolicyArn'))).toEqual([
      'Dns01PolicyArnShopEu',
    ]);
  });

  test('is cdk-nag clean: exactly its two wildcards are acknowledged, each with a reason', () => {
    const report = new AwsSolutionsChecks().validateScope(stack.dns01);
    expect(report.violations.map((v) => v.ruleName)).toEqual([]);
    const acknowledged = stack.dns01.node
      .findAll()
      .flatMap((c) => c.node.metadata.filter((m) => m.type === 'aws:cdk:acknowledged-rules'))
      .flatMap((m) => Object.entries(m.data as Record<string, string>));
    expect(acknowledged.map(([id]) => id.replace(/^\w+::/, '')).sort()).toEqual([
      'AwsSolutions-IAM5[Resource::*]',
      'AwsSolutions-IAM5[Resource::arn:aws:route53:::change/*]',
    ]);
    for (const [, reason] of acknowledged) expect(reason.length).toBeGreaterThan(30);
  });

  test('is refused for a target that is not in dns-01 mode', () => {
    const [web] = exampleConfig().targets;
    if (!web) throw new Error('the example config changed');
    expect(() => dns01Statements(stack, web)).toThrow(/tls.mode "dns-01"/);
  });

  test('the account id never appears in the policy: Route 53 ARNs carry none', () => {
    expect(JSON.stringify(dns01Policy())).not.toContain(ACCOUNT);
  });
});
