import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Stack } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import { parseConfig } from '../../lambdas/shared/config';
import { pascalCase, STEP_NAMES, STEPS } from '../../lib/steps';
import type { UnderstudyStack } from '../../lib/understudy-stack';
import { exampleConfig, logicalId, REPO, synthesize } from './stack-fixture';

type Resource = { Type: string; Properties: Record<string, unknown> };

let stack: UnderstudyStack;
let template: Template;
const fnOf = (step: (typeof STEP_NAMES)[number]): Resource => {
  const id = logicalId(stack.lambdas.steps[step].fn);
  return template.toJSON().Resources[id] as Resource;
};

beforeAll(() => {
  ({ stack, template } = synthesize());
});

describe('step functions', () => {
  test('there is exactly one Lambda function per step folder', () => {
    expect(Object.keys(template.findResources('AWS::Lambda::Function'))).toHaveLength(STEP_NAMES.length);
    expect(Object.keys(stack.lambdas.steps).sort()).toEqual([...STEP_NAMES].sort());
  });

  test.each(STEP_NAMES)('%s runs on Node.js 24 on arm64 with active tracing', (step) => {
    const props = fnOf(step).Properties;
    expect(props.Runtime).toBe('nodejs24.x');
    expect(props.Architectures).toEqual(['arm64']);
    expect(props.TracingConfig).toEqual({ Mode: 'Active' });
  });

  test.each(STEP_NAMES)('%s gets the shared environment and never logs its events', (step) => {
    const variables = (fnOf(step).Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    const resolved = Stack.of(stack).resolve({
      RUNS_BUCKET: stack.runs.bucket.bucketName,
      TOPIC_ARN: stack.notifications.topic.topicArn,
      EVENT_BUS_NAME: stack.eventBus.eventBusName,
    });
    // The steps that create or cancel end-of-window schedules also get the group and the role (lib/retirement.ts).
    const retirement = ['retire', 'start-retired', 'revert-restore'].includes(step)
      ? Stack.of(stack).resolve({
          SCHEDULE_GROUP: stack.retirement.groupName,
          SCHEDULER_ROLE_ARN: stack.retirement.role.roleArn,
          SCHEDULE_DEAD_LETTER_ARN: stack.retirement.deadLetterQueue.queueArn,
        })
      : {};
    expect(variables).toEqual({
      PARAMETER_PREFIX: '/understudy/Understudy',
      ...resolved,
      ...retirement,
      POWERTOOLS_SERVICE_NAME: 'understudy',
      POWERTOOLS_LOG_LEVEL: 'INFO',
      POWERTOOLS_TRACER_CAPTURE_RESPONSE: 'false',
      NODE_OPTIONS: '--enable-source-maps',
    });
    expect(variables).not.toHaveProperty('POWERTOOLS_LOGGER_LOG_EVENT');
  });

  test.each(STEP_NAMES)('%s writes to its own log group, kept three months and retained', (step) => {
    const logGroup = stack.lambdas.steps[step].logGroup;
    const logGroupId = logicalId(logGroup);
    expect(fnOf(step).Properties.LoggingConfig).toEqual({ LogGroup: { Ref: logGroupId } });
    const resource = template.toJSON().Resources[logGroupId];
    expect(resource.Properties.RetentionInDays).toBe(90);
    expect(resource.DeletionPolicy).toBe('Retain');
  });

  test('no two functions share a role or a log group', () => {
    const roles = STEP_NAMES.map((s) => JSON.stringify(fnOf(s).Properties.Role));
    const groups = STEP_NAMES.map((s) => JSON.stringify(fnOf(s).Properties.LoggingConfig));
    expect(new Set(roles).size).toBe(STEP_NAMES.length);
    expect(new Set(groups).size).toBe(STEP_NAMES.length);
  });

  test('no function role carries an AWS managed policy', () => {
    for (const step of STEP_NAMES) {
      const roleId = logicalId(stack.lambdas.steps[step].role);
      expect(template.toJSON().Resources[roleId].Properties.ManagedPolicyArns).toBeUndefined();
    }
  });

  test('probe, rollback and revert-restore get 300 s, reconcile 900 s (it may wait for a Terraform lock), every other step between 60 and 120 s', () => {
    const timeouts = Object.fromEntries(STEP_NAMES.map((s) => [s, fnOf(s).Properties.Timeout as number]));
    const { probe, rollback, reconcile, 'revert-restore': revert, ...others } = timeouts;
    expect([probe, rollback, revert, reconcile]).toEqual([300, 300, 300, 900]);
    for (const timeout of Object.values(others)) {
      expect(timeout).toBeGreaterThanOrEqual(60);
      expect(timeout).toBeLessThanOrEqual(120);
    }
  });

  test('reconcile gets 1 GB to hold a large Terraform state, every other step 256 MB', () => {
    const memory = Object.fromEntries(STEP_NAMES.map((s) => [s, fnOf(s).Properties.MemorySize as number]));
    const { reconcile, ...others } = memory;
    expect(reconcile).toBe(1024);
    expect(new Set(Object.values(others))).toEqual(new Set([256]));
  });

  test("no function outlives the Task that invokes it (the state's TimeoutSeconds)", () => {
    const asl = JSON.parse(readFileSync(join(REPO, 'statemachine', 'replace.asl.json'), 'utf8')) as {
      States: Record<string, { Type: string; Resource?: string; TimeoutSeconds?: number }>;
    };
    const checked = new Set<string>();
    for (const state of Object.values(asl.States)) {
      const match = /^\$\{(\w+)FunctionArn\}$/.exec(state.Resource ?? '');
      if (!match || state.TimeoutSeconds === undefined) continue;
      const step = STEPS.find((s) => pascalCase(s.name) === match[1]);
      expect(step).toBeDefined();
      expect(step?.timeoutSeconds).toBeLessThanOrEqual(state.TimeoutSeconds);
      checked.add(match[1] ?? '');
    }
    expect(checked.size).toBeGreaterThan(8);
  });
});

describe('tracing of every function in the stack', () => {
  /** The example with a trigger on, so the trigger function (not a step) is in the template too. */
  const withTrigger = () => {
    const config = exampleConfig();
    const [first, ...rest] = config.targets;
    if (!first) throw new Error('the example config has no target');
    return parseConfig({ ...config, targets: [{ ...first, triggers: { imageParameter: true } }, ...rest] });
  };

  test('every function traces actively and never records its response (task tokens, presigned URLs)', () => {
    const triggered = synthesize({ config: withTrigger() });
    const trigger = triggered.stack.triggers.function;
    if (!trigger) throw new Error('a target with a trigger must get the trigger function');
    const functions = Object.entries(triggered.template.findResources('AWS::Lambda::Function'));
    expect(functions.map(([id]) => id)).toContain(logicalId(trigger));
    expect(functions.length).toBe(STEP_NAMES.length + 1);
    for (const [, fn] of functions) {
      const props = fn.Properties as Record<string, unknown>;
      expect(props.TracingConfig).toEqual({ Mode: 'Active' });
      const variables = (props.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(variables.POWERTOOLS_TRACER_CAPTURE_RESPONSE).toBe('false');
    }
  });
});
