import { formatScenario, runScenario, type SandboxFactory, SCENARIOS, type ScenarioResult } from './demo';
import { Sandbox } from './index';

/** One fresh account and clock per scenario (the sandbox installs its clock and removes it on stop). */
export const sandboxFactory: SandboxFactory = { start: () => Sandbox.start() };

export const runDemo = async (options: { json: boolean; only?: string[] | undefined }): Promise<number> => {
  const scenarios = SCENARIOS.filter((s) => !options.only || options.only.includes(s.name));
  if (scenarios.length === 0) {
    console.error(`no such scenario; choose from: ${SCENARIOS.map((s) => s.name).join(', ')}`);
    return 2;
  }
  const started = performance.now();
  const results: ScenarioResult[] = [];
  for (const scenario of scenarios) {
    if (!options.json) console.log(`\n▶ ${scenario.name}: ${scenario.description}`);
    const result = await runScenario(sandboxFactory, scenario);
    results.push(result);
    if (!options.json) console.log(formatScenario(result));
  }
  if (options.json) {
    console.log(JSON.stringify({ scenarios: results }, null, 2));
  } else {
    console.log(
      `\n${results.length} scenario(s) in ${((performance.now() - started) / 1000).toFixed(1)} s wall time`,
    );
  }
  return 0;
};
