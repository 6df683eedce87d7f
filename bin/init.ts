import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  type Address,
  DescribeAddressesCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  type EC2Client,
  type Instance,
} from '@aws-sdk/client-ec2';
import type { S3Client } from '@aws-sdk/client-s3';
import { Command, Option } from 'commander';
import {
  ConfigError,
  formatIssues,
  issuePath,
  parseConfig,
  type TargetConfig,
  TargetNameSchema,
  TargetSchema,
} from '../lambdas/shared/config';
import { TfStateError } from '../lambdas/shared/tfstate/errors';
import { instanceAddressOf } from '../lambdas/shared/tfstate/lookup';
import type { StateV4 } from '../lambdas/shared/tfstate/state';
import { awsFailure } from './account';
import { printJson, reportError, withAccount } from './operator';
import { type CliIo, EXIT, type ExitCode, InputError } from './terminal';

/**
 * `understudy init <name> --eip <allocation>`: writes a target's configuration from what already runs.
 * The Elastic IP leads to the instance behind it (its image, type, subnet, volumes); a Terraform state,
 * when given, leads to the `aws_instance` address that holds that instance. Only Describe and Get calls
 * are made: onboarding never changes the account. The target is validated with the config schema
 * itself, so what is printed or written is what `config validate` and `cdk deploy` accept.
 */

export interface InitOptions {
  readonly eip: string;
  readonly domain?: string;
  readonly state?: string;
  /** With a local `--state` file: the S3 backend the config must name (`terraform.state`). */
  readonly backend?: string;
  readonly workspace?: string;
  readonly stateRegion?: string;
  readonly lockTable?: string;
  readonly imageParameter?: string;
  readonly build?: 'al2023' | 'debian-12';
  readonly dataVolumes?: 'refuse' | 'fresh';
  readonly write?: string;
  readonly force?: boolean;
  readonly json?: boolean;
  readonly sandbox?: boolean;
}

/** What was read from the account, printed with the target so the operator can check it. */
export interface Discovered {
  readonly allocationId: string;
  readonly publicIp: string | null;
  readonly instanceId: string;
  readonly instanceState: string | null;
  readonly imageId: string | null;
  readonly architecture: string | null;
  readonly instanceType: string | null;
  readonly subnetId: string | null;
  /** Volumes besides the root volume (device and volume id). */
  readonly extraVolumes: readonly { readonly device: string; readonly volumeId: string | null }[];
  readonly terraformAddress: string | null;
}

/** `init --json`: the document. */
export interface InitDocument {
  readonly command: 'init';
  readonly target: TargetConfig;
  readonly discovered: Discovered;
  readonly warnings: readonly string[];
  /** The config file the target went to (`--write`), or null when it was only printed. */
  readonly written: string | null;
  /** With `--write`: whether a target of the same name was replaced (`--force`). */
  readonly replaced: boolean;
}

/** The flag behind each field of the target, so a schema refusal names what to change. */
const FLAG_OF: readonly [RegExp, string][] = [
  [/^name$/, '<name>'],
  [/^allocationId$/, '--eip'],
  [/^domain$/, '--domain'],
  [/^image\.ssmParameter/, '--image-parameter'],
  [/^image\.build/, '--build'],
  [/^image/, '--image-parameter'],
  [/^terraform\.dynamodbTable/, '--lock-table'],
  [/^terraform\.region/, '--state-region'],
  [/^terraform\.workspace/, '--workspace'],
  [/^terraform\.state/, '--backend'],
  [/^terraform/, '--state'],
  [/^dataVolumes/, '--data-volumes'],
];

const flagOf = (path: string): string => FLAG_OF.find(([pattern]) => pattern.test(path))?.[1] ?? path;

const ALLOCATION_ID = /^eipalloc-[0-9a-f]{8,17}$/;
const STATE_REGION = /^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$/;

/** Input checks that need no AWS call, so a typo never reaches the account. */
export const checkInitInput = (name: string, options: InitOptions): void => {
  const named = TargetNameSchema.safeParse(name);
  if (!named.success) {
    throw new InputError('<name>', `${named.error.issues[0]?.message ?? 'not a target name'}`);
  }
  if (!ALLOCATION_ID.test(options.eip)) {
    throw new InputError('--eip', `use the Elastic IP's allocation id, such as eipalloc-0123456789abcdef0`);
  }
  if (options.domain === undefined) {
    throw new InputError(
      '--domain',
      'name the DNS name the server answers to (the health check and the certificate use it), e.g. --domain www.example.com',
    );
  }
  if (options.imageParameter !== undefined && options.build !== undefined) {
    throw new InputError('--build', 'choose one image source: --image-parameter or --build, not both');
  }
  if (options.state === undefined) {
    for (const [flag, value] of [
      ['--backend', options.backend],
      ['--workspace', options.workspace],
      ['--state-region', options.stateRegion],
      ['--lock-table', options.lockTable],
    ] as const) {
      if (value !== undefined)
        throw new InputError(flag, 'only applies with --state: add --state or drop it');
    }
  } else if (options.state.startsWith('s3://')) {
    if (options.backend !== undefined && options.backend !== options.state) {
      throw new InputError('--backend', 'with an s3:// --state, the backend is that URL: drop --backend');
    }
  } else if (options.backend === undefined) {
    throw new InputError(
      '--backend',
      `the config names the S3 backend, not a local file: add --backend s3://<bucket>/<key> (the backend's bucket and key) to --state ${options.state}`,
    );
  }
  if (options.stateRegion !== undefined && !STATE_REGION.test(options.stateRegion)) {
    throw new InputError('--state-region', 'use an AWS region name such as eu-west-1');
  }
  if (options.force && options.write === undefined) {
    throw new InputError('--force', 'only applies with --write <file>');
  }
};

interface AccountReader {
  readonly ec2: EC2Client;
  /** The S3 backend's clients in `region`, or in the default region. */
  backend(region: string | undefined): { s3: S3Client; dynamodb: DynamoDBClient };
  /** The region the default clients resolve to. */
  region(): Promise<string>;
}

const defaultReader = async (): Promise<AccountReader> => {
  const { ec2Client, terraformBackendClients } = await import('../lambdas/shared/clients');
  const ec2 = ec2Client();
  return {
    ec2,
    backend: terraformBackendClients,
    region: async () => ec2.config.region(),
  };
};

const instanceBehind = async (reader: AccountReader, allocationId: string) => {
  let address: Address | undefined;
  try {
    const answer = await reader.ec2.send(new DescribeAddressesCommand({ AllocationIds: [allocationId] }));
    address = answer.Addresses?.[0];
  } catch (error) {
    if ((error as Error)?.name === 'InvalidAllocationID.NotFound') {
      throw new InputError(
        '--eip',
        `no Elastic IP ${allocationId} in this account and region: check the allocation id, AWS_PROFILE and AWS_REGION`,
      );
    }
    throw awsFailure(`DescribeAddresses ${allocationId}`, error);
  }
  if (!address) {
    throw new InputError('--eip', `no Elastic IP ${allocationId} in this account and region`);
  }
  if (!address.InstanceId) {
    throw new InputError(
      '--eip',
      `${allocationId} (${address.PublicIp ?? 'no address'}) is not associated with an instance: associate it with the server to onboard first`,
    );
  }
  let instance: Instance | undefined;
  try {
    const answer = await reader.ec2.send(new DescribeInstancesCommand({ InstanceIds: [address.InstanceId] }));
    instance = answer.Reservations?.flatMap((r) => r.Instances ?? [])[0];
  } catch (error) {
    throw awsFailure(`DescribeInstances ${address.InstanceId}`, error);
  }
  if (!instance) {
    throw new InputError(
      '--eip',
      `${allocationId} points at ${address.InstanceId}, which DescribeInstances does not know`,
    );
  }
  return { address, instance };
};

/** The AMI's architecture; the instance's own when the AMI is no longer described (deregistered, shared). */
const architectureOf = async (reader: AccountReader, instance: Instance): Promise<string | null> => {
  if (!instance.ImageId) return instance.Architecture ?? null;
  try {
    const answer = await reader.ec2.send(new DescribeImagesCommand({ ImageIds: [instance.ImageId] }));
    return answer.Images?.[0]?.Architecture ?? instance.Architecture ?? null;
  } catch (error) {
    if (/^InvalidAMIID\./.test((error as Error)?.name ?? '')) return instance.Architecture ?? null;
    throw awsFailure(`DescribeImages ${instance.ImageId}`, error);
  }
};

/**
 * Every `aws_instance` object (not deposed) whose id is the instance, as `terraform state list` prints
 * its address. A state from Terraform 0.11 upgraded in place keeps `attributes_flat`: read there too.
 */
export const addressesOfInstance = (state: StateV4, instanceId: string): string[] =>
  state.resources
    .filter((resource) => resource.mode === 'managed' && resource.type === 'aws_instance')
    .flatMap((resource) =>
      resource.instances
        .filter(
          (object) =>
            object.deposed === undefined &&
            (object.attributes?.id ?? object.attributes_flat?.id) === instanceId,
        )
        .map((object) => instanceAddressOf(resource, object)),
    );

const readState = async (
  reader: AccountReader,
  options: InitOptions,
  source: string,
): Promise<{ state: StateV4; region: string | undefined }> => {
  try {
    if (!source.startsWith('s3://')) {
      const { readStateUtf8 } = await import('../lambdas/shared/tfstate/state');
      let bytes: Buffer;
      try {
        bytes = readFileSync(source);
      } catch (error) {
        throw new InputError('--state', `cannot read ${source}: ${(error as Error).message}`);
      }
      return { state: readStateUtf8(bytes, source), region: options.stateRegion };
    }
    const { parseS3StateUrl, readRemoteState } = await import('../lambdas/shared/tfstate/s3-backend');
    const { bucket, key } = parseS3StateUrl(source);
    const backend = reader.backend(options.stateRegion);
    const read = await readRemoteState(options.lockTable !== undefined ? backend : { s3: backend.s3 }, {
      bucket,
      key,
      ...(options.workspace !== undefined ? { workspace: options.workspace } : {}),
      ...(options.lockTable !== undefined ? { dynamodbTable: options.lockTable } : {}),
      useLockfile: true,
      lockTimeoutSeconds: 0,
    });
    return { state: read.state, region: options.stateRegion ?? (await reader.region()) };
  } catch (error) {
    if (error instanceof InputError) throw error;
    // A refusal of the state itself (no object, not a state, a digest that does not match) is about
    // what --state names; anything else is the account answering (credentials, permissions).
    if (error instanceof TfStateError)
      throw new InputError('--state', error.message.replace(/\s*\n\s*/g, ' '));
    throw awsFailure(`reading the Terraform state ${source}`, error);
  }
};

const terraformBlock = async (
  reader: AccountReader,
  options: InitOptions,
  instanceId: string,
): Promise<{ block: Record<string, unknown>; address: string } | undefined> => {
  if (options.state === undefined) return undefined;
  const { state, region } = await readState(reader, options, options.state);
  const addresses = addressesOfInstance(state, instanceId);
  if (addresses.length === 0) {
    throw new InputError(
      '--state',
      `no aws_instance in ${options.state} has the id ${instanceId}: point --state at the state that manages this server (and --workspace at its workspace), or leave --state out if Terraform does not manage it`,
    );
  }
  if (addresses.length > 1) {
    throw new InputError(
      '--state',
      `several aws_instance addresses in ${options.state} hold ${instanceId} (${addresses.join(', ')}): remove the stale ones with terraform state rm, then run init again`,
    );
  }
  const address = addresses[0] as string;
  const block: Record<string, unknown> = {
    state: options.backend ?? options.state,
    ...(options.workspace !== undefined ? { workspace: options.workspace } : {}),
    instanceAddress: address,
    ...(region !== undefined ? { region } : {}),
    useLockfile: true,
    ...(options.lockTable !== undefined ? { dynamodbTable: options.lockTable } : {}),
  };
  return { block, address };
};

/** The target, held to the config schema: a refusal names the flag to change. */
export const validTarget = (raw: Record<string, unknown>): TargetConfig => {
  const parsed = TargetSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = issue ? issuePath(issue.path) : '(root)';
  const message = formatIssues(parsed.error)[0] ?? parsed.error.message;
  throw new InputError(flagOf(path), message);
};

/** Writes `text` so a reader sees the old file or the new one, never half of it; the mode is kept. */
const writeAtomically = (file: string, text: string): void => {
  let mode = 0o644;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    // A new file.
  }
  const temp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  writeFileSync(temp, text, { mode, flag: 'wx' });
  try {
    renameSync(temp, file);
  } catch (error) {
    unlinkSync(temp);
    throw error;
  }
};

/**
 * Adds the target to the config file (creating it when missing), or replaces the target of the same
 * name with `--force`. The whole file is validated before it is written, so a write never leaves a
 * config that `cdk deploy` would refuse.
 */
const writeTarget = (file: string, target: TargetConfig, force: boolean): { replaced: boolean } => {
  let raw: Record<string, unknown> = { targets: [] };
  if (existsSync(file)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (error) {
      throw new InputError(
        '--write',
        `${file} is not valid JSON (${(error as Error).message}): fix it first`,
      );
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new InputError('--write', `${file} is not a config file (a JSON object with "targets")`);
    }
    raw = parsed as Record<string, unknown>;
  }
  const targets = raw.targets === undefined ? [] : raw.targets;
  if (!Array.isArray(targets)) {
    throw new InputError('--write', `"targets" in ${file} is not a list: fix the file first`);
  }
  const index = targets.findIndex(
    (t: unknown) => typeof t === 'object' && t !== null && (t as { name?: unknown }).name === target.name,
  );
  if (index >= 0 && !force) {
    throw new InputError(
      '--force',
      `${file} already has a target "${target.name}": add --force to replace it, or choose another name`,
    );
  }
  const next = index >= 0 ? targets.map((t, i) => (i === index ? target : t)) : [...targets, target];
  const config = { ...raw, targets: next };
  try {
    parseConfig(config, file);
  } catch (error) {
    if (error instanceof ConfigError) {
      throw new InputError(
        '--write',
        `with this target ${file} would be invalid, so it was not written:\n  ${error.problems.join('\n  ')}`,
      );
    }
    throw error;
  }
  writeAtomically(file, `${JSON.stringify(config, null, 2)}\n`);
  return { replaced: index >= 0 };
};

/** The onboarding itself, against whatever account `reader` reads. */
export const initTarget = async (
  name: string,
  options: InitOptions,
  reader: AccountReader,
): Promise<InitDocument> => {
  const { address, instance } = await instanceBehind(reader, options.eip);
  const instanceId = instance.InstanceId ?? '';
  const architecture = await architectureOf(reader, instance);
  const extraVolumes = (instance.BlockDeviceMappings ?? [])
    .filter((mapping) => mapping.DeviceName !== instance.RootDeviceName)
    .map((mapping) => ({ device: mapping.DeviceName ?? '?', volumeId: mapping.Ebs?.VolumeId ?? null }));
  const terraform = await terraformBlock(reader, options, instanceId);

  const warnings: string[] = [];
  let image: Record<string, unknown>;
  if (options.imageParameter !== undefined) {
    image = { ssmParameter: options.imageParameter };
  } else if (options.build !== undefined) {
    image = {
      build: {
        parentImage: options.build,
        ...(architecture === 'x86_64' || architecture === 'arm64' ? { architecture } : {}),
        ...(instance.InstanceType ? { instanceTypes: [instance.InstanceType] } : {}),
      },
    };
    if (architecture !== 'x86_64' && architecture !== 'arm64') {
      warnings.push(
        `image.build.architecture: the server's architecture (${architecture ?? 'unknown'}) is not one Understudy builds; the default x86_64 was kept`,
      );
    }
  } else {
    image = { imageId: instance.ImageId };
    warnings.push(
      `image: set to the AMI the server runs now (${instance.ImageId ?? 'unknown'}), so a replacement changes nothing; point it at your golden image (image.ssmParameter, --image-parameter) or let Understudy build one (image.build, --build)`,
    );
  }
  if (extraVolumes.length > 0 && options.dataVolumes === undefined) {
    warnings.push(
      `dataVolumes: ${instanceId} has ${extraVolumes.length} volume(s) besides the root one (${extraVolumes
        .map((v) => `${v.device} ${v.volumeId ?? ''}`.trim())
        .join(
          ', ',
        )}); with "refuse" (kept) every replacement is refused, set "fresh" (--data-volumes fresh) only if the new server may start with empty ones`,
    );
  }
  if (options.lockTable === undefined && terraform) {
    warnings.push(
      'terraform.dynamodbTable: not set; if the backend has dynamodb_table, add it (--lock-table) so Understudy takes the same lock and keeps its digest in step',
    );
  }
  if (instance.State?.Name !== undefined && instance.State.Name !== 'running') {
    warnings.push(`${instanceId} is ${instance.State.Name}: replacements start from a running server`);
  }

  const target = validTarget({
    name,
    allocationId: options.eip,
    domain: options.domain,
    image,
    ...(options.dataVolumes !== undefined ? { dataVolumes: options.dataVolumes } : {}),
    ...(terraform ? { terraform: terraform.block } : {}),
  });
  const written =
    options.write !== undefined ? writeTarget(options.write, target, options.force === true) : undefined;
  return {
    command: 'init',
    target,
    discovered: {
      allocationId: options.eip,
      publicIp: address.PublicIp ?? null,
      instanceId,
      instanceState: instance.State?.Name ?? null,
      imageId: instance.ImageId ?? null,
      architecture,
      instanceType: instance.InstanceType ?? null,
      subnetId: instance.SubnetId ?? null,
      extraVolumes,
      terraformAddress: terraform?.address ?? null,
    },
    warnings,
    written: options.write ?? null,
    replaced: written?.replaced ?? false,
  };
};

const printHuman = (io: CliIo, doc: InitDocument): void => {
  const d = doc.discovered;
  const lines = [
    `${d.allocationId} (${d.publicIp ?? '-'}) → ${d.instanceId} (${d.instanceState ?? '-'})`,
    `  image       ${d.imageId ?? '-'} (${d.architecture ?? '-'}), ${d.instanceType ?? '-'} in ${d.subnetId ?? '-'}`,
    `  volumes     ${d.extraVolumes.length === 0 ? 'root only' : d.extraVolumes.map((v) => v.device).join(', ')}`,
    `  terraform   ${d.terraformAddress ?? 'not managed (no --state)'}`,
    `  tls         ${doc.target.tls.mode ?? `restore (preflight checks ${doc.target.domain} serves a valid certificate)`}`,
  ];
  // The notes go to stderr so stdout is the target alone, ready to paste or redirect.
  io.stderr.write(`${lines.join('\n')}\n`);
  for (const warning of doc.warnings) io.stderr.write(`warning: ${warning}\n`);
  if (doc.written !== null) {
    io.stdout.write(`${doc.replaced ? 'replaced' : 'added'} target ${doc.target.name} in ${doc.written}\n`);
  } else {
    io.stdout.write(`${JSON.stringify(doc.target, null, 2)}\n`);
  }
};

export const runInit = async (name: string, options: InitOptions, io: CliIo): Promise<ExitCode> => {
  const json = options.json === true;
  try {
    checkInitInput(name, options);
  } catch (error) {
    return reportError(io, 'init', json, error);
  }
  return withAccount('init', options.sandbox, io, json, async (account) => {
    if (account && !json) {
      io.stderr.write(
        `sandbox account ${account.sandbox.accountId} in ${account.sandbox.region}: the web server is behind ${account.deployment.seeded.allocationId}${account.deployment.target.terraform ? `, its state at ${account.deployment.target.terraform.state}` : ''}\n`,
      );
    }
    const doc = await initTarget(name, options, await defaultReader());
    if (json) printJson(io, doc);
    else printHuman(io, doc);
    return EXIT.ok;
  });
};

export const initCommand = (io: CliIo, onExit: (code: ExitCode) => void): Command =>
  new Command('init')
    .description(
      "write a target's configuration from an existing Elastic IP, the instance behind it and its Terraform state",
    )
    .argument('<name>', 'the new target name (1-32 lowercase letters, digits or dashes)')
    .requiredOption('--eip <allocation-id>', "the Elastic IP's allocation id (eipalloc-...)")
    .option('--domain <host>', 'the DNS name the server answers to (required by the config)')
    .option('--state <file|s3://bucket/key>', 'the Terraform state that manages the server')
    .option('--backend <s3://bucket/key>', "with a local --state file: the S3 backend's bucket and key")
    .option('--workspace <name>', 'the Terraform workspace of the state (default: default)')
    .option('--state-region <region>', "the backend's region, when not the current one")
    .option('--lock-table <table>', "the backend's dynamodb_table")
    .option('--image-parameter <name>', "image source: the SSM parameter holding the golden image's AMI id")
    .addOption(
      new Option('--build <parent>', 'image source: Understudy builds the image from this parent').choices([
        'al2023',
        'debian-12',
      ]),
    )
    .addOption(
      new Option('--data-volumes <policy>', 'what a replacement does with extra volumes').choices([
        'refuse',
        'fresh',
      ]),
    )
    .option('--write <file>', 'add the target to this config file instead of printing it')
    .option('--force', 'with --write: replace a target of the same name')
    .addOption(new Option('--json', 'print one JSON document (target, what was found, warnings)'))
    .addOption(
      new Option('--sandbox', 'run against a fresh simulated account seeded like the demo (offline)'),
    )
    .action(async (name: string, options: InitOptions) => {
      onExit(await runInit(name, options, io));
    });
