import { join } from 'node:path';
import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { TargetConfig } from '../lambdas/shared/config';
import { parameterNames, runKeys } from '../lambdas/shared/constants';
import type { GoldenImage } from './golden-image';
import { acknowledgeWildcards, type JustifiedStatement } from './nag-findings';
import { acknowledgeTracing, NODEJS_BUNDLING, RUNTIME_ENVIRONMENT } from './step-lambdas';
import { pascalCase, TRIGGER_FOLDER } from './steps';
import { storedTarget } from './target-parameters';

/** The AWS events the automatic triggers listen to, on the account's default bus. */
export const PARAMETER_CHANGE = { source: 'aws.ssm', detailType: 'Parameter Store Change' } as const;
export const IMAGE_STATE_CHANGE = {
  source: 'aws.imagebuilder',
  detailType: 'EC2 Image Builder Image State Change',
} as const;
/** How often the self-healing check looks at the status checks of the box behind the Elastic IP. */
export const SELF_HEAL_RATE = 'rate(5 minutes)';

export interface TriggersProps {
  /** The validated targets; only those with a `triggers` block get rules and schedules. */
  readonly targets: readonly TargetConfig[];
  /** SSM prefix of the stack, e.g. `/understudy/Understudy`. */
  readonly parameterPrefix: string;
  readonly stateMachine: sfn.IStateMachine;
  /** The image pipeline of each target whose image Understudy builds, by target name. */
  readonly goldenImages: Readonly<Record<string, GoldenImage>>;
  /** Where the target locks live: a trigger reads a target's lock to defer rather than collide. */
  readonly runsBucket: s3.IBucket;
}

/**
 * The automatic triggers of design §3 (the custom `Replacement Requested` event stays in EventRouting):
 * per target, a rule on the default bus for its image parameter's changes, one for its Image Builder
 * images becoming AVAILABLE, an EventBridge Scheduler schedule, and a self-healing check every five
 * minutes. All of them invoke one trigger function (lambdas/trigger), which names the execution after
 * the target and the image so that two triggers for one image start one run.
 *
 * Self-healing polls DescribeInstanceStatus of whichever instance holds the Elastic IP instead of
 * alarming on StatusCheckFailed: that metric's only dimension is the instance id, which changes with
 * every replacement, so an alarm created at deploy would watch a retired box from the first run on.
 * Its limit: a box is noticed up to five minutes after `impairedMinutes`, and each target costs one
 * short invocation every five minutes.
 *
 * A trigger that preflight would refuse for now (outside the maintenance windows, or while another run
 * holds the target's lock) is deferred instead: the function creates a one-time schedule in its own
 * group that invokes it again with the same event (lambdas/trigger/defer.ts).
 */
export class Triggers extends Construct {
  /** Undefined when no target has an automatic trigger: nothing is deployed then. */
  readonly function?: nodejs.NodejsFunction;
  readonly role?: iam.Role;
  readonly policy?: iam.Policy;
  readonly rules: Readonly<Record<string, events.Rule>>;
  readonly schedules: Readonly<Record<string, scheduler.CfnSchedule>>;
  readonly schedulerRole?: iam.Role;
  /** Where the deferral schedules go; undefined when nothing is deployed. */
  readonly scheduleGroup?: scheduler.CfnScheduleGroup;

  constructor(scope: Construct, id: string, props: TriggersProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const names = parameterNames(props.parameterPrefix);
    const triggered = props.targets.filter((t) => {
      const tr = t.triggers;
      return tr !== undefined && (tr.imageParameter || tr.imageBuilder || tr.schedule || tr.selfHeal);
    });
    const rules: Record<string, events.Rule> = {};
    const schedules: Record<string, scheduler.CfnSchedule> = {};
    this.rules = rules;
    this.schedules = schedules;
    if (triggered.length === 0) return;

    const logGroup = new logs.LogGroup(this, 'Logs', {
      retention: logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'Understudy trigger function',
    });
    logGroup.grantWrite(role);
    // Named: the function creates its deferral schedules in it by name.
    const groupName = `${stack.stackName}-triggers`;
    const group = new scheduler.CfnScheduleGroup(this, 'DeferralGroup', { name: groupName });
    this.scheduleGroup = group;
    // Every triggered target can be deferred, so the role exists whenever the function does.
    const schedulerRole = new iam.Role(this, 'SchedulerRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': stack.account } },
      }),
      description: 'Lets EventBridge Scheduler invoke the Understudy trigger function, and nothing else',
    });
    this.schedulerRole = schedulerRole;
    const fn = new nodejs.NodejsFunction(this, 'Function', {
      entry: join(__dirname, '..', 'lambdas', TRIGGER_FOLDER, 'handler.ts'),
      handler: 'handler',
      description: 'Understudy: starts replacements for image, schedule and self-healing triggers',
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: 256,
      timeout: Duration.seconds(30),
      role,
      logGroup,
      tracing: lambda.Tracing.ACTIVE,
      environment: {
        PARAMETER_PREFIX: props.parameterPrefix,
        STATE_MACHINE_ARN: props.stateMachine.stateMachineArn,
        RUNS_BUCKET: props.runsBucket.bucketName,
        SCHEDULE_GROUP: groupName,
        SCHEDULER_ROLE_ARN: schedulerRole.roleArn,
        ...RUNTIME_ENVIRONMENT,
      },
      bundling: NODEJS_BUNDLING,
    });
    acknowledgeTracing(role);
    schedulerRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'InvokeTriggerFunction',
        actions: ['lambda:InvokeFunction'],
        resources: [fn.functionArn],
      }),
    );

    /** The event names the image build version (arn:...:image/<recipe>/<version>/<build>), lowercased. */
    const imageArnPrefixOf = (image: GoldenImage): string =>
      `arn:${stack.partition}:imagebuilder:${stack.region}:${stack.account}:image/${image.recipe.name.toLowerCase()}/`;
    const parameterArn = (name: string) =>
      stack.formatArn({
        service: 'ssm',
        resource: 'parameter',
        resourceName: name.replace(/^\//, ''),
        arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
      });
    /** The parameter the image triggers watch: the stored target's (a built image's is the stack's). */
    const imageParameterOf = (t: TargetConfig): string | undefined =>
      storedTarget(t, props.parameterPrefix).image.ssmParameter;
    const watched = triggered.filter((t) => t.triggers?.imageParameter || t.triggers?.imageBuilder);
    const statements: JustifiedStatement[] = [
      {
        statement: new iam.PolicyStatement({
          sid: 'ReadTargetConfig',
          actions: ['ssm:GetParameter'],
          resources: [
            ...triggered.map((t) => parameterArn(names.target(t.name))),
            ...watched.flatMap((t) => {
              const parameter = imageParameterOf(t);
              return parameter === undefined ? [] : [parameterArn(parameter)];
            }),
          ],
        }),
      },
      {
        statement: new iam.PolicyStatement({
          sid: 'StartReplacement',
          actions: ['states:StartExecution'],
          resources: [props.stateMachine.stateMachineArn],
        }),
      },
      {
        statement: new iam.PolicyStatement({
          sid: 'ReadTargetLocks',
          actions: ['s3:GetObject'],
          resources: triggered.map((t) => props.runsBucket.arnForObjects(runKeys.lock(t.name))),
        }),
      },
      {
        // Without ListBucket a missing lock (the usual case) reads as AccessDenied instead of NoSuchKey.
        statement: new iam.PolicyStatement({
          sid: 'TellMissingLocksApart',
          actions: ['s3:ListBucket'],
          resources: [props.runsBucket.bucketArn],
        }),
      },
      {
        statement: new iam.PolicyStatement({
          sid: 'DeferTriggers',
          actions: ['scheduler:CreateSchedule'],
          resources: [
            stack.formatArn({ service: 'scheduler', resource: 'schedule', resourceName: `${groupName}/*` }),
          ],
        }),
        wildcardReason:
          'one deferral schedule per execution name and time, named at run time, in the triggers group only',
      },
      {
        statement: new iam.PolicyStatement({
          sid: 'PassDeferralRole',
          actions: ['iam:PassRole'],
          resources: [schedulerRole.roleArn],
          conditions: { StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } },
        }),
      },
    ];
    // The AMI of an AVAILABLE build is found by the tag Image Builder puts on it (Ec2ImageBuilderArn).
    if (triggered.some((t) => t.triggers?.imageBuilder && props.goldenImages[t.name] !== undefined)) {
      statements.push({
        statement: new iam.PolicyStatement({
          sid: 'FindBuiltImages',
          actions: ['ec2:DescribeImages'],
          resources: ['*'],
        }),
        wildcardReason:
          'EC2 Describe* calls have no resource-level permissions (Service Authorization Reference), so they take Resource "*"',
      });
    }
    if (triggered.some((t) => t.triggers?.selfHeal)) {
      statements.push({
        statement: new iam.PolicyStatement({
          sid: 'CheckServingBox',
          actions: ['ec2:DescribeAddresses', 'ec2:DescribeInstanceStatus'],
          resources: ['*'],
        }),
        wildcardReason:
          'EC2 Describe* calls have no resource-level permissions (Service Authorization Reference), so they take Resource "*"',
      });
    }
    // Apart from the role's default policy, as the steps' are: it names the state machine.
    this.policy = new iam.Policy(this, 'Permissions', {
      roles: [role],
      statements: statements.map((s) => s.statement),
    });
    acknowledgeWildcards(this.policy, statements);

    const delivery = { retryAttempts: 8, maxEventAge: Duration.hours(1) };
    for (const target of triggered) {
      const tr = target.triggers;
      const id = pascalCase(target.name);
      const parameter = imageParameterOf(target);
      if (tr?.imageParameter && parameter !== undefined) {
        rules[`${target.name}/imageParameter`] = new events.Rule(this, `ImageParameter${id}`, {
          description: `Understudy: a new image in ${parameter} replaces target ${target.name}`,
          eventPattern: {
            source: [PARAMETER_CHANGE.source],
            detailType: [PARAMETER_CHANGE.detailType],
            detail: { name: [parameter], operation: ['Create', 'Update'] },
          },
          targets: [
            new targets.LambdaFunction(fn, {
              event: events.RuleTargetInput.fromObject({
                kind: 'imageParameter',
                target: target.name,
                parameter: events.EventField.fromPath('$.detail.name'),
                operation: events.EventField.fromPath('$.detail.operation'),
              }),
              ...delivery,
            }),
          ],
        });
      }
      const image = props.goldenImages[target.name];
      if (tr?.imageBuilder && image !== undefined) {
        // The event carries neither the pipeline nor the AMI: the recipe's name in its image ARN picks the target.
        const imageArnPrefix = imageArnPrefixOf(image);
        rules[`${target.name}/imageBuilder`] = new events.Rule(this, `ImageBuilder${id}`, {
          description: `Understudy: an AVAILABLE image of the ${target.name} pipeline replaces the target`,
          eventPattern: {
            source: [IMAGE_STATE_CHANGE.source],
            detailType: [IMAGE_STATE_CHANGE.detailType],
            resources: events.Match.prefix(imageArnPrefix),
            detail: { state: { status: ['AVAILABLE'] } },
          },
          targets: [
            new targets.LambdaFunction(fn, {
              event: events.RuleTargetInput.fromObject({
                kind: 'imageBuilder',
                target: target.name,
                image: events.EventField.fromPath('$.resources[0]'),
                status: events.EventField.fromPath('$.detail.state.status'),
              }),
              ...delivery,
            }),
          ],
        });
      }
    }

    const scheduled = triggered.filter((t) => t.triggers?.schedule || t.triggers?.selfHeal);
    const schedule = (
      key: string,
      constructId: string,
      expression: string,
      timezone: string,
      input: Record<string, string>,
      maxAgeSeconds: number,
      description: string,
    ) => {
      schedules[key] = new scheduler.CfnSchedule(this, constructId, {
        description,
        scheduleExpression: expression,
        scheduleExpressionTimezone: timezone,
        flexibleTimeWindow: { mode: 'OFF' },
        state: 'ENABLED',
        target: {
          arn: fn.functionArn,
          roleArn: schedulerRole.roleArn,
          input: JSON.stringify(input),
          // A run started hours late is not the run that was scheduled; the next slot will come.
          retryPolicy: { maximumEventAgeInSeconds: maxAgeSeconds, maximumRetryAttempts: 3 },
        },
      });
    };
    for (const target of scheduled) {
      const tr = target.triggers;
      const id = pascalCase(target.name);
      if (tr?.schedule) {
        schedule(
          `${target.name}/schedule`,
          `Schedule${id}`,
          tr.schedule.expression,
          tr.schedule.timezone,
          // Scheduler fills in the slot's time: a redelivery of the same slot names the same execution.
          { kind: 'schedule', target: target.name, scheduledTime: '<aws.scheduler.scheduled-time>' },
          3600,
          `Understudy: replaces target ${target.name} with its configured image`,
        );
      }
      if (tr?.selfHeal) {
        schedule(
          `${target.name}/selfHeal`,
          `SelfHeal${id}`,
          SELF_HEAL_RATE,
          'UTC',
          { kind: 'selfHeal', target: target.name },
          300,
          `Understudy: replaces target ${target.name} when its status checks fail`,
        );
      }
    }
    this.function = fn;
    this.role = role;
  }
}
