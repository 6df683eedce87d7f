import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import type { UnderstudyConfig } from '../lambdas/shared/config';
import { EventRouting } from './event-routing';
import { Notifications } from './notifications';
import { Orchestrator } from './orchestrator';
import { RunsBucket } from './runs-bucket';
import { StepLambdas } from './step-lambdas';
import { StepPermissions } from './step-permissions';
import { STEP_NAMES, type StepName } from './steps';
import { TargetParameters } from './target-parameters';

export interface UnderstudyStackProps extends StackProps {
  /** The validated configuration (`loadConfig`). */
  readonly config: UnderstudyConfig;
}

/** Understudy: the replacement workflow, its functions, event routing, notifications and run storage. */
export class UnderstudyStack extends Stack {
  /** SSM prefix of every parameter this stack and its functions own. */
  readonly parameterPrefix: string;
  readonly notifications: Notifications;
  readonly runs: RunsBucket;
  readonly eventBus: events.EventBus;
  readonly lambdas: StepLambdas;
  readonly orchestrator: Orchestrator;
  readonly routing: EventRouting;
  readonly permissions: StepPermissions;
  readonly targetParameters: TargetParameters;

  constructor(scope: Construct, id: string, props: UnderstudyStackProps) {
    super(scope, id, props);
    const { config } = props;
    this.parameterPrefix = `/understudy/${this.stackName}`;

    this.notifications = new Notifications(this, 'Notifications', { emails: config.notifications.emails });
    this.runs = new RunsBucket(this, 'Runs');
    this.eventBus = new events.EventBus(this, 'Bus', {
      description: 'Understudy agent events and replacement requests',
    });

    this.targetParameters = new TargetParameters(this, 'Targets', {
      parameterPrefix: this.parameterPrefix,
      targets: config.targets,
    });

    this.lambdas = new StepLambdas(this, 'Steps', {
      environment: {
        parameterPrefix: this.parameterPrefix,
        runsBucketName: this.runs.bucket.bucketName,
        topicArn: this.notifications.topic.topicArn,
        eventBusName: this.eventBus.eventBusName,
      },
    });
    const steps = this.lambdas.steps;
    const byStep = <T>(pick: (step: StepName) => T): Record<StepName, T> =>
      Object.fromEntries(STEP_NAMES.map((name) => [name, pick(name)])) as Record<StepName, T>;

    this.orchestrator = new Orchestrator(this, 'Workflow', {
      functions: byStep<lambda.IFunction>((name) => steps[name].fn),
      alarmTopic: this.notifications.topic,
    });

    this.permissions = new StepPermissions(this, 'Permissions', {
      roles: byStep((name) => steps[name].role),
      targets: config.targets,
      parameterPrefix: this.parameterPrefix,
      runsBucket: this.runs.bucket,
      topic: this.notifications.topic,
      topicKey: this.notifications.key,
      stateMachine: this.orchestrator.stateMachine,
    });

    this.routing = new EventRouting(this, 'Events', {
      eventBus: this.eventBus,
      signalFunction: steps.signal.fn,
      stateMachine: this.orchestrator.stateMachine,
    });

    new CfnOutput(this, 'StateMachineArn', { value: this.orchestrator.stateMachine.stateMachineArn });
    new CfnOutput(this, 'EventBusName', { value: this.eventBus.eventBusName });
    new CfnOutput(this, 'TopicArn', { value: this.notifications.topic.topicArn });
    new CfnOutput(this, 'RunsBucketName', { value: this.runs.bucket.bucketName });
    new CfnOutput(this, 'InstancePolicyArn', {
      value: this.routing.instancePolicy.managedPolicyArn,
      description: 'Attach to the role of every instance that runs the Understudy readiness agent',
    });
  }
}
