import type { Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { AwsSolutionsChecks } from 'cdk-nag';
import { logicalId, type Synthesized, synthesize } from './stack-fixture';

let synth: Synthesized;
let template: Template;
beforeAll(() => {
  synth = synthesize();
  template = synth.template;
});

const fleetRef = () => ({ Ref: logicalId(synth.stack.fleet.stateMachine) });
const topicRef = () => ({ Ref: logicalId(synth.stack.notifications.topic) });

/** The dashboard body with CloudFormation's joins flattened to one string. */
const dashboardBody = (): string => {
  const [dashboard] = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  const body = dashboard?.Properties.DashboardBody as { 'Fn::Join': [string, unknown[]] };
  return body['Fn::Join'][1].map((part) => (typeof part === 'string' ? part : JSON.stringify(part))).join('');
};

describe('the fleet alarms', () => {
  it.each(['ExecutionsFailed', 'ExecutionsTimedOut', 'ExecutionsAborted'])(
    'notifies the topic on the first fleet execution counted in %s, and only for the fleet machine',
    (metric) => {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/States',
        MetricName: metric,
        Dimensions: [{ Name: 'StateMachineArn', Value: fleetRef() }],
        Statistic: 'Sum',
        Period: 300,
        Threshold: 1,
        EvaluationPeriods: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        // No fleet run, no data: the quiet state.
        TreatMissingData: 'notBreaching',
        AlarmActions: [topicRef()],
      });
    },
  );

  it('says what a failed fleet means and where to look', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ExecutionsFailed',
      Dimensions: [{ Name: 'StateMachineArn', Value: fleetRef() }],
      AlarmDescription:
        "An Understudy fleet execution failed (more targets failed than it tolerates, so no further wave started): open it in the Step Functions console; each target's run reports its own outcome on the topic.",
    });
  });

  it('are exactly these three alarms of the fleet, one per metric', () => {
    const own = synth.stack.fleet.node.findAll().filter((c) => c instanceof cloudwatch.CfnAlarm);
    expect(own.map((a) => (a as cloudwatch.CfnAlarm).metricName).sort()).toEqual([
      'ExecutionsAborted',
      'ExecutionsFailed',
      'ExecutionsTimedOut',
    ]);
    expect(synth.stack.fleet.alarms).toHaveLength(3);
  });

  it('leave the replace machine its own three alarms', () => {
    const onMachine = (machine: string) =>
      Object.values(template.findResources('AWS::CloudWatch::Alarm')).filter(
        (a) =>
          JSON.stringify(a.Properties.Dimensions) ===
          JSON.stringify([{ Name: 'StateMachineArn', Value: { Ref: machine } }]),
      );
    expect(onMachine(logicalId(synth.stack.orchestrator.stateMachine))).toHaveLength(3);
    expect(onMachine(logicalId(synth.stack.fleet.stateMachine))).toHaveLength(3);
  });

  it('cdk-nag AwsSolutions reports nothing on them', () => {
    const report = new AwsSolutionsChecks().validateScope(synth.stack.fleet);
    expect(report.violations.map((v) => v.ruleName)).toEqual([]);
  });
});

describe('the fleet row of the dashboard', () => {
  it('graphs the fleet executions started, succeeded, failed, timed out and aborted', () => {
    const body = dashboardBody();
    for (const metric of [
      'ExecutionsStarted',
      'ExecutionsSucceeded',
      'ExecutionsFailed',
      'ExecutionsTimedOut',
      'ExecutionsAborted',
    ]) {
      expect(body).toContain(`"AWS/States","${metric}","StateMachineArn","${JSON.stringify(fleetRef())}"`);
    }
    expect(body).toContain('"title":"Fleet executions"');
  });

  it("shows the state of each of the fleet's alarms", () => {
    const body = dashboardBody();
    expect(body).toContain('"title":"Fleet alarms"');
    for (const alarm of synth.stack.fleet.alarms) {
      expect(body).toContain(JSON.stringify({ 'Fn::GetAtt': [logicalId(alarm), 'Arn'] }));
    }
  });
});
