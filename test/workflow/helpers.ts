import type { TargetConfig } from '../../lambdas/shared/config';
import type { CallRecord, ImageBehaviour, SeededTarget, SeedTargetOptions } from '../../sandbox/contracts';
import {
  applySandboxEnv,
  DowntimeClient,
  demoTarget,
  putTargetConfig,
  SANDBOX_ENV,
} from '../../sandbox/demo';
import { sandboxFactory } from '../../sandbox/run-demo';
import {
  type HandlerSet,
  LocalWorkflow,
  type RunOptions,
  sourceHandlers,
  type WorkflowRun,
} from '../../sandbox/workflow';

/**
 * One sandbox account per test, the real handlers, the deployed ASL. Each test gets a fresh clock, so
 * virtual minutes of boot and bake take real milliseconds.
 */
export interface World {
  readonly sandbox: Awaited<ReturnType<typeof sandboxFactory.start>>;
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
  readonly handlers?: HandlerSet;
  /** Wraps handlers, e.g. to make one crash after its effect. */
  readonly wrap?: (handlers: HandlerSet) => HandlerSet;
}

let cachedHandlers: HandlerSet | undefined;

export const startWorld = async (options: WorldOptions = {}): Promise<World> => {
  applySandboxEnv();
  const sandbox = await sandboxFactory.start();
  const seeded = await sandbox.seedTarget({ name: 'web', domain: 'web.example.test', ...options.seed });
  const imageId = sandbox.registerImage(options.newImage ?? { cloudInit: 'done', app: 'healthy' }, {
    name: 'candidate',
  });
  const base = demoTarget('web', seeded.allocationId, imageId);
  const target = options.target ? options.target(base) : base;
  await putTargetConfig(SANDBOX_ENV.PARAMETER_PREFIX, target);
  cachedHandlers ??= await sourceHandlers();
  const handlers = options.wrap
    ? options.wrap(options.handlers ?? cachedHandlers)
    : (options.handlers ?? cachedHandlers);
  const workflow = new LocalWorkflow(sandbox, handlers);
  workflow.wireEventRules(SANDBOX_ENV.EVENT_BUS_NAME);
  // Calls made to set the world up (what `cdk deploy` would have done) are not the workflow's.
  const setupCalls = sandbox.calls.length;
  return {
    sandbox,
    seeded,
    target,
    workflow,
    run: async (input = { target: 'web' }, runOptions) => {
      const run = await workflow.run(input, runOptions);
      const finish = run.outputs.Finish as { finish?: { outcome?: string } } | undefined;
      return { ...run, outcome: finish?.finish?.outcome };
    },
    mutatingCalls: (filter = () => true) =>
      sandbox.calls.slice(setupCalls).filter((c) => c.mutating && filter(c)),
    stop: () => sandbox.stop(),
  };
};

export const outcomeMessages = (world: World) =>
  world.sandbox.messages.filter((m) => m.attributes.kind === 'outcome');

export { DowntimeClient };
