/**
 * POSIX shell quoting for values interpolated into SSM Run Command scripts. Config validation already
 * restricts domains, paths and e-mails to plain characters; quoting anyway means a future field, or a
 * pattern loosened by mistake, cannot turn into command injection on the customer's server.
 */

/**
 * Wraps `value` in single quotes, inside which the shell expands nothing. A single quote cannot appear
 * inside single quotes, so each one closes the quoted run, adds an escaped quote and reopens it.
 * A NUL byte cannot be part of a shell argument at all (the shell would cut the value there), so it is refused.
 *
 * @example shellQuote("it's") // → 'it'\''s'
 */
export const shellQuote = (value: string): string => {
  if (value.includes('\0')) throw new Error('a NUL byte cannot be passed to a shell command');
  return `'${value.replaceAll("'", `'\\''`)}'`;
};
