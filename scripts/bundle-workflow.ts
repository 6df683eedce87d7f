// Runs demo scenarios with the built, minified Lambda bundles instead of the TypeScript sources, to
// prove that error names survive minification and that the bundles work inside Lambda's error envelope.
// Prints one JSON line: { scenarios: [{ name, outcome, elasticIpInstanceId, oldInstanceId, newInstanceId }] }.
import { pathToFileURL } from 'node:url';
import { runScenario, SCENARIOS } from '../sandbox/demo';
import { sandboxFactory } from '../sandbox/run-demo';
import type { HandlerSet, LambdaHandler } from '../sandbox/workflow';
import { buildBundles } from './build-bundles';

const main = async () => {
  const outputs = await buildBundles();
  const handlers: HandlerSet = {};
  for (const [folder, file] of Object.entries(outputs)) {
    const module = (await import(pathToFileURL(file).href)) as { handler: LambdaHandler };
    handlers[folder] = module.handler;
  }
  const wanted = process.argv.slice(2);
  const results = [];
  for (const scenario of SCENARIOS.filter((s) => wanted.length === 0 || wanted.includes(s.name))) {
    const r = await runScenario(sandboxFactory, scenario, handlers);
    results.push({
      name: r.name,
      outcome: r.outcome,
      oldInstanceId: r.oldInstanceId,
      newInstanceId: r.newInstanceId,
      elasticIpInstanceId: r.elasticIpInstanceId,
    });
  }
  console.log(JSON.stringify({ scenarios: results }));
};

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
