import type { Template } from 'aws-cdk-lib/assertions';
import { STEP_NAMES, STEPS, type StepName } from '../../lib/steps';
import type { UnderstudyStack } from '../../lib/understudy-stack';
import type { Sandbox } from '../../sandbox/aws/sandbox';
import type { CallRecord } from '../../sandbox/contracts';
import { applySandboxEnv, putTargetConfig, SANDBOX_ENV, SCENARIOS } from '../../sandbox/demo';
import { DEMO_TERRAFORM } from '../../sandbox/terraform';
import { type HandlerSet, sourceHandlers } from '../../sandbox/workflow';
import { startFaultWorld } from '../faults/harness';
import { exampleConfig, logicalId, synthesize } from '../lib/stack-fixture';
import { type AccountFacts, captureState, requestsFor, type StateAtCall } from './call-context';
import { type AuthRequest, evaluate, type PolicyStatement } from './iam-eval';
import { type Names, policyOfRole } from './role-policies';

/**
 * The policies are sufficient, not just tight: every call each scenario makes in the sandbox, turned
 * into the authorization requests AWS would make, is allowed by the policy the stack attaches to the
 * role of whoever made it (a step's function, the state machine, a box through a presigned URL).
 */

/** A principal of the stack: a step's function role, or the state machine's. */
type Principal = StepName | 'state-machine';

interface Evaluated {
  readonly principal: Principal;
  readonly call: string;
  readonly request: AuthRequest;
}

interface ScenarioRun {
  readonly name: string;
  readonly outcome: string | undefined;
  readonly requests: readonly Evaluated[];
  /** The keys of the volumes of the instances the run launched, as EC2 reports them afterwards. */
  readonly launchedVolumeKeys: readonly (string | undefined)[];
  /** The resolved policy of each principal, as the stack built it for this scenario's target. */
  readonly policies: ReadonlyMap<Principal, PolicyStatement[]>;
}

// Customer managed keys of the scenarios: the state bucket's, the image snapshot's, the old root volume's.
const KEY = (name: string, region: string, account: string) => `arn:aws:kms:${region}:${account}:key/${name}`;
const STATE_KEY_ID = '1f0a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b';
const IMAGE_KEY_ID = '2a1b0c3d-4e5f-4a61-9b8c-0d1e2f3a4b5c';
const VOLUME_KEY_ID = '3b2c1d0e-5f6a-4b72-8c9d-1e2f3a4b5c6d';

interface ScenarioSpec {
  readonly name: string;
  /** What the run must end with, so the calls checked are those of the path the scenario is about. */
  readonly outcome: 'replaced' | 'rolled-back' | 'rolled-back-by-request' | 'failed';
  readonly newImage: (typeof SCENARIOS)[number]['newImage'];
  /** Adjusts the target's configuration before `cdk deploy`. */
  readonly target?: (target: ScenarioTarget) => ScenarioTarget;
  /** Changes the account and the target after `cdk deploy` and before the run. */
  readonly arrange?: (sandbox: Sandbox, target: ScenarioTarget) => Promise<ScenarioTarget> | ScenarioTarget;
  /** Runs before the checked run (its calls are not checked), e.g. a replacement that opens a rollback window. */
  readonly before?: (world: Awaited<ReturnType<typeof startFaultWorld>>, sandbox: Sandbox) => Promise<void>;
  /** The checked run's input; a replacement of `web` by default. */
  readonly input?: Record<string, unknown>;
}
type ScenarioTarget = Awaited<ReturnType<typeof startFaultWorld>>['target'];

/** A replacement first, so that the seeded box is retired with an open window. */
const replaceFirst = async (world: Awaited<ReturnType<typeof startFaultWorld>>) => {
  const run = await world.run({ target: 'web', reason: 'policy sufficiency: open a rollback window' });
  if (run.outcome !== 'replaced') throw new Error(`the replacement before the rollback ended ${run.outcome}`);
};

const SPECS: readonly ScenarioSpec[] = [
  ...SCENARIOS.map((s) => ({
    name: s.name,
    outcome: s.name === 'bad-ami' || s.name === 'bad-app' ? ('rolled-back' as const) : ('replaced' as const),
    newImage: s.newImage,
    ...(s.tls ? { target: (t: ScenarioTarget) => ({ ...t, tls: s.tls ?? t.tls }) } : {}),
  })),
  {
    // A failed candidate terminated rather than stopped.
    name: 'bad-ami-terminated',
    outcome: 'rolled-back',
    newImage: { cloudInit: 'error', app: 'broken' },
    target: (t) => ({ ...t, rollback: { ...t.rollback, failedCandidate: 'terminate' } }),
  },
  {
    // certbot on the new box before the switch, through the instance role's Route 53 rights.
    name: 'tls-dns-01',
    outcome: 'replaced',
    newImage: { cloudInit: 'done', app: 'healthy' },
    target: (t) => ({
      ...t,
      tls: { mode: 'dns-01', email: 'ops@example.test', hostedZoneId: 'Z0123456789ABCDEFGHIJ' },
      health: { ...t.health, bodyContains: 'ok i-' },
    }),
    arrange: (sandbox, target) => {
      sandbox.allowDns01('web');
      return target;
    },
  },
  {
    // Terraform's S3 backend with SSE-KMS under a customer key, and its DynamoDB lock table.
    name: 'terraform-state-under-a-customer-key',
    outcome: 'replaced',
    newImage: { cloudInit: 'done', app: 'healthy' },
    arrange: (sandbox, target) => {
      const key = KEY(STATE_KEY_ID, sandbox.region, sandbox.accountId);
      const state = sandbox.s3.details(DEMO_TERRAFORM.bucket, DEMO_TERRAFORM.key);
      if (!state) throw new Error('the Terraform state was not seeded');
      sandbox.s3.seedObject(DEMO_TERRAFORM.bucket, DEMO_TERRAFORM.key, state.bytes, {
        contentType: state.contentType,
        serverSideEncryption: 'aws:kms',
        kmsKeyId: key,
        checksumSha256: true,
      });
      if (!target.terraform) throw new Error('the scenario needs a Terraform-managed target');
      return { ...target, terraform: { ...target.terraform, kmsKeyArn: key } };
    },
  },
  {
    // The new AMI's snapshot and the old box's root volume are each under a customer key.
    name: 'volumes-under-customer-keys',
    outcome: 'replaced',
    newImage: { cloudInit: 'done', app: 'healthy' },
    arrange: (sandbox, target) => {
      const imageId = sandbox.ec2.registerImage(
        { cloudInit: 'done', app: 'healthy' },
        { name: 'candidate-cmk', kmsKeyId: KEY(IMAGE_KEY_ID, sandbox.region, sandbox.accountId) },
      );
      for (const instance of sandbox.ec2.instances.values()) {
        for (const device of instance.blockDevices) {
          const volume = sandbox.ec2.volumes.get(device.volumeId);
          if (volume?.encrypted)
            sandbox.ec2.volumes.set(device.volumeId, {
              ...volume,
              kmsKeyId: KEY(VOLUME_KEY_ID, sandbox.region, sandbox.accountId),
            });
        }
      }
      return { ...target, image: { imageId } };
    },
  },
  {
    // Lifecycle hooks through SSM on the new box and on the old one, which carries only the target tag's rights.
    name: 'lifecycle-hooks',
    outcome: 'replaced',
    newImage: { cloudInit: 'done', app: 'healthy' },
    target: (t) => ({
      ...t,
      hooks: {
        beforeSwitch: { newBox: ['true'] },
        afterSwitch: { oldBox: ['true'], newBox: ['true'] },
      },
    }),
  },
  {
    // The approval gate stores its token and announces it; unanswered, it times out and rolls back.
    name: 'approval-unanswered',
    outcome: 'rolled-back',
    newImage: { cloudInit: 'done', app: 'healthy' },
    target: (t) => ({ ...t, approval: { required: true, timeoutSeconds: 60 } }),
  },
  {
    // Rollback within the window: the retired box started, checked, given the EIP back, the newer retired.
    name: 'rollback-within-window',
    outcome: 'rolled-back-by-request',
    newImage: { cloudInit: 'done', app: 'healthy' },
    before: replaceFirst,
    input: { target: 'web', action: 'rollback', reason: 'policy sufficiency rollback-within-window' },
  },
  {
    // The retired box breaks after the switch: the EIP goes back, the box goes back to sleep.
    name: 'rollback-reverted',
    outcome: 'failed',
    newImage: { cloudInit: 'done', app: 'healthy' },
    before: async (world, sandbox) => {
      await replaceFirst(world);
      const image = sandbox.ec2.image(world.seeded.oldImageId) as { behaviour: unknown } | undefined;
      if (image) image.behaviour = { cloudInit: 'done', app: { healthyForMs: 45_000 } };
    },
    input: { target: 'web', action: 'rollback', reason: 'policy sufficiency rollback-reverted' },
  },
];

const INVOKED_BY_STATE_MACHINE = new Set<string>(
  STEPS.filter((s) => s.invokedByStateMachine).map((s) => s.name),
);

/** Runs one scenario and collects each request with the principal that made it. */
const runScenario = async (spec: ScenarioSpec, handlers: HandlerSet): Promise<ScenarioRun> => {
  const invocations: string[] = [];
  // Each invocation of a step by the workflow is a lambda:InvokeFunction by the state machine's role.
  const counted: HandlerSet = Object.fromEntries(
    Object.entries(handlers).map(([step, handler]) => [
      step,
      (event: unknown, context: Parameters<typeof handler>[1]) => {
        if (INVOKED_BY_STATE_MACHINE.has(step)) invocations.push(step);
        return handler(event, context);
      },
    ]),
  );
  const world = await startFaultWorld(undefined, {
    newImage: spec.newImage,
    handlers: counted,
    ...(spec.target ? { target: spec.target } : {}),
  });
  try {
    const sandbox = world.sandbox as unknown as Sandbox;
    let target = world.target;
    if (spec.arrange) {
      const arranged = await spec.arrange(sandbox, target);
      if (arranged !== target) await putTargetConfig(SANDBOX_ENV.PARAMETER_PREFIX, arranged);
      target = arranged;
    }
    const { region, accountId } = sandbox;
    const stateMachineArn = `arn:aws:states:${region}:${accountId}:stateMachine:understudy-replace`;
    const topicKeyArn = KEY('notifications-topic-key', region, accountId);
    const facts: AccountFacts = {
      region,
      accountId,
      customerKeys: new Set(
        [IMAGE_KEY_ID, VOLUME_KEY_ID, STATE_KEY_ID].map((id) => KEY(id, region, accountId)),
      ),
      topicKeys: { [SANDBOX_ENV.TOPIC_ARN]: topicKeyArn },
      stateMachineArn,
      hashKeys: { [DEMO_TERRAFORM.table]: 'LockID' },
    };

    // The state each call is authorized against is read just before the sandbox models it.
    const states = new WeakMap<CallRecord, StateAtCall>();
    const inner = sandbox.dispatch.bind(sandbox);
    sandbox.dispatch = (service, action, input, via) => {
      const state = captureState(sandbox, service, input, facts);
      const pending = inner(service, action, input, via);
      const record = sandbox.calls.at(-1);
      if (record) states.set(record, state);
      return pending;
    };

    if (spec.before) await spec.before(world, sandbox);
    const from = world.runCalls().length;
    invocations.length = 0;
    const run = await world.run(spec.input ?? { target: 'web', reason: `policy sufficiency ${spec.name}` });
    const calls = world.runCalls().slice(from);

    const principalOf = (call: CallRecord): Principal => {
      const owner = world.ownerOf(call);
      // An optimized integration (AnnounceOutcome's sns:publish) is the state machine's own call.
      if (owner)
        return STEP_NAMES.includes(owner.step as StepName) ? (owner.step as StepName) : 'state-machine';
      if (call.via === 'presigned-url') {
        // A presigned request is authorized as the role that signed it: pack-certificate presigns the
        // box's upload of its certificate, prepare the new box's download.
        const key = String((call.input as { Key?: unknown }).Key);
        if (!key.startsWith('tls/')) throw new Error(`a presigned ${call.action} outside tls/: ${key}`);
        if (call.action === 'PutObject') return 'pack-certificate';
        if (call.action === 'GetObject') return 'prepare';
        throw new Error(`a presigned ${call.action} nobody signs`);
      }
      // What no function made, Step Functions made itself (its service integrations).
      return 'state-machine';
    };

    const requests: Evaluated[] = [];
    for (const call of calls) {
      const state = states.get(call);
      if (!state) throw new Error(`no state captured for call #${call.seq} ${call.service}:${call.action}`);
      for (const request of requestsFor(call, state, facts)) {
        requests.push({
          principal: principalOf(call),
          call: `#${call.seq} ${call.service}:${call.action}${call.via ? ' by presigned URL' : ''}${call.error ? ` (${call.error})` : ''}`,
          request,
        });
      }
    }
    for (const step of invocations) {
      requests.push({
        principal: 'state-machine',
        call: `invoke ${step}`,
        request: {
          action: 'lambda:InvokeFunction',
          resource: `arn:aws:lambda:${region}:${accountId}:function:understudy-${step}`,
          context: {},
        },
      });
    }

    const launchedVolumeKeys = [...sandbox.ec2.instances.values()]
      .filter((i) => i.instanceId !== world.seeded.oldInstanceId)
      .flatMap((i) => i.blockDevices.map((d) => sandbox.ec2.volumes.get(d.volumeId)?.kmsKeyId));

    const { stack, template } = synthesize({
      env: { account: accountId, region },
      config: { ...exampleConfig(), targets: [target] },
    });
    return {
      name: spec.name,
      outcome: run.outcome,
      requests,
      launchedVolumeKeys,
      policies: policiesOf(stack, template, facts, topicKeyArn),
    };
  } finally {
    await world.stop();
  }
};

/** Each principal's statements, with the stack's resources named as the sandbox deployment names them. */
const policiesOf = (
  stack: UnderstudyStack,
  template: Template,
  facts: AccountFacts,
  topicKeyArn: string,
): Map<Principal, PolicyStatement[]> => {
  const { region, accountId } = facts;
  const steps = stack.lambdas.steps;
  const busArn = `arn:aws:events:${region}:${accountId}:event-bus/${SANDBOX_ENV.EVENT_BUS_NAME}`;
  const names: Names = {
    region,
    accountId,
    refs: {
      [logicalId(stack.notifications.topic)]: SANDBOX_ENV.TOPIC_ARN,
      [logicalId(stack.runs.bucket)]: SANDBOX_ENV.RUNS_BUCKET,
      [logicalId(stack.orchestrator.stateMachine)]: facts.stateMachineArn,
      [logicalId(stack.eventBus)]: SANDBOX_ENV.EVENT_BUS_NAME,
    },
    attributes: {
      [`${logicalId(stack.runs.bucket)}.Arn`]: `arn:aws:s3:::${SANDBOX_ENV.RUNS_BUCKET}`,
      [`${logicalId(stack.notifications.key)}.Arn`]: topicKeyArn,
      [`${logicalId(stack.eventBus)}.Arn`]: busArn,
      [`${logicalId(stack.retirement.role)}.Arn`]: SANDBOX_ENV.SCHEDULER_ROLE_ARN,
      ...Object.fromEntries(
        Object.entries(steps).map(([step, s]) => [
          `${logicalId(s.fn)}.Arn`,
          `arn:aws:lambda:${region}:${accountId}:function:understudy-${step}`,
        ]),
      ),
    },
    // The stack's SSM prefix is named after it; the sandbox deployment's is its own.
    renames: [
      [`:parameter${stack.parameterPrefix}/`, `:parameter${SANDBOX_ENV.PARAMETER_PREFIX}/`],
      // The end-of-window schedule group, named after the stack there and after the deployment here.
      [`:schedule/${stack.retirement.groupName}/`, `:schedule/${SANDBOX_ENV.SCHEDULE_GROUP}/`],
    ],
  };
  const policies = new Map<Principal, PolicyStatement[]>();
  for (const [step, s] of Object.entries(steps)) {
    policies.set(step as StepName, policyOfRole(template, logicalId(s.role), names));
  }
  policies.set(
    'state-machine',
    policyOfRole(template, logicalId(stack.orchestrator.stateMachine.role), names),
  );
  return policies;
};

/** Every request the principal's policy would deny, with the call and why. */
const denials = (run: Pick<ScenarioRun, 'requests' | 'policies'>): string[] =>
  run.requests.flatMap(({ principal, call, request }) => {
    const policy = run.policies.get(principal);
    if (!policy) return [`${call} by ${principal}: the stack has no role for it`];
    const decision = evaluate(policy, request);
    return decision.allowed
      ? []
      : [
          `${call} by ${principal}: ${request.action} on ${request.resource} denied: ${decision.reasons.join('; ')}`,
        ];
  });

const runs = new Map<string, ScenarioRun>();

beforeAll(async () => {
  applySandboxEnv();
  const handlers = await sourceHandlers();
  // One at a time: each sandbox owns the process-wide SDK plugin while it runs.
  for (const spec of SPECS) runs.set(spec.name, await runScenario(spec, handlers));
}, 600_000);

const runOf = (name: string): ScenarioRun => {
  const run = runs.get(name);
  if (!run) throw new Error(`scenario ${name} did not run`);
  return run;
};

describe('every call of every scenario is allowed by the policy of the role that made it', () => {
  test.each(SPECS.map((s) => [s.name, s.outcome] as const))('%s (%s)', (name, outcome) => {
    const run = runOf(name);
    expect(run.outcome).toBe(outcome);
    expect(run.requests.length).toBeGreaterThan(50);
    expect(denials(run)).toEqual([]);
  });

  test('the scenarios exercise every step, the state machine, presigned transfers and the customer keys', () => {
    const all = [...runs.values()].flatMap((r) => r.requests);
    const principals = new Set(all.map((r) => r.principal));
    for (const step of STEPS.map((s) => s.name)) expect(principals).toContain(step);
    expect(principals).toContain('state-machine');
    const seen = (action: string, resource: RegExp) =>
      all.some((r) => r.request.action === action && resource.test(r.request.resource));
    expect(seen('kms:CreateGrant', new RegExp(IMAGE_KEY_ID))).toBe(true);
    expect(seen('kms:ReEncryptTo', new RegExp(VOLUME_KEY_ID))).toBe(true);
    expect(seen('kms:Decrypt', new RegExp(STATE_KEY_ID))).toBe(true);
    expect(seen('kms:GenerateDataKey', new RegExp(STATE_KEY_ID))).toBe(true);
    expect(seen('dynamodb:PutItem', /table\/acme-terraform-locks$/)).toBe(true);
    expect(seen('iam:PassRole', /:role\//)).toBe(true);
    const presigned = all.filter((r) => r.call.includes('by presigned URL'));
    expect(new Set(presigned.map((r) => `${r.principal} ${r.request.action}`))).toEqual(
      new Set(['pack-certificate s3:PutObject', 'prepare s3:GetObject']),
    );
  });
});

test('a candidate launched from an image under a customer key gets its root volume under the key the old root used', () => {
  const { launchedVolumeKeys } = runOf('volumes-under-customer-keys');
  expect(launchedVolumeKeys).toEqual([expect.stringMatching(new RegExp(`:key/${VOLUME_KEY_ID}$`))]);
  expect(runOf('happy').launchedVolumeKeys).toEqual([expect.stringMatching(/:key\/aws-ebs-default$/)]);
});

describe('the checker reports what a policy lacks', () => {
  const without = (run: ScenarioRun, principal: Principal, sid: string) => {
    const policies = new Map(run.policies);
    const policy = policies.get(principal) ?? [];
    expect(policy.some((s) => s.Sid === sid)).toBe(true);
    policies.set(
      principal,
      policy.filter((s) => s.Sid !== sid),
    );
    return denials({ requests: run.requests, policies });
  };

  test('launch without the grant on its clone source: RunInstances is reported, with the image and the reason', () => {
    const reported = without(runOf('happy'), 'launch', 'LaunchFromCloneSource');
    expect(reported.length).toBeGreaterThan(0);
    expect(reported.join('\n')).toMatch(
      /ec2:RunInstances by launch: ec2:RunInstances on arn:aws:ec2:[a-z0-9-]+::image\/ami-\w+ denied: no statement allows/,
    );
  });

  test('launch without the volume-key grant: only the customer-key run is reported, on kms:CreateGrant', () => {
    expect(without(runOf('happy'), 'launch', 'UseVolumeKeysThroughEc2')).toEqual([]);
    const reported = without(runOf('volumes-under-customer-keys'), 'launch', 'UseVolumeKeysThroughEc2');
    expect(reported.join('\n')).toContain(`kms:CreateGrant on arn:aws:kms`);
  });

  test('a tag condition that the box does not meet is named with the value the request had', () => {
    const run = runOf('happy');
    const policies = new Map(run.policies);
    policies.set(
      'retire',
      (policies.get('retire') ?? []).map((s) =>
        s.Sid === 'StopOldBox'
          ? { ...s, Condition: { StringEquals: { 'aws:ResourceTag/understudy:target': 'api' } } }
          : s,
      ),
    );
    expect(denials({ requests: run.requests, policies }).join('\n')).toMatch(
      /ec2:StopInstances by retire: .*StopOldBox: StringEquals aws:ResourceTag\/understudy:target: wanted \["api"\], request has "web"/,
    );
  });
});

describe('the evaluator follows IAM', () => {
  const allowStop: PolicyStatement = {
    Sid: 'Stop',
    Effect: 'Allow',
    Action: 'ec2:Stop*',
    Resource: 'arn:aws:ec2:eu-west-1:123456789012:instance/*',
  };
  const stop = (context: AuthRequest['context'] = {}): AuthRequest => ({
    action: 'ec2:StopInstances',
    resource: 'arn:aws:ec2:eu-west-1:123456789012:instance/i-1',
    context,
  });

  test('an explicit Deny wins over any Allow; nothing matching is an implicit deny', () => {
    expect(evaluate([allowStop], stop()).allowed).toBe(true);
    expect(evaluate([allowStop, { Effect: 'Deny', Action: '*', Resource: '*' }], stop())).toMatchObject({
      allowed: false,
      reasons: ['explicit deny'],
    });
    expect(evaluate([allowStop], { ...stop(), action: 'ec2:TerminateInstances' })).toMatchObject({
      allowed: false,
      reasons: ['no statement allows this action on this resource'],
    });
  });

  test('actions match case-insensitively, resources exactly; NotAction and NotResource invert', () => {
    expect(evaluate([{ ...allowStop, Action: 'EC2:stopinstances' }], stop()).allowed).toBe(true);
    expect(
      evaluate([{ ...allowStop, Resource: 'arn:aws:ec2:eu-west-1:123456789012:Instance/*' }], stop()).allowed,
    ).toBe(false);
    expect(
      evaluate([{ Effect: 'Allow', NotAction: 'ec2:Terminate*', Resource: '*' }], {
        ...stop(),
        resource: '*',
      }).allowed,
    ).toBe(true);
    expect(
      evaluate([{ Effect: 'Allow', Action: '*', NotResource: 'arn:aws:ec2:*:*:instance/*' }], stop()).allowed,
    ).toBe(false);
  });

  test('ForAllValues holds for an absent key, ForAnyValue does not; a plain operator needs the key', () => {
    const tagKeys = (op: string) => [{ ...allowStop, Condition: { [op]: { 'aws:TagKeys': ['a'] } } }];
    expect(evaluate(tagKeys('ForAllValues:StringEquals'), stop()).allowed).toBe(true);
    expect(evaluate(tagKeys('ForAllValues:StringEquals'), stop({ 'aws:TagKeys': ['a', 'b'] })).allowed).toBe(
      false,
    );
    expect(evaluate(tagKeys('ForAnyValue:StringEquals'), stop()).allowed).toBe(false);
    expect(evaluate(tagKeys('ForAnyValue:StringEquals'), stop({ 'aws:TagKeys': ['b', 'a'] })).allowed).toBe(
      true,
    );
    const tagged = [{ ...allowStop, Condition: { StringEquals: { 'aws:ResourceTag/t': ['web', 'api'] } } }];
    expect(evaluate(tagged, stop()).allowed).toBe(false);
    expect(evaluate(tagged, stop({ 'aws:resourcetag/t': 'api' })).allowed).toBe(true);
  });

  test('Null, IfExists, StringLike, ArnLike and Bool', () => {
    const one = (Condition: PolicyStatement['Condition'], context: AuthRequest['context']) =>
      evaluate([{ ...allowStop, Condition }], stop(context)).allowed;
    expect(one({ Null: { 'aws:ResourceTag/t': 'true' } }, {})).toBe(true);
    expect(one({ Null: { 'aws:ResourceTag/t': 'true' } }, { 'aws:ResourceTag/t': 'x' })).toBe(false);
    expect(one({ StringEqualsIfExists: { 'aws:ResourceTag/t': 'web' } }, {})).toBe(true);
    expect(
      one({ StringEqualsIfExists: { 'aws:ResourceTag/t': 'web' } }, { 'aws:ResourceTag/t': 'api' }),
    ).toBe(false);
    expect(one({ StringLike: { 's3:prefix': 'tls/*' } }, { 's3:prefix': 'tls/run-1/' })).toBe(true);
    expect(one({ StringLike: { 's3:prefix': 'tls/*' } }, { 's3:prefix': 'locks/' })).toBe(false);
    expect(
      one(
        { ArnLike: { 'aws:SourceArn': 'arn:aws:states:*:*:stateMachine:*' } },
        { 'aws:SourceArn': 'arn:aws:states:eu-west-1:1:stateMachine:m' },
      ),
    ).toBe(true);
    expect(
      one({ Bool: { 'kms:GrantIsForAWSResource': 'true' } }, { 'kms:GrantIsForAWSResource': true }),
    ).toBe(true);
    expect(one({ Bool: { 'kms:GrantIsForAWSResource': 'true' } }, {})).toBe(false);
  });

  test('an operator it does not model is an error, not a silent pass', () => {
    expect(() =>
      evaluate(
        [{ ...allowStop, Condition: { NumericLessThan: { 'aws:MultiFactorAuthAge': '3600' } } }],
        stop(),
      ),
    ).toThrow(/NumericLessThan is not modelled/);
  });
});
