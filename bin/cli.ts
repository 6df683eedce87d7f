import { runCli } from './program';

/** The `understudy` executable (bin/understudy.mjs runs it with tsx): see bin/program.ts. */
runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exitCode = 1;
  },
);
