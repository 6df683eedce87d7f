import type { TargetConfig } from '../../lambdas/shared/config';
import type {
  CallRecord,
  ImageBehaviour,
  SandboxApi,
  SeededTarget,
  SeedTargetOptions,
} from '../../sandbox/contracts';
import { applySandboxEnv, DowntimeClient, deploy, finishOutcome } from '../../sandbox/demo';
import { sandboxFactory } from '../../sandbox/run-demo';
import {
  type HandlerSet,
  type LocalWorkflow,
  type RunOptions,
  sourceHandlers,
  type Deployment as WorkflowDeployment,
  type WorkflowRun,
} from '../../sandbox/workflow';

/**
 * One sandbox account per test, the real handlers, the deployed ASL. Each test gets a fresh clock, so
 * virtual minutes of boot and bake take real milliseconds.
 */
export interface World {
  readonly sandbox: SandboxApi;
  readonly seeded: SeededTarget;
  readonly target: TargetConfig;
  readonly workflow: LocalWorkflow;
  run(
    input?: Record<string, unknown>,
    options?: RunOptions,
  ): Promise<WorkflowRun & { outcome: string | undefined }>;
  mutatingCalls(filter?: (call: CallRecord) => boolean): CallRecord[];
  stop(): Promise<void>;
}

export interface WorldOptions {
  readonly newImage?: ImageBehaviour;
  readonly seed?: Partial<SeedTargetOptions>;
  readonly target?: (target: TargetConfig) => TargetConfig;
  /** Whether the server is managed by Terraform (a state to reconcile); default true. */
  readonly terraform?: boolean;
  readonly handlers?: HandlerSet;
  /** Wraps handlers, e.g. to make one crash after its effect. */
  readonly wrap?: (handlers: HandlerSet) => HandlerSet;
  /** Runs each call a service-integration state makes, e.g. to attribute it to the state. */
  readonly aroundIntegration?: WorkflowDeployment['aroundIntegration'];
}

let cachedHandlers: HandlerSet | undefined;

export const startWorld = async (options: WorldOptions = {}): Promise<World> => {
  // Handlers read their environment once: it is set before they are first imported.
  applySandboxEnv();
  cachedHandlers ??= await sourceHandlers();
  const handlers = options.handlers ?? cachedHandlers;
  const { sandbox, seeded, target, workflow, setupCalls } = await deploy(sandboxFactory, {
    newImage: options.newImage ?? { cloudInit: 'done', app: 'healthy' },
    imageName: 'candidate',
    ...(options.seed ? { seed: options.seed } : {}),
    ...(options.target ? { target: options.target } : {}),
    ...(options.terraform === undefined ? {} : { terraform: options.terraform }),
    handlers: options.wrap ? options.wrap(handlers) : handlers,
    ...(options.aroundIntegration ? { aroundIntegration: options.aroundIntegration } : {}),
  });
  return {
    sandbox,
    seeded,
    target,
    workflow,
    run: async (input = { target: 'web' }, runOptions) => {
      const run = await workflow.run(input, runOptions);
      return { ...run, outcome: finishOutcome(run) };
    },
    mutatingCalls: (filter = () => true) =>
      sandbox.calls.slice(setupCalls).filter((c) => c.mutating && filter(c)),
    stop: () => sandbox.stop(),
  };
};

export const outcomeMessages = (world: World) =>
  world.sandbox.messages.filter((m) => m.attributes.kind === 'outcome');

/**
 * A run with a client polling the EIP every 50 ms from Launch to the end of the bake (design §5): its
 * failed requests and longest span without a good answer come back with the run.
 */
export const runMeasured = async (world: World, input?: Record<string, unknown>) => {
  const client = new DowntimeClient(world.target, world.seeded.publicIp);
  const run = await world.run(input, {
    onStateEntered: (state) => {
      if (state === 'Launch') client.start();
      if (state === 'Reconcile' || state === 'Finish') client.halt();
    },
  });
  return { run, downtime: await client.stop() };
};

export { DowntimeClient };
