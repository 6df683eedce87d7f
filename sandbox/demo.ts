import { PutParameterCommand } from '@aws-sdk/client-ssm';
import { clients } from '../lambdas/shared/clients';
import { type ReadinessAgentConfig, ReadinessAgentSchema, type TargetConfig } from '../lambdas/shared/config';
import { parameterNames } from '../lambdas/shared/constants';
import { httpGet } from '../lambdas/shared/http';
import { IDENTITY_KEYS_VARIABLE, identityKeysVariable } from '../lambdas/signal/identity';
import type { ImageBehaviour, SandboxApi, SeededTarget, SeedTargetOptions } from './contracts';
import { sandboxIdentitySigner } from './identity';
import { currentSerial, demoTerraformConfig, terraformApply } from './terraform';
import {
  type HandlerSet,
  LocalWorkflow,
  sourceHandlers,
  type TimelineEntry,
  type Deployment as WorkflowDeployment,
  type WorkflowRun,
} from './workflow';

/**
 * The demo's scenarios on the sandbox account, and the JSON contract they print (design §5).
 * Timings are realistic (boot ~60 s, certbot ~20 s) and compressed by the virtual clock.
 */

export const SANDBOX_ENV = {
  PARAMETER_PREFIX: '/understudy/sandbox',
  RUNS_BUCKET: 'understudy-sandbox-runs',
  TOPIC_ARN: 'arn:aws:sns:eu-west-1:111122223333:understudy-sandbox',
  EVENT_BUS_NAME: 'understudy-sandbox',
  // What `cdk deploy` gives Retire and the rollback steps (lib/retirement.ts).
  SCHEDULE_GROUP: 'understudy-sandbox-retirement',
  SCHEDULER_ROLE_ARN: 'arn:aws:iam::111122223333:role/understudy-sandbox-retirement',
  SCHEDULE_DEAD_LETTER_ARN: 'arn:aws:sqs:eu-west-1:111122223333:understudy-sandbox-failed-terminations',
} as const;

/**
 * The stack-wide part of the account's understudy.config.json: EC2 does not sign the sandbox's identity
 * documents, the sandbox does (sandbox/identity.ts), so its certificate is trusted for the account's
 * region as a user trusts a Region's certificate a release does not carry yet.
 */
export const sandboxReadinessAgent = (region: string): ReadinessAgentConfig =>
  ReadinessAgentSchema.parse({ identityCertificates: { [region]: sandboxIdentitySigner().certificatePem } });

/** Handlers read their environment once, so it is set before they are first imported. */
export const applySandboxEnv = (): void => {
  Object.assign(process.env, SANDBOX_ENV);
  process.env.AWS_REGION ??= 'eu-west-1';
  process.env.POWERTOOLS_LOG_LEVEL ??= 'SILENT';
  // Finish's metrics are EMF lines on stdout, which Lambda ships to CloudWatch; in this process they would
  // land in the CLI's own output (and break --json).
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
  // Outside Lambda there is no X-Ray daemon to send segments to (Powertools would also infer it off).
  process.env.POWERTOOLS_TRACE_ENABLED ??= 'false';
  // What `cdk deploy` gives the signal function from that config (lib/understudy-stack.ts).
  process.env[IDENTITY_KEYS_VARIABLE] = identityKeysVariable(
    sandboxReadinessAgent(process.env.AWS_REGION).identityCertificates,
  );
};

export type Outcome = 'replaced' | 'rolled-back' | 'failed' | 'no-op';

export interface ScenarioResult {
  name: string;
  outcome: Outcome;
  oldInstanceId: string | null;
  newInstanceId: string | null;
  elasticIpInstanceId: string | null;
  failedProbes: number | null;
  downtimeMs: number | null;
  stateTransitions: number;
  tfstateSerialBefore: number | null;
  tfstateSerialAfter: number | null;
  wallMs: number;
  timeline: TimelineEntry[];
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  readonly newImage: ImageBehaviour;
  readonly tls?: TargetConfig['tls'];
}

export const SCENARIOS: readonly Scenario[] = [
  { name: 'happy', description: 'a good image: replaced', newImage: { cloudInit: 'done', app: 'healthy' } },
  {
    name: 'bad-ami',
    description: 'cloud-init fails on the new box: rolled back before the switch',
    newImage: { cloudInit: 'error', app: 'broken' },
  },
  {
    name: 'bad-app',
    description: 'healthy at first, failing during the bake period: EIP back on the old box',
    newImage: { cloudInit: 'done', app: { healthyForMs: 40_000 } },
  },
  {
    name: 'tls-restore',
    description: "HTTPS: the old box's certificate moves to the new box before the switch: no failed request",
    newImage: { cloudInit: 'done', app: 'healthy' },
    tls: { mode: 'restore' },
  },
  {
    name: 'manual-order',
    description: 'HTTPS, the manual order: certbot http-01 only after the switch, so clients see failures',
    newImage: { cloudInit: 'done', app: 'healthy' },
    tls: { mode: 'http-01', email: 'ops@example.test' },
  },
];

/** The states that end the bake period: the run keeps the new box (Reconcile) or is over (Finish). */
const BAKE_OVER = new Set(['Reconcile', 'Finish']);

/**
 * A client on the internet polling the EIP every 50 ms (virtual) from Launch to the end of the bake
 * period: failed requests, and the longest span without a good answer. Over HTTPS each request is a
 * new connection with a full handshake (httpGet keeps nothing alive), so a switch to a box without the
 * certificate cannot hide behind a connection opened to the old one.
 */
export class DowntimeClient {
  private running = false;
  private failed = 0;
  private lastGood: number | undefined;
  private longestGap = 0;
  private loop: Promise<void> | undefined;
  private endedAt: number | undefined;

  constructor(
    private readonly target: TargetConfig,
    private readonly publicIp: string,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.lastGood = Date.now();
    this.loop = (async () => {
      while (this.running) {
        const response = await httpGet({
          address: this.publicIp,
          scheme: this.target.tls.mode === 'none' ? 'http' : 'https',
          domain: this.target.domain,
          path: this.target.health.path,
          timeoutMs: 2_000,
        });
        const now = Date.now();
        if (response.ok && response.status === this.target.health.expectStatus) {
          this.longestGap = Math.max(this.longestGap, now - (this.lastGood ?? now));
          this.lastGood = now;
        } else {
          this.failed += 1;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
  }

  /** Stops polling now (the request in flight still counts); `stop()` then reports. */
  halt(): void {
    if (!this.running) return;
    this.running = false;
    this.endedAt = Date.now();
  }

  async stop(): Promise<{ failedProbes: number; downtimeMs: number } | undefined> {
    if (!this.loop) return undefined;
    this.halt();
    await this.loop;
    const openGap = this.lastGood === undefined ? 0 : (this.endedAt ?? Date.now()) - this.lastGood;
    const downtimeMs = this.failed === 0 ? 0 : Math.max(this.longestGap, openGap);
    return { failedProbes: this.failed, downtimeMs };
  }
}

export const demoTarget = (
  name: string,
  allocationId: string,
  imageId: string,
  tls: TargetConfig['tls'] = { mode: 'none' },
): TargetConfig => ({
  name,
  allocationId,
  domain: `${name}.example.test`,
  image: { imageId },
  dataVolumes: 'refuse',
  readiness: { timeoutSeconds: 600, heartbeatSeconds: 120, onRecoverableErrors: 'fail' },
  tls,
  health: {
    path: '/healthz',
    expectStatus: 200,
    consecutiveSuccesses: 3,
    intervalSeconds: 5,
    deadlineSeconds: 120,
    requestTimeoutSeconds: 5,
    bakeSeconds: 90,
    bakeFailureThreshold: 3,
    certificateMinDaysLeft: 14,
  },
  rollback: { windowHours: 24, failedCandidate: 'stop' },
});

/** The outcome the finish step recorded, if it ran. */
export const finishOutcome = (run: WorkflowRun): string | undefined =>
  (run.outputs.Finish as { finish?: { outcome?: string } } | undefined)?.finish?.outcome;

const outcomeOf = (run: WorkflowRun): Outcome => {
  const outcome = finishOutcome(run);
  if (outcome === 'replaced' || outcome === 'rolled-back' || outcome === 'no-op') return outcome;
  return 'failed';
};

export interface SandboxFactory {
  start(): Promise<SandboxApi>;
}

/** What `cdk deploy` does for each configured target: its config block as an SSM parameter. */
export const putTargetConfig = async (prefix: string, target: TargetConfig): Promise<void> => {
  await clients().ssm.send(
    new PutParameterCommand({
      Name: parameterNames(prefix).target(target.name),
      Type: 'String',
      Value: JSON.stringify(target),
      Overwrite: true,
    }),
  );
};

export interface DeployOptions {
  /** The image the run replaces the box with. */
  readonly newImage: ImageBehaviour;
  readonly imageName: string;
  readonly seed?: Partial<SeedTargetOptions>;
  readonly tls?: TargetConfig['tls'];
  /** Whether the server is managed by Terraform (a state in S3 to reconcile); default true. */
  readonly terraform?: boolean;
  /** Adjusts the target's configuration before it is deployed. */
  readonly target?: (target: TargetConfig) => TargetConfig;
  readonly handlers: HandlerSet;
  /** Runs each call a service-integration state makes (the fault matrix attributes them to the state). */
  readonly aroundIntegration?: WorkflowDeployment['aroundIntegration'];
}

export interface Deployment {
  readonly sandbox: SandboxApi;
  readonly seeded: SeededTarget;
  readonly target: TargetConfig;
  readonly workflow: LocalWorkflow;
  /** Calls made while setting up (what Terraform and `cdk deploy` did); the run's come after these. */
  readonly setupCalls: number;
}

/**
 * A fresh account as Terraform and `cdk deploy` leave it: the `web` service running behind its EIP, a
 * new image registered, the runs bucket, the target's configuration, and the workflow with its event
 * rules. The caller stops `deployment.sandbox`.
 */
export const deploy = async (factory: SandboxFactory, options: DeployOptions): Promise<Deployment> => {
  applySandboxEnv();
  const sandbox = await factory.start();
  try {
    sandbox.createBucket(SANDBOX_ENV.RUNS_BUCKET);
    sandbox.createScheduleGroup(SANDBOX_ENV.SCHEDULE_GROUP);
    const seeded = await sandbox.seedTarget({ name: 'web', domain: 'web.example.test', ...options.seed });
    const imageId = sandbox.registerImage(options.newImage, { name: options.imageName });
    const managed = options.terraform ?? true;
    if (managed) {
      await terraformApply(sandbox, { instanceId: seeded.oldInstanceId, allocationId: seeded.allocationId });
    }
    const base = {
      ...demoTarget('web', seeded.allocationId, imageId, options.tls),
      ...(managed ? { terraform: demoTerraformConfig() } : {}),
    };
    const target = options.target ? options.target(base) : base;
    await putTargetConfig(SANDBOX_ENV.PARAMETER_PREFIX, target);
    const workflow = new LocalWorkflow(sandbox, options.handlers, {
      topicArn: SANDBOX_ENV.TOPIC_ARN,
      ...(options.aroundIntegration ? { aroundIntegration: options.aroundIntegration } : {}),
    });
    workflow.wireEventRules(SANDBOX_ENV.EVENT_BUS_NAME);
    return { sandbox, seeded, target, workflow, setupCalls: sandbox.calls.length };
  } catch (error) {
    await sandbox.stop().catch(() => undefined);
    throw error;
  }
};

export const runScenario = async (
  factory: SandboxFactory,
  scenario: Scenario,
  handlers?: HandlerSet,
): Promise<ScenarioResult> => {
  const wallStart = performance.now();
  applySandboxEnv();
  const { sandbox, seeded, target, workflow } = await deploy(factory, {
    newImage: scenario.newImage,
    imageName: `${scenario.name}-image`,
    ...(scenario.tls ? { tls: scenario.tls } : {}),
    handlers: handlers ?? (await sourceHandlers()),
  });
  try {
    const serialBefore = target.terraform ? Number(await currentSerial()) : null;
    const client = new DowntimeClient(target, seeded.publicIp);
    const run = await workflow.run(
      { target: 'web', reason: `demo ${scenario.name}` },
      {
        name: `demo-${scenario.name}`,
        onStateEntered: (state) => {
          if (state === 'Launch') client.start();
          if (BAKE_OVER.has(state)) client.halt();
        },
      },
    );
    const downtime = await client.stop();
    const serialAfter = target.terraform ? Number(await currentSerial()) : null;
    const launch = run.outputs.Launch as { launch?: { instanceId?: string } } | undefined;
    return {
      name: scenario.name,
      outcome: outcomeOf(run),
      oldInstanceId: seeded.oldInstanceId,
      newInstanceId: launch?.launch?.instanceId ?? null,
      elasticIpInstanceId: sandbox.eipInstance(seeded.allocationId) ?? null,
      failedProbes: downtime?.failedProbes ?? null,
      downtimeMs: downtime?.downtimeMs ?? null,
      stateTransitions: run.stateTransitions,
      tfstateSerialBefore: serialBefore,
      tfstateSerialAfter: serialAfter,
      wallMs: Math.round(performance.now() - wallStart),
      timeline: run.timeline,
    };
  } finally {
    await sandbox.stop();
  }
};

export const formatScenario = (result: ScenarioResult): string => {
  const lines = [
    `${result.name}: ${result.outcome}  (old ${result.oldInstanceId ?? '-'} → new ${result.newInstanceId ?? '-'}, EIP on ${result.elasticIpInstanceId ?? '-'})`,
    `  downtime seen by a client polling every 50 ms: ${result.downtimeMs ?? '-'} ms, failed requests: ${result.failedProbes ?? '-'}`,
    ...(result.tfstateSerialBefore === null
      ? []
      : [
          `  Terraform state serial ${result.tfstateSerialBefore} → ${result.tfstateSerialAfter}${result.tfstateSerialAfter === result.tfstateSerialBefore ? ' (unchanged)' : ' (reconciled)'}`,
        ]),
    `  ${result.stateTransitions} state transitions, ${result.wallMs} ms wall time`,
  ];
  for (const entry of result.timeline) {
    lines.push(
      `  ${(entry.startMs / 1000).toFixed(1).padStart(7)} s  ${entry.state.padEnd(18)} ${(entry.durationMs / 1000).toFixed(1)} s`,
    );
  }
  return lines.join('\n');
};
