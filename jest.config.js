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
  testTimeout: 60000,
};
