import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Template } from 'aws-cdk-lib/assertions';
import { asList, flatten } from '../../lib/nag-findings';
import { checkPlaceholders, placeholdersIn } from '../../lib/orchestrator';
import {
  NOTIFICATION_TOPIC_PLACEHOLDER,
  placeholderFor,
  STEP_NAMES,
  STEPS,
  TRIGGER_FOLDER,
} from '../../lib/steps';
import type { UnderstudyStack } from '../../lib/understudy-stack';
import { logicalId, REPO, type Statement, statementsOfRole, synthesize } from './stack-fixture';

const ASL_PATH = join(REPO, 'statemachine', 'replace.asl.json');
/** `${Name}` as it appears in the ASL. */
const ref = (name: string): string => `\${${name}}`;

let stack: UnderstudyStack;
let template: Template;
let machine: { Properties: Record<string, unknown> };

beforeAll(() => {
  ({ stack, template } = synthesize());
  machine = template.toJSON().Resources[logicalId(stack.orchestrator.stateMachine)];
});

describe('state machine', () => {
  test('is named after the stack, so it can be found as <stack>-Replace', () => {
    expect(machine.Properties.StateMachineName).toBe('Understudy-Replace');
  });

  test('is a Standard state machine built from the ASL file', () => {
    expect(machine.Properties.StateMachineType).toBe('STANDARD');
    // A file definition becomes an asset; nothing is inlined.
    expect(machine.Properties.DefinitionS3Location).toBeDefined();
    expect(machine.Properties.DefinitionString).toBeUndefined();
  });

  test('logs every event to its own log group without execution data, and traces', () => {
    expect(machine.Properties.LoggingConfiguration).toEqual({
      Level: 'ALL',
      IncludeExecutionData: false,
      Destinations: [
        {
          CloudWatchLogsLogGroup: {
            LogGroupArn: { 'Fn::GetAtt': [logicalId(stack.orchestrator.logGroup), 'Arn'] },
          },
        },
      ],
    });
    expect(machine.Properties.TracingConfiguration).toEqual({ Enabled: true });
  });

  test('every placeholder in the ASL is substituted: each step function by its ARN, the topic by its own', () => {
    const used = placeholdersIn(readFileSync(ASL_PATH, 'utf8'));
    const substitutions = machine.Properties.DefinitionSubstitutions as Record<string, unknown>;
    expect(used.length).toBeGreaterThan(0);
    expect(Object.keys(substitutions).sort()).toEqual(used);
    for (const step of STEPS.filter((s) => s.invokedByStateMachine)) {
      expect(substitutions[placeholderFor(step.name)]).toEqual({
        'Fn::GetAtt': [logicalId(stack.lambdas.steps[step.name].fn), 'Arn'],
      });
    }
    expect(substitutions[NOTIFICATION_TOPIC_PLACEHOLDER]).toEqual({
      Ref: logicalId(stack.notifications.topic),
    });
  });

  test('its role may publish the outcome to the notifications topic only, through its key via SNS', () => {
    const roleId = logicalId(stack.orchestrator.stateMachine.role);
    const statements = statementsOfRole(template, roleId);
    const publish = statements.filter((s) => asList(s.Action).includes('sns:Publish'));
    expect(publish.flatMap((s) => asList(s.Resource)).map(flatten)).toEqual([
      `<${logicalId(stack.notifications.topic)}>`,
    ]);
    const key = statements.filter((s) => asList(s.Action).includes('kms:GenerateDataKey'));
    expect(key).toHaveLength(1);
    expect(key.flatMap((s) => asList(s.Resource)).map(flatten)).toEqual([
      `<${logicalId(stack.notifications.key)}.Arn>`,
    ]);
    expect(JSON.stringify(key[0]?.Condition)).toContain('kms:ViaService');
  });

  test('its role may invoke every function the definition names, by unqualified ARN only', () => {
    const roleId = logicalId(stack.orchestrator.stateMachine.role);
    const invoke = statementsOfRole(template, roleId).filter((s) =>
      asList(s.Action).includes('lambda:InvokeFunction'),
    );
    const resources = invoke.flatMap((s: Statement) => asList(s.Resource)).map(flatten);
    const expected = STEPS.filter((s) => s.invokedByStateMachine).map(
      (s) => `<${logicalId(stack.lambdas.steps[s.name].fn)}.Arn>`,
    );
    expect(resources.sort()).toEqual(expected.sort());
  });

  test('its role cannot invoke the signal function, which only the agent rule calls', () => {
    const roleId = logicalId(stack.orchestrator.stateMachine.role);
    const resources = statementsOfRole(template, roleId)
      .flatMap((s) => asList(s.Resource))
      .map(flatten);
    expect(resources.join(' ')).not.toContain(logicalId(stack.lambdas.steps.signal.fn));
  });

  test('alarms on failed, timed-out and aborted executions notify the topic', () => {
    // The fleet machine has alarms of its own on the same metrics (test/lib/observability-fleet.test.ts).
    const replaceMachine = JSON.stringify({ Ref: logicalId(stack.orchestrator.stateMachine) });
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).filter(
      (a) =>
        a.Properties.Namespace === 'AWS/States' &&
        JSON.stringify(a.Properties.Dimensions).includes(replaceMachine),
    );
    expect(alarms.map((a) => a.Properties.MetricName).sort()).toEqual([
      'ExecutionsAborted',
      'ExecutionsFailed',
      'ExecutionsTimedOut',
    ]);
    for (const alarm of alarms) {
      expect(alarm.Properties.Namespace).toBe('AWS/States');
      expect(alarm.Properties.Threshold).toBe(1);
      expect(alarm.Properties.AlarmActions).toEqual([{ Ref: logicalId(stack.notifications.topic) }]);
      expect(alarm.Properties.Dimensions).toEqual([
        { Name: 'StateMachineArn', Value: { Ref: logicalId(stack.orchestrator.stateMachine) } },
      ]);
    }
  });
});

describe('placeholder checks', () => {
  const asl = readFileSync(ASL_PATH, 'utf8');
  const supplied = [
    ...STEPS.filter((s) => s.invokedByStateMachine).map((s) => placeholderFor(s.name)),
    NOTIFICATION_TOPIC_PLACEHOLDER,
  ];

  test('accepts the committed ASL with the step table', () => {
    expect(() => checkPlaceholders(placeholdersIn(asl), supplied)).not.toThrow();
  });

  test('fails synth when the ASL uses a placeholder no step supplies', () => {
    const used = placeholdersIn(asl.replace(ref('SwitchFunctionArn'), ref('SwapFunctionArn')));
    expect(() => checkPlaceholders(used, supplied)).toThrow(
      /uses \$\{SwapFunctionArn\} but no step supplies it/,
    );
  });

  test('fails synth when a step the state machine should invoke is missing from the ASL', () => {
    const used = placeholdersIn(asl.replaceAll(ref('RetireFunctionArn'), ref('FinishFunctionArn')));
    expect(() => checkPlaceholders(used, supplied)).toThrow(/never uses \$\{RetireFunctionArn\}/);
  });

  test('finds each placeholder once, sorted', () => {
    expect(placeholdersIn(`{"a":"${ref('B')}","b":"${ref('A')}","c":"${ref('B')}"}`)).toEqual(['A', 'B']);
  });

  test("the step table names the twenty step folders (the trigger function is the stack's, not a step), and placeholders are their PascalCase", () => {
    const folders = readdirSync(join(REPO, 'lambdas'), { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && entry.name !== 'shared')
      .map((entry) => entry.name);
    expect(STEP_NAMES).toHaveLength(20);
    expect([...STEP_NAMES, TRIGGER_FOLDER].sort()).toEqual(folders.sort());
    expect(placeholderFor('await-command')).toBe('AwaitCommandFunctionArn');
  });
});
