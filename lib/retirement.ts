import { Duration, Stack, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { Tags } from '../lambdas/shared/constants';
import { acknowledgeWildcards, type JustifiedStatement } from './nag-findings';

/**
 * The end of rollback windows (design §2.10): a schedule group for the one-time schedules Retire
 * creates, and the role those schedules run as. The role can do one thing: terminate an instance that
 * still carries `understudy:role=retired` and the tag of a configured target. A box that a rollback
 * brought back to serving no longer matches, so a schedule left behind cannot touch it.
 *
 * A termination that still fails after Scheduler's retries (termination protection, a denied condition)
 * would leave no trace: the one-time schedule deletes itself after its run. Each schedule therefore names
 * a dead-letter queue, and an alarm on that queue tells the operators a retired box outlived its window.
 */

export interface RetirementProps {
  readonly targetNames: readonly string[];
  /** The stack's notification topic: the failed-termination alarm goes where the other alarms go. */
  readonly alarmTopic: sns.ITopic;
}

export interface ArnParts {
  readonly partition: string;
  readonly region: string;
  readonly account: string;
}

/**
 * The role's one statement, as policy JSON: shared by the construct and by tests that evaluate what the
 * schedule may do to a box (test/workflow/rollback-window.test.ts).
 */
export const terminateRetiredStatement = (arn: ArnParts, targetNames: readonly string[]) => ({
  Sid: 'TerminateRetiredBoxes',
  Effect: 'Allow',
  Action: 'ec2:TerminateInstances',
  Resource: `arn:${arn.partition}:ec2:${arn.region}:${arn.account}:instance/*`,
  Condition: {
    StringEquals: {
      [`aws:ResourceTag/${Tags.role}`]: 'retired',
      [`aws:ResourceTag/${Tags.target}`]: [...targetNames],
    },
  },
});

export class Retirement extends Construct {
  readonly role: iam.Role;
  readonly group: scheduler.CfnScheduleGroup;
  readonly groupName: string;
  /** Where Scheduler puts a terminate call it gave up on (the schedules' DeadLetterConfig). */
  readonly deadLetterQueue: sqs.Queue;
  readonly terminationFailedAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: RetirementProps) {
    super(scope, id);
    const stack = Stack.of(this);
    // Named, as the functions need the name in their environment and schedules are created by name.
    this.groupName = `${stack.stackName}-retirement`;
    this.group = new scheduler.CfnScheduleGroup(this, 'Group', { name: this.groupName });
    this.role = new iam.Role(this, 'SchedulerRole', {
      description: 'Understudy: terminates a retired instance when its rollback window ends',
      // Only schedules of this account may assume it (confused-deputy guard, Scheduler user guide).
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': stack.account } },
      }),
    });
    const terminate: JustifiedStatement = {
      statement: iam.PolicyStatement.fromJson(
        terminateRetiredStatement(
          { partition: stack.partition, region: stack.region, account: stack.account },
          props.targetNames,
        ),
      ),
      wildcardReason:
        'instance/* is narrowed by conditions: only boxes of configured targets still tagged understudy:role=retired',
    };
    const policy = new iam.Policy(this, 'TerminateRetired', {
      roles: [this.role],
      statements: [terminate.statement],
    });
    acknowledgeWildcards(policy, [terminate]);

    // Scheduler takes standard queues only. SQS-managed encryption needs no key policy for Scheduler to
    // write, unlike a customer managed key; 14 days (the maximum) outlasts a long weekend off call.
    this.deadLetterQueue = new sqs.Queue(this, 'FailedTerminations', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    // Scheduler delivers a schedule's dead letter as the schedule's role: SendMessage alone, on this queue.
    policy.addStatements(
      new iam.PolicyStatement({
        sid: 'DeliverFailedTerminations',
        actions: ['sqs:SendMessage'],
        resources: [this.deadLetterQueue.queueArn],
      }),
    );
    Validations.of(this.deadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        'this queue is itself the dead-letter queue of the end-of-window schedules (their DeadLetterConfig); ' +
        'nothing consumes it, its messages are read by an operator after the alarm',
    });

    this.terminationFailedAlarm = new cloudwatch.Alarm(this, 'TerminationFailedAlarm', {
      metric: this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
        period: Duration.minutes(5),
        statistic: cloudwatch.Stats.MAXIMUM,
      }),
      threshold: 0,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      // SQS publishes the metric for an idle queue too; missing data still means nothing failed.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription:
        'The end-of-window termination of a retired Understudy box failed after its retries: the box still runs ' +
        'up costs. See docs/operations.md, "the end-of-window termination failed".',
    });
    this.terminationFailedAlarm.addAlarmAction(new actions.SnsAction(props.alarmTopic));
  }

  /** ARN of every schedule in the group: Retire and the rollback steps create and delete only there. */
  get scheduleArns(): string {
    return Stack.of(this).formatArn({
      service: 'scheduler',
      resource: 'schedule',
      resourceName: `${this.groupName}/*`,
    });
  }
}
