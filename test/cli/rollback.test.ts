import type { ReplaceDocument } from '../../bin/replace';
import { useAccount } from './operator-world';

const world = useAccount();

const startCalls = () =>
  world.account.sandbox.calls.filter((c) => c.service === 'sfn' && c.action === 'StartExecution').length;

describe('understudy rollback', () => {
  it('refuses when the target has no retired server yet: exit 2, the reason in the document, nothing changed', async () => {
    const { seeded } = world.account.deployment;

    const run = await world.cli(['rollback', 'web', '--watch', '--json']);
    const doc = JSON.parse(run.stdout) as ReplaceDocument;

    expect(run.code).toBe(2);
    expect(doc).toMatchObject({
      command: 'rollback',
      input: { target: 'web', action: 'rollback' },
      outcome: 'failed',
      exitCode: 2,
    });
    expect(doc.cause).toMatch(/no retired server to roll back to/);
    expect(world.account.sandbox.eipInstance(seeded.allocationId)).toBe(seeded.oldInstanceId);
  });

  it('after a replacement, a dry run prints the plan and changes nothing (exit 0)', async () => {
    const { seeded } = world.account.deployment;
    const replaced = await world.cli(['replace', 'web', '--watch', '--json']);
    expect(replaced.code).toBe(0);
    const newer = world.account.sandbox.eipInstance(seeded.allocationId);

    const run = await world.cli(['rollback', 'web', '--dry-run', '--watch', '--json']);
    const doc = JSON.parse(run.stdout) as ReplaceDocument;

    expect(run.code).toBe(0);
    expect(doc).toMatchObject({ command: 'rollback', outcome: 'dry-run', input: { dryRun: true } });
    expect(doc.execution.name).toMatch(/^plan-web-rollback-\d{8}T\d{4}-[0-9a-f]{6}$/);
    expect(world.account.sandbox.eipInstance(seeded.allocationId)).toBe(newer);
  });

  it('rolls back within the window: the old box serves again, the summary shows both boxes, exit 0', async () => {
    const { seeded } = world.account.deployment;
    const newer = world.account.sandbox.eipInstance(seeded.allocationId);

    const run = await world.cli(['rollback', 'web', '--reason', 'errors after the patch', '--watch']);

    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^rolled-back-by-request: web/m);
    expect(run.stdout).toContain(`instance    ${newer} → ${seeded.oldInstanceId}`);
    expect(world.account.sandbox.eipInstance(seeded.allocationId)).toBe(seeded.oldInstanceId);
  });

  it('refuses --image with exit 1 (a rollback brings back a box, not an image), before starting anything', async () => {
    const before = startCalls();
    const run = await world.cli(['rollback', 'web', '--image', 'ami-0123456789abcdef0']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/unknown option '--image'/);
    expect(startCalls()).toBe(before);
  });

  it('with --json, an argument commander refuses still answers with the error document on stdout (exit 1)', async () => {
    const before = startCalls();
    const run = await world.cli(['rollback', 'web', '--json', '--image', 'ami-0123456789abcdef0']);
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout)).toEqual({
      command: 'rollback',
      error: { exitCode: 1, field: 'argv', message: "argv: unknown option '--image'" },
    });
    expect(startCalls()).toBe(before);
  });
});
