import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';

/** `source` of the readiness agent's events; the instance policy allows no other. */
export const AGENT_SOURCE = 'understudy.agent';
export const AGENT_DETAIL_TYPES = ['Instance Ready', 'Instance Failed', 'Instance Progress'] as const;
/** `source` / `detail-type` of a replacement request (design §3, contract). */
export const REQUEST_SOURCE = 'understudy';
export const REQUEST_DETAIL_TYPE = 'Replacement Requested';

export interface EventRoutingProps {
  /** The Understudy event bus. */
  readonly eventBus: events.IEventBus;
  /** Receives the agent's ready, failed and progress events. */
  readonly signalFunction: lambda.IFunction;
  /** Started by replacement requests, with the event's `detail` as the execution input. */
  readonly stateMachine: sfn.IStateMachine;
}

/**
 * Routes the readiness agent's events to the signal function and replacement requests to the state
 * machine, and owns the policy an instance role needs to speak as the agent.
 */
export class EventRouting extends Construct {
  readonly agentRule: events.Rule;
  readonly requestRule: events.Rule;
  /**
   * Attach to the role of every instance that runs the readiness agent. It allows `events:PutEvents` on
   * the Understudy bus only, and only as the agent, so a box cannot request a replacement.
   */
  readonly instancePolicy: iam.ManagedPolicy;

  constructor(scope: Construct, id: string, props: EventRoutingProps) {
    super(scope, id);
    const delivery = { retryAttempts: 20, maxEventAge: Duration.hours(2) };

    this.agentRule = new events.Rule(this, 'AgentEvents', {
      eventBus: props.eventBus,
      description: 'Readiness agent events to the Understudy signal function',
      eventPattern: { source: [AGENT_SOURCE], detailType: [...AGENT_DETAIL_TYPES] },
      targets: [new targets.LambdaFunction(props.signalFunction, delivery)],
    });

    this.requestRule = new events.Rule(this, 'ReplacementRequests', {
      eventBus: props.eventBus,
      description: 'Replacement requests to the Understudy state machine',
      eventPattern: { source: [REQUEST_SOURCE], detailType: [REQUEST_DETAIL_TYPE] },
      targets: [
        new targets.SfnStateMachine(props.stateMachine, {
          input: events.RuleTargetInput.fromEventPath('$.detail'),
          ...delivery,
        }),
      ],
    });

    this.instancePolicy = new iam.ManagedPolicy(this, 'InstancePolicy', {
      description: 'Lets the Understudy readiness agent report on the Understudy event bus, and nothing else',
      statements: [
        new iam.PolicyStatement({
          sid: 'PutAgentEvents',
          actions: ['events:PutEvents'],
          resources: [props.eventBus.eventBusArn],
          conditions: {
            StringEquals: { 'events:source': AGENT_SOURCE, 'events:detail-type': [...AGENT_DETAIL_TYPES] },
          },
        }),
      ],
    });
  }
}
