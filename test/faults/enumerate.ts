import { type CallSite, callSitesOf, startFaultWorld } from './harness';
import { SOURCES, type Source } from './sources';

/**
 * A source run the matrix is generated from: its call sites, the functions it invoked, and any call
 * that no function, integration state or box's presigned request accounts for.
 */
export interface SourceRun {
  readonly source: string;
  readonly outcome: string | undefined;
  readonly sites: CallSite[];
  readonly steps: string[];
  readonly unattributed: string[];
  /** Why the run went to Rollback, if it did (so an unexpected rollback of a source says why). */
  readonly rollbackCause?: unknown;
}

export const sourceRun = async (source: Source): Promise<SourceRun> => {
  const world = await startFaultWorld(undefined, source.options, source.setup);
  try {
    const run = await world.run(source.input);
    const calls = world.runCalls();
    const sites = callSitesOf(world, calls);
    const rollback = run.inputs.Rollback as { error?: unknown } | undefined;
    return {
      source: source.name,
      outcome: run.outcome,
      ...(rollback ? { rollbackCause: rollback.error } : {}),
      sites,
      steps: [...new Set(sites.filter((s) => s.caller === 'function').map((s) => s.step))],
      unattributed: calls
        .filter((c) => !c.via && world.ownerOf(c) === undefined)
        .map((c) => `${c.service}:${c.action}`),
    };
  } finally {
    await world.stop();
  }
};

/** Every source, in order (one account at a time: the runs share the handlers' module state). */
export const sourceRuns = async (): Promise<SourceRun[]> => {
  const runs: SourceRun[] = [];
  for (const source of SOURCES) runs.push(await sourceRun(source));
  return runs;
};

// Jest defines tests synchronously, so the matrix file runs this in a child process (tsx) and reads the
// JSON it prints on its last line.
if (require.main === module) {
  sourceRuns().then(
    (result) => {
      process.stdout.write(`\n${JSON.stringify(result)}\n`);
      process.exit(0);
    },
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
