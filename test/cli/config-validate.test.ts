import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = join(__dirname, '..', '..');
const understudy = (...args: string[]) =>
  run('npx', ['understudy', ...args], { cwd: ROOT }).then(
    (out) => ({ code: 0, ...out }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );

describe('npx understudy config validate', () => {
  it('accepts the example config and names its targets', async () => {
    const result = await understudy('config', 'validate', 'understudy.config.example.json');

    const example = JSON.parse(readFileSync(join(ROOT, 'understudy.config.example.json'), 'utf8')) as {
      targets: { name: string }[];
    };
    const names = example.targets.map((t) => t.name);

    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`is valid: ${names.length} target(s): ${names.join(', ')}`);
  });

  it('fails with one line per problem, each naming the field and the fix', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'understudy-cli-'));
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify({ targets: [{ name: 'Web', allocationId: 5, image: {}, tls: { mode: 'none' } }] }),
    );
    const result = await understudy('config', 'validate', file);

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('targets[0].name: use 1-32 lowercase letters');
    expect(result.stderr).toContain(
      'targets[0].allocationId: expected string, received number: change it to a string',
    );
    expect(result.stderr).toContain('targets[0].domain: missing: add this string field');
    expect(result.stderr).toContain(
      'targets[0].image: set exactly one of imageId, ssmParameter (bring your own image) or build',
    );
  });
});
