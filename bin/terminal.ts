import { clearLine, cursorTo } from 'node:readline';
import { stripVTControlCharacters } from 'node:util';
import spinners from 'cli-spinners';
import { createColors } from 'picocolors';

/**
 * What the operator commands print to, and how: a TTY gets colour (unless NO_COLOR is set) and a
 * spinner line redrawn in place; anything else gets plain lines only. Tests pass their own writers.
 */

export interface Output {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  /** The terminal's width, when it is one. */
  readonly columns?: number;
}

export interface CliIo {
  readonly stdout: Output;
  readonly stderr: Output;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export const processIo = (): CliIo => ({ stdout: process.stdout, stderr: process.stderr, env: process.env });

/** Exit codes of every operator command (README, "Trigger, observe, roll back"). */
export const EXIT = {
  /** Replaced, no-op, dry run, or a read command that answered. */
  ok: 0,
  /** Bad arguments or execution input; the message names the field. */
  usage: 1,
  /** The run failed, was rolled back, or needs manual action. */
  runFailed: 2,
  /** AWS refused or could not be reached: credentials, region, permissions, a missing stack. */
  aws: 3,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A refusal the CLI explains in one line and ends with `code`. */
export class CliError extends Error {
  constructor(
    readonly code: ExitCode,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The input field a usage error is about, so `--json` callers can read it without parsing text. */
export class InputError extends CliError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(EXIT.usage, `${field}: ${message}`);
    this.name = 'InputError';
  }
}

/** NO_COLOR (https://no-color.org): any non-empty value turns colour off, even on a TTY. */
export const colorsFor = (io: CliIo, stream: Output = io.stdout) =>
  createColors(stream.isTTY === true && !io.env.NO_COLOR);
export type Colors = ReturnType<typeof colorsFor>;

const FRAMES = spinners.dots;

/**
 * One status line redrawn in place under the permanent lines (TTY only): `print` puts a permanent line
 * above it, `show` redraws it with the next spinner frame, `clear` removes it.
 */
export class LiveLine {
  private shown = false;
  private frame = 0;

  constructor(private readonly out: Output) {}

  get interactive(): boolean {
    return this.out.isTTY === true;
  }

  /** The spinner advances with real time, whatever clock drives the redraws. */
  private nextFrame(): string {
    this.frame = Math.floor(performance.now() / FRAMES.interval) % FRAMES.frames.length;
    return FRAMES.frames[this.frame] ?? '';
  }

  private erase(): void {
    if (!this.shown) return;
    const stream = this.out as NodeJS.WritableStream;
    clearLine(stream, 0);
    cursorTo(stream, 0);
    this.shown = false;
  }

  print(line: string): void {
    this.erase();
    this.out.write(`${line}\n`);
  }

  show(render: (frame: string) => string): void {
    if (!this.interactive) return;
    this.erase();
    let line = render(this.nextFrame());
    // A wrapped line could not be erased in place: keep it within the width (plain, so no escape
    // sequence is cut in half).
    const width = (this.out.columns ?? 0) - 1;
    if (width > 0 && stripVTControlCharacters(line).length > width) {
      line = stripVTControlCharacters(line).slice(0, width);
    }
    this.out.write(line);
    this.shown = true;
  }

  clear(): void {
    this.erase();
  }
}
