import { Stack } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import { asList, flatten } from '../../lib/nag-findings';
import { ACCOUNT, exampleConfig, REGION, type Statement, synthesize } from './stack-fixture';

/**
 * Least privilege as rules over every IAM statement the stack synthesizes (step policies, CDK's default
 * policies, managed policies, inline role policies), cdk-nag style: one rule, one test, and each rule
 * is shown to flag a hand-made statement that breaks it. step-permissions.test.ts pins what each step
 * is granted; these rules hold for anything anyone adds later.
 */

interface Located {
  /** The resource that holds the statement, and where in it. */
  readonly where: string;
  readonly statement: Statement;
  /** The other statements of the same policy document. */
  readonly siblings: readonly Statement[];
}

const everyStatement = (template: Template): Located[] => {
  const out: Located[] = [];
  const add = (where: string, document: unknown) => {
    const statements = asList((document as { Statement: Statement | Statement[] }).Statement);
    statements.forEach((statement, i) => {
      out.push({ where: `${where} #${i + 1}`, statement, siblings: statements });
    });
  };
  for (const type of ['AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy']) {
    for (const [id, r] of Object.entries(template.findResources(type))) add(id, r.Properties.PolicyDocument);
  }
  for (const [id, r] of Object.entries(template.findResources('AWS::IAM::Role'))) {
    for (const inline of (r.Properties.Policies ?? []) as { PolicyName: string; PolicyDocument: unknown }[]) {
      add(`${id}/${inline.PolicyName}`, inline.PolicyDocument);
    }
  }
  return out;
};

const allows = (s: Statement) => s.Effect === 'Allow';
const actionsOf = (s: Statement) => asList(s.Action as string | string[] | undefined);
const resourcesOf = (s: Statement) => asList(s.Resource).map(flatten);
const conditionKeys = (s: Statement) =>
  Object.values(s.Condition ?? {}).flatMap((block) => Object.keys(block));
/** Keys a statement requires to equal or match given values (a Null or negated test scopes nothing). */
const matchedKeys = (s: Statement) =>
  Object.entries(s.Condition ?? {})
    .filter(([operator]) => /^(ForAnyValue:|ForAllValues:)?String(Equals|Like)$/.test(operator))
    .flatMap(([, block]) => Object.keys(block));

/** An EC2 action that changes something: anything but Describe*, Get*, List* (a wildcard may hide one). */
const MUTATING_EC2 = /^ec2:(?!(Describe|Get|List)[A-Za-z*]*$)/i;
const TAG_CONDITION = /^(aws:ResourceTag|ec2:ResourceTag|aws:RequestTag)\//i;
/** What RunInstances uses or creates beside the instance and its volumes, which carry the target tag. */
const LAUNCH_COMPANIONS = /:(image|snapshot|subnet|security-group|key-pair|network-interface)\/\*$/;

const launchIsTagged = (siblings: readonly Statement[]) =>
  siblings.some(
    (s) =>
      allows(s) &&
      actionsOf(s).includes('ec2:RunInstances') &&
      resourcesOf(s).some((r) => /:instance\/\*$/.test(r)) &&
      conditionKeys(s).some((k) => /^aws:RequestTag\//i.test(k)),
  );

/**
 * Rule: an Allow of a mutating EC2 action carries a tag condition, or names specific resources (no
 * wildcard). Two shapes lean on the launch's own request-tag condition in the same policy: CreateTags
 * bound to RunInstances (ec2:CreateAction), and RunInstances on what it only uses (the image, the
 * subnet...), since no instance can be launched without the tagged instance/* grant.
 */
const unscopedEc2Mutation = (located: Located): string | undefined => {
  const { statement: s, siblings } = located;
  const mutating = actionsOf(s).filter((a) => MUTATING_EC2.test(a));
  if (!allows(s) || mutating.length === 0) return undefined;
  if (matchedKeys(s).some((k) => TAG_CONDITION.test(k))) return undefined;
  const resources = resourcesOf(s);
  if (resources.every((r) => !r.includes('*'))) return undefined;
  const onlyLaunchTags =
    mutating.every((a) => a === 'ec2:CreateTags') &&
    asList(s.Condition?.StringEquals?.['ec2:CreateAction'] as string | string[] | undefined).every(
      (a) => a === 'RunInstances',
    ) &&
    conditionKeys(s).includes('ec2:CreateAction');
  if (onlyLaunchTags && launchIsTagged(siblings)) return undefined;
  const onlyLaunchCompanions =
    mutating.every((a) => a === 'ec2:RunInstances') && resources.every((r) => LAUNCH_COMPANIONS.test(r));
  if (onlyLaunchCompanions && launchIsTagged(siblings)) return undefined;
  return `${located.where} (${s.Sid ?? 'no sid'}): ${mutating.join(', ')} on ${resources.join(', ')} without a tag condition`;
};

/** Rule: no Allow grants every action (`*`), every action of a service (`svc:*`), or all but some (NotAction). */
const wholeServiceGrant = (located: Located): string | undefined => {
  const s = located.statement;
  if (!allows(s)) return undefined;
  if ('NotAction' in s) return `${located.where}: Allow with NotAction grants everything else`;
  const broad = actionsOf(s).filter((a) => a === '*' || /^[a-z0-9-]+:\*$/i.test(a));
  return broad.length > 0 ? `${located.where}: grants ${broad.join(', ')}` : undefined;
};

/**
 * Rule: iam:PassRole (however it is spelled: iam:Pass*, iam:*) passes roles of this account, by role
 * ARN, to EC2 only, and sits beside the RunInstances it is for. The one other shape: the stack's own
 * retirement role (a role of this stack, by its ARN attribute) to EventBridge Scheduler, beside the
 * CreateSchedule it is for (end-of-window schedules, lib/retirement.ts).
 */
const loosePassRole = (located: Located): string | undefined => {
  const s = located.statement;
  if (!allows(s) || !actionsOf(s).some((a) => /^iam:(\*|Pass\*|PassRole)$/i.test(a) || a === '*'))
    return undefined;
  const problems: string[] = [];
  const service = s.Condition?.StringEquals?.['iam:PassedToService'];
  if (
    JSON.stringify(asList(service as string | string[] | undefined)) ===
    JSON.stringify(['scheduler.amazonaws.com'])
  ) {
    const notOwn = resourcesOf(s).filter((r) => !/^<Retirement\w*Role\w*\.Arn>$/.test(r));
    if (notOwn.length > 0)
      problems.push(`resources ${notOwn.join(', ')} are not the stack's retirement role`);
    if (!located.siblings.some((x) => allows(x) && actionsOf(x).includes('scheduler:CreateSchedule'))) {
      problems.push('no CreateSchedule in the same policy: the role would be passable without a schedule');
    }
    return problems.length > 0 ? `${located.where}: ${problems.join('; ')}` : undefined;
  }
  if (
    JSON.stringify(asList(service as string | string[] | undefined)) !== JSON.stringify(['ec2.amazonaws.com'])
  ) {
    problems.push(`iam:PassedToService is ${JSON.stringify(service)}, not exactly ec2.amazonaws.com`);
  }
  const foreign = resourcesOf(s).filter(
    (r) => !new RegExp(`^arn:(aws|<AWS::Partition>):iam::(${ACCOUNT}|<AWS::AccountId>):role/.`).test(r),
  );
  if (foreign.length > 0) problems.push(`resources ${foreign.join(', ')} are not role ARNs of this account`);
  if (!located.siblings.some((x) => allows(x) && actionsOf(x).includes('ec2:RunInstances'))) {
    problems.push('no RunInstances in the same policy: the role would be passable without a launch');
  }
  return problems.length > 0 ? `${located.where}: ${problems.join('; ')}` : undefined;
};

let statements: Located[];
beforeAll(() => {
  statements = everyStatement(synthesize().template);
});

const solo = (statement: Statement, siblings: Statement[] = [statement]): Located => ({
  where: 'hand-made',
  statement,
  siblings,
});
const INSTANCES = `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/*`;
const taggedLaunch: Statement = {
  Effect: 'Allow',
  Action: 'ec2:RunInstances',
  Resource: [INSTANCES],
  Condition: { StringEquals: { 'aws:RequestTag/understudy:target': ['web'] } },
};

describe('least privilege over every statement of the stack', () => {
  test('the stack has the statements these rules are about', () => {
    expect(statements.length).toBeGreaterThan(60);
    expect(
      statements.filter(({ statement }) => actionsOf(statement).some((a) => MUTATING_EC2.test(a))).length,
    ).toBeGreaterThan(8);
  });

  test('every mutating EC2 statement carries a tag condition or names specific resources', () => {
    expect(statements.map(unscopedEc2Mutation).filter(Boolean)).toEqual([]);
    expect(
      unscopedEc2Mutation(solo({ Effect: 'Allow', Action: 'ec2:TerminateInstances', Resource: INSTANCES })),
    ).toMatch(/ec2:TerminateInstances on .*instance\/\* without a tag condition/);
    expect(unscopedEc2Mutation(solo({ Effect: 'Allow', Action: 'ec2:*', Resource: '*' }))).toBeDefined();
    const anyTagged: Statement = {
      Effect: 'Allow',
      Action: 'ec2:StopInstances',
      Resource: INSTANCES,
      Condition: { Null: { 'aws:ResourceTag/understudy:target': 'false' } },
    };
    expect(unscopedEc2Mutation(solo(anyTagged))).toBeDefined();
    expect(
      unscopedEc2Mutation(
        solo({ ...anyTagged, Condition: { StringEquals: { 'ec2:ResourceTag/understudy:target': 'web' } } }),
      ),
    ).toBeUndefined();
    expect(
      unscopedEc2Mutation(solo({ Effect: 'Allow', Action: 'ec2:Describe*', Resource: '*' })),
    ).toBeUndefined();
    // CreateTags bound to RunInstances is scoped only if the launch itself must carry the tag.
    const tagOnLaunch: Statement = {
      Effect: 'Allow',
      Action: 'ec2:CreateTags',
      Resource: INSTANCES,
      Condition: { StringEquals: { 'ec2:CreateAction': 'RunInstances' } },
    };
    expect(unscopedEc2Mutation(solo(tagOnLaunch, [tagOnLaunch, taggedLaunch]))).toBeUndefined();
    expect(unscopedEc2Mutation(solo(tagOnLaunch))).toBeDefined();
    // So is RunInstances on the image and subnet, and never on the instance itself.
    const companions: Statement = {
      Effect: 'Allow',
      Action: 'ec2:RunInstances',
      Resource: [`arn:aws:ec2:${REGION}::image/*`, `arn:aws:ec2:${REGION}:${ACCOUNT}:subnet/*`],
    };
    expect(unscopedEc2Mutation(solo(companions, [companions, taggedLaunch]))).toBeUndefined();
    expect(unscopedEc2Mutation(solo(companions))).toBeDefined();
    expect(
      unscopedEc2Mutation(solo({ ...companions, Resource: [INSTANCES] }, [companions, taggedLaunch])),
    ).toBeDefined();
    expect(
      unscopedEc2Mutation(
        solo({
          Effect: 'Allow',
          Action: 'ec2:AssociateAddress',
          Resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:elastic-ip/eipalloc-1`,
        }),
      ),
    ).toBeUndefined();
  });

  test('no statement grants every action, a whole service, or everything but some actions', () => {
    expect(statements.map(wholeServiceGrant).filter(Boolean)).toEqual([]);
    expect(wholeServiceGrant(solo({ Effect: 'Allow', Action: 's3:*', Resource: '*' }))).toMatch(
      /grants s3:\*/,
    );
    expect(
      wholeServiceGrant(solo({ Effect: 'Allow', Action: ['ec2:DescribeInstances', '*'], Resource: '*' })),
    ).toMatch(/grants \*/);
    expect(
      wholeServiceGrant(solo({ Effect: 'Allow', NotAction: 'iam:*', Resource: '*' } as unknown as Statement)),
    ).toMatch(/NotAction/);
    expect(
      wholeServiceGrant(solo({ Effect: 'Allow', Action: 'ec2:Describe*', Resource: '*' })),
    ).toBeUndefined();
  });

  test('iam:PassRole passes roles of this account to EC2 only, beside the launch it serves', () => {
    const passers = statements.filter(({ statement }) => actionsOf(statement).includes('iam:PassRole'));
    expect(passers.length).toBeGreaterThan(0);
    expect(statements.map(loosePassRole).filter(Boolean)).toEqual([]);
    const pass = (Resource: string, Condition?: Statement['Condition']): Located =>
      solo({ Effect: 'Allow', Action: 'iam:PassRole', Resource, ...(Condition ? { Condition } : {}) }, [
        taggedLaunch,
      ]);
    const toEc2 = { StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com' } };
    const toScheduler = { StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } };
    const schedule: Statement = { Effect: 'Allow', Action: 'scheduler:CreateSchedule', Resource: '*' };
    const passToScheduler = (Resource: string, siblings: Statement[]) =>
      loosePassRole({
        where: 'hand-made',
        statement: { Effect: 'Allow', Action: 'iam:PassRole', Resource, Condition: toScheduler },
        siblings,
      });
    expect(passToScheduler('<RetirementSchedulerRole1CACDC08.Arn>', [schedule])).toBeUndefined();
    expect(passToScheduler(`arn:aws:iam::${ACCOUNT}:role/admin`, [schedule])).toMatch(
      /not the stack's retirement role/,
    );
    expect(passToScheduler('<RetirementSchedulerRole1CACDC08.Arn>', [taggedLaunch])).toMatch(
      /no CreateSchedule/,
    );
    expect(loosePassRole(pass(`arn:aws:iam::${ACCOUNT}:role/web`, toEc2))).toBeUndefined();
    expect(loosePassRole(pass(`arn:aws:iam::${ACCOUNT}:role/web`))).toMatch(
      /iam:PassedToService is undefined/,
    );
    expect(
      loosePassRole(
        pass(`arn:aws:iam::${ACCOUNT}:role/web`, {
          StringEquals: { 'iam:PassedToService': ['ec2.amazonaws.com', 'lambda.amazonaws.com'] },
        }),
      ),
    ).toMatch(/not exactly ec2/);
    expect(loosePassRole(pass('*', toEc2))).toMatch(/resources \* are not role ARNs/);
    expect(loosePassRole(pass('arn:aws:iam::999999999999:role/web', toEc2))).toMatch(
      /not role ARNs of this account/,
    );
    expect(loosePassRole(pass('arn:aws:iam::*:role/web', toEc2))).toMatch(/not role ARNs of this account/);
    expect(loosePassRole({ ...pass(`arn:aws:iam::${ACCOUNT}:role/web`, toEc2), siblings: [] })).toMatch(
      /no RunInstances/,
    );
  });

  test('cdk-nag reports nothing unacknowledged for each TLS mode and Terraform backend, and reports a stray wildcard', () => {
    const base = exampleConfig();
    const [web, api] = base.targets;
    if (!web?.terraform || !api) throw new Error('the example config changed: web must use Terraform');
    const variants = {
      'restore, no Terraform': { ...web, tls: { mode: 'restore' as const }, terraform: undefined },
      'dns-01, state under a customer key in another region': {
        ...web,
        tls: { mode: 'dns-01' as const, email: 'ops@example.com', hostedZoneId: 'Z0123456789ABCDEFGHIJ' },
        terraform: { ...web.terraform, region: 'us-east-1' },
      },
      'none, lock file only': {
        ...web,
        tls: { mode: 'none' as const },
        terraform: { ...web.terraform, dynamodbTable: undefined, kmsKeyArn: undefined },
      },
    };
    for (const [name, target] of Object.entries(variants)) {
      const { stack } = synthesize({ config: { ...base, targets: [target, api] } });
      const report = new AwsSolutionsChecks().validateScope(stack);
      expect({ name, violations: report.violations.map((v) => v.ruleName) }).toEqual({
        name,
        violations: [],
      });
      // The same check on the same stack with one unjustified wildcard is not clean.
      new iam.Policy(stack, 'Stray', {
        roles: [stack.lambdas.steps.launch.role],
        statements: [new iam.PolicyStatement({ actions: ['ec2:StopInstances'], resources: ['*'] })],
      });
      expect(
        new AwsSolutionsChecks().validateScope(Stack.of(stack)).violations.map((v) => v.ruleName),
      ).toEqual(['AwsSolutions-IAM5[Resource::*]']);
    }
  });
});
