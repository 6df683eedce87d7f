import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { App, Lazy, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { parse } from 'yaml';
import { ImageBuildSchema } from '../../lambdas/shared/config';
import {
  AGENT_FILES,
  COMPONENT_ORDER,
  COMPONENTS_DIR,
  type ComponentName,
  componentFile,
  contentVersion,
  type Distro,
  execStartPath,
  GOLDEN_IMAGE_TAG,
  GoldenImage,
  type GoldenImageProps,
  IMAGE_SETTINGS_FILE,
  type ImageBuild,
  imageSettings,
  KEEP_TAG,
  READINESS_AGENT_DIR,
  RECENTLY_LAUNCHED_DAYS,
  renderComponent,
  stripCommentLines,
} from '../../lib/golden-image';
import { flatten } from '../../lib/nag-findings';
import type { UnderstudyStack } from '../../lib/understudy-stack';
import { ACCOUNT, logicalId, REGION, statementsOfRole, synthesize } from './stack-fixture';

interface Step {
  name?: unknown;
  action?: unknown;
  onFailure?: unknown;
  inputs?: { commands?: unknown };
}
interface ComponentDocument {
  name?: unknown;
  schemaVersion?: unknown;
  phases?: { name?: unknown; steps?: Step[] }[];
}

const PARAMETER = '/understudy/Test/images/web';
const BUS = 'Test-bus';

/** One GoldenImage in a bare stack: its template holds nothing else. */
const goldenImage = (build: Partial<ImageBuild> = {}, extra: Partial<GoldenImageProps> = {}) => {
  const stack = new Stack(new App(), 'Test', { env: { account: ACCOUNT, region: REGION } });
  const image = new GoldenImage(stack, 'Image', {
    target: 'web',
    build: { parentImage: 'al2023', architecture: 'x86_64', keepImages: 5, ...build },
    parameterName: PARAMETER,
    eventBusName: BUS,
    ...extra,
  });
  return { stack, image, template: Template.fromStack(stack) };
};

const only = (template: Template, type: string): Record<string, unknown> => {
  const found = Object.values(template.findResources(type));
  expect(found).toHaveLength(1);
  return (found[0] as { Properties: Record<string, unknown> }).Properties;
};

/** A copy of the real readiness agent files, to change one without touching the repo. */
const agentCopy = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'understudy-agent-'));
  for (const name of AGENT_FILES) copyFileSync(join(READINESS_AGENT_DIR, name), join(dir, name));
  return dir;
};

/** What the component embeds: the agent's files and the image's settings. */
const agentFiles = (): Record<string, string> => ({
  ...Object.fromEntries(
    AGENT_FILES.map((name) => [name, readFileSync(join(READINESS_AGENT_DIR, name), 'utf8')]),
  ),
  [IMAGE_SETTINGS_FILE]: imageSettings(BUS),
});

const commandsOf = (step: Step): string[] => {
  const commands = step.inputs?.commands;
  return Array.isArray(commands) ? commands.map(String) : [];
};

const DISTROS: Distro[] = ['al2023', 'debian-12'];

/** Each file a build phase unpacks from its embedded gzip, with the mode and path it installs it at. */
const installedFiles = (build: string) =>
  [
    ...build.matchAll(
      /<<'UNDERSTUDY_EMBEDDED_FILE' \| gunzip > "\$staged"\n([A-Za-z0-9+/=]+)\nUNDERSTUDY_EMBEDDED_FILE\n+[^\n]*\ninstall -D -m (\d+) -o root -g root "\$staged" (\S+)/g,
    ),
  ].map(([, encoded, mode, target]) => ({
    content: gunzipSync(Buffer.from(encoded ?? '', 'base64')).toString('utf8'),
    mode,
    target,
  }));

const apiImage = (stack: UnderstudyStack): GoldenImage => {
  const image = stack.goldenImages.api;
  if (image === undefined) throw new Error('the example config no longer builds the api image');
  return image;
};

/** Every document in ami/components as written, and every one as rendered for each distro. */
const writtenDocuments = (): [string, string][] =>
  readdirSync(COMPONENTS_DIR)
    .filter((f) => f.endsWith('.yml'))
    .map((f) => [f, readFileSync(join(COMPONENTS_DIR, f), 'utf8')]);
const renderedDocuments = (distro: Distro): Record<ComponentName, string> => {
  const { image } = goldenImage({ parentImage: distro });
  return Object.fromEntries(
    COMPONENT_ORDER.map((name) => [name, image.components[name].data as string]),
  ) as Record<ComponentName, string>;
};
const phaseTextOf = (text: string, phase: string): string =>
  ((parse(text) as ComponentDocument).phases ?? [])
    .filter((p) => p.name === phase)
    .flatMap((p) => p.steps ?? [])
    .flatMap(commandsOf)
    .join('\n');

const allDocuments = (): [string, string][] => [
  ...writtenDocuments(),
  ...DISTROS.flatMap((distro) =>
    Object.entries(renderedDocuments(distro)).map(([name, data]): [string, string] => [
      `${name} rendered for ${distro}`,
      data,
    ]),
  ),
];

describe('the stack builds an image only for targets that ask for it', () => {
  let stack: UnderstudyStack;
  let template: Template;
  beforeAll(() => {
    ({ stack, template } = synthesize());
  });

  test('the example api target (image.build) gets a pipeline; web, which brings its own AMI, does not', () => {
    const pipelines = Object.values(template.findResources('AWS::ImageBuilder::ImagePipeline'));
    expect(pipelines.map((p) => p.Properties.Name)).toEqual(['understudy-Understudy-api']);
    expect(Object.keys(stack.goldenImages)).toEqual(['api']);
  });

  test('the distribution writes the AMI id to the target image parameter of the stack', () => {
    const distribution = template.toJSON().Resources[stack.getLogicalId(apiImage(stack).distribution)];
    const [only] = distribution.Properties.Distributions;
    expect(only.SsmParameterConfigurations).toEqual([
      { ParameterName: '/understudy/Understudy/images/api', DataType: 'aws:ec2:image' },
    ]);
    expect(only.Region).toBe(REGION);
  });

  test("the api target's stored config points preflight at that parameter, with no build block", () => {
    const parameters = Object.values(template.findResources('AWS::SSM::Parameter'));
    const api = parameters.find((p) => p.Properties.Name === '/understudy/Understudy/targets/api');
    expect(JSON.parse(api?.Properties.Value).image).toEqual({
      ssmParameter: '/understudy/Understudy/images/api',
    });
  });

  test('preflight may read the image parameter; it reads no other parameter it did not before, and no other step reads it', () => {
    const preflight = statementsOfRole(template, logicalId(stack.lambdas.steps.preflight.role));
    const resolve = preflight.find((s) => s.Sid === 'ResolveImageParameters');
    expect([resolve?.Resource].flat().map(flatten)).toEqual([
      `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/golden/web/ami`,
      `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/understudy/Understudy/images/api`,
    ]);
    const readers = Object.entries(stack.lambdas.steps).filter(([, { role }]) =>
      statementsOfRole(template, logicalId(role)).some((s) =>
        [s.Resource]
          .flat()
          .map(flatten)
          .some((r) => r.endsWith('/images/api')),
      ),
    );
    expect(readers.map(([step]) => step)).toEqual(['preflight']);
  });

  test('a stack output names each pipeline, to start a bake with start-image-pipeline-execution', () => {
    const outputs = template.toJSON().Outputs;
    expect(flatten(outputs.ImagePipelineArnApi.Value)).toBe(
      `<${stack.getLogicalId(apiImage(stack).pipeline)}.Arn>`,
    );
    expect(outputs.ImagePipelineArnApi.Description).toContain('start-image-pipeline-execution');
  });

  test('the event bus has a name fixed at synth, and the api image bakes exactly that name', () => {
    const bus = only(template, 'AWS::Events::EventBus');
    expect(bus.Name).toBe('Understudy-bus');
    expect(template.toJSON().Outputs.EventBusName.Value).toEqual({
      Ref: stack.getLogicalId(stack.eventBus.node.defaultChild as never),
    });
    const data = apiImage(stack).components['readiness-agent'].data as string;
    const settings = installedFiles(phaseTextOf(data, 'build')).find(
      (f) => f.target === '/etc/understudy/agent.image.env',
    );
    expect(settings?.content).toContain('\nEVENT_BUS_NAME=Understudy-bus\n');
  });

  test('cdk-nag AwsSolutions reports nothing unacknowledged for the image resources', () => {
    const checked = synthesize({}, true).stack;
    const report = new AwsSolutionsChecks().validateScope(checked);
    expect(report.violations.map((v) => v.ruleName)).toEqual([]);
  });
});

describe('recipe', () => {
  test.each([
    ['al2023', 'x86_64', 'ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64'],
    ['al2023', 'arm64', 'ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64'],
    ['debian-12', 'x86_64', 'ssm:/aws/service/debian/release/12/latest/amd64'],
    ['debian-12', 'arm64', 'ssm:/aws/service/debian/release/12/latest/arm64'],
  ] as const)(
    '%s on %s starts from the public parameter of the current release',
    (parentImage, architecture, expected) => {
      const { template } = goldenImage({ parentImage, architecture });
      expect(only(template, 'AWS::ImageBuilder::ImageRecipe').ParentImage).toBe(expected);
    },
  );

  test('installs the components in order: tools, SSM agent, nginx, certbot, readiness agent', () => {
    const { template, image, stack } = goldenImage();
    const components = only(template, 'AWS::ImageBuilder::ImageRecipe').Components as unknown[];
    expect(components.map((c) => flatten((c as { ComponentArn: unknown }).ComponentArn))).toEqual(
      COMPONENT_ORDER.map((name) => `<${stack.getLogicalId(image.components[name])}.Arn>`),
    );
  });

  test('keeps the SSM agent in the image, since Understudy drives new boxes through it', () => {
    for (const parentImage of DISTROS) {
      const recipe = only(goldenImage({ parentImage }).template, 'AWS::ImageBuilder::ImageRecipe');
      expect(recipe.AdditionalInstanceConfiguration).toMatchObject({
        SystemsManagerAgent: { UninstallAfterBuild: false },
      });
    }
  });

  test('on Debian, which ships no SSM agent, the build user data installs the .deb for the architecture; AL2023 keeps the default', () => {
    const debian = only(goldenImage({ parentImage: 'debian-12' }).template, 'AWS::ImageBuilder::ImageRecipe');
    const userData = Buffer.from(
      (debian.AdditionalInstanceConfiguration as { UserDataOverride: string }).UserDataOverride,
      'base64',
    ).toString('utf8');
    expect(userData).toMatch(/^#!\/bin\/bash\nset -euo pipefail\n/);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the user data's own bash expansion
    expect(userData).toContain('/latest/debian_${arch}/amazon-ssm-agent.deb');
    expect(userData).toContain('arch=$(dpkg --print-architecture)');
    expect(userData).toContain('X-aws-ec2-metadata-token');
    const al2023 = only(goldenImage().template, 'AWS::ImageBuilder::ImageRecipe');
    expect(al2023.AdditionalInstanceConfiguration).not.toHaveProperty('UserDataOverride');
  });
});

describe('component documents', () => {
  test('every distro has a document for each component, and every document is in use', () => {
    const used = new Set(
      DISTROS.flatMap((distro) =>
        COMPONENT_ORDER.map((name) => {
          const specific = `${name}.${distro}.yml`;
          return readdirSync(COMPONENTS_DIR).includes(specific) ? specific : `${name}.yml`;
        }),
      ),
    );
    expect([...used].sort()).toEqual(
      writtenDocuments()
        .map(([f]) => f)
        .sort(),
    );
  });

  test('each has exactly the build, validate and test phases, in that order', () => {
    for (const [name, text] of allDocuments()) {
      const doc = parse(text) as ComponentDocument;
      expect({ name, phases: doc.phases?.map((p) => p.name) }).toEqual({
        name,
        phases: ['build', 'validate', 'test'],
      });
      expect({ name, schemaVersion: doc.schemaVersion }).toEqual({ name, schemaVersion: 1 });
    }
  });

  test('every step is named, uniquely within its phase, and has at least one command', () => {
    for (const [name, text] of allDocuments()) {
      for (const phase of (parse(text) as ComponentDocument).phases ?? []) {
        const steps = phase.steps ?? [];
        expect(steps.length).toBeGreaterThan(0);
        const names = steps.map((s) => s.name);
        for (const stepName of names)
          expect({ name, stepName }).toEqual({
            name,
            stepName: expect.stringMatching(/^[A-Za-z][A-Za-z0-9]+$/),
          });
        expect(new Set(names).size).toBe(names.length);
        for (const step of steps) expect(commandsOf(step).length).toBeGreaterThan(1);
      }
    }
  });

  test('every step is a bash script that stops at the first failing command, and no step lets a failure pass', () => {
    for (const [name, text] of allDocuments()) {
      for (const phase of (parse(text) as ComponentDocument).phases ?? []) {
        for (const step of phase.steps ?? []) {
          const where = `${name} ${String(phase.name)}/${String(step.name)}`;
          expect({ where, action: step.action }).toEqual({ where, action: 'ExecuteBash' });
          expect({ where, first: commandsOf(step)[0] }).toEqual({ where, first: 'set -euo pipefail' });
          expect({ where, onFailure: step.onFailure ?? 'Abort' }).toEqual({ where, onFailure: 'Abort' });
        }
      }
    }
  });

  const phaseText = phaseTextOf;

  test.each(DISTROS)(
    'on %s the build installs nginx, certbot with its nginx and Route 53 plugins, jq and the agent',
    (distro) => {
      const docs = renderedDocuments(distro);
      expect(phaseText(docs.nginx, 'build')).toMatch(
        /(dnf|apt-get -o DPkg::Lock::Timeout=600) install -y nginx/,
      );
      expect(phaseText(docs.certbot, 'build')).toMatch(
        distro === 'al2023'
          ? /pip install certbot certbot-nginx certbot-dns-route53/
          : /apt-get -o DPkg::Lock::Timeout=600 install -y certbot python3-certbot-nginx python3-certbot-dns-route53/,
      );
      expect(phaseText(docs.tools, 'build')).toMatch(/install -y .*jq/);
      expect(phaseText(docs['ssm-agent'], 'build')).toContain('systemctl enable amazon-ssm-agent');
      expect(phaseText(docs['readiness-agent'], 'build')).toContain(
        'systemctl enable understudy-readiness.service understudy-readiness-progress.service',
      );
    },
  );

  test.each(DISTROS)('on %s validation and tests assert what the workflow relies on', (distro) => {
    const docs = renderedDocuments(distro);
    const checks = (name: ComponentName) =>
      `${phaseText(docs[name], 'validate')}\n${phaseText(docs[name], 'test')}`;
    expect(checks('nginx')).toContain('nginx -t');
    expect(checks('nginx')).toContain('systemctl is-active nginx');
    expect(checks('certbot')).toContain('certbot --version');
    expect(checks('certbot')).toContain("grep -qx '\\* nginx'");
    expect(checks('certbot')).toContain("grep -qx '\\* dns-route53'");
    expect(checks('certbot')).toMatch(/systemctl is-enabled certbot(-renew)?\.timer/);
    expect(checks('tools')).toContain('command -v jq');
    expect(checks('tools')).toContain('command -v aws');
    expect(checks('ssm-agent')).toContain('systemctl is-enabled amazon-ssm-agent');
    expect(checks('readiness-agent')).toContain('systemctl is-enabled understudy-readiness\n');
    expect(checks('readiness-agent')).toContain('systemctl is-enabled understudy-readiness-progress');
    expect(checks('readiness-agent')).toContain(
      "grep -q '^EVENT_BUS_NAME=.' /etc/understudy/agent.image.env",
    );
  });

  test('on Debian every apt-get, in the components and in the build user data, waits for the dpkg lock', () => {
    const debian = renderedDocuments('debian-12');
    const userData = Buffer.from(
      (
        only(goldenImage({ parentImage: 'debian-12' }).template, 'AWS::ImageBuilder::ImageRecipe')
          .AdditionalInstanceConfiguration as { UserDataOverride: string }
      ).UserDataOverride,
      'base64',
    ).toString('utf8');
    const calls = [...Object.values(debian), userData].flatMap((text) => text.match(/\bapt-get\b.*/g) ?? []);
    expect(calls.length).toBeGreaterThanOrEqual(7);
    for (const call of calls)
      expect(call).toMatch(/^apt-get -o DPkg::Lock::Timeout=600 (update|install)( |$)/);
    expect(userData).not.toContain('dpkg -i');
  });

  test('the readiness agent component installs the agent, both units and the image settings byte for byte', () => {
    const files = agentFiles();
    const path = execStartPath(files['understudy-readiness.service'] ?? '');
    const build = phaseText(renderedDocuments('al2023')['readiness-agent'], 'build');
    const installed = installedFiles(build);
    expect(installed).toEqual([
      { content: files['understudy-readiness'], mode: '0755', target: path },
      {
        content: files['understudy-readiness.service'],
        mode: '0644',
        target: '/etc/systemd/system/understudy-readiness.service',
      },
      {
        content: files['understudy-readiness-progress.service'],
        mode: '0644',
        target: '/etc/systemd/system/understudy-readiness-progress.service',
      },
      { content: files[IMAGE_SETTINGS_FILE], mode: '0644', target: '/etc/understudy/agent.image.env' },
    ]);
    expect(build).not.toMatch(/@embed|@sha256:|@agent-path@/);
  });

  test('rendering drops only whole-line comments: every command of every document is unchanged', () => {
    for (const distro of DISTROS) {
      const rendered = renderedDocuments(distro);
      for (const name of COMPONENT_ORDER) {
        if (name === 'readiness-agent') continue;
        const written = readFileSync(componentFile(name, distro), 'utf8');
        expect(rendered[name]).not.toMatch(/^[ \t]*#/m);
        expect({ name, distro, doc: parse(rendered[name]) }).toEqual({ name, distro, doc: parse(written) });
      }
    }
    expect(stripCommentLines('a: 1\n  # why\n# header\nb: "#x"\n')).toBe('a: 1\nb: "#x"\n');
  });

  test('both units start the one installed agent; the progress unit in its --progress mode', () => {
    const files = agentFiles();
    const path = execStartPath(files['understudy-readiness.service'] ?? '');
    expect(execStartPath(files['understudy-readiness-progress.service'] ?? '')).toBe(path);
    expect(files['understudy-readiness-progress.service']).toContain(`\nExecStart=${path} --progress\n`);
  });

  test('units that start different programs fail synth', () => {
    const dir = agentCopy();
    const unit = join(dir, 'understudy-readiness-progress.service');
    writeFileSync(
      unit,
      readFileSync(unit, 'utf8').replace(/^ExecStart=.*$/m, 'ExecStart=/usr/bin/other --progress'),
    );
    expect(() => goldenImage({}, { readinessAgentDir: dir })).toThrow(/start different programs/);
  });

  test('each embedded file is checked against its SHA-256 before it is installed', () => {
    const build = phaseText(renderedDocuments('al2023')['readiness-agent'], 'build');
    for (const [name, content] of Object.entries(agentFiles())) {
      const digest = createHash('sha256').update(content).digest('hex');
      expect({ name, checked: build.includes(`echo "${digest}  $staged" | sha256sum -c -`) }).toEqual({
        name,
        checked: true,
      });
    }
  });
});

describe('the image settings the agent reads', () => {
  test('name the bus, in the KEY=value form the agent parses, with nothing else set', () => {
    const lines = imageSettings('Prod-bus')
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'));
    expect(lines).toEqual(['EVENT_BUS_NAME=Prod-bus']);
  });

  test('a bus name unknown at synth (a token) fails synth instead of baking a placeholder', () => {
    const token = Lazy.string({ produce: () => 'late' });
    expect(() => goldenImage({}, { eventBusName: token })).toThrow(/known at synth time/);
  });

  test('a name the agent would refuse fails synth', () => {
    expect(() => imageSettings('bad name')).toThrow(/not an event bus name/);
  });

  test('a different bus gives the readiness agent component, and only it, a new version', () => {
    const versionsOf = (eventBusName: string) =>
      Object.fromEntries(
        Object.values(
          goldenImage({}, { eventBusName }).template.findResources('AWS::ImageBuilder::Component'),
        ).map((c) => [c.Properties.Name, c.Properties.Version]),
      );
    const a = versionsOf('A-bus');
    const b = versionsOf('B-bus');
    expect(Object.keys(a).filter((n) => a[n] !== b[n])).toEqual(['understudy-Test-web-readiness-agent']);
  });
});

describe('rendering refuses what would break the document', () => {
  const doc = "x:\n  - |\n    cat <<'UNDERSTUDY_EMBEDDED_FILE'\n    @embed f\n    UNDERSTUDY_EMBEDDED_FILE\n";

  test('indents an embedded file into its block, so the YAML still parses to the file', () => {
    const rendered = renderComponent(doc, { f: 'a\n\n  b\n' });
    expect(parse(rendered)).toEqual({
      x: ["cat <<'UNDERSTUDY_EMBEDDED_FILE'\na\n\n  b\nUNDERSTUDY_EMBEDDED_FILE\n"],
    });
  });

  test.each([
    ['a file it was not given', {}, /embeds "f", which was not given/],
    ['Image Builder variable syntax', { f: 'echo {{ x }}\n' }, /contains "\{\{"/],
    ['the heredoc delimiter', { f: 'UNDERSTUDY_EMBEDDED_FILE\n' }, /would end the heredoc/],
    ['a file without a final newline', { f: 'echo hi' }, /must end with a newline/],
  ])('%s', (_what, files: Record<string, string>, error) => {
    expect(() => renderComponent(doc, files)).toThrow(error);
  });

  test('a missing readiness agent fails synth, naming the file', () => {
    const empty = mkdtempSync(join(tmpdir(), 'understudy-agent-'));
    expect(() => goldenImage({}, { readinessAgentDir: empty })).toThrow(
      `the golden image installs the readiness agent from ${join(empty, 'understudy-readiness')}, which does not exist`,
    );
  });

  test('a unit without an absolute ExecStart fails synth', () => {
    expect(() => execStartPath('[Service]\nExecStart=understudy-readiness\n')).toThrow(/absolute path/);
    expect(execStartPath('[Service]\nExecStart=-/usr/local/bin/agent --once\n')).toBe('/usr/local/bin/agent');
  });
});

describe('versions follow content', () => {
  test('the same content gives the same version, in the x.y.z form Image Builder takes', () => {
    expect(contentVersion('abc')).toBe(contentVersion('abc'));
    expect(contentVersion('abc')).toMatch(/^1\.\d+\.\d+$/);
    for (const node of contentVersion('abc').split('.'))
      expect(Number(node)).toBeLessThanOrEqual(2 ** 30 - 1);
  });

  test('changed content gives a different version', () => {
    expect(contentVersion('abc')).not.toBe(contentVersion('abd'));
  });

  const versions = (template: Template) => ({
    components: Object.fromEntries(
      Object.values(template.findResources('AWS::ImageBuilder::Component')).map((c) => [
        c.Properties.Name,
        c.Properties.Version,
      ]),
    ),
    recipe: only(template, 'AWS::ImageBuilder::ImageRecipe').Version,
  });

  test('synthesising twice from the same files changes no version (a redeploy is a no-op)', () => {
    expect(versions(goldenImage().template)).toEqual(versions(goldenImage().template));
  });

  test('a change to the readiness agent bumps its component and the recipe, and nothing else', () => {
    const dir = agentCopy();
    const before = versions(goldenImage({}, { readinessAgentDir: dir }).template);
    const script = join(dir, 'understudy-readiness');
    writeFileSync(script, `${readFileSync(script, 'utf8')}# changed\n`);
    const after = versions(goldenImage({}, { readinessAgentDir: dir }).template);
    const changed = Object.keys(before.components).filter(
      (n) => before.components[n] !== after.components[n],
    );
    expect(changed).toEqual(['understudy-Test-web-readiness-agent']);
    expect(after.recipe).not.toBe(before.recipe);
  });

  test('a different parent image gives a different recipe version', () => {
    const x86 = versions(goldenImage({ architecture: 'x86_64' }).template);
    const arm = versions(goldenImage({ architecture: 'arm64' }).template);
    expect(arm.recipe).not.toBe(x86.recipe);
  });
});

describe('build infrastructure and pipeline', () => {
  test('build instances get an instance profile with the SSM core and Image Builder instance policies', () => {
    const { template, image, stack } = goldenImage();
    const role =
      template.toJSON().Resources[stack.getLogicalId(image.instanceRole.node.defaultChild as never)];
    expect(role.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      expect.objectContaining({ Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }),
    ]);
    expect(role.Properties.ManagedPolicyArns.map(flatten).sort()).toEqual([
      'arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore',
      'arn:<AWS::Partition>:iam::aws:policy/EC2InstanceProfileForImageBuilder',
    ]);
    expect(only(template, 'AWS::IAM::InstanceProfile').Roles).toEqual([
      { Ref: stack.getLogicalId(image.instanceRole.node.defaultChild as never) },
    ]);
    expect(Object.keys(template.findResources('AWS::IAM::Policy'))).toEqual([]);
  });

  test.each([
    ['x86_64', undefined, ['t3.small', 't3a.small']],
    ['arm64', undefined, ['t4g.small']],
    ['arm64', ['c7g.large'], ['c7g.large']],
  ] as const)('on %s with instanceTypes %j the build uses %j', (architecture, instanceTypes, expected) => {
    const { template } = goldenImage({
      architecture,
      ...(instanceTypes ? { instanceTypes: [...instanceTypes] } : {}),
    });
    expect(only(template, 'AWS::ImageBuilder::InfrastructureConfiguration').InstanceTypes).toEqual(expected);
  });

  test('a failed build terminates its instance, and build instances require IMDSv2', () => {
    const infrastructure = only(goldenImage().template, 'AWS::ImageBuilder::InfrastructureConfiguration');
    expect(infrastructure.TerminateInstanceOnFailure).toBe(true);
    expect(infrastructure.InstanceMetadataOptions).toEqual({
      HttpTokens: 'required',
      HttpPutResponseHopLimit: 1,
    });
  });

  test('the pipeline joins recipe, infrastructure and distribution, with image tests enabled', () => {
    const { template, image, stack } = goldenImage();
    const pipeline = only(template, 'AWS::ImageBuilder::ImagePipeline');
    expect(flatten(pipeline.ImageRecipeArn)).toBe(`<${stack.getLogicalId(image.recipe)}.Arn>`);
    expect(flatten(pipeline.InfrastructureConfigurationArn)).toBe(
      `<${stack.getLogicalId(image.infrastructure)}.Arn>`,
    );
    expect(flatten(pipeline.DistributionConfigurationArn)).toBe(
      `<${stack.getLogicalId(image.distribution)}.Arn>`,
    );
    expect(pipeline.ImageTestsConfiguration).toMatchObject({ ImageTestsEnabled: true });
  });

  test('without scheduleCron the pipeline runs on demand only', () => {
    expect(only(goldenImage().template, 'AWS::ImageBuilder::ImagePipeline')).not.toHaveProperty('Schedule');
  });

  test('with scheduleCron it runs on that schedule even when no dependency changed', () => {
    const pipeline = only(
      goldenImage({ scheduleCron: 'cron(0 3 ? * SUN *)' }).template,
      'AWS::ImageBuilder::ImagePipeline',
    );
    expect(pipeline.Schedule).toEqual({
      ScheduleExpression: 'cron(0 3 ? * SUN *)',
      PipelineExecutionStartCondition: 'EXPRESSION_MATCH_ONLY',
    });
  });

  test('each build gets a unique AMI name, and the AMI id lands in the given parameter', () => {
    const distribution = only(goldenImage().template, 'AWS::ImageBuilder::DistributionConfiguration');
    const [first] = distribution.Distributions as {
      AmiDistributionConfiguration: { Name: string };
      SsmParameterConfigurations: unknown;
    }[];
    expect(first?.AmiDistributionConfiguration.Name).toBe('understudy-web-{{ imagebuilder:buildDate }}');
    expect(first?.SsmParameterConfigurations).toEqual([
      { ParameterName: PARAMETER, DataType: 'aws:ec2:image' },
    ]);
  });

  test.each(DISTROS)('on %s the construct alone is clean under cdk-nag AwsSolutions', (parentImage) => {
    const { stack } = goldenImage({ parentImage });
    expect(new AwsSolutionsChecks().validateScope(stack).violations.map((v) => v.ruleName)).toEqual([]);
  });
});

describe('retention of old images', () => {
  const lifecycle = (build: Partial<ImageBuild> = {}) => {
    const { template } = goldenImage(build);
    return { template, policy: only(template, 'AWS::ImageBuilder::LifecyclePolicy') };
  };

  test('deletes AMI images beyond the newest keepImages, their AMIs and snapshots included', () => {
    const { policy } = lifecycle({ keepImages: 7 });
    expect(policy.ResourceType).toBe('AMI_IMAGE');
    expect(policy.Status).toBe('ENABLED');
    const [detail, ...others] = policy.PolicyDetails as Record<string, unknown>[];
    expect(others).toEqual([]);
    expect(detail?.Action).toEqual({ Type: 'DELETE', IncludeResources: { Amis: true, Snapshots: true } });
    expect(detail?.Filter).toEqual({ Type: 'COUNT', Value: 7 });
  });

  test('selects every image the pipeline builds, whatever recipe version built it, and only this target of this stack', () => {
    const { template, policy } = lifecycle();
    const pipeline = only(template, 'AWS::ImageBuilder::ImagePipeline');
    expect(policy.ResourceSelection).toEqual({ TagMap: { [GOLDEN_IMAGE_TAG]: 'understudy-Test-web' } });
    expect(policy.ResourceSelection).not.toHaveProperty('Recipes');
    expect(pipeline.ImageTags).toEqual({ [GOLDEN_IMAGE_TAG]: 'understudy-Test-web' });
    expect(pipeline.Name).toBe('understudy-Test-web');
  });

  test('never deletes an AMI launched from in the last 30 days, or one tagged understudy:keep=true', () => {
    const { policy } = lifecycle();
    const [detail] = policy.PolicyDetails as { ExclusionRules?: unknown }[];
    expect(RECENTLY_LAUNCHED_DAYS).toBe(30);
    expect(detail?.ExclusionRules).toEqual({
      Amis: { LastLaunched: { Unit: 'DAYS', Value: 30 }, TagMap: { [KEEP_TAG]: 'true' } },
    });
  });

  test('runs as a role only Image Builder may assume, holding only the AWS lifecycle execution policy', () => {
    const { template, policy } = lifecycle();
    const roles = template.findResources('AWS::IAM::Role');
    const [roleId, role] =
      Object.entries(roles).find(([, r]) =>
        JSON.stringify(r.Properties.AssumeRolePolicyDocument).includes('imagebuilder.amazonaws.com'),
      ) ?? [];
    expect(policy.ExecutionRole).toEqual({ 'Fn::GetAtt': [roleId, 'Arn'] });
    expect(role?.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      { Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'imagebuilder.amazonaws.com' } },
    ]);
    expect(role?.Properties.ManagedPolicyArns.map(flatten)).toEqual([
      'arn:<AWS::Partition>:iam::aws:policy/service-role/EC2ImageBuilderLifecycleExecutionPolicy',
    ]);
    const inline = Object.values(template.findResources('AWS::IAM::Policy')).filter((p) =>
      JSON.stringify(p.Properties.Roles).includes(roleId ?? '?'),
    );
    expect(inline).toEqual([]);
  });

  test('the stack keeps 5 images of the api target unless the config says otherwise', () => {
    const { template } = synthesize();
    const policies = Object.values(template.findResources('AWS::ImageBuilder::LifecyclePolicy'));
    expect(policies.map((p) => [p.Properties.Name, p.Properties.PolicyDetails[0].Filter.Value])).toEqual([
      ['understudy-Understudy-api', 5],
    ]);
  });

  test('keepImages takes a whole number from 1 to 1000, and a refusal says what to use', () => {
    const base = { parentImage: 'al2023', architecture: 'x86_64' };
    expect(ImageBuildSchema.parse(base).keepImages).toBe(5);
    expect(ImageBuildSchema.parse({ ...base, keepImages: 1000 }).keepImages).toBe(1000);
    for (const keepImages of [0, 1001, 2.5, '5']) {
      const result = ImageBuildSchema.safeParse({ ...base, keepImages });
      expect(result.success).toBe(false);
      expect(result.error?.issues[0]?.path).toEqual(['keepImages']);
      expect(result.error?.issues[0]?.message).toMatch(/image/);
    }
  });
});
