import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, CfnElement, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { loadConfig } from '../../lib/config-loader';
import { asList } from '../../lib/nag-findings';
import { UnderstudyStack, type UnderstudyStackProps } from '../../lib/understudy-stack';

export const REPO = join(__dirname, '..', '..');

/** The feature flags the real app runs with (cdk.json), so tests see the template `cdk synth` writes. */
const cdkJsonContext = (): Record<string, unknown> =>
  (JSON.parse(readFileSync(join(REPO, 'cdk.json'), 'utf8')) as { context: Record<string, unknown> }).context;

export const ACCOUNT = '123456789012';
export const REGION = 'eu-west-1';

/** The committed example: two targets that exercise both image sources and both TLS modes. */
export const exampleConfig = () => loadConfig(join(REPO, 'understudy.config.example.json'));

export interface Synthesized {
  readonly app: App;
  readonly stack: UnderstudyStack;
  readonly template: Template;
}

/**
 * Builds the stack without bundling (bundling 13 functions costs seconds and proves nothing about the
 * template), in a fixed account and region so that ARNs read as plain strings.
 */
export const synthesize = (overrides: Partial<UnderstudyStackProps> = {}, withNag = false): Synthesized => {
  const app = new App({ context: { ...cdkJsonContext(), 'aws:cdk:bundling-stacks': [] } });
  const stack = new UnderstudyStack(app, 'Understudy', {
    env: { account: ACCOUNT, region: REGION },
    config: exampleConfig(),
    ...overrides,
  });
  // The plugin must be registered before the first synth: an App synthesizes once.
  if (withNag) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack, template: Template.fromStack(stack) };
};

/** The logical id of a construct's CloudFormation resource, as the template names it. */
export const logicalId = (construct: IConstruct): string => {
  const resource = construct.node.defaultChild;
  if (resource === undefined || !CfnElement.isCfnElement(resource)) {
    throw new Error(`${construct.node.path} has no CloudFormation resource of its own`);
  }
  return Stack.of(construct).getLogicalId(resource);
};

export interface Statement {
  readonly Sid?: string;
  readonly Effect: string;
  readonly Action: string | string[];
  readonly Resource: unknown;
  readonly Condition?: Record<string, Record<string, unknown>>;
}

/** Every Allow statement of every policy attached to a role, from the template. */
export const statementsOfRole = (template: Template, roleLogicalId: string): Statement[] => {
  const policies = template.findResources('AWS::IAM::Policy');
  return Object.values(policies)
    .filter((p) =>
      asList<unknown>(p.Properties.Roles).some((r) => (r as { Ref?: string }).Ref === roleLogicalId),
    )
    .flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
};

/** IAM's `*` glob, enough to ask "does this resource pattern cover that ARN". */
export const covers = (pattern: string, arn: string): boolean =>
  new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  ).test(arn);
