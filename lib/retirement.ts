import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import { Construct } from 'constructs';
import { Tags } from '../lambdas/shared/constants';
import { acknowledgeWildcards, type JustifiedStatement } from './nag-findings';

/**
 * The end of rollback windows (design §2.10): a schedule group for the one-time schedules Retire
 * creates, and the role those schedules run as. The role can do one thing: terminate an instance that
 * still carries `understudy:role=retired` and the tag of a configured target. A box that a rollback
 * brought back to serving no longer matches, so a schedule left behind cannot touch it.
 */

export interface RetirementProps {
  readonly targetNames: readonly string[];
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
