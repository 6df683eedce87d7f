import { App, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { acknowledgeWildcards, wildcardFindings } from '../../lib/nag-findings';
import { synthesize } from './stack-fixture';

const minimalStack = () => {
  const stack = new Stack(new App(), 'Minimal');
  const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
  const bucket = new s3.Bucket(stack, 'Bucket');
  const statement = new iam.PolicyStatement({
    actions: ['s3:GetObject', 'ec2:Describe*'],
    resources: [
      bucket.arnForObjects('locks/*'),
      stack.formatArn({ service: 'ec2', resource: 'instance', resourceName: '*' }),
    ],
  });
  const policy = new iam.Policy(stack, 'Policy', { roles: [role], statements: [statement] });
  return { stack, policy, statement };
};
const iam5 = (stack: Stack) =>
  new AwsSolutionsChecks()
    .validateScope(stack)
    .violations.map((v) => v.ruleName)
    .filter((r) => r.startsWith('AwsSolutions-IAM5'))
    .sort();

describe('wildcard acknowledgements', () => {
  test('predicts the exact finding ids cdk-nag raises, intrinsics included', () => {
    const { stack, policy, statement } = minimalStack();
    expect(wildcardFindings(policy, statement).sort()).toEqual(iam5(stack));
    expect(iam5(stack)).toHaveLength(3);
  });

  test('acknowledging a justified statement clears exactly its findings', () => {
    const { stack, policy, statement } = minimalStack();
    acknowledgeWildcards(policy, [
      { statement, wildcardReason: 'a reason long enough to say why it is needed' },
    ]);
    expect(iam5(stack)).toEqual([]);
  });

  test('fails synth when a statement with a wildcard has no reason', () => {
    const { policy, statement } = minimalStack();
    expect(() => acknowledgeWildcards(policy, [{ statement }])).toThrow(
      /raises AwsSolutions-IAM5\[Action::ec2:Describe\*\]: narrow the resource or action, or give the statement a wildcardReason/,
    );
  });

  test('an environment-agnostic stack (synth without credentials) is as clean as a pinned one', () => {
    const { stack } = synthesize({ env: undefined });
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(report.violations.map((v) => v.ruleName)).toEqual([]);
  });
});
