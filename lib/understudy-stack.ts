import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import type { UnderstudyConfig } from '../lambdas/shared/config';
import { parameterNames } from '../lambdas/shared/constants';
import { IDENTITY_KEYS_VARIABLE, identityKeysVariable } from '../lambdas/signal/identity';
import { Dns01Policies } from './dns01-policy';
import { EventRouting } from './event-routing';
import { Fleet } from './fleet';
import { GoldenImage } from './golden-image';
import { Notifications } from './notifications';
import { Observability } from './observability';
import { OperatorPolicy } from './operator-policy';
import { Orchestrator } from './orchestrator';
import { Retirement } from './retirement';
import { RunsBucket } from './runs-bucket';
import { StepLambdas } from './step-lambdas';
import { StepPermissions } from './step-permissions';
import { pascalCase, STEP_NAMES, type StepName } from './steps';
import { TargetParameters } from './target-parameters';
import { Triggers } from './triggers';

export interface UnderstudyStackProps extends StackProps {
  /** The validated configuration (`loadConfig`). */
  readonly config: UnderstudyConfig;
  /**
   * Where the golden images take the readiness agent from.
   * @default ami/readiness-agent
   */
  readonly readinessAgentDir?: string;
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
  /** The dashboard and the alarms on runs that need a human. */
  readonly observability: Observability;
  readonly permissions: StepPermissions;
  readonly targetParameters: TargetParameters;
  /** One image pipeline per target whose config has `image.build`, by target name. */
  readonly goldenImages: Readonly<Record<string, GoldenImage>>;
  /** Rules and schedules of the targets' automatic triggers, and the function they invoke. */
  readonly triggers: Triggers;
  /** The instance policy of each dns-01 target (its _acme-challenge TXT record only), by target name. */
  readonly dns01: Dns01Policies;
  /** The end of rollback windows: the schedule group and the role its schedules terminate with. */
  readonly retirement: Retirement;
  /** Fleet waves: the state machine `replace --group` starts (a Distributed Map of replace runs). */
  readonly fleet: Fleet;
  /** What the CLI needs, for users to attach to their SRE role (`<stack>-operator`). */
  readonly operator: OperatorPolicy;

  constructor(scope: Construct, id: string, props: UnderstudyStackProps) {
    super(scope, id, props);
    const { config } = props;
    this.parameterPrefix = `/understudy/${this.stackName}`;

    this.notifications = new Notifications(this, 'Notifications', { emails: config.notifications.emails });
    this.runs = new RunsBucket(this, 'Runs');
    // Named, not generated: golden images bake the name into their readiness agent settings at synth.
    const eventBusName = `${this.stackName}-bus`;
    this.eventBus = new events.EventBus(this, 'Bus', {
      eventBusName,
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
    // Certificates the signal function trusts on top of AWS's built-in ones; only it reads them.
    const identityCertificates = config.readinessAgent?.identityCertificates ?? {};
    if (Object.keys(identityCertificates).length > 0) {
      steps.signal.fn.addEnvironment(IDENTITY_KEYS_VARIABLE, identityKeysVariable(identityCertificates));
    }
    const byStep = <T>(pick: (step: StepName) => T): Record<StepName, T> =>
      Object.fromEntries(STEP_NAMES.map((name) => [name, pick(name)])) as Record<StepName, T>;

    this.orchestrator = new Orchestrator(this, 'Workflow', {
      functions: byStep<lambda.IFunction>((name) => steps[name].fn),
      topic: this.notifications.topic,
      topicKey: this.notifications.key,
    });

    this.retirement = new Retirement(this, 'Retirement', {
      targetNames: config.targets.map((t) => t.name),
      alarmTopic: this.notifications.topic,
    });
    for (const name of ['retire', 'start-retired', 'revert-restore'] as const) {
      steps[name].fn.addEnvironment('SCHEDULE_GROUP', this.retirement.groupName);
      steps[name].fn.addEnvironment('SCHEDULER_ROLE_ARN', this.retirement.role.roleArn);
      steps[name].fn.addEnvironment('SCHEDULE_DEAD_LETTER_ARN', this.retirement.deadLetterQueue.queueArn);
    }

    this.permissions = new StepPermissions(this, 'Permissions', {
      roles: byStep((name) => steps[name].role),
      targets: config.targets,
      parameterPrefix: this.parameterPrefix,
      runsBucket: this.runs.bucket,
      topic: this.notifications.topic,
      topicKey: this.notifications.key,
      stateMachine: this.orchestrator.stateMachine,
      eventBus: this.eventBus,
      retirement: { scheduleArns: this.retirement.scheduleArns, role: this.retirement.role },
    });

    this.runs.onlyTransferRoles([steps['pack-certificate'].role, steps.prepare.role]);

    this.routing = new EventRouting(this, 'Events', {
      eventBus: this.eventBus,
      signalFunction: steps.signal.fn,
      stateMachine: this.orchestrator.stateMachine,
    });

    this.observability = new Observability(this, 'Observability', {
      stateMachine: this.orchestrator.stateMachine,
      functions: byStep((name) => steps[name].fn),
      finishLogGroup: steps.finish.logGroup,
      signalFunction: steps.signal.fn,
      topic: this.notifications.topic,
      targets: config.targets.map((t) => t.name),
      dashboardName: `${this.stackName}-understudy`,
    });

    const goldenImages: Record<string, GoldenImage> = {};
    for (const target of config.targets) {
      if (target.image.build === undefined) continue;
      const image = new GoldenImage(this, `Image-${target.name}`, {
        target: target.name,
        build: target.image.build,
        parameterName: parameterNames(this.parameterPrefix).image(target.name),
        eventBusName,
        ...(props.readinessAgentDir === undefined ? {} : { readinessAgentDir: props.readinessAgentDir }),
      });
      goldenImages[target.name] = image;
      new CfnOutput(this, `ImagePipelineArn${pascalCase(target.name)}`, {
        value: image.pipeline.attrArn,
        description: `Bake the ${target.name} image: aws imagebuilder start-image-pipeline-execution --image-pipeline-arn <this value>`,
      });
    }
    this.goldenImages = goldenImages;

    this.triggers = new Triggers(this, 'Triggers', {
      targets: config.targets,
      parameterPrefix: this.parameterPrefix,
      stateMachine: this.orchestrator.stateMachine,
      goldenImages,
      runsBucket: this.runs.bucket,
    });

    this.dns01 = new Dns01Policies(this, 'Dns01', { targets: config.targets });
    for (const [name, policy] of Object.entries(this.dns01.policies)) {
      new CfnOutput(this, `Dns01PolicyArn${pascalCase(name)}`, {
        value: policy.managedPolicyArn,
        description: `Attach to the role of the ${name} instances: lets certbot answer dns-01 for its domain in its hosted zone only`,
      });
    }

    new CfnOutput(this, 'StateMachineArn', { value: this.orchestrator.stateMachine.stateMachineArn });
    this.fleet = new Fleet(this, 'Fleet', {
      replaceStateMachine: this.orchestrator.stateMachine,
      // The Orchestrator's fixed name (lib/orchestrator.ts).
      replaceStateMachineName: `${this.stackName}-Replace`,
      topic: this.notifications.topic,
    });
    this.observability.addFleetRow(this.fleet);
    new CfnOutput(this, 'FleetStateMachineArn', {
      value: this.fleet.stateMachine.stateMachineArn,
      description: 'Replaces a group of targets in waves: npx understudy replace --group <name>',
    });
    this.operator = new OperatorPolicy(this, 'Operator', {
      stateMachine: this.orchestrator.stateMachine,
      runsBucket: this.runs.bucket,
      targetParameters: Object.values(this.targetParameters.parameters),
      parameterPrefix: this.parameterPrefix,
      fleetStateMachine: this.fleet.stateMachine,
    });
    new CfnOutput(this, 'OperatorPolicyArn', {
      value: this.operator.policy.managedPolicyArn,
      description:
        'Attach to the role your SREs use to run the Understudy CLI (replace, rollback, status, history, approve, reject)',
    });

    new CfnOutput(this, 'EventBusName', { value: this.eventBus.eventBusName });
    new CfnOutput(this, 'TopicArn', { value: this.notifications.topic.topicArn });
    new CfnOutput(this, 'RunsBucketName', { value: this.runs.bucket.bucketName });
    new CfnOutput(this, 'InstancePolicyArn', {
      value: this.routing.instancePolicy.managedPolicyArn,
      description: 'Attach to the role of every instance that runs the Understudy readiness agent',
    });
  }
}
