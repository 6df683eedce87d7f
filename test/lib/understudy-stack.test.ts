import { Match, type Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import { flatten } from '../../lib/nag-findings';
import type { UnderstudyStack } from '../../lib/understudy-stack';
import { logicalId, synthesize } from './stack-fixture';

let stack: UnderstudyStack;
let template: Template;

beforeAll(() => {
  ({ stack, template } = synthesize({}, true));
});

describe('event routing', () => {
  test('readiness agent events go to the signal function', () => {
    const rule = template.toJSON().Resources[logicalId(stack.routing.agentRule)];
    expect(rule.Properties.EventBusName).toEqual({ Ref: logicalId(stack.eventBus) });
    expect(rule.Properties.EventPattern).toEqual({
      source: ['understudy.agent'],
      'detail-type': ['Instance Ready', 'Instance Failed', 'Instance Progress'],
    });
    expect(rule.Properties.Targets).toEqual([
      expect.objectContaining({ Arn: { 'Fn::GetAtt': [logicalId(stack.lambdas.steps.signal.fn), 'Arn'] } }),
    ]);
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      FunctionName: { 'Fn::GetAtt': [logicalId(stack.lambdas.steps.signal.fn), 'Arn'] },
      SourceArn: { 'Fn::GetAtt': [logicalId(stack.routing.agentRule), 'Arn'] },
    });
  });

  test('replacement requests start the state machine with the event detail as input', () => {
    const rule = template.toJSON().Resources[logicalId(stack.routing.requestRule)];
    expect(rule.Properties.EventBusName).toEqual({ Ref: logicalId(stack.eventBus) });
    expect(rule.Properties.EventPattern).toEqual({
      source: ['understudy'],
      'detail-type': ['Replacement Requested'],
    });
    const [target] = rule.Properties.Targets;
    expect(target.Arn).toEqual({ Ref: logicalId(stack.orchestrator.stateMachine) });
    expect(target.InputPath).toBe('$.detail');
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: [
          {
            Action: 'states:StartExecution',
            Effect: 'Allow',
            Resource: { Ref: logicalId(stack.orchestrator.stateMachine) },
          },
        ],
      },
      Roles: [{ Ref: Match.stringLikeRegexp('EventsRole') }],
    });
  });

  test('the instance policy only lets the agent put its own event types on the Understudy bus', () => {
    const policy = template.toJSON().Resources[logicalId(stack.routing.instancePolicy)];
    expect(policy.Properties.PolicyDocument.Statement).toEqual([
      {
        Sid: 'PutAgentEvents',
        Effect: 'Allow',
        Action: 'events:PutEvents',
        Resource: { 'Fn::GetAtt': [logicalId(stack.eventBus), 'Arn'] },
        Condition: {
          StringEquals: {
            'events:source': 'understudy.agent',
            'events:detail-type': ['Instance Ready', 'Instance Failed', 'Instance Progress'],
          },
        },
      },
    ]);
  });
});

describe('storage and notifications', () => {
  test('the runs bucket is encrypted, versioned, private, TLS-only and retained', () => {
    const bucket = template.toJSON().Resources[logicalId(stack.runs.bucket)];
    expect(bucket.DeletionPolicy).toBe('Retain');
    expect(bucket.Properties.BucketEncryption.ServerSideEncryptionConfiguration).toEqual([
      { ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } },
    ]);
    expect(bucket.Properties.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(bucket.Properties.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: logicalId(stack.runs.bucket) },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
  });

  test('the topic is encrypted with a rotating customer key that alarms may use, and refuses plain HTTP', () => {
    const topic = template.toJSON().Resources[logicalId(stack.notifications.topic)];
    expect(topic.Properties.KmsMasterKeyId).toEqual({
      'Fn::GetAtt': [logicalId(stack.notifications.key), 'Arn'],
    });
    const key = template.toJSON().Resources[logicalId(stack.notifications.key)];
    expect(key.Properties.EnableKeyRotation).toBe(true);
    expect(key.Properties.KeyPolicy.Statement).toContainEqual(
      expect.objectContaining({
        Principal: { Service: 'cloudwatch.amazonaws.com' },
        Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
      }),
    );
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [{ Ref: logicalId(stack.notifications.topic) }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  test('each configured e-mail address is subscribed to the topic', () => {
    const subscriptions = Object.values(template.findResources('AWS::SNS::Subscription'));
    expect(subscriptions.map((s) => [s.Properties.Protocol, s.Properties.Endpoint]).sort()).toEqual([
      ['email', 'oncall@example.com'],
      ['email', 'ops@example.com'],
    ]);
  });

  test('each target is stored, defaults filled in, at <prefix>/targets/<name>', () => {
    const parameters = Object.values(template.findResources('AWS::SSM::Parameter'));
    expect(parameters.map((p) => p.Properties.Name).sort()).toEqual([
      '/understudy/Understudy/targets/api',
      '/understudy/Understudy/targets/web',
    ]);
    // The example's api target sets only the required fields, so everything else comes from defaults.
    const api = parameters.find((p) => p.Properties.Name.endsWith('/api'));
    expect(api?.Properties.Type).toBe('String');
    expect(api?.Properties.Tier).toBe('Standard');
    const stored = JSON.parse(api?.Properties.Value);
    expect(stored).toMatchObject({
      name: 'api',
      allocationId: 'eipalloc-0fedcba987654321f',
      // The example builds api's image; the workflow reads it from the parameter the pipeline writes.
      image: { ssmParameter: '/understudy/Understudy/images/api' },
      readiness: { timeoutSeconds: 900, heartbeatSeconds: 300 },
      health: { path: '/', consecutiveSuccesses: 3 },
    });
  });
});

const fail = (message: string): never => {
  throw new Error(message);
};

describe('outputs', () => {
  test('name the state machine, bus, topic, bucket and instance policy', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, flatten(v.Value)]))).toEqual({
      StateMachineArn: `<${logicalId(stack.orchestrator.stateMachine)}>`,
      FleetStateMachineArn: `<${logicalId(stack.fleet.stateMachine)}>`,
      EventBusName: `<${logicalId(stack.eventBus)}>`,
      TopicArn: `<${logicalId(stack.notifications.topic)}>`,
      RunsBucketName: `<${logicalId(stack.runs.bucket)}>`,
      InstancePolicyArn: `<${logicalId(stack.routing.instancePolicy)}>`,
      OperatorPolicyArn: `<${logicalId(stack.operator.policy)}>`,
      ImagePipelineArnApi: `<${stack.getLogicalId(stack.goldenImages.api?.pipeline ?? fail('no api pipeline'))}.Arn>`,
    });
  });
});

describe('cdk-nag AwsSolutions', () => {
  test('reports nothing that is not acknowledged', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(
      report.violations.map((v) => `${v.ruleName} at ${v.violatingResources[0]?.constructPath}`),
    ).toEqual([]);
    expect(report.success).toBe(true);
  });

  test('the X-Ray and log-delivery acknowledgements cover only the policies CDK wrote them into: a wildcard added elsewhere under a role is reported', () => {
    const fresh = synthesize().stack;
    const roles = [fresh.lambdas.steps.launch.role, fresh.orchestrator.stateMachine.role];
    for (const role of roles) {
      new iam.Policy(role, 'Stray', {
        roles: [role],
        statements: [new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: ['*'] })],
      });
    }
    const reported = new AwsSolutionsChecks()
      .validateScope(fresh)
      .violations.filter((v) => v.ruleName === 'AwsSolutions-IAM5[Resource::*]')
      .flatMap((v) => v.violatingResources.map((r) => r.constructPath))
      .sort();
    expect(reported).toEqual(roles.map((role) => `${role.node.path}/Stray/Resource`).sort());
  });

  test('every acknowledgement carries a specific reason, and only resource wildcards (IAM5), access logs (S1), the AWS policies Image Builder documents for build instances and lifecycle rules (IAM4) and the missing DLQ of the queue that is itself the DLQ of the schedules (SQS3) are acknowledged', () => {
    const acknowledged = stack.node
      .findAll()
      .flatMap((c) => c.node.metadata.filter((m) => m.type === 'aws:cdk:acknowledged-rules'))
      .flatMap((m) => Object.entries(m.data as Record<string, string>));
    expect(acknowledged.length).toBeGreaterThan(0);
    for (const [id, reason] of acknowledged) {
      expect(id).toMatch(
        /^(\w+::)?AwsSolutions-(IAM5\[Resource::.+\]|S1|SQS3|IAM4\[Policy::arn:<AWS::Partition>:iam::aws:policy\/(AmazonSSMManagedInstanceCore|EC2InstanceProfileForImageBuilder|service-role\/EC2ImageBuilderLifecycleExecutionPolicy)\])$/,
      );
      expect(reason.length).toBeGreaterThan(30);
    }
  });
});
