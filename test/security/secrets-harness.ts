import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { format } from 'node:util';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { GetCommandInvocationCommand, ListCommandsCommand } from '@aws-sdk/client-ssm';
import { clients } from '../../lambdas/shared/clients';
import { deploy, SANDBOX_ENV } from '../../sandbox/demo';
import { Sandbox } from '../../sandbox/index';
import { runDemo, sandboxFactory } from '../../sandbox/run-demo';
import { DEMO_TERRAFORM } from '../../sandbox/terraform';
import { LocalWorkflow, sourceHandlers, type WorkflowRun } from '../../sandbox/workflow';

/**
 * Issue 5 scope 5: what a user of Understudy can read after a run (function logs, notifications, run
 * records, events on the bus, Run Command output, execution history, the CLI's own output) against the
 * secrets the same run handled, both taken from the sandbox rather than written down here, so the
 * check follows the code as it changes.
 */

export type SecretKind = 'task token' | 'user data' | 'private key' | 'presigned URL';
export const SECRET_KINDS: readonly SecretKind[] = [
  'task token',
  'user data',
  'private key',
  'presigned URL',
];

/** One place a user reads, as text: a log line, a message, an object, a command's output. */
export interface Surface {
  readonly name: string;
  readonly text: string;
}

export interface Leak {
  readonly kind: SecretKind;
  readonly surface: string;
  /** What precedes the match on its surface, and the match's length: enough to find the leak without printing the secret. */
  readonly match: string;
}

/** The raw secrets of the runs, by kind; needles are derived from them. */
export class SecretSet {
  readonly values: Record<SecretKind, Set<string>> = {
    'task token': new Set(),
    'user data': new Set(),
    'private key': new Set(),
    'presigned URL': new Set(),
  };

  add(kind: SecretKind, value: string): void {
    if (value.length > 0) this.values[kind].add(value);
  }
}

/** Shapes a secret takes in a log that are not its exact text. */
const GENERIC: Record<SecretKind, RegExp | undefined> = {
  'task token': /sandbox-token-[0-9a-f-]{8,}/,
  'user data': undefined,
  'private key': /PRIVATE KEY-----/,
  'presigned URL': /X-Amz-(Signature|Credential)=/i,
};

/** A slice this long of decoded user data is unlikely anywhere by chance, and still catches a partial copy. */
const USER_DATA_SLICE = 40;

/** How a text reads inside a JSON string (a log line or a message body escapes newlines and quotes). */
const jsonEscaped = (text: string): string => JSON.stringify(text).slice(1, -1);

const slices = (text: string, width: number): string[] => {
  if (text.length <= width) return [text];
  const out: string[] = [];
  for (let at = 0; at + width <= text.length; at += 1) out.push(text.slice(at, at + width));
  return out;
};

const needlesOf = (kind: SecretKind, value: string): string[] => {
  switch (kind) {
    case 'task token':
      return [value];
    case 'user data': {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      return [value, ...slices(value, USER_DATA_SLICE), ...slices(decoded, USER_DATA_SLICE)].flatMap(
        (needle) => [needle, jsonEscaped(needle)],
      );
    }
    case 'private key':
      // A PEM body, per 64-character line (so a key logged with newlines or with `\n` escapes is found),
      // or a JWK's private member as it is.
      return value.includes('\n')
        ? value
            .split('\n')
            .map((line) => line.trim())
            .filter((line) => line.length >= 16 && !line.startsWith('-----'))
        : [value];
    case 'presigned URL': {
      const signature = /X-Amz-Signature=([0-9a-fA-F]+)/.exec(value)?.[1];
      return [value, jsonEscaped(value), ...(signature ? [signature] : [])];
    }
  }
};

const excerpt = (text: string, at: number, length: number): string =>
  `${text.slice(Math.max(0, at - 80), at).replace(/\s+/g, ' ')}[${length} chars]`;

/** Every secret (exact, partial or by its generic shape) that occurs on a surface. */
export const findLeaks = (secrets: SecretSet, surfaces: readonly Surface[]): Leak[] => {
  const leaks: Leak[] = [];
  for (const kind of SECRET_KINDS) {
    const needles = new Set([...secrets.values[kind]].flatMap((value) => needlesOf(kind, value)));
    const generic = GENERIC[kind];
    for (const surface of surfaces) {
      const seen = generic?.exec(surface.text);
      if (seen) {
        leaks.push({ kind, surface: surface.name, match: excerpt(surface.text, seen.index, seen[0].length) });
        continue;
      }
      for (const needle of needles) {
        const at = surface.text.indexOf(needle);
        if (at >= 0) {
          leaks.push({ kind, surface: surface.name, match: excerpt(surface.text, at, needle.length) });
          break;
        }
      }
    }
  }
  return leaks;
};

// ---------------------------------------------------------------------------------------------------
// Capture: everything written to stdout/stderr or through the console while the runs go on
// ---------------------------------------------------------------------------------------------------

const CONSOLE_METHODS = ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const;

/**
 * The functions' Powertools logger prints JSON lines through its own Console on process.stdout and
 * process.stderr; the CLI prints through the global console. Both are taken over until `release`.
 */
export class LogCapture {
  readonly lines: Surface[] = [];
  private readonly restores: (() => void)[] = [];

  start(): void {
    const take = (name: string) => (chunk: unknown) => {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8');
      for (const line of text.split('\n')) if (line.length > 0) this.lines.push({ name, text: line });
      return true;
    };
    for (const [name, stream] of [
      ['stdout', process.stdout],
      ['stderr', process.stderr],
    ] as const) {
      const spy = jest.spyOn(stream, 'write').mockImplementation(take(name) as typeof stream.write);
      this.restores.push(() => spy.mockRestore());
    }
    for (const method of CONSOLE_METHODS) {
      const spy = jest.spyOn(console, method).mockImplementation((...args: unknown[]) => {
        take(`console.${method}`)(format(...args));
      });
      this.restores.push(() => spy.mockRestore());
    }
  }

  release(): void {
    for (const restore of this.restores.splice(0).reverse()) restore();
  }
}

// ---------------------------------------------------------------------------------------------------
// Evidence from each sandbox account, taken just before it stops
// ---------------------------------------------------------------------------------------------------

export interface Evidence {
  readonly secrets: SecretSet;
  /** Notifications, run records, bus events, command output, execution history (logs are captured apart). */
  readonly surfaces: Surface[];
  /** How many accounts were examined, and how many runs. */
  accounts: number;
  readonly runs: WorkflowRun[];
}

const PEM_KEY = /-----BEGIN ([A-Z ]*?)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----/g;
const JWK_PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi'] as const;
const URL_IN_TEXT = /https?:\/\/[^\s'"\\]+/g;

/** PEM keys, and the private members of a JWK (certbot's ACME account key) in a text. */
const addKeysIn = (secrets: SecretSet, text: string): void => {
  for (const match of text.matchAll(PEM_KEY)) secrets.add('private key', match[0]);
  if (!text.trimStart().startsWith('{')) return;
  try {
    const jwk = JSON.parse(text) as Record<string, unknown>;
    for (const member of JWK_PRIVATE_MEMBERS) {
      const value = jwk[member];
      if (typeof value === 'string') secrets.add('private key', value);
    }
  } catch {
    // Not JSON: nothing more to take.
  }
};

const walkFiles = (dir: string, visit: (path: string) => void): void => {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    const stat = lstatSync(path);
    if (stat.isDirectory()) walkFiles(path, visit);
    else if (stat.isFile() && stat.size < 1_000_000) visit(path);
  }
};

/** The files in a gzipped tarball (what pack-certificate moves), each as text. */
const tarballTexts = (body: Uint8Array): string[] => {
  const dir = mkdtempSync(join(tmpdir(), 'understudy-secrets-'));
  try {
    const file = join(dir, 'transfer.tar.gz');
    writeFileSync(file, body);
    const out = join(dir, 'out');
    execFileSync('mkdir', [out]);
    execFileSync('tar', ['-xzf', file, '-C', out]);
    const texts: string[] = [];
    walkFiles(out, (path) => texts.push(readFileSync(path, 'utf8')));
    return texts;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

const isGzip = (value: unknown): value is Uint8Array =>
  value instanceof Uint8Array && value.length > 2 && value[0] === 0x1f && value[1] === 0x8b;

/** Strings (and gzip bodies) anywhere in a call's input, with the key that held them. */
const visitInput = (
  value: unknown,
  visit: (key: string, text: string) => void,
  onGzip: (body: Uint8Array) => void,
  key = '',
): void => {
  if (typeof value === 'string') visit(key, value);
  else if (isGzip(value)) onGzip(value);
  else if (Array.isArray(value)) for (const item of value) visitInput(item, visit, onGzip, key);
  else if (value && typeof value === 'object' && !(value instanceof Uint8Array)) {
    for (const [k, v] of Object.entries(value)) visitInput(v, visit, onGzip, k);
  }
};

const collectSecrets = (sandbox: Sandbox, tokens: readonly string[], secrets: SecretSet): void => {
  for (const token of tokens) secrets.add('task token', token);
  for (const instance of sandbox.ec2.instances.values()) {
    if (instance.userData) secrets.add('user data', instance.userData);
  }
  for (const call of sandbox.calls) {
    visitInput(
      call.input,
      (key, text) => {
        // RunInstances carries UserData as base64 text.
        if (key === 'UserData') secrets.add('user data', text);
        for (const url of text.matchAll(URL_IN_TEXT)) {
          if (/X-Amz-Signature=/.test(url[0])) secrets.add('presigned URL', url[0]);
        }
        addKeysIn(secrets, text);
      },
      (body) => {
        for (const text of tarballTexts(body)) addKeysIn(secrets, text);
      },
    );
  }
  // The boxes' disks and the CA: every key pair the sandbox made or a script moved.
  const anyInstance = sandbox.ec2.instances.keys().next().value;
  if (anyInstance !== undefined) {
    const root = dirname(dirname(sandbox.instanceDir(anyInstance)));
    walkFiles(root, (path) => addKeysIn(secrets, readFileSync(path, 'utf8')));
  }
};

/** What Run Command shows for each invocation: its comment and the script's output. */
const commandOutputs = async (): Promise<Surface[]> => {
  const { ssm } = clients();
  const listed = await ssm.send(new ListCommandsCommand({}));
  const surfaces: Surface[] = [];
  for (const command of listed.Commands ?? []) {
    surfaces.push({ name: `command ${command.CommandId} comment`, text: command.Comment ?? '' });
    for (const instanceId of command.InstanceIds ?? []) {
      const out = await ssm
        .send(new GetCommandInvocationCommand({ CommandId: command.CommandId, InstanceId: instanceId }))
        .catch(() => undefined);
      if (!out) continue;
      surfaces.push({
        name: `command ${command.CommandId} on ${instanceId} output`,
        text: `${out.StandardOutputContent ?? ''}\n${out.StandardErrorContent ?? ''}`,
      });
    }
  }
  return surfaces;
};

const collectSurfaces = async (sandbox: Sandbox, surfaces: Surface[]): Promise<void> => {
  for (const m of sandbox.messages) {
    surfaces.push({
      name: `notification ${m.attributes.event ?? m.subject ?? ''}`,
      text: `${m.subject ?? ''}\n${m.message}\n${JSON.stringify(m.attributes)}`,
    });
  }
  for (const key of sandbox.objectKeys(SANDBOX_ENV.RUNS_BUCKET)) {
    const object = sandbox.s3.object(SANDBOX_ENV.RUNS_BUCKET, key);
    if (object)
      surfaces.push({ name: `run record s3://${SANDBOX_ENV.RUNS_BUCKET}/${key}`, text: object.body });
  }
  // Understudy's own events; the agents' events on the bus are the boxes' business, not a log of ours.
  for (const call of sandbox.calls) {
    if (call.service !== 'events' || call.action !== 'PutEvents') continue;
    const entries = (call.input as { Entries?: { Source?: string }[] }).Entries ?? [];
    for (const entry of entries) {
      if (entry.Source === 'understudy.agent') continue;
      surfaces.push({ name: `bus event ${entry.Source ?? ''}`, text: JSON.stringify(entry) });
    }
  }
  surfaces.push(...(await commandOutputs()));
};

/** Execution history as the console shows it: each state's input and output, and the failure. */
export const historyOf = (run: WorkflowRun): Surface => ({
  name: `execution history ${run.executionArn}`,
  text: JSON.stringify({ inputs: run.inputs, outputs: run.outputs, error: run.error, cause: run.cause }),
});

/**
 * Instruments every sandbox started from now on (the demo starts one per scenario): records the task
 * tokens its Step Functions model registers, and takes the evidence just before it stops (its boxes'
 * disks and its objects are gone after). Returns the undo.
 */
export const instrumentSandboxes = (evidence: Evidence): (() => void) => {
  const start = Sandbox.start.bind(Sandbox);
  const startSpy = jest.spyOn(Sandbox, 'start').mockImplementation(async (options) => {
    const sandbox = await start(options);
    const tokens: string[] = [];
    const register = sandbox.registerTaskToken.bind(sandbox);
    sandbox.registerTaskToken = (token: string) => {
      tokens.push(token);
      return register(token);
    };
    const stop = sandbox.stop.bind(sandbox);
    sandbox.stop = async () => {
      try {
        evidence.accounts += 1;
        collectSecrets(sandbox, tokens, evidence.secrets);
        await collectSurfaces(sandbox, evidence.surfaces);
      } finally {
        await stop();
      }
    };
    return sandbox;
  });
  const run = LocalWorkflow.prototype.run;
  const runSpy = jest.spyOn(LocalWorkflow.prototype, 'run').mockImplementation(async function (
    this: LocalWorkflow,
    input,
    options,
  ) {
    const result = await run.call(this, input, options);
    evidence.runs.push(result);
    evidence.surfaces.push(historyOf(result));
    return result;
  });
  return () => {
    startSpy.mockRestore();
    runSpy.mockRestore();
  };
};

/** A Terraform user's lock on the demo state, as `terraform apply` leaves it while it runs. */
const USER_LOCK = JSON.stringify({
  ID: '4d2f8a10-6b3e-4c1a-9e57-0f8b2d6c1a93',
  Operation: 'OperationTypeApply',
  Info: '',
  Who: 'bob@workstation',
  Version: '1.13.4',
  Created: '2026-11-26T10:00:00.000000000Z',
  Path: `${DEMO_TERRAFORM.bucket}/${DEMO_TERRAFORM.key}`,
});

/**
 * A replacement whose reconcile fails (a Terraform user holds the state lock): the run keeps the new
 * box and warns with the manual fix, the path where error text reaches a notification.
 */
export const runReconcileFailure = async (): Promise<WorkflowRun> => {
  const { sandbox, workflow } = await deploy(sandboxFactory, {
    newImage: { cloudInit: 'done', app: 'healthy' },
    imageName: 'reconcile-failure-image',
    target: (t) => (t.terraform ? { ...t, terraform: { ...t.terraform, lockTimeoutSeconds: 5 } } : t),
    handlers: await sourceHandlers(),
  });
  try {
    await clients().s3.send(
      new PutObjectCommand({
        Bucket: DEMO_TERRAFORM.bucket,
        Key: `${DEMO_TERRAFORM.key}.tflock`,
        Body: USER_LOCK,
        ContentType: 'application/json',
      }),
    );
    return await workflow.run(
      { target: 'web', reason: 'secrets: reconcile fails' },
      { name: 'reconcile-fails' },
    );
  } finally {
    await sandbox.stop();
  }
};

/** The CLI's `understudy demo` (every scenario, printed for a human), then the reconcile failure. */
export const runEverything = async (
  capture: LogCapture,
): Promise<{ evidence: Evidence; demoExitCode: number }> => {
  const evidence: Evidence = { secrets: new SecretSet(), surfaces: [], accounts: 0, runs: [] };
  const undo = instrumentSandboxes(evidence);
  capture.start();
  try {
    const demoExitCode = await runDemo({ json: false });
    await runReconcileFailure();
    return { evidence, demoExitCode };
  } finally {
    capture.release();
    undo();
  }
};
