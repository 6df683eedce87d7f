import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { SourceRun } from './enumerate';
import { type CallSite, type Fault, type FaultWorld, serverError, siteId, startFaultWorld } from './harness';
import { violations } from './invariants';
import { SOURCES, sourceNamed } from './sources';

/**
 * The fault-injection matrix (issue 5): every AWS call site of the workflow, each made to throttle,
 * fail with a 5xx, hang until its task times out, or take effect and then lose its function; and every
 * function failing with a Lambda service error before it runs. One run per cell, then the five
 * invariants. The call sites come from the source runs (sources.ts: the happy run, a rollback, the TLS
 * modes) made now (jest defines tests synchronously, so a child process makes them), so a new call in
 * the workflow gets its cells without editing this file. A site is faulted in the first source that
 * makes it, so no cell is repeated.
 *
 * The cells are spread over several test files (matrix-*.test.ts), each defining its share with
 * {@link defineMatrix}: jest gives every file a fresh module registry, so one file's thousands of
 * sandbox worlds do not slow the next one down (in a single file, later cells ran up to five times
 * slower than alone).
 */

const ROOT = join(__dirname, '..', '..');
const runs = JSON.parse(
  execFileSync(process.execPath, ['--import', 'tsx', join(__dirname, 'enumerate.ts')], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'SILENT' },
  })
    .trim()
    .split('\n')
    .pop() ?? '[]',
) as SourceRun[];

const ordinalWord = (n: number) => `${n}${n === 2 ? 'nd' : n === 3 ? 'rd' : 'th'}`;
const callName = (site: CallSite) =>
  `${site.service}:${site.action} from ${site.caller === 'state-machine' ? `the ${site.step} state` : site.step}${site.ordinal > 1 ? ` (its ${ordinalWord(site.ordinal)} in one invocation)` : ''}`;

export interface Cell {
  readonly name: string;
  readonly source: string;
  readonly fault: Fault;
}

const siteCells = (site: CallSite, source: string): Cell[] => {
  const fiveHundred = serverError(site.service);
  const code = fiveHundred === 'hang' ? '' : fiveHundred.error;
  const cell = (name: string, fault: Fault): Cell => ({
    name: `${name} (${source}) leaves the service safe`,
    source,
    fault,
  });
  const faults = [
    cell(`a throttled ${callName(site)}`, { kind: 'throttle', site }),
    cell(`a ${callName(site)} failing with ${code}`, { kind: 'server-error', site }),
    cell(`a ${callName(site)} that hangs until the task times out`, { kind: 'hang', site }),
  ];
  // A Standard workflow runs a service-integration task (AnnounceOutcome's sns:publish) once, retries
  // aside: no function of ours runs there to die after the call took effect, nor to fail with a Lambda
  // service error, so those faults have no meaning at such a site.
  if (site.caller === 'state-machine') return faults;
  return [
    ...faults,
    cell(`a function that dies right after ${callName(site)} took effect`, {
      kind: 'crash-after-effect',
      site,
    }),
  ];
};

/** True the first time `id` is seen: a site or function gets its cells in the first source only. */
const firstSeen = (seen: Set<string>) => (id: string) => {
  if (seen.has(id)) return false;
  seen.add(id);
  return true;
};
const newSite = firstSeen(new Set());
const newStep = firstSeen(new Set());
const cells: Cell[] = runs.flatMap((run): Cell[] => {
  const sites = run.sites.filter((site) =>
    newSite(siteId(site.step, `${site.service}:${site.action}`, site.ordinal)),
  );
  const steps = run.steps.filter(newStep);
  return [
    ...sites.flatMap((site) => siteCells(site, run.source)),
    ...steps.flatMap((step): Cell[] =>
      (['Lambda.ServiceException', 'Lambda.TooManyRequestsException'] as const).map((error) => ({
        name: `a ${error} before ${step} runs (${run.source}) leaves the service safe`,
        source: run.source,
        fault: { kind: 'lambda-error', step, error },
      })),
    ),
  ];
});

/** Checks that the enumeration found every source run and that each ended as it should. */
export const defineSourceChecks = (): void => {
  describe('the source runs the matrix is built from', () => {
    it('are the source scenarios, each run once, in order', () => {
      expect(runs.map((run) => run.source)).toEqual(SOURCES.map((source) => source.name));
    });

    it.each(SOURCES.map((source) => [source.name, source.outcome]))(
      'the %s ends %s through calls that each belong to a workflow function or state',
      (name, outcome) => {
        const run = runs.find((r) => r.source === name);
        expect({ outcome: run?.outcome, rollbackCause: run?.rollbackCause }).toMatchObject({ outcome });
        expect(run?.sites.length).toBeGreaterThan(0);
        expect(run?.unattributed).toEqual([]);
      },
    );
  });
};

/** Which cells a file runs: those of these sources, optionally only every `of`-th from `part`. */
export interface MatrixShare {
  readonly sources: readonly string[];
  readonly part?: number;
  readonly of?: number;
}

/** What each matrix-*.test.ts file runs; shares.test.ts checks they cover every cell exactly once. */
export const MATRIX_SHARES = {
  happyFirstHalf: { sources: ['happy run'], part: 0, of: 2 },
  happySecondHalf: { sources: ['happy run'], part: 1, of: 2 },
  rollbacks: { sources: ['rollback run', 'bad-ami run'] },
  tls: { sources: ['tls-restore run', 'http-01 run', 'dns-01 run'] },
  window: { sources: ['rollback-by-request run', 'failed rollback-by-request run', 'hooks run'] },
} as const satisfies Record<string, MatrixShare>;

/** The cells `share` selects; every cell belongs to exactly one share of the matrix-*.test.ts files. */
export const cellsOf = (share: MatrixShare): Cell[] =>
  cells
    .filter((cell) => share.sources.includes(cell.source))
    .filter((_, i) => share.of === undefined || i % share.of === (share.part ?? 0));

export const allCells = (): readonly Cell[] => cells;

export const defineMatrix = (share: MatrixShare): void => {
  const mine = cellsOf(share);
  // Outside 'the fault matrix': scripts/fault-summary.mjs counts every test in there as a cell.
  it(`has cells of ${share.sources.join(', ')} in this file`, () => {
    expect(mine.length).toBeGreaterThan(0);
  });

  describe('the fault matrix', () => {
    let world: FaultWorld | undefined;
    afterEach(async () => {
      await world?.stop();
      world = undefined;
    });

    it.each(mine)('$name', async ({ source: name, fault }) => {
      const source = sourceNamed(name);
      world = await startFaultWorld(fault, source.options, source.setup);
      const run = await world.run(source.input);

      expect(world.faultFired()).toBe(true);
      expect(await violations(world, run, world.before, source)).toEqual([]);
    });
  });
};
