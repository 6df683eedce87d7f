import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { parseConfig } from '../../lambdas/shared/config';
import { STEP_NAMES } from '../../lib/steps';
import { UnderstudyStack, type UnderstudyStackProps } from '../../lib/understudy-stack';

export const REPO = join(__dirname, '..', '..');

/** The feature flags the real app runs with (cdk.json), so tests see the template `cdk synth` writes. */
const cdkJsonContext = (): Record<string, unknown> =>
  (JSON.parse(readFileSync(join(REPO, 'cdk.json'), 'utf8')) as { context: Record<string, unknown> }).context;

export const ACCOUNT = '123456789012';
export const REGION = 'eu-west-1';

/** Two targets that exercise both image sources and both TLS modes. */
export const sampleConfig = () =>
  parseConfig({
    notifications: { emails: ['ops@example.com', 'oncall@example.com'] },
    targets: [
      {
        name: 'web',
        allocationId: 'eipalloc-0123456789abcdef0',
        domain: 'www.example.com',
        image: { ssmParameter: '/golden/web/ami' },
        tls: { mode: 'http-01', email: 'ops@example.com' },
      },
      {
        name: 'api',
        allocationId: 'eipalloc-0fedcba987654321f',
        domain: 'api.example.com',
        image: { imageId: 'ami-0123456789abcdef0' },
        tls: { mode: 'none' },
      },
    ],
  });

/**
 * NodejsFunction insists that each entry file exists even when bundling is skipped; the real handlers are
 * written by others in parallel, so template tests point at empty stand-ins instead.
 */
export const standInLambdasRoot = (): string => {
  // Under the project root (NodejsFunction requires it) but in an ignored folder; the same content every
  // time, so parallel test files may write it concurrently.
  const root = join(REPO, 'node_modules', '.cache', 'understudy-test', 'lambdas');
  for (const step of STEP_NAMES) {
    mkdirSync(join(root, step), { recursive: true });
    writeFileSync(join(root, step, 'handler.ts'), 'export const handler = async () => ({});\n');
  }
  return root;
};

export interface Synthesized {
  readonly app: App;
  readonly stack: UnderstudyStack;
  readonly template: Template;
}

/**
 * Builds the stack without bundling (handlers are other people's work in progress, and bundling 13
 * functions costs seconds), in a fixed account and region so that ARNs read as plain strings.
 */
export const synthesize = (overrides: Partial<UnderstudyStackProps> = {}, withNag = false): Synthesized => {
  const app = new App({ context: { ...cdkJsonContext(), 'aws:cdk:bundling-stacks': [] } });
  const stack = new UnderstudyStack(app, 'Understudy', {
    env: { account: ACCOUNT, region: REGION },
    config: sampleConfig(),
    lambdasRoot: standInLambdasRoot(),
    ...overrides,
  });
  // The plugin must be registered before the first synth: an App synthesizes once.
  if (withNag) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack, template: Template.fromStack(stack) };
};

export interface Statement {
  readonly Sid?: string;
  readonly Effect: string;
  readonly Action: string | string[];
  readonly Resource: unknown;
  readonly Condition?: Record<string, Record<string, unknown>>;
}

export const asList = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Renders a template value as one string: `{Fn::GetAtt: [X, Arn]}` → `<X.Arn>`, `{Ref: X}` → `<X>`. */
export const flat = (value: unknown): string => {
  if (typeof value === 'string') return value;
  const node = value as Record<string, unknown>;
  const join = node['Fn::Join'] as [string, unknown[]] | undefined;
  if (join) return join[1].map(flat).join(join[0]);
  if (node.Ref !== undefined) return `<${String(node.Ref)}>`;
  const getAtt = node['Fn::GetAtt'] as [string, string] | undefined;
  if (getAtt) return `<${getAtt[0]}.${getAtt[1]}>`;
  return JSON.stringify(value);
};

/** Every Allow statement of every policy attached to a role, from the template. */
export const statementsOfRole = (template: Template, roleLogicalId: string): Statement[] => {
  const policies = template.findResources('AWS::IAM::Policy');
  return Object.values(policies)
    .filter((p) =>
      asList<unknown>(p.Properties.Roles).some((r) => (r as { Ref?: string }).Ref === roleLogicalId),
    )
    .flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
};
