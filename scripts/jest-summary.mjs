// Prints the closing line CI reads ("N passed, N failed") from jest's JSON results, and exits non-zero
// when jest failed or wrote no results (a crashed run must not look green).
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? '.jest.json';
let results;
try {
  results = JSON.parse(readFileSync(file, 'utf8'));
} catch (error) {
  console.log(`jest wrote no readable results to ${file}: ${error.message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const failedSuites = results.numRuntimeErrorTestSuites ?? 0;
const failed = results.numFailedTests + failedSuites;
console.log(`${results.numPassedTests} passed, ${failed} failed`);
process.exit(results.success && failed === 0 ? 0 : 1);
