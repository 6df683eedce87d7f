import { Stack } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
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
    expect(
      roleStatements()
        .flatMap((s) => asList(s.Action))
        .sort(),
    ).toEqual(['ec2:TerminateInstances', 'sqs:SendMessage']);
    expect(terminate({ 'understudy:role': 'retired', 'understudy:target': 'web' })).toBe(true);
    // A box flipped back to serving by a rollback, a candidate, a box of no configured target.
    expect(terminate({ 'understudy:role': 'serving', 'understudy:target': 'web' })).toBe(false);
    expect(terminate({ 'understudy:role': 'candidate', 'understudy:target': 'web' })).toBe(false);
    expect(terminate({ 'understudy:role': 'retired', 'understudy:target': 'someone-else' })).toBe(false);
    expect(terminate({})).toBe(false);
  });

  it('tells the schedule creators the group, the role and the dead-letter queue, and scopes their schedule rights to that group', () => {
    for (const step of ['retire', 'start-retired', 'revert-restore'] as const) {
      const fn = template.toJSON().Resources[logicalId(stack.lambdas.steps[step].fn)];
      expect(Object.keys(fn.Properties.Environment.Variables)).toEqual(
        expect.arrayContaining(['SCHEDULE_GROUP', 'SCHEDULER_ROLE_ARN']),
      );
      expect(fn.Properties.Environment.Variables.SCHEDULE_DEAD_LETTER_ARN).toEqual({
        'Fn::GetAtt': [logicalId(stack.retirement.deadLetterQueue), 'Arn'],
      });
      const schedules = statementsOfRole(template, logicalId(stack.lambdas.steps[step].role)).filter((s) =>
        asList(s.Action).some((a) => a.startsWith('scheduler:')),
      );
      expect(schedules).toHaveLength(1);
      expect(asList(schedules[0]?.Resource).map(flatten)).toEqual([
        `arn:aws:scheduler:${REGION}:${ACCOUNT}:schedule/${stack.stackName}-retirement/*`,
      ]);
    }
  });

  describe('a termination that fails after its retries', () => {
    const queueId = () => logicalId(stack.retirement.deadLetterQueue);

    it('lands in an encrypted standard queue that refuses plain HTTP and keeps messages 14 days', () => {
      const queue = template.toJSON().Resources[queueId()];
      expect(queue.Type).toBe('AWS::SQS::Queue');
      expect(queue.Properties).toMatchObject({
        SqsManagedSseEnabled: true,
        MessageRetentionPeriod: 14 * 86_400,
      });
      // Scheduler takes no FIFO queue as a dead-letter queue.
      expect(queue.Properties.FifoQueue).toBeUndefined();
      const policies = Object.values(template.findResources('AWS::SQS::QueuePolicy')).filter((p) =>
        asList<unknown>(p.Properties.Queues).some((q) => JSON.stringify(q).includes(queueId())),
      );
      expect(policies.flatMap((p) => p.Properties.PolicyDocument.Statement)).toContainEqual(
        expect.objectContaining({
          Effect: 'Deny',
          Condition: { Bool: { 'aws:SecureTransport': 'false' } },
        }),
      );
    });

    it('may be written there by the schedules role: SendMessage on that queue only', () => {
      const sends = roleStatements().filter((s) => asList(s.Action).some((a) => a.startsWith('sqs:')));
      expect(sends.map((s) => [asList(s.Action), asList(s.Resource)])).toEqual([
        [['sqs:SendMessage'], [{ 'Fn::GetAtt': [queueId(), 'Arn'] }]],
      ]);
    });

    it('raises an alarm on the stack topic as soon as one message is visible', () => {
      const alarm = template.toJSON().Resources[logicalId(stack.retirement.terminationFailedAlarm)];
      expect(alarm.Properties).toMatchObject({
        Namespace: 'AWS/SQS',
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queueId(), 'QueueName'] } }],
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: 0,
        EvaluationPeriods: 1,
        TreatMissingData: 'notBreaching',
        AlarmActions: [{ Ref: logicalId(stack.notifications.topic) }],
      });
      expect(alarm.Properties.AlarmDescription).toContain('docs/operations.md');
    });

    it('adds nothing cdk-nag reports (a finding fails the synth)', () => {
      const { stack: checked } = synthesize({}, true);
      expect(new AwsSolutionsChecks().validateScope(Stack.of(checked.retirement)).violations).toEqual([]);
    });
  });
});
