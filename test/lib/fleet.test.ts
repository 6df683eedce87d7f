import { readFileSync } from 'node:fs';
import type { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { FLEET_DEFINITION_PATH } from '../../lib/fleet';
import { flatten } from '../../lib/nag-findings';
import { placeholdersIn } from '../../lib/orchestrator';
import type { UnderstudyStack } from '../../lib/understudy-stack';
import { logicalId, statementsOfRole, synthesize } from './stack-fixture';

interface MapState {
  Type: string;
  ItemsPath: string;
  ItemSelector: Record<string, string>;
  MaxConcurrencyPath: string;
  ToleratedFailurePercentagePath: string;
  ItemProcessor: {
    ProcessorConfig: Record<string, string>;
    StartAt: string;
    States: Record<string, Record<string, unknown>>;
  };
}

const text = readFileSync(FLEET_DEFINITION_PATH, 'utf8');
const definition = JSON.parse(text) as { StartAt: string; States: Record<string, unknown> };
const map = definition.States.ReplaceTargets as MapState;
const item = map.ItemProcessor.States;

let stack: UnderstudyStack;
let template: Template;
let machine: { Properties: Record<string, unknown> };

beforeAll(() => {
  ({ stack, template } = synthesize());
  machine = template.toJSON().Resources[logicalId(stack.fleet.stateMachine)];
});

describe('fleet definition (the DISTRIBUTED settings, which the local engine cannot run)', () => {
  test('starts with a Map whose items run as Standard child workflow executions', () => {
    expect(definition.StartAt).toBe('ReplaceTargets');
    expect(map.Type).toBe('Map');
    expect(map.ItemProcessor.ProcessorConfig).toEqual({ Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' });
  });

  test('takes the wave size and the tolerated failure percentage from the execution input', () => {
    expect(map.MaxConcurrencyPath).toBe('$.maxConcurrency');
    expect(map.ToleratedFailurePercentagePath).toBe('$.toleratedFailurePercentage');
    expect(map.ItemsPath).toBe('$.items');
  });

  test('each item waits for one replace execution, named after the target and the fleet execution', () => {
    const task = item[map.ItemProcessor.StartAt] as {
      Resource: string;
      Parameters: Record<string, string>;
      TimeoutSeconds: number;
    };
    expect(task.Resource).toBe('arn:aws:states:::states:startExecution.sync:2');
    expect(task.Parameters.StateMachineArn).toBe(`\${ReplaceStateMachineArn}`);
    expect(task.Parameters['Input.$']).toBe('$.item.input');
    expect(task.Parameters['Name.$']).toContain('$.item.target');
    expect(task.Parameters['Name.$']).toContain('$.fleetExecutionName');
    expect(map.ItemSelector['fleetExecutionName.$']).toBe('$$.Execution.Name');
    expect(task.TimeoutSeconds).toBeGreaterThan(0);
  });

  test('a failed replacement is caught, recorded, and fails its child execution so the Map Run counts it', () => {
    const task = item.ReplaceTarget as { Catch: { ErrorEquals: string[]; Next: string }[] };
    expect(task.Catch).toEqual([
      expect.objectContaining({ ErrorEquals: ['States.ALL'], Next: 'RecordFailure' }),
    ]);
    expect(item.RecordFailure).toMatchObject({ Type: 'Pass', Next: 'ItemFailed' });
    expect(item.ItemFailed).toMatchObject({ Type: 'Fail', ErrorPath: '$.error' });
  });

  test('uses only the ReplaceStateMachineArn placeholder', () => {
    expect(placeholdersIn(text)).toEqual(['ReplaceStateMachineArn']);
  });
});

describe('fleet state machine', () => {
  test('is a Standard machine named <stack>-Fleet, built from the file with the replace machine substituted', () => {
    expect(machine.Properties.StateMachineName).toBe('Understudy-Fleet');
    expect(machine.Properties.StateMachineType).toBe('STANDARD');
    expect(machine.Properties.DefinitionSubstitutions).toEqual({
      ReplaceStateMachineArn: { Ref: logicalId(stack.orchestrator.stateMachine) },
    });
  });

  test('logs to its own log group without execution data, and traces', () => {
    expect(machine.Properties.LoggingConfiguration).toMatchObject({
      IncludeExecutionData: false,
      Destinations: [
        {
          CloudWatchLogsLogGroup: { LogGroupArn: { 'Fn::GetAtt': [logicalId(stack.fleet.logGroup), 'Arn'] } },
        },
      ],
    });
    expect(machine.Properties.TracingConfiguration).toEqual({ Enabled: true });
  });

  test('its ARN is a stack output', () => {
    expect(template.toJSON().Outputs.FleetStateMachineArn.Value).toEqual({
      Ref: logicalId(stack.fleet.stateMachine),
    });
  });
});

describe('fleet role', () => {
  const bySid = () => {
    const roleId = stack.getLogicalId(stack.fleet.stateMachine.role.node.defaultChild as never);
    const statements = statementsOfRole(template, roleId);
    return Object.fromEntries(
      statements
        .filter((s) => s.Sid !== undefined)
        .map((s) => [
          s.Sid,
          { actions: [s.Action].flat().sort(), resources: [s.Resource].flat().map(flatten) },
        ]),
    );
  };

  test('may start and follow the replace machine and its executions only (startExecution.sync)', () => {
    const sids = bySid();
    expect(sids.StartReplace).toEqual({
      actions: ['states:StartExecution'],
      resources: [`<${logicalId(stack.orchestrator.stateMachine)}>`],
    });
    expect(sids.FollowReplace).toEqual({
      actions: ['states:DescribeExecution'],
      resources: ['arn:aws:states:eu-west-1:123456789012:execution:Understudy-Replace:*'],
    });
    expect(sids.SyncEvents).toEqual({
      actions: ['events:DescribeRule', 'events:PutRule', 'events:PutTargets'],
      resources: [
        'arn:aws:events:eu-west-1:123456789012:rule/StepFunctionsGetEventsForStepFunctionsExecutionRule',
      ],
    });
  });

  test('may never stop a replace run, so a failed or stopped fleet leaves each started run to end safe by itself', () => {
    const roleId = stack.getLogicalId(stack.fleet.stateMachine.role.node.defaultChild as never);
    const stoppable = statementsOfRole(template, roleId)
      .filter((s) => [s.Action].flat().some((a) => a === 'states:StopExecution' || a === 'states:*'))
      .flatMap((s) => [s.Resource].flat().map(flatten));
    expect(stoppable).toEqual(['arn:aws:states:eu-west-1:123456789012:execution:Understudy-Fleet/*']);
  });

  test('may start and follow its own child workflow executions (Distributed Map)', () => {
    const sids = bySid();
    expect(sids.StartChildWorkflows).toEqual({
      actions: ['states:StartExecution'],
      resources: ['arn:aws:states:eu-west-1:123456789012:stateMachine:Understudy-Fleet'],
    });
    expect(sids.FollowChildWorkflows).toEqual({
      actions: ['states:DescribeExecution', 'states:StopExecution'],
      resources: ['arn:aws:states:eu-west-1:123456789012:execution:Understudy-Fleet/*'],
    });
  });

  test('cdk-nag AwsSolutions reports nothing unacknowledged for the fleet', () => {
    const checked = synthesize({}, true).stack;
    const report = new AwsSolutionsChecks().validateScope(checked.fleet);
    expect(report.violations.map((v) => v.ruleName)).toEqual([]);
  });
});
