import { type CallSite, callSitesOf, startFaultWorld } from './harness';

/**
 * The happy run the matrix is generated from: its call sites, the functions it invoked, and any call
 * that no function (and no box's presigned request) accounts for.
 */
export interface HappyRun {
  readonly outcome: string | undefined;
  readonly sites: CallSite[];
  readonly steps: string[];
  readonly unattributed: string[];
}

export const happyRun = async (): Promise<HappyRun> => {
  const world = await startFaultWorld();
  try {
    const run = await world.run();
    const calls = world.runCalls();
    const sites = callSitesOf(world, calls);
    return {
      outcome: run.outcome,
      sites,
      steps: [...new Set(sites.map((s) => s.step))],
      unattributed: calls
        .filter((c) => !c.via && world.ownerOf(c) === undefined)
        .map((c) => `${c.service}:${c.action}`),
    };
  } finally {
    await world.stop();
  }
};

// Jest defines tests synchronously, so the matrix file runs this in a child process (tsx) and reads the
// JSON it prints on its last line.
if (require.main === module) {
  happyRun().then(
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
