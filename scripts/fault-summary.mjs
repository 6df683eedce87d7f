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
// A cell is a test of the matrix suite; the happy run it is built from is not one.
const cells = results.testResults
  .flatMap((suite) => suite.assertionResults)
  .filter((test) => test.ancestorTitles.includes('the fault matrix'));
const safe = cells.filter((test) => test.status === 'passed').length;
const crashed = results.numRuntimeErrorTestSuites ?? 0;
console.log(`fault matrix: ${cells.length} cells, ${safe} safe`);
process.exit(results.success && crashed === 0 && cells.length > 0 && safe === cells.length ? 0 : 1);
