// Issue 3 scope 6: `understudy tfstate reconcile` on a generated ~30 MB state, as a whole process (the
// minified ESM bundle of the CLI, run by the node running this script), against jq doing a comparable
// edit of the same file. Median wall time of 5 runs each, peak RSS from /usr/bin/time. Goals are
// printed as met / not met; a missed goal never fails the process.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { BUNDLE } from '../lib/bundling';
import { TARGET, writeFixture } from './tfstate-fixture';

const RUNS = 5;
const OUT = join(__dirname, 'out');
const ROOT = join(__dirname, '..');
/** The new instance: the CLI test fixtures' describe output (the fixture's target is their old instance). */
const DESCRIBE = join(ROOT, 'test', 'fixtures', 'tfstate', 'cli');
const TIME = '/usr/bin/time';

/** What jq writes: the same fields reconcile changes for this target (values from DESCRIBE). */
const JQ_FILTER = `
def web: select(.module == "module.web" and .type == "aws_instance" and .name == "this");
def eip($t): select(.module == null and .type == $t and .name == "web");
.serial += 1
| (.resources[] | web | .instances[0]) |= (
    .attributes.id = "i-0f9e8d7c6b5a43210"
  | .attributes.arn = "arn:aws:ec2:eu-west-1:123456789012:instance/i-0f9e8d7c6b5a43210"
  | .attributes.ami = "ami-0bbbbbbbbbbbbbbb2"
  | .attributes.private_ip = "10.0.1.77"
  | .attributes.private_dns = "ip-10-0-1-77.eu-west-1.compute.internal"
  | .attributes.primary_network_interface_id = "eni-0fedcba9876543210"
  | .attributes.root_block_device[0].volume_id = "vol-0b11d2222bbbb3333"
  | .identity.id = "i-0f9e8d7c6b5a43210")
| (.resources[] | eip("aws_eip") | .instances[0].attributes) |= (
    .instance = "i-0f9e8d7c6b5a43210"
  | .association_id = "eipassoc-0cccc3333dddd4444"
  | .network_interface = "eni-0fedcba9876543210"
  | .private_ip = "10.0.1.77"
  | .private_dns = "ip-10-0-1-77.eu-west-1.compute.internal")
| (.resources[] | eip("aws_eip_association") | .instances[0].attributes) |= (
    .id = "eipassoc-0cccc3333dddd4444"
  | .instance_id = "i-0f9e8d7c6b5a43210"
  | .network_interface_id = "eni-0fedcba9876543210"
  | .private_ip_address = "10.0.1.77")
| .outputs.web_instance_id.value = "i-0f9e8d7c6b5a43210"
`;

interface Sample {
  ms: number;
  /** Peak resident set size in KiB, when /usr/bin/time is there to tell. */
  rssKiB: number | undefined;
}

const onPath = (command: string): boolean =>
  spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;

/** One whole process, stdout to `stdoutFile`; fails loudly if it does not exit 0 (a broken run is no sample). */
const runOnce = (command: string, args: readonly string[], stdoutFile: string): Sample => {
  const withTime = existsSync(TIME);
  const rssFile = join(OUT, 'rss.txt');
  const out = openSync(stdoutFile, 'w');
  const started = performance.now();
  const result = withTime
    ? spawnSync(TIME, ['-f', '%M', '-o', rssFile, command, ...args], { stdio: ['ignore', out, 'pipe'] })
    : spawnSync(command, args, { stdio: ['ignore', out, 'pipe'] });
  const ms = performance.now() - started;
  closeSync(out);
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.status}: ${result.stderr.toString().trim()}`,
    );
  }
  const rss = withTime ? Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()) : Number.NaN;
  return { ms, rssKiB: Number.isFinite(rss) ? rss : undefined };
};

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
};

/** One warm-up run (page cache, disk), then the median of RUNS. */
const measure = (command: string, args: readonly string[], stdoutFile: string) => {
  runOnce(command, args, stdoutFile);
  const samples = Array.from({ length: RUNS }, () => runOnce(command, args, stdoutFile));
  const rss = samples.flatMap((s) => (s.rssKiB === undefined ? [] : [s.rssKiB]));
  return { ms: median(samples.map((s) => s.ms)), rssKiB: rss.length > 0 ? median(rss) : undefined };
};

/** The CLI's own command tree, bundled the way the Lambdas are (ESM, minified); S3 code split off. */
const bundleCli = async (): Promise<string> => {
  const dir = join(OUT, 'tfstate-cli');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  // An .mjs entry, so the TypeScript check (which includes bench/) does not pick up this generated file.
  const entry = join(OUT, 'tfstate-cli-entry.mjs');
  writeFileSync(
    entry,
    [
      "import { runTfstate } from '../../bin/tfstate';",
      'const io = { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) };',
      'const [command, ...argv] = process.argv.slice(2);',
      "if (command !== 'tfstate') throw new Error('usage: node cli.mjs tfstate <reconcile|mv> ...');",
      'runTfstate(argv, { io }).then((result) => { process.exitCode = result.code; });',
      '',
    ].join('\n'),
  );
  await build({
    entryPoints: { cli: entry },
    outdir: dir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    platform: 'node',
    format: BUNDLE.format,
    target: BUNDLE.target,
    minify: BUNDLE.minify,
    mainFields: [...BUNDLE.mainFields],
    banner: { js: BUNDLE.banner },
    logLevel: 'warning',
  });
  return join(dir, 'cli.mjs');
};

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const goal = (met: boolean) => (met ? 'met' : 'NOT met');

export const runTfstateBench = async (): Promise<void> => {
  mkdirSync(OUT, { recursive: true });
  const generated = performance.now();
  const { file, bytes } = writeFixture(OUT);
  console.log(
    `\ntfstate reconcile benchmark: ${file} (${mib(bytes)}, generated in ${((performance.now() - generated) / 1000).toFixed(1)} s)`,
  );
  const bundle = await bundleCli();
  const oursOut = join(OUT, 'bench.ours.tfstate');
  const ours = measure(
    process.execPath,
    [
      bundle,
      'tfstate',
      'reconcile',
      '--state',
      file,
      '--instance',
      join(DESCRIBE, 'describe-instances.json'),
      '--address',
      join(DESCRIBE, 'describe-addresses.json'),
      '--volumes',
      join(DESCRIBE, 'describe-volumes.json'),
      '--instance-address',
      TARGET.instanceAddress,
      '--expect-instance',
      TARGET.oldInstanceId,
      '--out',
      oursOut,
    ],
    join(OUT, 'bench.ours.report.txt'),
  );
  const written = JSON.parse(readFileSync(oursOut, 'utf8')) as { serial: number };
  const rssText = (kib: number | undefined) =>
    kib === undefined
      ? 'n/a (no /usr/bin/time)'
      : `${mib(kib * 1024)} (${((kib * 1024) / bytes).toFixed(1)}x the file)`;
  console.log(
    `ours: node ${process.version} ${bundle} (${(statSync(bundle).size / 1024).toFixed(0)} KiB), median of ${RUNS}: ${ours.ms.toFixed(0)} ms, peak RSS ${rssText(ours.rssKiB)}; wrote serial ${written.serial}`,
  );

  let jq: { ms: number; rssKiB: number | undefined } | undefined;
  if (onPath('jq')) {
    const version = spawnSync('jq', ['--version']).stdout.toString().trim();
    jq = measure('jq', [JQ_FILTER, file], join(OUT, 'bench.jq.tfstate'));
    console.log(
      `jq:   ${version}, median of ${RUNS}: ${jq.ms.toFixed(0)} ms, peak RSS ${rssText(jq.rssKiB)}`,
    );
  } else {
    console.log('jq not installed: no time ratio (apt-get install jq)');
  }

  const ratio = jq ? ours.ms / jq.ms : undefined;
  const rssRatio = ours.rssKiB === undefined ? undefined : (ours.rssKiB * 1024) / bytes;
  console.log(
    `goal time <= 1.0x jq: ${ratio === undefined ? 'n/a' : `${ratio.toFixed(2)}x, ${goal(ratio <= 1)}`}; ` +
      `goal peak RSS <= 10x file: ${rssRatio === undefined ? 'n/a' : `${rssRatio.toFixed(1)}x, ${goal(rssRatio <= 10)}`}`,
  );
  writeFileSync(
    join(OUT, 'tfstate.json'),
    JSON.stringify(
      { node: process.version, fileBytes: bytes, runs: RUNS, ours, jq: jq ?? null, ratio, rssRatio },
      null,
      2,
    ),
  );
};

if (require.main === module) {
  runTfstateBench().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
