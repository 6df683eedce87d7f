import type { ReplaceDocument } from '../../bin/replace';
import { SANDBOX_ENV } from '../../sandbox/demo';
import { COLOUR, REDRAW, SPINNER, useAccount } from './operator-world';

const world = useAccount();

const startCalls = () =>
  world.account.sandbox.calls.filter((c) => c.service === 'sfn' && c.action === 'StartExecution').length;

describe('understudy replace', () => {
  it('replaces the box and prints one JSON document: outcome, instances, serials, steps, console link; exit 0', async () => {
    const { seeded } = world.account.deployment;

    const run = await world.cli(['replace', 'web', '--reason', 'monthly patch', '--watch', '--json']);
    const doc = JSON.parse(run.stdout) as ReplaceDocument;

    expect(run.code).toBe(0);
    expect(Object.keys(doc).sort()).toEqual(
      [
        'command',
        'target',
        'input',
        'execution',
        'outcome',
        'error',
        'cause',
        'failedStep',
        'run',
        'steps',
        'exitCode',
      ].sort(),
    );
    expect(doc).toMatchObject({
      command: 'replace',
      target: 'web',
      input: { target: 'web', reason: 'monthly patch' },
      outcome: 'replaced',
      failedStep: null,
      exitCode: 0,
    });
    expect(doc.execution.status).toBe('SUCCEEDED');
    expect(doc.execution.name).toMatch(/^cli-web-configured-\d{8}T\d{4}-[0-9a-f]{6}$/);
    expect(doc.execution.consoleUrl).toBe(
      `https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/${doc.execution.arn}`,
    );
    expect(doc.run?.oldInstanceId).toBe(seeded.oldInstanceId);
    expect(doc.run?.newInstanceId).toBe(world.account.sandbox.eipInstance(seeded.allocationId));
    expect(doc.run?.record).toBe(`s3://${SANDBOX_ENV.RUNS_BUCKET}/runs/web/${doc.execution.name}.json`);
    expect(BigInt(doc.run?.terraform?.serialAfter ?? '0')).toBe(
      BigInt(doc.run?.terraform?.serialBefore ?? '0') + 1n,
    );
    expect(doc.run?.terraform?.backupKey).toEqual(expect.any(String));
    expect(doc.steps.map((s) => s.name)).toEqual(
      expect.arrayContaining(['Preflight', 'Launch', 'Switch', 'Probe', 'Finish']),
    );
    expect(doc.steps.every((s) => s.status === 'succeeded')).toBe(true);
  });

  it('exits 2 for a rolled-back run and names the failing step and its cause', async () => {
    const badApp = world.account.sandbox.registerImage(
      { cloudInit: 'done', app: { healthyForMs: 40_000 } },
      { name: 'bad-app-image' },
    );
    const eipBefore = world.account.sandbox.eipInstance(world.account.deployment.seeded.allocationId);

    const run = await world.cli(['replace', 'web', '--image', badApp, '--watch']);

    expect(run.code).toBe(2);
    expect(run.stdout).toMatch(/^✗ Probe .*BakeFailed: .*failed 3 times in a row during the bake period/m);
    expect(run.stdout).toMatch(/^rolled-back: web/m);
    expect(run.stdout).toMatch(/^ {2}failed step Probe — BakeFailed: .+/m);
    expect(world.account.sandbox.eipInstance(world.account.deployment.seeded.allocationId)).toBe(eipBefore);
    // Not a terminal: plain lines, no colour, no spinner, nothing redrawn.
    expect(run.stdout).not.toMatch(COLOUR);
    expect(run.stdout).not.toMatch(REDRAW);
    expect(run.stdout).not.toMatch(SPINNER);
  });

  it('refuses an unknown target with exit 1, naming the field, without starting an execution', async () => {
    const before = startCalls();

    const run = await world.cli(['replace', 'nope', '--watch']);

    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/target: no target "nope" is deployed in stack sandbox/);
    expect(startCalls()).toBe(before);
  });

  it('refuses a malformed --image with exit 1 and the field in the JSON error, before any AWS call', async () => {
    const callsBefore = world.account.sandbox.calls.length;

    const run = await world.cli(['replace', 'web', '--image', 'ami-XYZ', '--json']);
    const doc = JSON.parse(run.stdout) as { error: { exitCode: number; field: string; message: string } };

    expect(run.code).toBe(1);
    expect(doc.error).toMatchObject({ exitCode: 1, field: 'imageId' });
    expect(doc.error.message).toContain('--image');
    expect(world.account.sandbox.calls.length).toBe(callsBefore);
  });

  it('refuses a reason over 256 characters with exit 1, naming the field', async () => {
    const before = startCalls();

    const run = await world.cli(['replace', 'web', '--reason', 'x'.repeat(300)]);

    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/reason: keep the reason under 256 characters/);
    expect(startCalls()).toBe(before);
  });

  it('on a terminal, draws a spinner line and colours; with NO_COLOR the same run has no colour', async () => {
    const coloured = await world.cli(['replace', 'web', '--dry-run'], { isTTY: true });
    const plain = await world.cli(['replace', 'web', '--dry-run', '--reason', 'no colour'], {
      isTTY: true,
      env: { NO_COLOR: '1' },
    });

    expect(coloured.code).toBe(0);
    expect(coloured.stdout).toMatch(COLOUR);
    expect(coloured.stdout).toMatch(SPINNER);
    expect(coloured.stdout).toMatch(REDRAW);
    expect(plain.code).toBe(0);
    // The first test replaced the box with the configured image already: the plan is a no-op.
    expect(plain.stdout).toMatch(/^no-op: web/m);
    expect(plain.stdout).not.toMatch(COLOUR);
    expect(plain.stdout).toMatch(SPINNER);
  });
});
