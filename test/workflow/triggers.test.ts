import { StopInstancesCommand } from '@aws-sdk/client-ec2';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  ListExecutionsCommand,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { PutParameterCommand } from '@aws-sdk/client-ssm';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Context } from 'aws-lambda';
import type { z } from 'zod';
import { clients, sfnClient } from '../../lambdas/shared/clients';
import { ImageBuildSchema, type TargetConfig, TriggersSchema } from '../../lambdas/shared/config';
import { parameterNames } from '../../lambdas/shared/constants';
import { IMAGE_BUILDER_ARN_TAG, type TriggerResult } from '../../lambdas/trigger/trigger';
import { GoldenImage } from '../../lib/golden-image';
import { Triggers } from '../../lib/triggers';
import { applyInputTransformer, type InputTransformer } from '../../sandbox/aws/events';
import type { Sandbox } from '../../sandbox/aws/sandbox';
import { SchedulerModel } from '../../sandbox/aws/scheduler';
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
const FUNCTION_ARN = 'arn:aws:lambda:eu-west-1:123456789012:function:understudy-trigger';
const SCHEDULE_GROUP = 'sandbox-triggers';
const SCHEDULER_ROLE_ARN = 'arn:aws:iam::123456789012:role/sandbox-trigger-scheduler';

type TriggerHandler = (event: unknown, context: Context) => Promise<TriggerResult>;
let handler: TriggerHandler;

const context = (): Context => ({
  callbackWaitsForEmptyEventLoop: false,
  functionName: 'understudy-trigger',
  functionVersion: '$LATEST',
  invokedFunctionArn: FUNCTION_ARN,
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
  process.env.RUNS_BUCKET = SANDBOX_ENV.RUNS_BUCKET;
  process.env.SCHEDULE_GROUP = SCHEDULE_GROUP;
  process.env.SCHEDULER_ROLE_ARN = SCHEDULER_ROLE_ARN;
  sandbox.createScheduleGroup(SCHEDULE_GROUP);
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
    runsBucket: s3.Bucket.fromBucketName(stack, 'Runs', SANDBOX_ENV.RUNS_BUCKET),
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
  // The scheduler role's one grant (asserted in test/lib/triggers.test.ts): invoke this function.
  sandbox.scheduler.registerRole(
    SCHEDULER_ROLE_ARN,
    (r) => r.action === 'lambda:InvokeFunction' && r.resource === FUNCTION_ARN,
  );
  sandbox.scheduler.registerFunction(FUNCTION_ARN, invoke);
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

const imageArn = (sandbox: Sandbox, build = 1) =>
  `arn:aws:imagebuilder:${sandbox.region}:${sandbox.accountId}:image/understudy-sandbox-web/1.0.0/${build}`;

/** A build of the pipeline finished: its AMI distributed here, tagged with the build, then the event. */
const imageAvailable = (sandbox: Sandbox, ami: string, build = 1) => {
  // What Image Builder's distribution does to every AMI it creates.
  sandbox.ec2.actions.CreateTags({
    Resources: [ami],
    Tags: [{ Key: IMAGE_BUILDER_ARN_TAG, Value: imageArn(sandbox, build) }],
  });
  sandbox.events.deliverServiceEvent({
    source: 'aws.imagebuilder',
    detailType: 'EC2 Image Builder Image State Change',
    resources: [imageArn(sandbox, build)],
    detail: { 'previous-state': { status: 'INTEGRATING' }, state: { status: 'AVAILABLE' } },
  });
};

/** Lets virtual time pass; the account's next call fires the schedules that came due. */
const passTime = async (harness: Harness, ms: number) => {
  await (harness.world.sandbox as unknown as Sandbox).clock.sleep(ms);
  await executions(harness.stateMachineArn);
};

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
    imageAvailable(sandbox, candidate);
    await until(() => results.length === 2);
    const [first] = await executions(stateMachineArn);
    await settled(first?.executionArn ?? '');
    // A late redelivery of the same AVAILABLE event, after the run ended.
    imageAvailable(sandbox, candidate);
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

  it("the Image Builder event replaces with the image's own AMI while the parameter still holds the previous one", async () => {
    harness = await deployWithTriggers({ imageBuilder: true });
    const { candidate, results, world } = harness;
    const sandbox = world.sandbox as unknown as Sandbox;
    // The parameter's aws:ec2:image validation has not finished: it still names the running image.
    await publish(world.seeded.oldImageId);

    imageAvailable(sandbox, candidate, 2);
    await until(() => results.length === 1);

    const name = `web-${candidate}`;
    expect(results[0]).toMatchObject({ started: true, executionName: name });
    const run = await settled((results[0] as { executionArn: string }).executionArn);
    expect(JSON.parse(run.input ?? '{}')).toMatchObject({
      imageId: candidate,
      trigger: 'imageBuilder',
      reason: `Image Builder image ${imageArn(sandbox, 2)} is AVAILABLE`,
    });
    expect(run.status).toBe('SUCCEEDED');
    expect(sandbox.ec2.instances.get(sandbox.eipInstance(world.seeded.allocationId) ?? '')?.imageId).toBe(
      candidate,
    );
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

  it('an image published outside every window starts nothing and comes back when the window opens, under <target>-<ami>', async () => {
    harness = await deployWithTriggers({ imageParameter: true, maintenanceWindows: [windowAround(3)] });
    const { candidate, results, stateMachineArn, world } = harness;
    const sandbox = world.sandbox as unknown as Sandbox;
    const opening = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 + 2 * 3_600_000).toISOString();

    await publish(candidate);
    await until(() => results.length === 1);

    const name = `web-${candidate}`;
    expect(results[0]).toMatchObject({
      started: false,
      executionName: name,
      deferredUntil: opening,
      reason: expect.stringMatching(
        new RegExp(`^deferred until ${opening}: outside every maintenance window of target web`),
      ),
    });
    expect(await executions(stateMachineArn)).toEqual([]);
    const schedules = [...sandbox.scheduler.schedules.values()];
    expect(schedules.map((s) => [s.group, SchedulerModel.timeOf(s), s.target.arn])).toEqual([
      [SCHEDULE_GROUP, opening, FUNCTION_ARN],
    ]);
    expect(schedules[0]?.actionAfterCompletion).toBe('DELETE');
    // The same change delivered again before the window opens: still one schedule.
    await publish(candidate);
    await until(() => results.length === 2);
    expect(results[1]).toMatchObject({ started: false, deferredUntil: opening });
    expect(sandbox.scheduler.schedules.size).toBe(1);
    expect(world.mutatingCalls((c) => c.service === 'ec2')).toEqual([]);

    await passTime(harness, Date.parse(opening) - Date.now() + 1_000);
    await until(() => results.length === 3);

    expect(results[2]).toMatchObject({ started: true, executionName: name });
    expect(sandbox.scheduler.invocations.map((i) => [i.service, i.action, i.error])).toEqual([
      ['lambda', 'Invoke', undefined],
    ]);
    expect(sandbox.scheduler.schedules.size).toBe(0);
    const run = await settled(`${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`);
    expect(run.status).toBe('SUCCEEDED');
    expect(JSON.parse(run.input ?? '{}')).toMatchObject({ imageId: candidate, trigger: 'imageParameter' });
  });

  it('a trigger while another run holds the lock waits for it instead of using up the name', async () => {
    harness = await deployWithTriggers(IMAGE_TRIGGERS);
    const { candidate, results, stateMachineArn } = harness;
    const lock = { Bucket: SANDBOX_ENV.RUNS_BUCKET, Key: 'locks/web.json' };
    const now = Date.now();
    await clients().s3.send(
      new PutObjectCommand({
        ...lock,
        Body: JSON.stringify({
          owner: `${stateMachineArn.replace(':stateMachine:', ':execution:')}:web-by-hand`,
          executionName: 'web-by-hand',
          target: 'web',
          acquiredAt: new Date(now).toISOString(),
          expiresAt: new Date(now + 3_600_000).toISOString(),
        }),
      }),
    );

    await publish(candidate);
    await until(() => results.length === 1);
    expect(results[0]).toMatchObject({
      started: false,
      reason: expect.stringMatching(/: execution web-by-hand holds the lock of target web$/),
    });
    const until15 = Date.parse((results[0] as { deferredUntil: string }).deferredUntil) - now;
    expect(until15).toBeGreaterThanOrEqual(15 * 60_000);
    expect(until15).toBeLessThanOrEqual(30 * 60_000);
    expect(await executions(stateMachineArn)).toEqual([]);

    // The other run ends; the deferred trigger comes back and starts the run for the image.
    await clients().s3.send(new DeleteObjectCommand(lock));
    await passTime(harness, until15 + 1_000);
    await until(() => results.length === 2);
    expect(results[1]).toMatchObject({ started: true, executionName: `web-${candidate}` });
    const run = await settled((results[1] as { executionArn: string }).executionArn);
    expect(run.status).toBe('SUCCEEDED');
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

  it('self-healing sees a box EC2 stopped behind the Elastic IP as broken, and starts one healing run for it', async () => {
    harness = await deployWithTriggers({ selfHeal: { impairedMinutes: 10 } });
    const { world, scheduleInputs } = harness;
    const old = world.seeded.oldInstanceId;
    await clients().ec2.send(new StopInstancesCommand({ InstanceIds: [old] }));
    const check = JSON.parse(scheduleInputs.selfHeal ?? '{}');

    const result = await handler(check, context());

    expect(result).toMatchObject({ started: true, executionName: `web-heal-${old}` });
    const run = await sfnClient().send(
      new DescribeExecutionCommand({ executionArn: (result as { executionArn: string }).executionArn }),
    );
    expect(JSON.parse(run.input ?? '{}')).toMatchObject({
      trigger: 'selfHeal',
      reason: expect.stringMatching(
        new RegExp(`^self-heal: ${old} behind the Elastic IP is (stopping|stopped)$`),
      ),
    });
    await settled((result as { executionArn: string }).executionArn);
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
