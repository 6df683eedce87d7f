import { randomBytes, randomUUID } from 'node:crypto';
import {
  closeSync,
  constants,
  copyFileSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  type Stats,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { UNDERSTUDY_VERSION } from '../lambdas/shared/constants';
import {
  addressesFromDescribe,
  instanceFromDescribe,
  volumesFromDescribe,
} from '../lambdas/shared/tfstate/describe';
import { TfStateError, tfStateError } from '../lambdas/shared/tfstate/errors';
import { moveState } from '../lambdas/shared/tfstate/mv';
import {
  type ReconcileInput,
  type ReconcileReport,
  reconcileState,
} from '../lambdas/shared/tfstate/reconcile';
import { formatReconcileReport } from '../lambdas/shared/tfstate/report';
import type {
  LockOwner,
  RemoteClients,
  S3BackendSettings,
  StateEdit,
} from '../lambdas/shared/tfstate/s3-backend';
import { readStateUtf8, type StateV4, serialText, writeStateTo } from '../lambdas/shared/tfstate/state';

/**
 * `understudy tfstate reconcile|mv` (design §4): option parsing, file reading and printing around the
 * pure state library and the S3 backend. Every refusal is one line on stderr and exit code 1, and
 * happens before anything is written.
 */

/**
 * Terraform's own default lock timeout is 0 s (fail at once). The CLI typically runs right after a
 * replacement, when a teammate's `plan` or the workflow's own Reconcile step may hold the lock for a few
 * seconds; waiting up to a minute (with Terraform's 1 s → 16 s backoff) turns that race into a short
 * pause instead of a failure, and is still short enough that a forgotten lock is reported promptly.
 */
export const DEFAULT_LOCK_TIMEOUT_SECONDS = 60;
/** Our lock outlives the wait for it by this much, so the edit itself is covered by the lease. */
const LEASE_MARGIN_SECONDS = 300;

export interface TfstateIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

export interface TfstateDeps {
  io: TfstateIo;
  /** Clients for `s3://` states; by default the process-wide ones from lambdas/shared/clients.ts. */
  remoteClients?: (needDynamodb: boolean) => RemoteClients | Promise<RemoteClients>;
}

interface CommonOptions {
  state: string;
  out?: string;
  dryRun?: boolean;
  json?: boolean;
  workspace?: string;
  workspaceKeyPrefix?: string;
  dynamodbTable?: string;
  lockfile: boolean;
  lockTimeout: number;
  runId?: string;
}

interface ReconcileOptions extends CommonOptions {
  instance: string;
  address: string;
  instanceAddress: string;
  volumes?: string;
  expectInstance?: string;
}

type Outcome = 'written' | 'unchanged' | 'dry-run';

interface Written {
  outcome: Outcome;
  /** Where the new state went: a file, or `s3://bucket/objectKey`. */
  written: string | null;
  backup: string | null;
  serialBefore: string;
  serialAfter: string;
  digest?: string;
  warnings: readonly string[];
}

/** An edit of the whole state: the new state, or undefined when it already says what it should. */
type Edit = (state: StateV4) => StateV4 | undefined;

const processIo: TfstateIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, ' ').trim();

const isS3 = (state: string): boolean => state.startsWith('s3://');

// Terraform requires UTF-8 (a UTF-16 file written by a shell redirect is a known trap): decoding strictly
// refuses it rather than silently turning bytes into U+FFFD.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** DescribeInstances / DescribeAddresses / DescribeVolumes output as the AWS CLI prints it. */
const readDescribe = (file: string): unknown => {
  let text: string;
  try {
    text = UTF8.decode(readFileSync(file));
  } catch (error) {
    throw tfStateError('InvalidDescribeOutput', `cannot read ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw tfStateError('InvalidDescribeOutput', `${file} is not JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
};

/** `os.userInfo()` throws for a uid without a passwd entry (common in containers). */
const lockWho = (): string => {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = process.env.USER ?? process.env.USERNAME ?? 'unknown';
  }
  return `${user}@${hostname()}`;
};

const sameFile = (a: Stats, b: Stats): boolean =>
  a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;

/** Chunks are gathered up to this many UTF-16 code units and written as one UTF-8 buffer. */
const WRITE_BATCH = 1 << 20;

/** Writes all of `bytes` (a write to a regular file may in principle be short). */
const writeFully = (fd: number, bytes: Buffer): void => {
  for (let offset = 0; offset < bytes.length; ) offset += writeSync(fd, bytes, offset);
};

/**
 * Writes the state to `target` so that a reader (or a crash) sees the old file or the new one, never a
 * torn one: a temporary file in the same directory, flushed, then renamed over the target. The
 * target's permission bits are kept (a state holds secrets and is often 0600). The state goes to the
 * file resource by resource: its whole text (60 MB of UTF-16 for a 30 MB state) is never in memory.
 */
const writeAtomically = (target: string, state: StateV4): void => {
  let mode = 0o666;
  try {
    mode = statSync(target).mode & 0o777;
  } catch {
    // A new file: the default mode, narrowed by the umask.
  }
  const temp = join(
    dirname(target),
    `.${basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
  );
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    let batch: string[] = [];
    let batched = 0;
    const flush = () => {
      writeFully(fd, Buffer.from(batch.join(''), 'utf8'));
      batch = [];
      batched = 0;
    };
    writeStateTo(state, (chunk) => {
      batch.push(chunk);
      batched += chunk.length;
      if (batched >= WRITE_BATCH) flush();
    });
    flush();
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(temp);
    throw error;
  }
  closeSync(fd);
  renameSync(temp, target);
};

/**
 * Terraform's local backend keeps the previous state as `terraform.tfstate.backup`, overwritten on every
 * write. We name the copy after the serial it holds (`<file>.<serial>.backup`), so a second edit never
 * destroys the backup of the first; an existing backup of the same serial must hold the same bytes.
 * The copy is made by the kernel (no second 30 MB buffer in memory) and keeps the file's mode.
 */
const writeBackup = (file: string, read: Stats, serial: string): string => {
  const backup = `${file}.${serial}.backup`;
  try {
    copyFileSync(file, backup, constants.COPYFILE_EXCL);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw tfStateError('BackupFailed', `cannot write the backup ${backup}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (!readFileSync(backup).equals(readFileSync(file))) {
      throw tfStateError(
        'BackupFailed',
        `${backup} already exists with other content for serial ${serial}; move it away and retry`,
      );
    }
    return backup;
  }
  // Someone else (a `terraform apply` without locking) wrote the file since we read it: the copy is not
  // of the state we edited, and what we did not read must never be overwritten.
  if (!sameFile(read, statSync(file))) {
    unlinkSync(backup);
    throw tfStateError(
      'EtagChanged',
      `${file} changed on disk while it was being edited; run the command again`,
    );
  }
  const fd = openSync(backup, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return backup;
};

/**
 * The state in a file, and the file's identity when read. The bytes stay local to this function, so the
 * garbage collector can reclaim them before the state is written; readStateUtf8 refuses bytes that are
 * not UTF-8 (Terraform requires UTF-8; a UTF-16 file written by a shell redirect is a known trap).
 */
const readLocalState = (file: string): { state: StateV4; read: Stats } => {
  let read: Stats;
  let bytes: Buffer;
  try {
    read = statSync(file);
    bytes = readFileSync(file);
  } catch (error) {
    throw tfStateError('StateNotFound', `cannot read the state ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return { state: readStateUtf8(bytes, file), read };
};

/** Local file: read, edit, and write (in place with a backup, or to `--out`) only when changed. */
const editLocal = (options: CommonOptions, edit: Edit): Written => {
  const file = options.state;
  const { state, read } = readLocalState(file);
  const serialBefore = serialText(state.serial);
  const edited = edit(state);
  if (edited === undefined) {
    return {
      outcome: 'unchanged',
      written: null,
      backup: null,
      serialBefore,
      serialAfter: serialBefore,
      warnings: [],
    };
  }
  const serialAfter = serialText(edited.serial);
  if (options.dryRun) {
    return { outcome: 'dry-run', written: null, backup: null, serialBefore, serialAfter, warnings: [] };
  }
  const target = options.out ?? file;
  const backup = resolve(target) === resolve(file) ? writeBackup(file, read, serialBefore) : null;
  writeAtomically(target, edited);
  return { outcome: 'written', written: target, backup, serialBefore, serialAfter, warnings: [] };
};

const defaultRemoteClients = async (needDynamodb: boolean): Promise<RemoteClients> => {
  const { dynamodbClient, s3Client } = await import('../lambdas/shared/clients');
  return needDynamodb ? { s3: s3Client(), dynamodb: dynamodbClient() } : { s3: s3Client() };
};

/** `s3://bucket/key`: locks, backup, conditional write and digest are the backend library's job. */
const editRemote = async (
  options: CommonOptions,
  operation: string,
  edit: Edit,
  deps: TfstateDeps,
): Promise<Written> => {
  // Loaded only for s3:// states, so local edits (and the benchmark) do not load the AWS SDK.
  const { parseS3StateUrl, updateRemoteState } = await import('../lambdas/shared/tfstate/s3-backend');
  const { bucket, key } = parseS3StateUrl(options.state);
  const settings: S3BackendSettings = {
    bucket,
    key,
    ...(options.workspace !== undefined ? { workspace: options.workspace } : {}),
    ...(options.workspaceKeyPrefix !== undefined ? { workspaceKeyPrefix: options.workspaceKeyPrefix } : {}),
    ...(options.dynamodbTable !== undefined ? { dynamodbTable: options.dynamodbTable } : {}),
    useLockfile: options.lockfile,
    lockTimeoutSeconds: options.lockTimeout,
  };
  const owner: LockOwner = {
    // A workflow run's id lets its by-hand command re-enter the lock that run left and recognise its
    // own write; otherwise each invocation is a run of its own, like a Terraform command.
    runId: options.runId ?? randomUUID(),
    operation,
    who: lockWho(),
    version: UNDERSTUDY_VERSION,
    leaseSeconds: options.lockTimeout + LEASE_MARGIN_SECONDS,
  };
  // With --out the remote object is only read (dry run) and the edited state goes to the local file.
  let edited: StateV4 | undefined;
  const remoteEdit: StateEdit = (current) => {
    edited = edit(current);
    return edited;
  };
  const clients = await (deps.remoteClients ?? defaultRemoteClients)(options.dynamodbTable !== undefined);
  const result = await updateRemoteState(clients, settings, owner, remoteEdit, {
    dryRun: options.dryRun === true || options.out !== undefined,
  });
  const common = {
    serialBefore: result.serialBefore,
    serialAfter: result.serialAfter,
    warnings: result.warnings,
    ...(result.digest !== undefined ? { digest: result.digest } : {}),
  };
  if (options.out !== undefined && !options.dryRun && result.outcome === 'dry-run' && edited) {
    writeAtomically(options.out, edited);
    return { outcome: 'written', written: options.out, backup: null, ...common };
  }
  return {
    outcome: result.outcome,
    written: result.outcome === 'written' ? `s3://${result.bucket}/${result.objectKey}` : null,
    backup: result.backupKey !== undefined ? `s3://${result.bucket}/${result.backupKey}` : null,
    ...common,
  };
};

const editState = (options: CommonOptions, operation: string, edit: Edit, deps: TfstateDeps) =>
  isS3(options.state)
    ? editRemote(options, operation, edit, deps)
    : Promise.resolve(editLocal(options, edit));

const describeWrite = (options: CommonOptions, result: Written): string => {
  switch (result.outcome) {
    case 'unchanged':
      return `nothing to write: ${options.state} is unchanged (serial ${result.serialBefore})`;
    case 'dry-run':
      return `dry run: would write serial ${result.serialAfter} (now ${result.serialBefore}); nothing written`;
    case 'written':
      return [
        `wrote ${result.written} (serial ${result.serialBefore} -> ${result.serialAfter})`,
        result.backup ? `; backup: ${result.backup}` : '',
        result.digest ? `; digest: ${result.digest}` : '',
      ].join('');
  }
};

const printResult = (
  deps: TfstateDeps,
  options: CommonOptions,
  json: Record<string, unknown>,
  human: string[],
) => {
  if (options.json) deps.io.stdout(`${JSON.stringify(json, null, 2)}\n`);
  else deps.io.stdout(`${human.join('\n')}\n`);
};

const printWarnings = (deps: TfstateDeps, warnings: readonly string[]) => {
  for (const warning of warnings) deps.io.stderr(`warning: ${oneLine(warning)}\n`);
};

const runReconcile = async (options: ReconcileOptions, deps: TfstateDeps): Promise<void> => {
  // The describe files are read and checked before the state is, so a bad file never takes a lock.
  const instance = instanceFromDescribe(readDescribe(options.instance), options.instance);
  const addresses = addressesFromDescribe(readDescribe(options.address), options.address);
  const volumes = options.volumes
    ? volumesFromDescribe(readDescribe(options.volumes), options.volumes)
    : undefined;
  const input: ReconcileInput = {
    instanceAddress: options.instanceAddress,
    instance,
    addresses,
    ...(volumes ? { volumes } : {}),
    ...(options.expectInstance !== undefined ? { expectInstanceId: options.expectInstance } : {}),
  };
  let report: ReconcileReport | undefined;
  const result = await editState(
    options,
    'understudy-reconcile',
    (state) => {
      const reconciled = reconcileState(state, input);
      report = reconciled.report;
      return reconciled.changed ? reconciled.state : undefined;
    },
    deps,
  );
  const already = result.outcome === 'unchanged';
  printWarnings(deps, result.warnings);
  printResult(
    deps,
    options,
    {
      command: 'reconcile',
      state: options.state,
      ...result,
      alreadyReconciled: already,
      report: report ?? null,
    },
    [
      ...(report ? [formatReconcileReport(report).trimEnd()] : []),
      already
        ? `already reconciled: ${options.instanceAddress} is ${report?.newInstanceId ?? instance.InstanceId}; ${describeWrite(options, result)}`
        : describeWrite(options, result),
    ],
  );
};

const runMv = async (from: string, to: string, options: CommonOptions, deps: TfstateDeps): Promise<void> => {
  let moved: readonly { readonly from: string; readonly to: string }[] = [];
  const result = await editState(
    options,
    'state-mv',
    (state) => {
      const out = moveState(state, from, to);
      moved = out.moved;
      return moved.length === 0 ? undefined : out.state;
    },
    deps,
  );
  printWarnings(deps, result.warnings);
  printResult(deps, options, { command: 'mv', state: options.state, ...result, moved }, [
    ...moved.map((m) => `Move "${m.from}" to "${m.to}"`),
    `${result.outcome === 'dry-run' ? 'Would move' : 'Successfully moved'} ${moved.length} object(s).`,
    describeWrite(options, result),
  ]);
};

/** Refusals (TfStateError) and unexpected failures alike: one line on stderr, and with --json a result. */
const fail = (deps: TfstateDeps, command: string, json: boolean | undefined, error: unknown): number => {
  const reason = error instanceof TfStateError ? error.reason : error instanceof Error ? error.name : 'Error';
  const message = oneLine(error instanceof Error ? error.message : String(error));
  deps.io.stderr(`${error instanceof TfStateError ? 'refused' : 'error'}: ${message}\n`);
  if (json) deps.io.stdout(`${JSON.stringify({ command, outcome: 'refused', reason, message }, null, 2)}\n`);
  return 1;
};

const lockTimeout = (value: string): number => {
  const seconds = Number(value);
  if (!Number.isInteger(seconds) || seconds < 0)
    throw new InvalidArgumentError('give whole seconds, 0 or more');
  return seconds;
};

const withStateOptions = (command: Command): Command =>
  command
    .requiredOption('--state <file|s3://bucket/key>', 'the state: a local file, or the S3 backend object')
    .option('--out <file>', 'write the new state to this file instead of back to --state')
    .option('--dry-run', 'compute and print the result; write nothing')
    .option('--json', 'print the machine-readable result')
    .addOption(new Option('--workspace <name>', 's3: Terraform workspace (object env:/<name>/<key>)'))
    .addOption(
      new Option('--workspace-key-prefix <prefix>', 's3: the backend workspace_key_prefix (default env:)'),
    )
    .addOption(
      new Option('--dynamodb-table <table>', 's3: the backend dynamodb_table (lock item and -md5 digest)'),
    )
    .addOption(new Option('--no-lockfile', 's3: the backend does not use use_lockfile (<key>.tflock)'))
    .addOption(
      new Option('--lock-timeout <seconds>', 's3: how long to wait for a lock held by someone else')
        .argParser(lockTimeout)
        .default(DEFAULT_LOCK_TIMEOUT_SECONDS),
    )
    .addOption(
      new Option(
        '--run-id <id>',
        's3: continue the Understudy run with this id (the execution ARN a "state not reconciled" message names): its lock and its own write are recognised',
      ),
    );

/**
 * The `tfstate` command tree. Output goes through `deps.io`; the exit code of the last action is
 * reported through `onExit` (the CLI sets process.exitCode with it).
 */
export const tfstateCommand = (
  deps: TfstateDeps = { io: processIo },
  onExit: (code: number) => void = (code) => {
    process.exitCode = code;
  },
  configure: (command: Command) => Command = (command) => command,
): Command => {
  const tfstate = configure(
    new Command('tfstate')
      .description('update a Terraform state (local file or S3 backend) the way Terraform itself would')
      .configureOutput({ writeOut: deps.io.stdout, writeErr: deps.io.stderr }),
  );
  const action =
    <A extends unknown[]>(name: string, run: (...args: A) => Promise<void>, json: (...args: A) => boolean) =>
    async (...args: A) => {
      try {
        await run(...args);
        onExit(0);
      } catch (error) {
        onExit(fail(deps, name, json(...args), error));
      }
    };
  withStateOptions(
    tfstate
      .command('reconcile')
      .description('point the state at the new instance (and its Elastic IP), serial + 1')
      .requiredOption('--instance <file>', 'output of aws ec2 describe-instances for the new instance')
      .requiredOption('--address <file>', 'output of aws ec2 describe-addresses for the Elastic IP')
      .requiredOption('--instance-address <address>', 'Terraform address of the aws_instance')
      .option('--volumes <file>', 'output of aws ec2 describe-volumes for the new instance')
      .option('--expect-instance <id>', 'refuse unless the state names this (old) instance'),
  ).action(
    action(
      'reconcile',
      (options: ReconcileOptions) => runReconcile(options, deps),
      (options) => options.json === true,
    ),
  );
  withStateOptions(
    tfstate
      .command('mv')
      .description('terraform state mv: move a module, resource or instance to another address')
      .argument('<from>', 'source address')
      .argument('<to>', 'destination address'),
  ).action(
    action(
      'mv',
      (from: string, to: string, options: CommonOptions) => runMv(from, to, options, deps),
      (_from, _to, options) => options.json === true,
    ),
  );
  return tfstate;
};

/**
 * Runs `understudy tfstate <argv...>` in this process and returns what it printed: the entry point of
 * the tests and of the benchmark bundle.
 */
export const runTfstate = async (
  argv: readonly string[],
  deps: Partial<TfstateDeps> = {},
): Promise<{ code: number; stdout: string; stderr: string }> => {
  let stdout = '';
  let stderr = '';
  const io: TfstateIo = deps.io ?? {
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
  };
  let code = 0;
  const program = new Command('understudy')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  program.addCommand(
    tfstateCommand(
      { ...deps, io },
      (exit) => {
        code = exit;
      },
      (command) => command.exitOverride(),
    ),
  );
  try {
    await program.parseAsync(['tfstate', ...argv], { from: 'user' });
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    code = error.exitCode;
  }
  return { code, stdout, stderr };
};
