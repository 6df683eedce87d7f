/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  setupFiles: ['<rootDir>/test/setup.ts'],
  setupFilesAfterEnv: ['aws-cdk-lib/testhelpers/jest-autoclean', 'aws-sdk-client-mock-jest'],
  transform: {
    '^.+\\.(t|j|mj)sx?$': ['@swc/jest', { jsc: { target: 'es2022' } }],
  },
  // middy, aws-local-stepfunctions and commander ship ESM only (or ESM-first); let swc compile them for jest's CJS runtime.
  transformIgnorePatterns: ['/node_modules/(?!(@middy|aws-local-stepfunctions|commander)/)'],
  // A workflow test drives a whole replacement through real HTTPS probes every 50 virtual ms: about
  // 10 s on a quiet 2-core machine, eight times that on a loaded CI runner (seen: 89 s).
  testTimeout: 300_000,
  // One test file at a time (suites share cdk.out and ports), but in a worker process, not in band: the
  // workflow, fault and CLI suites start thousands of sandbox accounts, and one long-lived process grew
  // past 6 GB in CI. With a memory limit jest uses a worker even for one, and replaces it once a test
  // file leaves it above the limit.
  maxWorkers: 1,
  workerIdleMemoryLimit: '1GB',
};
