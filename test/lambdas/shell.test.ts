import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shellQuote } from '../../lambdas/shared/shell';

// What bash makes of a quoted value: the exact characters, one argument, nothing executed.
const throughBash = (value: string, cwd: string): string[] =>
  JSON.parse(
    execFileSync(
      'bash',
      ['-c', `node -e 'console.log(JSON.stringify(process.argv.slice(1)))' -- ${shellQuote(value)}`],
      {
        cwd,
        encoding: 'utf8',
      },
    ),
  ) as string[];

describe('shellQuote', () => {
  // Executed for real, so every payload here is harmless if it ever ran: it would only leave a file behind.
  const hostile = [
    '$(touch pwned)',
    '`touch pwned`',
    "it's",
    "'; touch pwned; echo '",
    '"double" and \\backslash\\',
    'line one\nline two; touch pwned',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal shell expansion is the point of this value
    '$HOME ${PATH} $((1+1)) !! *',
    '',
    "''''",
  ];

  it.each(hostile)('passes %j to the shell as one literal argument without running anything', (value) => {
    const dir = mkdtempSync(join(tmpdir(), 'shellquote-'));

    const args = throughBash(value, dir);

    expect(args).toEqual([value]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('keeps a destructive substitution inside single quotes (checked as text, never executed)', () => {
    expect(shellQuote('$(rm -rf /)')).toBe("'$(rm -rf /)'");
  });

  it('writes a plain value as a single-quoted word', () => {
    expect(shellQuote('www.example.com')).toBe("'www.example.com'");
  });

  it('refuses a NUL byte, which no shell argument can hold', () => {
    expect(() => shellQuote('a\0b')).toThrow(/NUL/);
  });
});
