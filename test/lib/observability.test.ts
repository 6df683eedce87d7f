import { Match, type Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { AwsSolutionsChecks } from 'cdk-nag';
import { OUTCOME_METRICS, RunMetric } from '../../lambdas/shared/metrics';
import { asList } from '../../lib/nag-findings';
import { RUNS_QUERY } from '../../lib/observability';
import { STEP_NAMES, type StepName } from '../../lib/steps';
import { exampleConfig, logicalId, type Synthesized, statementsOfRole, synthesize } from './stack-fixture';

let synth: Synthesized;
let template: Template;
beforeAll(() => {
  synth = synthesize();
  template = synth.template;
});

/** The dashboard body with CloudFormation's joins flattened to one string. */
const dashboardBody = (): string => {
  const [dashboard] = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  const body = dashboard?.Properties.DashboardBody as { 'Fn::Join': [string, unknown[]] };
  return body['Fn::Join'][1].map((part) => (typeof part === 'string' ? part : JSON.stringify(part))).join('');
};

const topicRef = () => ({ Ref: logicalId(synth.stack.notifications.topic) });

describe('the dashboard', () => {
  it('is one dashboard named after the stack', () => {
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    template.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'Understudy-understudy' });
  });

  it('graphs executions started, succeeded and failed from Step Functions', () => {
    const body = dashboardBody();
    for (const metric of [
      'ExecutionsStarted',
      'ExecutionsSucceeded',
      'ExecutionsFailed',
      'ExecutionsTimedOut',
    ]) {
      expect(body).toContain(`"AWS/States","${metric}","StateMachineArn"`);
    }
  });

  it("graphs every run metric Finish emits, in Finish's namespace, with the service dimension", () => {
    const body = dashboardBody();
    for (const name of [
      ...Object.values(RunMetric).filter((n) => n !== RunMetric.runs),
      ...Object.values(OUTCOME_METRICS),
    ]) {
      expect(body).toMatch(new RegExp(`"Understudy","${name}","service","understudy"`));
    }
  });

  it('draws one line per configured target on the per-target graphs', () => {
    const body = dashboardBody();
    const targets = exampleConfig().targets.map((t) => t.name);
    expect(targets.length).toBeGreaterThan(1);
    for (const target of targets) {
      expect(body).toContain(
        `"Understudy","ReplacementDuration","service","understudy","target","${target}"`,
      );
    }
  });

  it("graphs every step function's errors and duration", () => {
    const body = dashboardBody();
    for (const [name, step] of Object.entries(synth.stack.lambdas.steps)) {
      const fn = JSON.stringify({ Ref: logicalId(step.fn) });
      expect(body).toContain(`"AWS/Lambda","Errors","FunctionName","${fn}",{"label":"${name}"`);
      expect(body).toContain(
        `"AWS/Lambda","Duration","FunctionName","${fn}",{"label":"${name}","stat":"p95"`,
      );
    }
  });

  it("carries the ready Logs Insights query over Finish's log group", () => {
    const body = dashboardBody();
    expect(body).toContain(JSON.stringify(logicalId(synth.stack.lambdas.steps.finish.logGroup)));
    expect(body).toContain(RUNS_QUERY[1]);
  });
});

describe('the alarms', () => {
  const countAlarm = (metricName: string, namespace = 'Understudy') => ({
    Namespace: namespace,
    MetricName: metricName,
    Statistic: 'Sum',
    Threshold: 1,
    EvaluationPeriods: 1,
    ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    TreatMissingData: 'notBreaching',
    AlarmActions: [topicRef()],
  });

  it.each([RunMetric.rollbacks, RunMetric.reconcileFailures, OUTCOME_METRICS['manual-action-needed']])(
    'notifies the topic on the first %s of the stack',
    (metric) => {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        ...countAlarm(metric),
        Dimensions: [{ Name: 'service', Value: 'understudy' }],
      });
    },
  );

  it('notifies the topic when the signal function fails, since no state machine watches it', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      ...countAlarm('Errors', 'AWS/Lambda'),
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: logicalId(synth.stack.lambdas.steps.signal.fn) } }],
    });
  });

  it('has exactly these four alarms of its own', () => {
    const own = synth.stack.observability.node.findAll().filter((c) => c instanceof cloudwatch.CfnAlarm);
    expect(own).toHaveLength(4);
  });

  it('can publish to the encrypted topic: the key lets CloudWatch use it', () => {
    template.hasResourceProperties('AWS::KMS::Key', {
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
          }),
        ]),
      },
    });
  });
});

describe('cdk-nag AwsSolutions', () => {
  it('reports nothing on the dashboard and alarms', () => {
    const report = new AwsSolutionsChecks().validateScope(synth.stack.observability);
    expect(report.violations.map((v) => v.ruleName)).toEqual([]);
  });
});

describe('phase event grants', () => {
  const PHASE_EMITTERS = ['preflight', 'switch', 'rollback', 'revert-restore', 'finish'] as const;
  const putEvents = (step: string) =>
    statementsOfRole(template, logicalId(synth.stack.lambdas.steps[step as StepName].role)).filter((s) =>
      asList(s.Action).includes('events:PutEvents'),
    );

  it.each(PHASE_EMITTERS)(
    '%s may put the phase detail-types on the Understudy bus, and nothing else there',
    (step) => {
      const [statement, ...others] = putEvents(step);
      expect(others).toEqual([]);
      expect(statement?.Resource).toEqual({ 'Fn::GetAtt': [logicalId(synth.stack.eventBus), 'Arn'] });
      expect(statement?.Condition).toEqual({
        StringEquals: {
          'events:source': 'understudy',
          'events:detail-type': [
            'Replacement Started',
            'Replacement Switched',
            'Replacement Rolled Back',
            'Replacement Finished',
          ],
        },
      });
    },
  );

  it('lets no step put a replacement request, which would start a run', () => {
    for (const step of STEP_NAMES) {
      for (const statement of putEvents(step)) {
        expect(JSON.stringify(statement.Condition)).not.toContain('Replacement Requested');
      }
    }
  });

  it('gives no other step the right to put events', () => {
    const emitters = STEP_NAMES.filter((step) => putEvents(step).length > 0);
    expect(emitters.sort()).toEqual([...PHASE_EMITTERS].sort());
  });
});
