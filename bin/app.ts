import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { UnderstudyConfig } from '../lambdas/shared/config';
import { configPathFrom, loadConfig } from '../lib/config-loader';
import { UnderstudyStack } from '../lib/understudy-stack';

const app = new App();

let config: UnderstudyConfig;
try {
  config = loadConfig(configPathFrom(app.node));
} catch (error) {
  // Every loader error is addressed to the user (field, fix); a stack trace would only bury it.
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
}

new UnderstudyStack(app, 'Understudy', {
  description:
    'Understudy: replaces the EC2 server behind an Elastic IP with a fresh one from a prebuilt AMI',
  config,
  // Offline, without credentials, the CLI sets neither: the stack is then environment-agnostic.
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});

Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
