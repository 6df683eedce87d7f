import type { Evidence, Leak, SecretKind, Surface } from './secrets-harness';

/**
 * Issue 5, scope 5 (first sentence). The demo's scenarios, run as `understudy demo` runs them, plus a
 * replacement whose reconcile fails, with every log line captured at DEBUG (the most a function ever
 * prints), and every other place a user reads; none may show a task token, user data, a private key
 * or a presigned URL. The secrets are the runs' own, taken from the sandbox account.
 */

// The logger reads its level once, when first imported: the harness (and the handlers) load after this.
const previousLevel = process.env.POWERTOOLS_LOG_LEVEL;
process.env.POWERTOOLS_LOG_LEVEL = 'DEBUG';

type Harness = typeof import('./secrets-harness');
type LoggerModule = typeof import('../../lambdas/shared/logger');

let harness: Harness;
let logger: LoggerModule['logger'];
let evidence: Evidence;
let logLines: Surface[];
let demoExitCode: number;

beforeAll(async () => {
  harness = await import('./secrets-harness');
  ({ logger } = await import('../../lambdas/shared/logger'));
  const capture = new harness.LogCapture();
  ({ evidence, demoExitCode } = await harness.runEverything(capture));
  logLines = capture.lines;
}, 600_000);

afterAll(() => {
  if (previousLevel === undefined) delete process.env.POWERTOOLS_LOG_LEVEL;
  else process.env.POWERTOOLS_LOG_LEVEL = previousLevel;
});

const everything = (): Surface[] => [...logLines, ...evidence.surfaces];
const leaksOf = (kind: SecretKind): Leak[] =>
  harness.findLeaks(evidence.secrets, everything()).filter((leak) => leak.kind === kind);
const first = (kind: SecretKind): string => {
  const [value] = [...evidence.secrets.values[kind]];
  if (value === undefined) throw new Error(`the runs handled no ${kind}`);
  return value;
};

/** Logs `fields` through the functions' logger with the capture on, and returns the lines it printed. */
const logged = (message: string, fields: Record<string, unknown>): Surface[] => {
  const capture = new harness.LogCapture();
  capture.start();
  try {
    logger.info(message, fields);
  } finally {
    capture.release();
  }
  return capture.lines;
};

describe('the demo scenarios with every log line captured', () => {
  it('runs every scenario of `understudy demo` and a replacement whose reconcile fails, each on its own account', async () => {
    const { SCENARIOS } = await import('../../sandbox/demo');
    const runs = evidence.runs.map((run) => ({
      name: run.executionArn.slice(run.executionArn.lastIndexOf(':') + 1),
      status: run.status,
      error: run.error,
    }));

    expect(demoExitCode).toBe(0);
    // Each took the path that handles its secrets: the failures roll back, the others get to the end.
    expect(runs).toEqual([
      ...SCENARIOS.map((s) => ({
        name: `demo-${s.name}`,
        status: s.name.startsWith('bad-') ? 'FAILED' : 'SUCCEEDED',
        error: s.name.startsWith('bad-') ? 'RolledBack' : undefined,
      })),
      { name: 'reconcile-fails', status: 'SUCCEEDED', error: undefined },
    ]);
    expect(evidence.accounts).toBe(SCENARIOS.length + 1);
    const warnings = evidence.surfaces.filter((s) => s.name === 'notification state-not-reconciled');
    expect(warnings).toHaveLength(1);
  });

  it("captures the functions' structured logs down to DEBUG, and the CLI's printed output", () => {
    const levels = new Set(
      logLines.flatMap((line) => {
        try {
          return [(JSON.parse(line.text) as { level?: string }).level];
        } catch {
          return [];
        }
      }),
    );

    expect(levels).toContain('DEBUG');
    expect(logLines.some((line) => line.text.includes('stored the readiness task token'))).toBe(true);
    expect(logLines.some((line) => line.name === 'console.log' && line.text.includes('▶ tls-restore'))).toBe(
      true,
    );
  });

  it('collects the secrets each run handled from the sandbox: tokens, user data, key pairs, presigned URLs', () => {
    const { values } = evidence.secrets;
    // Every run that launched a box waited for it with a task token of its own.
    const awaited = evidence.runs.filter((run) => 'AwaitReadiness' in run.inputs);

    expect(awaited.length).toBeGreaterThan(0);
    expect(values['task token'].size).toBeGreaterThanOrEqual(awaited.length);
    expect(values['user data'].size).toBeGreaterThan(0);
    // The CA's key and, at least, the TLS lineages of the HTTPS scenarios.
    expect(values['private key'].size).toBeGreaterThan(2);
    // tls-restore's upload (pack-certificate) and download (prepare) URLs.
    expect(values['presigned URL'].size).toBeGreaterThanOrEqual(2);
    expect(evidence.surfaces.some((s) => s.name.startsWith('notification'))).toBe(true);
    expect(evidence.surfaces.some((s) => s.name.startsWith('run record'))).toBe(true);
    expect(evidence.surfaces.some((s) => s.name.endsWith('output'))).toBe(true);
  });

  it('no task token appears in any log line or notification of the demo scenarios (nor run record, command output, execution history)', () => {
    expect(leaksOf('task token')).toEqual([]);
  });

  it('no user data appears, whole or as a 40-character slice, in any log line or notification of the demo scenarios', () => {
    expect(leaksOf('user data')).toEqual([]);
  });

  it('no private key, nor its PEM marker, appears in any log line or notification of the demo scenarios', () => {
    expect(leaksOf('private key')).toEqual([]);
  });

  it('no presigned URL, nor its signature or credential, appears in any log line or notification of the demo scenarios', () => {
    expect(leaksOf('presigned URL')).toEqual([]);
  });
});

describe('the leak detector', () => {
  it('finds nothing in a log line that carries ids only', () => {
    const lines = logged('switched the address', { instance: 'i-0123456789abcdef0', target: 'web' });

    expect(lines).toHaveLength(1);
    expect(harness.findLeaks(evidence.secrets, lines)).toEqual([]);
  });

  const plants: [string, SecretKind, () => string][] = [
    ['a task token', 'task token', () => first('task token')],
    ['user data in base64', 'user data', () => first('user data')],
    [
      'a 40-character slice of decoded user data',
      'user data',
      () => Buffer.from(first('user data'), 'base64').toString('utf8').slice(5, 45),
    ],
    [
      'a PEM private key',
      'private key',
      () => [...evidence.secrets.values['private key']].find((k) => k.includes('PRIVATE KEY')) ?? '',
    ],
    [
      'one line of a private key without its markers',
      'private key',
      () => [...evidence.secrets.values['private key']].find((k) => k.includes('\n'))?.split('\n')[1] ?? '',
    ],
    ['a presigned URL', 'presigned URL', () => first('presigned URL')],
    [
      "a presigned URL's signature alone",
      'presigned URL',
      () => /X-Amz-Signature=([0-9a-f]+)/.exec(first('presigned URL'))?.[1] ?? '',
    ],
  ];

  it.each(plants)('reports %s logged through the same capture', (_, kind, secret) => {
    const value = secret();
    const lines = logged('planted', { value });

    expect(value.length).toBeGreaterThan(8);
    expect(harness.findLeaks(evidence.secrets, lines).map((leak) => leak.kind)).toContain(kind);
  });
});
