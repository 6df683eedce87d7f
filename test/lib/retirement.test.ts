import type { Template } from 'aws-cdk-lib/assertions';
import { asList, flatten } from '../../lib/nag-findings';
import type { UnderstudyStack } from '../../lib/understudy-stack';
import { evaluate, type PolicyStatement } from '../security/iam-eval';
import { ACCOUNT, logicalId, REGION, statementsOfRole, synthesize } from './stack-fixture';

let stack: UnderstudyStack;
let template: Template;
beforeAll(() => {
  ({ stack, template } = synthesize());
});

const INSTANCE = `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/i-0123456789abcdef0`;
const roleStatements = () => statementsOfRole(template, logicalId(stack.retirement.role));
/** The role's statements with their ARNs resolved as CloudFormation would in this account. */
const resolved = (): PolicyStatement[] =>
  roleStatements().map((s) => ({
    ...(s as PolicyStatement),
    Resource: asList(s.Resource).map((r) =>
      flatten(r)
        .replace('<AWS::Partition>', 'aws')
        .replace('<AWS::Region>', REGION)
        .replace('<AWS::AccountId>', ACCOUNT),
    ),
  }));
const terminate = (tags: Record<string, string>) =>
  evaluate(resolved(), {
    action: 'ec2:TerminateInstances',
    resource: INSTANCE,
    context: Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:ResourceTag/${k}`, v])),
  }).allowed;

describe('the end of rollback windows', () => {
  it('has a schedule group named after the stack', () => {
    template.hasResourceProperties('AWS::Scheduler::ScheduleGroup', {
      Name: `${stack.stackName}-retirement`,
    });
  });

  it('gives the schedules a role only EventBridge Scheduler of this account can assume', () => {
    const role = template.toJSON().Resources[logicalId(stack.retirement.role)];
    expect(role.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      expect.objectContaining({
        Action: 'sts:AssumeRole',
        Principal: { Service: 'scheduler.amazonaws.com' },
        Condition: { StringEquals: { 'aws:SourceAccount': ACCOUNT } },
      }),
    ]);
  });

  it('lets that role terminate a retired box of a configured target, and nothing else', () => {
    expect(roleStatements().flatMap((s) => asList(s.Action))).toEqual(['ec2:TerminateInstances']);
    expect(terminate({ 'understudy:role': 'retired', 'understudy:target': 'web' })).toBe(true);
    // A box flipped back to serving by a rollback, a candidate, a box of no configured target.
    expect(terminate({ 'understudy:role': 'serving', 'understudy:target': 'web' })).toBe(false);
    expect(terminate({ 'understudy:role': 'candidate', 'understudy:target': 'web' })).toBe(false);
    expect(terminate({ 'understudy:role': 'retired', 'understudy:target': 'someone-else' })).toBe(false);
    expect(terminate({})).toBe(false);
  });

  it('tells the schedule creators the group and the role, and scopes their schedule rights to that group', () => {
    for (const step of ['retire', 'start-retired', 'revert-restore'] as const) {
      const fn = template.toJSON().Resources[logicalId(stack.lambdas.steps[step].fn)];
      expect(Object.keys(fn.Properties.Environment.Variables)).toEqual(
        expect.arrayContaining(['SCHEDULE_GROUP', 'SCHEDULER_ROLE_ARN']),
      );
      const schedules = statementsOfRole(template, logicalId(stack.lambdas.steps[step].role)).filter((s) =>
        asList(s.Action).some((a) => a.startsWith('scheduler:')),
      );
      expect(schedules).toHaveLength(1);
      expect(asList(schedules[0]?.Resource).map(flatten)).toEqual([
        `arn:aws:scheduler:${REGION}:${ACCOUNT}:schedule/${stack.stackName}-retirement/*`,
      ]);
    }
  });
});
