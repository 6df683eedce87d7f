import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { asList, flatten } from '../../lib/nag-findings';
import type { UnderstudyStack } from '../../lib/understudy-stack';
import { ACCOUNT, covers, REGION, REPO, type Statement, synthesize } from './stack-fixture';

let stack: UnderstudyStack;
let template: Template;

interface ManagedPolicy {
  readonly ManagedPolicyName?: string;
  readonly Description?: string;
  readonly PolicyDocument: { readonly Statement: Statement[] };
}

const operatorPolicy = (): ManagedPolicy => {
  const id = stack.getLogicalId(stack.operator.policy.node.defaultChild as never);
  return template.toJSON().Resources[id].Properties as ManagedPolicy;
};
const statements = (): Statement[] => operatorPolicy().PolicyDocument.Statement;

/** The resources of every statement granting `action`, intrinsics flattened (`<Logical.Attr>`). */
const resourcesFor = (action: string): string[] =>
  statements()
    .filter((s) => asList(s.Action).includes(action))
    .flatMap((s) => asList(s.Resource).map(flatten));

const refOf = (construct: { node: { defaultChild?: unknown } }): string =>
  stack.getLogicalId(construct.node.defaultChild as never);

beforeAll(() => {
  ({ stack, template } = synthesize());
});

/** The commands an operator runs against AWS; `--sandbox` reaches its fake account by a dynamic import. */
const CLI_COMMANDS = ['replace', 'rollback', 'status', 'history', 'approve'];

/** Every source file those commands import, statically and transitively; nothing under sandbox/. */
const cliSources = (): string[] => {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file) || !existsSync(file) || file.includes(`${join(REPO, 'sandbox')}/`)) return;
    seen.add(file);
    for (const [, spec] of readFileSync(file, 'utf8').matchAll(/from '(\.{1,2}\/[^']+)'/g)) {
      visit(`${resolve(dirname(file), spec ?? '')}.ts`);
    }
  };
  for (const command of CLI_COMMANDS) visit(join(REPO, 'bin', `${command}.ts`));
  return [...seen];
};

const SERVICE_PREFIX: Record<string, string> = {
  cloudformation: 'cloudformation',
  sfn: 'states',
  ssm: 'ssm',
  s3: 's3',
};
/** API calls authorised under another action's name (Service Authorization Reference). */
const IAM_ACTION_OF: Record<string, string> = {
  's3:HeadObject': 's3:GetObject',
  's3:ListObjectsV2': 's3:ListBucket',
};

/** `new XCommand(` of an SDK client package, as the IAM action it needs. */
const actionsTheCliCalls = (): string[] => {
  const called = new Set<string>();
  for (const file of cliSources()) {
    const text = readFileSync(file, 'utf8');
    const serviceOf = new Map<string, string>();
    for (const [, names, pkg] of text.matchAll(
      /import\s*\{([^}]*)\}\s*from '@aws-sdk\/client-([a-z0-9-]+)'/g,
    )) {
      for (const name of (names ?? '').split(',').map((n) => n.replace(/^\s*type\s+/, '').trim())) {
        serviceOf.set(name, SERVICE_PREFIX[pkg ?? ''] ?? `unknown-${pkg}`);
      }
    }
    for (const [, op] of text.matchAll(/new (\w+)Command\(/g)) {
      const service = serviceOf.get(`${op}Command`);
      if (service === undefined) continue;
      const action = `${service}:${op}`;
      called.add(IAM_ACTION_OF[action] ?? action);
    }
  }
  return [...called].sort();
};

describe('the operator policy grants exactly what the CLI calls', () => {
  test('the scan follows the commands into the modules that make the calls, and not into the sandbox', () => {
    const files = cliSources().map((f) => f.slice(REPO.length + 1));
    expect(files).toEqual(expect.arrayContaining(['bin/account.ts', 'bin/runs.ts', 'bin/watch.ts']));
    expect(files.filter((f) => f.startsWith('sandbox/') || f.includes('sandbox-account'))).toEqual([]);
    expect(actionsTheCliCalls()).toEqual(
      expect.arrayContaining([
        'cloudformation:DescribeStacks',
        'states:GetExecutionHistory',
        's3:ListBucket',
      ]),
    );
  });

  test('every action the CLI calls is granted, and nothing else', () => {
    const granted = [...new Set(statements().flatMap((s) => asList(s.Action)))].sort();
    expect(granted).toEqual(actionsTheCliCalls());
  });

  test('every statement allows, with no wildcard action and no NotAction / NotResource', () => {
    for (const s of statements()) {
      expect(s.Effect).toBe('Allow');
      expect(s).not.toHaveProperty('NotAction');
      expect(s).not.toHaveProperty('NotResource');
      expect(asList(s.Action).filter((a) => a.includes('*'))).toEqual([]);
      expect(asList(s.Resource)).not.toContain('*');
    }
  });

  test('it cannot stop, redrive or change anything: starting a run and answering its approval are its only writes', () => {
    const writes = statements()
      .flatMap((s) => asList(s.Action))
      .filter((a) => !/^[a-z0-9]+:(Describe|Get|List)/.test(a));
    expect([...new Set(writes)].sort()).toEqual([
      'states:SendTaskFailure',
      'states:SendTaskSuccess',
      'states:StartExecution',
    ]);
  });
});

describe('on the right resources', () => {
  test('DescribeStacks on this stack only (its id, not every stack of that name)', () => {
    expect(resourcesFor('cloudformation:DescribeStacks')).toEqual(['<AWS::StackId>']);
  });

  test('StartExecution on the replacement and fleet state machines only, ListExecutions on the replacement one', () => {
    const machine = `<${refOf(stack.orchestrator.stateMachine)}>`;
    const fleet = `<${refOf(stack.fleet.stateMachine)}>`;
    expect(resourcesFor('states:StartExecution').sort()).toEqual([fleet, machine].sort());
    expect(resourcesFor('states:ListExecutions')).toEqual([machine]);
  });

  test("DescribeExecution on the two machines' executions, GetExecutionHistory on the replacement's, and no other machine's", () => {
    const name = `<${refOf(stack.orchestrator.stateMachine)}.Name>`;
    const fleetName = `<${refOf(stack.fleet.stateMachine)}.Name>`;
    const mine = `arn:aws:states:${REGION}:${ACCOUNT}:execution:${name}:cli-web-configured-202611270200-abc`;
    const fleetRun = `arn:aws:states:${REGION}:${ACCOUNT}:execution:${fleetName}:cli-group-all-abc`;
    const other = `arn:aws:states:${REGION}:${ACCOUNT}:execution:Other-Replace:cli-web-x`;
    const history = resourcesFor('states:GetExecutionHistory');
    expect(history).toHaveLength(1);
    expect(covers(history[0] ?? '', mine)).toBe(true);
    expect(covers(history[0] ?? '', fleetRun)).toBe(false);
    const describe = resourcesFor('states:DescribeExecution');
    expect(describe).toHaveLength(2);
    for (const run of [mine, fleetRun]) expect(describe.some((r) => covers(r, run))).toBe(true);
    expect(describe.some((r) => covers(r, other))).toBe(false);
  });

  test("GetParameter on each target's configuration parameter and the approval requests, and on no other parameter", () => {
    const resources = template.toJSON().Resources;
    // A parameter's Ref is its name: read it from the template to see the ARN IAM compares.
    const named = resourcesFor('ssm:GetParameter').map((arn) =>
      arn.replace(/<(\w+)>/, (_ref, id: string) => resources[id].Properties.Name),
    );
    expect(named.sort()).toEqual([
      `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/understudy/Understudy/approvals/*`,
      `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/understudy/Understudy/targets/api`,
      `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/understudy/Understudy/targets/web`,
    ]);
  });

  test('SendTaskSuccess and SendTaskFailure on the replacement state machine only', () => {
    const machine = `<${refOf(stack.orchestrator.stateMachine)}>`;
    expect(resourcesFor('states:SendTaskSuccess')).toEqual([machine]);
    expect(resourcesFor('states:SendTaskFailure')).toEqual([machine]);
  });

  test('GetObject under runs/ and locks/ of the runs bucket only: never the certificate transfers (tls/)', () => {
    const bucket = `<${refOf(stack.runs.bucket)}.Arn>`;
    const resources = resourcesFor('s3:GetObject');
    expect(resources.sort()).toEqual([`${bucket}/locks/*`, `${bucket}/runs/*`]);
    expect(resources.some((r) => covers(r, `${bucket}/tls/exec-1/key.pem`))).toBe(false);
  });

  test('ListBucket on the runs bucket, limited to the runs/ and locks/ prefixes the CLI lists', () => {
    const list = statements().filter((s) => asList(s.Action).includes('s3:ListBucket'));
    expect(list).toHaveLength(1);
    expect(asList(list[0]?.Resource).map(flatten)).toEqual([`<${refOf(stack.runs.bucket)}.Arn>`]);
    expect(list[0]?.Condition).toEqual({ StringLike: { 's3:prefix': ['runs/*', 'locks/*'] } });
  });

  test('no KMS: the runs bucket is encrypted with S3-managed keys', () => {
    expect(
      statements()
        .flatMap((s) => asList(s.Action))
        .filter((a) => a.startsWith('kms:')),
    ).toEqual([]);
    const bucket = template.toJSON().Resources[refOf(stack.runs.bucket)].Properties;
    expect(
      bucket.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault,
    ).toEqual({
      SSEAlgorithm: 'AES256',
    });
  });
});

describe('for the user to attach', () => {
  test('a customer managed policy named <stack>-operator, attached to nothing by the stack', () => {
    const policy = operatorPolicy();
    expect(policy.ManagedPolicyName).toBe('Understudy-operator');
    expect(policy).not.toHaveProperty('Roles');
    expect(policy).not.toHaveProperty('Users');
    expect(policy).not.toHaveProperty('Groups');
  });

  test('the stack outputs its ARN as OperatorPolicyArn, saying what to attach it to', () => {
    const output = template.toJSON().Outputs.OperatorPolicyArn;
    expect(output.Value).toEqual({ Ref: refOf(stack.operator.policy) });
    expect(output.Description).toMatch(/Attach to the role/);
  });

  test('cdk-nag AwsSolutions reports nothing unacknowledged for it, and only its wildcards are acknowledged', () => {
    const checked = synthesize({}, true).stack;
    const report = new AwsSolutionsChecks().validateScope(checked.operator);
    expect(report.violations.map((v) => v.ruleName)).toEqual([]);
    const wildcards = statements()
      .flatMap((s) => asList(s.Resource).map(flatten))
      .filter((r) => r.includes('*'));
    // both machines' executions, runs/ and locks/ objects, and the per-target approval requests.
    expect(wildcards).toHaveLength(5);
  });
});
