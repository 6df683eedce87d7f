// Prints the fault matrix's closing line ("fault matrix: N cells, N safe") from jest's JSON results of
// test/faults, and exits non-zero when a cell failed, the suite crashed, or there were no cells at all
// (an empty matrix must not look green).
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? '.jest-faults.json';
let results;
try {
  results = JSON.parse(readFileSync(file, 'utf8'));
} catch (error) {
  console.log(`jest wrote no readable results to ${file}: ${error.message}`);
  console.log('fault matrix: 0 cells, 0 safe');
  process.exit(1);
}
// A cell is a test of the matrix suite; the checks of the source runs it is built from are not.
const cells = results.testResults
  .flatMap((suite) => suite.assertionResults)
  .filter((test) => test.ancestorTitles.includes('the fault matrix'));
const safe = cells.filter((test) => test.status === 'passed').length;
const crashed = results.numRuntimeErrorTestSuites ?? 0;
// Each cell's title names the source run its call site came from: "… (rollback run) leaves …".
const bySource = new Map();
for (const test of cells) {
  const source = /\(([^()]+ run)\) leaves the service safe$/.exec(test.title)?.[1] ?? 'unnamed source';
  const tally = bySource.get(source) ?? { cells: 0, safe: 0 };
  tally.cells += 1;
  if (test.status === 'passed') tally.safe += 1;
  bySource.set(source, tally);
}
for (const [source, tally] of bySource) console.log(`  ${source}: ${tally.cells} cells, ${tally.safe} safe`);
console.log(`fault matrix: ${cells.length} cells, ${safe} safe`);
process.exit(results.success && crashed === 0 && cells.length > 0 && safe === cells.length ? 0 : 1);
