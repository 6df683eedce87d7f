import { ListExecutionsCommand } from '@aws-sdk/client-sfn';
import { sfnClient } from '../lambdas/shared/clients';
import type { SandboxApi } from '../sandbox/contracts';
import {
  applySandboxEnv,
  type Deployment,
  demoTarget,
  deploy,
  putTargetConfig,
  SANDBOX_ENV,
  SCENARIOS,
} from '../sandbox/demo';
import { LocalFleet, throughStepFunctions } from '../sandbox/fleet';
import { Sandbox } from '../sandbox/index';
import { sourceHandlers, substitutedDefinition } from '../sandbox/workflow';
import { parameterPrefixOf } from './account';
import { SANDBOX_FLEET_TARGET } from './fleet';

/**
 * `--sandbox`: a fresh simulated account as `cdk deploy` leaves it for the demo's happy scenario (the
 * `web` service behind its EIP, a good new image, and a second service `api` so `replace --group`
 * has a fleet to run), plus what the operator commands read there: the replace and fleet state
 * machines behind Step Functions' API and the stack's outputs in CloudFormation. Only ever loaded
 * with a dynamic import, so commands against a real account never load the sandbox.
 */

/** The sandbox's functions read their parameters under /understudy/sandbox: the stack is named so. */
export const SANDBOX_STACK = 'sandbox';
export const STATE_MACHINE_NAME = 'understudy-replace';
export const FLEET_STATE_MACHINE_NAME = 'understudy-fleet';

export interface SandboxAccount {
  readonly sandbox: SandboxApi;
  readonly deployment: Deployment;
  readonly stackName: string;
  /** The good image the happy scenario replaces the box with. */
  readonly imageId: string;
  stop(): Promise<void>;
}

export const startSandboxAccount = async (): Promise<SandboxAccount> => {
  if (parameterPrefixOf(SANDBOX_STACK) !== SANDBOX_ENV.PARAMETER_PREFIX) {
    throw new Error(`the sandbox stack must be named after ${SANDBOX_ENV.PARAMETER_PREFIX}`);
  }
  applySandboxEnv();
  const happy = SCENARIOS.find((s) => s.name === 'happy');
  if (!happy) throw new Error('the demo has no happy scenario');
  const handlers = await sourceHandlers();
  const deployment = await deploy(
    { start: () => Sandbox.start() },
    { newImage: happy.newImage, imageName: 'happy-image', handlers },
  );
  const { sandbox, workflow, target } = deployment;
  const topic = { topicArn: SANDBOX_ENV.TOPIC_ARN };
  const stateMachineArn = sandbox.registerStateMachine({
    name: STATE_MACHINE_NAME,
    definition: substitutedDefinition(sandbox, topic),
    run: (input, options) => workflow.run(input, options),
  });
  const second = await sandbox.seedTarget({
    name: SANDBOX_FLEET_TARGET,
    domain: `${SANDBOX_FLEET_TARGET}.example.test`,
  });
  await putTargetConfig(
    SANDBOX_ENV.PARAMETER_PREFIX,
    demoTarget(SANDBOX_FLEET_TARGET, second.allocationId, target.image.imageId ?? ''),
  );
  const fleet = new LocalFleet(sandbox, stateMachineArn, throughStepFunctions(stateMachineArn));
  const fleetStateMachineArn = sandbox.registerStateMachine({
    name: FLEET_STATE_MACHINE_NAME,
    definition: fleet.localDefinition,
    run: (input, options) => fleet.run(input, options),
  });
  sandbox.putStack(SANDBOX_STACK, {
    StateMachineArn: stateMachineArn,
    FleetStateMachineArn: fleetStateMachineArn,
    RunsBucketName: SANDBOX_ENV.RUNS_BUCKET,
    EventBusName: SANDBOX_ENV.EVENT_BUS_NAME,
    TopicArn: SANDBOX_ENV.TOPIC_ARN,
  });
  const imageId = target.image.imageId ?? '';
  const stop = async () => {
    // The account lives only as long as the command: runs it started (`--no-watch`) finish first, so
    // none is cut off halfway with its box launched and its lock held.
    const sfn = sfnClient();
    const running = async (arn: string) =>
      (await sfn.send(new ListExecutionsCommand({ stateMachineArn: arn, statusFilter: 'RUNNING' })))
        .executions ?? [];
    for (;;) {
      // The fleet first: while it runs it may still start replace runs.
      if ((await running(fleetStateMachineArn)).length + (await running(stateMachineArn)).length === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 5_000));
    }
    await sandbox.stop();
  };
  return { sandbox, deployment, stackName: SANDBOX_STACK, imageId, stop };
};
