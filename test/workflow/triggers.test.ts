import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  ListExecutionsCommand,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { PutParameterCommand } from '@aws-sdk/client-ssm';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Context } from 'aws-lambda';
import type { z } from 'zod';
import { clients, sfnClient } from '../../lambdas/shared/clients';
import { ImageBuildSchema, type TargetConfig, TriggersSchema } from '../../lambdas/shared/config';
import { parameterNames } from '../../lambdas/shared/constants';
import type { TriggerResult } from '../../lambdas/trigger/trigger';
import { GoldenImage } from '../../lib/golden-image';
import { Triggers } from '../../lib/triggers';
import { applyInputTransformer, type InputTransformer } from '../../sandbox/aws/events';
import type { Sandbox } from '../../sandbox/aws/sandbox';
import { SANDBOX_ENV } from '../../sandbox/demo';
import { substitutedDefinition } from '../../sandbox/workflow';
import { startWorld, type World } from './helpers';

/**
 * The automatic triggers on the sandbox account: the rules and schedules lib/triggers.ts synthesizes
 * (patterns and input transformers read from the template), AWS's own events on the default bus, the
 * trigger function, and the replace state machine behind Step Functions' API.
 */

/** The block as a user writes it (defaults left out). */
type TriggersInput = z.input<typeof TriggersSchema>;

const PREFIX = SANDBOX_ENV.PARAMETER_PREFIX;
const IMAGE_PARAMETER = parameterNames(PREFIX).image('web');
const MACHINE = 'understudy-replace';

type TriggerHandler = (event: unknown, context: Context) => Promise<TriggerResult>;
let handler: TriggerHandler;

const context = (): Context => ({
  callbackWaitsForEmptyEventLoop: false,
  functionName: 'understudy-trigger',
  functionVersion: '$LATEST',
  invokedFunctionArn: 'understudy-trigger',
  memoryLimitInMB: '256',
  awsRequestId: 'trigger-request',
  logGroupName: '/aws/lambda/understudy-trigger',
  logStreamName: 'sandbox',
  getRemainingTimeInMillis: () => 30_000,
  done: () => undefined,
  fail: () => undefined,
  succeed: () => undefined,
});

/** Resolves the only intrinsics the trigger rules hold: the partition in the Image Builder ARN prefix. */
const resolve = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(resolve);
  if (value === null || typeof value !== 'object') return value;
  const node = value as Record<string, unknown>;
  if (node.Ref === 'AWS::Partition') return 'aws';
  const join = node['Fn::Join'];
  if (Array.isArray(join)) return (join[1] as unknown[]).map(resolve).join(join[0] as string);
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, resolve(v)]));
};

interface Harness {
  readonly world: World;
  readonly candidate: string;
  readonly results: TriggerResult[];
  readonly failures: unknown[];
  /** The Input of each of the target's schedules, by trigger kind. */
  readonly scheduleInputs: Record<string, string>;
  readonly stateMachineArn: string;
}

/**
 * `cdk deploy` of the web target with `triggers`, as a target whose image Understudy builds (so both
 * the parameter and the Image Builder trigger apply), on a fresh sandbox account.
 */
const deployWithTriggers = async (written: TriggersInput): Promise<Harness> => {
  const triggers = TriggersSchema.parse(written);
  let candidate = '';
  const world = await startWorld({
    target: (t) => {
      candidate = t.image.imageId ?? '';
      // What TargetParameters stores for a built image: its parameter.
      return { ...t, tls: { mode: 'none' }, image: { ssmParameter: IMAGE_PARAMETER }, triggers };
    },
  });
  const sandbox = world.sandbox as unknown as Sandbox;
  const stateMachineArn = sandbox.registerStateMachine({
    name: MACHINE,
    definition: substitutedDefinition(sandbox, { topicArn: SANDBOX_ENV.TOPIC_ARN }),
    run: (input, options) => world.workflow.run(input as Record<string, unknown>, options),
  });
  process.env.STATE_MACHINE_ARN = stateMachineArn;
  handler ??= ((await import('../../lambdas/trigger/handler')) as { handler: TriggerHandler }).handler;

  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new Stack(app, 'sandbox', { env: { account: sandbox.accountId, region: sandbox.region } });
  const built: TargetConfig = { ...world.target, image: { build: ImageBuildSchema.parse({}) }, triggers };
  const image = new GoldenImage(stack, 'Image', {
    target: 'web',
    build: ImageBuildSchema.parse({}),
    parameterName: IMAGE_PARAMETER,
    eventBusName: SANDBOX_ENV.EVENT_BUS_NAME,
  });
  new Triggers(stack, 'Triggers', {
    targets: [built],
    parameterPrefix: PREFIX,
    stateMachine: sfn.StateMachine.fromStateMachineArn(stack, 'Replace', stateMachineArn),
    goldenImages: { web: image },
  });
  const template = Template.fromStack(stack);

  const results: TriggerResult[] = [];
  const failures: unknown[] = [];
  const invoke = async (payload: unknown) => {
    try {
      results.push(await handler(payload, context()));
    } catch (error) {
      failures.push(error);
    }
  };
  for (const rule of Object.values(template.findResources('AWS::Events::Rule'))) {
    const [target] = rule.Properties.Targets as { InputTransformer: InputTransformer }[];
    if (!target) continue;
    sandbox.addRule('default', resolve(rule.Properties.EventPattern) as Record<string, unknown>, (event) =>
      invoke(applyInputTransformer(target.InputTransformer, event)),
    );
  }
  const scheduleInputs: Record<string, string> = {};
  for (const schedule of Object.values(template.findResources('AWS::Scheduler::Schedule'))) {
    const input = schedule.Properties.Target.Input as string;
    scheduleInputs[(JSON.parse(input) as { kind: string }).kind] = input;
  }
  return { world, candidate, results, failures, scheduleInputs, stateMachineArn };
};

/** Waits on the sandbox's virtual clock until `done` holds. */
const until = async (done: () => boolean | Promise<boolean>): Promise<void> => {
  for (let i = 0; i < 5_000; i += 1) {
    if (await done()) return;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  throw new Error('the condition never held');
};

const settled = async (executionArn: string): Promise<DescribeExecutionCommandOutput> => {
  let described: DescribeExecutionCommandOutput | undefined;
  await until(async () => {
    described = await sfnClient().send(new DescribeExecutionCommand({ executionArn }));
    return described.status !== 'RUNNING';
  });
  return described as DescribeExecutionCommandOutput;
};

const executions = async (stateMachineArn: string) =>
  (await sfnClient().send(new ListExecutionsCommand({ stateMachineArn }))).executions ?? [];

const publish = (value: string) =>
  clients().ssm.send(
    new PutParameterCommand({ Name: IMAGE_PARAMETER, Value: value, Type: 'String', Overwrite: true }),
  );

const imageAvailable = (sandbox: Sandbox) =>
  sandbox.events.deliverServiceEvent({
    source: 'aws.imagebuilder',
    detailType: 'EC2 Image Builder Image State Change',
    resources: [
      `arn:aws:imagebuilder:${sandbox.region}:${sandbox.accountId}:image/understudy-sandbox-web/1.0.0/1`,
    ],
    detail: { 'previous-state': { status: 'INTEGRATING' }, state: { status: 'AVAILABLE' } },
  });

/** A window of every day around the sandbox's now (UTC), or one that starts three hours later. */
const windowAround = (offsetHours: number) => {
  const hour = new Date().getUTCHours();
  const at = (h: number) => `${String((h + 24) % 24).padStart(2, '0')}:00`;
  return {
    days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as (
      | 'mon'
      | 'tue'
      | 'wed'
      | 'thu'
      | 'fri'
      | 'sat'
      | 'sun'
    )[],
    start: at(hour + offsetHours - 1),
    end: at(hour + offsetHours + 2),
    timezone: 'UTC',
  };
};

const IMAGE_TRIGGERS: TriggersInput = { imageParameter: true, imageBuilder: true };

describe('automatic triggers on the sandbox account', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.world.stop();
    harness = undefined;
  });

  it('a new image in the parameter starts one replacement named after the target and the image, saying why', async () => {
    harness = await deployWithTriggers(IMAGE_TRIGGERS);
    const { candidate, results, stateMachineArn } = harness;

    await publish(candidate);
    await until(() => results.length === 1);

    const name = `web-${candidate}`;
    expect(results[0]).toEqual({
      started: true,
      executionName: name,
      executionArn: `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`,
    });
    const run = await settled(`${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`);
    expect(run.status).toBe('SUCCEEDED');
    expect(JSON.parse(run.input ?? '{}')).toEqual({
      target: 'web',
      imageId: candidate,
      action: 'replace',
      dryRun: false,
      trigger: 'imageParameter',
      reason: `image parameter ${IMAGE_PARAMETER} changed (Create)`,
    });
    expect(harness.world.sandbox.eipInstance(harness.world.seeded.allocationId)).not.toBe(
      harness.world.seeded.oldInstanceId,
    );
  });

  it('the Image Builder event for the same image starts no second run, while the first runs and after it ended', async () => {
    harness = await deployWithTriggers(IMAGE_TRIGGERS);
    const { candidate, results, stateMachineArn, world } = harness;
    const sandbox = world.sandbox as unknown as Sandbox;

    await publish(candidate);
    await until(() => results.length === 1);
    imageAvailable(sandbox);
    await until(() => results.length === 2);
    const [first] = await executions(stateMachineArn);
    await settled(first?.executionArn ?? '');
    // A late redelivery of the same AVAILABLE event, after the run ended.
    imageAvailable(sandbox);
    await until(() => results.length === 3);

    const name = `web-${candidate}`;
    expect(results.map((r) => [r.started, r.executionName])).toEqual([
      [true, name],
      [false, name],
      [false, name],
    ]);
    expect(results[1]).toMatchObject({ reason: expect.stringMatching(/de-duplicated by target and image/) });
    expect((await executions(stateMachineArn)).map((e) => e.name)).toEqual([name]);
    expect(harness.failures).toEqual([]);
  });

  it('a changed parameter that holds no AMI id starts nothing and says why', async () => {
    harness = await deployWithTriggers(IMAGE_TRIGGERS);
    await publish('not-an-image');
    await until(() => harness?.failures.length === 1);

    expect(String(harness.failures[0])).toMatch(
      /image\.ssmParameter: .* holds "not-an-image", not an AMI id/,
    );
    expect(await executions(harness.stateMachineArn)).toEqual([]);
  });

  it('a schedule inside a maintenance window replaces the box with the configured image', async () => {
    harness = await deployWithTriggers({
      schedule: { expression: 'cron(0 * * * ? *)', timezone: 'UTC' },
      maintenanceWindows: [windowAround(0)],
    });
    const { results, scheduleInputs, stateMachineArn, candidate } = harness;
    await publish(candidate);
    const slot = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000).toISOString().replace('.000Z', 'Z');
    // What Scheduler invokes the function with: the schedule's Input, its time placeholder filled in.
    const input = JSON.parse((scheduleInputs.schedule ?? '').replace('<aws.scheduler.scheduled-time>', slot));

    await handler(input, context()).then((r) => results.push(r));
    // Scheduler delivers at least once: the same slot again is the same execution.
    await handler(input, context()).then((r) => results.push(r));

    const name = `web-schedule-${slot.replace(/[-:]/g, '').replace(/00Z$/, 'Z')}`;
    // Step Functions answers a repeat of the same name and input with the running execution.
    expect(results.map((r) => [r.started, r.executionName])).toEqual([
      [true, name],
      [true, name],
    ]);
    expect(await executions(stateMachineArn)).toHaveLength(1);
    const [execution] = await executions(stateMachineArn);
    const run = await settled(execution?.executionArn ?? '');
    expect(run.status).toBe('SUCCEEDED');
    const started = JSON.parse(run.input ?? '{}') as Record<string, unknown>;
    expect(started).not.toHaveProperty('imageId');
    expect(started).toMatchObject({
      trigger: 'schedule',
      reason: `schedule cron(0 * * * ? *) (UTC) at ${slot}`,
    });
  });

  it('a trigger outside every maintenance window is refused by preflight with the reason, and nothing changes', async () => {
    harness = await deployWithTriggers({
      schedule: { expression: 'cron(0 * * * ? *)', timezone: 'UTC' },
      maintenanceWindows: [windowAround(3)],
    });
    const { scheduleInputs, stateMachineArn, world } = harness;
    const slot = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const input = JSON.parse((scheduleInputs.schedule ?? '').replace('<aws.scheduler.scheduled-time>', slot));

    const result = await handler(input, context());
    expect(result.started).toBe(true);
    const [execution] = await executions(stateMachineArn);
    const run = await settled(execution?.executionArn ?? '');

    expect(run.status).toBe('FAILED');
    expect(run.cause).toMatch(
      /triggers\.maintenanceWindows: the schedule trigger fired at .* outside every maintenance window of target web/,
    );
    expect(world.mutatingCalls((c) => c.service === 'ec2' || c.service === 'ssm')).toEqual([]);
    expect(
      world.mutatingCalls((c) => c.service === 's3').every((c) => JSON.stringify(c.input).includes('runs/')),
    ).toBe(true);
  });

  it('a replacement requested by hand is not held to the windows', async () => {
    harness = await deployWithTriggers({ maintenanceWindows: [windowAround(3)] });
    const run = await harness.world.run({ target: 'web', imageId: harness.candidate, reason: 'by hand' });
    expect(run.status).toBe('SUCCEEDED');
  });

  it('self-healing leaves a box alone while its status checks pass or have failed for less than impairedMinutes', async () => {
    harness = await deployWithTriggers({ selfHeal: { impairedMinutes: 10 } });
    const { world, scheduleInputs, stateMachineArn } = harness;
    const sandbox = world.sandbox as unknown as Sandbox;
    const check = JSON.parse(scheduleInputs.selfHeal ?? '{}');
    const old = world.seeded.oldInstanceId;

    const healthy = await handler(check, context());
    (sandbox.ec2.instances.get(old) as { impairedSince?: number }).impairedSince =
      sandbox.clock.now() - 4 * 60_000;
    const young = await handler(check, context());

    expect(healthy).toEqual({ started: false, reason: `the status checks of ${old} pass` });
    expect(young).toMatchObject({
      started: false,
      reason: expect.stringMatching(/for less than triggers\.selfHeal\.impairedMinutes \(10\)/),
    });
    expect(await executions(stateMachineArn)).toEqual([]);
  });

  it('self-healing replaces the box behind the EIP once its status checks have failed long enough, even on the image it runs', async () => {
    harness = await deployWithTriggers({ selfHeal: { impairedMinutes: 10 } });
    const { world, scheduleInputs, stateMachineArn } = harness;
    const sandbox = world.sandbox as unknown as Sandbox;
    const old = world.seeded.oldInstanceId;
    // The configured image is the one the broken box runs: a plain replacement would be a no-op.
    await publish(world.seeded.oldImageId);
    const since = sandbox.clock.now() - 12 * 60_000;
    (sandbox.ec2.instances.get(old) as { impairedSince?: number }).impairedSince = since;
    const check = JSON.parse(scheduleInputs.selfHeal ?? '{}');

    const result = await handler(check, context());
    const again = await handler(check, context());

    const name = `web-heal-${old}`;
    expect(result).toMatchObject({ started: true, executionName: name });
    expect(again).toMatchObject({ started: true, executionName: name });
    const run = await settled(result.started ? result.executionArn : '');
    expect(JSON.parse(run.input ?? '{}')).toEqual({
      target: 'web',
      action: 'replace',
      dryRun: false,
      trigger: 'selfHeal',
      reason: `self-heal: the instance status check of ${old} has failed since ${new Date(since).toISOString()}`,
    });
    expect(run.status).toBe('SUCCEEDED');
    const serving = world.sandbox.eipInstance(world.seeded.allocationId);
    expect(serving).not.toBe(old);
    expect(await executions(stateMachineArn)).toHaveLength(1);
    // The next check looks at the new box, which passes.
    expect(await handler(check, context())).toEqual({
      started: false,
      reason: `the status checks of ${serving} pass`,
    });
  });

  it("bad trigger input is refused naming the field, at the function's boundary and at preflight", async () => {
    harness = await deployWithTriggers(IMAGE_TRIGGERS);
    await expect(
      handler({ kind: 'schedule', target: 'Web!', scheduledTime: 'sunday' }, context()),
    ).rejects.toThrow(/event\.target: use 1-32 lowercase .*; event\.scheduledTime: use the schedule time/);

    // The custom event on the Understudy bus: its detail is the execution input, checked by preflight.
    const out = await sfnClient().send(
      new StartExecutionCommand({
        stateMachineArn: harness.stateMachineArn,
        input: JSON.stringify({ target: 'web', imageId: harness.candidate, trigger: 'cron' }),
      }),
    );
    const run = await settled(out.executionArn ?? '');
    expect(run.status).toBe('FAILED');
    expect(run.cause).toMatch(/input\.trigger: use one of imageParameter, imageBuilder, schedule, selfHeal/);
  });
});
