import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ShellResult, ShellRun, VirtualClock } from './contracts';

/**
 * SSM Run Command on a simulated box: the exact commands, joined by newlines, run by bash in the
 * box's directory. The box's tools are stand-ins (sandbox/standins) that act on that directory and
 * declare how much virtual time they took by appending milliseconds to $SANDBOX_VTIME_FILE; the clock is
 * held meanwhile, so the caller decides when that virtual time passes.
 */

export const STANDINS_DIR = path.join(__dirname, 'standins');

const countVirtualMs = (text: string): number =>
  text
    .split(/\s+/)
    .map((word) => Number(word))
    .filter((ms) => Number.isFinite(ms) && ms > 0)
    .reduce((sum, ms) => sum + ms, 0);

export async function runShellScript(clock: VirtualClock, run: ShellRun): Promise<ShellResult> {
  const release = clock.hold(`shell in ${path.basename(run.instanceDir)}`);
  try {
    // Like the SSM agent, each invocation gets its own folder holding the script it ran.
    const runsDir = path.join(run.instanceDir, 'var', 'lib', 'amazon', 'ssm');
    await mkdir(runsDir, { recursive: true });
    const runDir = await mkdtemp(path.join(runsDir, 'run-'));
    const scriptPath = path.join(runDir, '_script.sh');
    const vtimePath = path.join(runDir, 'vtime');
    await writeFile(scriptPath, `${run.commands.join('\n')}\n`, { mode: 0o700 });
    await writeFile(vtimePath, '');

    const env: Record<string, string> = {
      HOME: run.instanceDir,
      LANG: 'C.UTF-8',
      ...run.env,
      PATH: [path.join(run.instanceDir, 'bin'), STANDINS_DIR, '/usr/bin', '/bin'].join(':'),
      SANDBOX_INSTANCE_DIR: run.instanceDir,
      SANDBOX_VTIME_FILE: vtimePath,
    };
    const { exitCode, stdout, stderr } = await new Promise<{
      exitCode: number;
      stdout: string;
      stderr: string;
    }>((resolve, reject) => {
      const child = spawn('bash', [scriptPath], {
        cwd: run.instanceDir,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      child.once('error', reject);
      // 'close' (not 'exit'): all output has been read by then.
      child.once('close', (code, signal) =>
        resolve({
          // A signal-killed script reports 128+n as a shell would; SSM shows that as a failure too.
          exitCode: code ?? (signal ? 128 + os.constants.signals[signal] : 1),
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
        }),
      );
    });
    const virtualMs = countVirtualMs(await readFile(vtimePath, 'utf8'));
    return { exitCode, stdout, stderr, virtualMs };
  } finally {
    release();
  }
}
