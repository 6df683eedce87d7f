import type { FleetDocument } from '../../bin/fleet';
import { runCli } from '../../bin/program';
import { captureIo } from './operator-world';

// `--sandbox` starts its own simulated account for the one command, as a user on a fresh machine runs it.
describe('understudy replace --group sandbox --sandbox', () => {
  it("replaces the sandbox account's two services in waves, one at a time, without a config file; exit 0", async () => {
    const capture = captureIo({});
    const code = await runCli(
      ['replace', '--group', 'sandbox', '--sandbox', '--watch', '--json'],
      capture.io,
    );
    const doc = JSON.parse(capture.stdout()) as FleetDocument;

    expect(code).toBe(0);
    expect(doc.execution.status).toBe('SUCCEEDED');
    expect(doc.items.map((i) => [i.target, i.status])).toEqual([
      ['web', 'succeeded'],
      ['api', 'succeeded'],
    ]);
  });

  it('names the groups it knows when asked for another, before starting anything; exit 1', async () => {
    const capture = captureIo({});
    const code = await runCli(['replace', '--group', 'front', '--sandbox', '--json'], capture.io);

    expect(code).toBe(1);
    expect(JSON.parse(capture.stdout()).error).toMatchObject({ field: 'group' });
    expect(JSON.parse(capture.stdout()).error.message).toContain('groups: sandbox');
  });
});
