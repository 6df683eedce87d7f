import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Stack, Token, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as imagebuilder from 'aws-cdk-lib/aws-imagebuilder';
import { Construct } from 'constructs';
import type { z } from 'zod';
import type { ImageBuildSchema } from '../lambdas/shared/config';

export type ImageBuild = z.infer<typeof ImageBuildSchema>;
export type Distro = ImageBuild['parentImage'];
export type Architecture = ImageBuild['architecture'];

export const COMPONENTS_DIR = join(__dirname, '..', 'ami', 'components');
export const READINESS_AGENT_DIR = join(__dirname, '..', 'ami', 'readiness-agent');

/** Installed in this order: the agent needs the tools, and Understudy needs all of them on the new box. */
export const COMPONENT_ORDER = ['tools', 'ssm-agent', 'nginx', 'certbot', 'readiness-agent'] as const;
export type ComponentName = (typeof COMPONENT_ORDER)[number];

/**
 * AWS's public parameters that always name the current release. The recipe hands Image Builder the
 * parameter itself (`ssm:<name>`), not the AMI id it holds today: Image Builder resolves it when each
 * build starts, so a scheduled rebuild starts from the newest release without a deploy. Resolving it
 * at synth or deploy time instead would freeze the parent into an immutable recipe, and since the
 * recipe's version comes from its content here, a new AMI behind an unchanged parameter would try to
 * recreate a recipe version that already exists.
 */
const PARENT_IMAGE_PARAMETERS: Record<Distro, Record<Architecture, string>> = {
  al2023: {
    x86_64: '/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64',
    arm64: '/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64',
  },
  'debian-12': {
    x86_64: '/aws/service/debian/release/12/latest/amd64',
    arm64: '/aws/service/debian/release/12/latest/arm64',
  },
};

export const parentImageParameter = (distro: Distro, architecture: Architecture): string =>
  PARENT_IMAGE_PARAMETERS[distro][architecture];

/** Small burstable types of the right architecture: the build installs packages and nothing heavier. */
const DEFAULT_INSTANCE_TYPES: Record<Architecture, string[]> = {
  x86_64: ['t3.small', 't3a.small'],
  arm64: ['t4g.small'],
};

/** The `supportedOsVersions` Image Builder checks against the parent by prefix; it knows no Debian. */
const SUPPORTED_OS_VERSIONS: Record<Distro, string[] | undefined> = {
  al2023: ['Amazon Linux 2023'],
  'debian-12': undefined,
};

/** Image Builder's largest inline component document, in characters (CreateComponent `data`). */
export const MAX_COMPONENT_DATA = 16_000;

/**
 * A semantic version derived from content. Image Builder never overwrites a component or recipe
 * version, and CloudFormation replaces either one on any change of its document or parts, so every
 * change must come with a version that does not exist yet. Two 30-bit slices of the content's SHA-256
 * (each version node may be at most 2^30 - 1) make the minor and patch nodes: the same content always
 * yields the same version, which keeps a redeploy without changes a no-op, and a changed content a new
 * one. The versions are not ordered in time; the recipe and pipeline name exact versions, so nothing
 * depends on "the latest".
 */
export const contentVersion = (content: string): string => {
  if (Token.isUnresolved(content)) {
    throw new Error('a content version needs content known at synth time; it holds an unresolved token');
  }
  const digest = createHash('sha256').update(content, 'utf8').digest();
  const node = (offset: number) => digest.readUInt32BE(offset) & 0x3fffffff;
  return `1.${node(0)}.${node(4)}`;
};

const EMBED_LINE = /^([ \t]*)@embed(-gzip)? (\S+)[ \t]*$/gm;
const SHA256 = /@sha256:([A-Za-z0-9._-]+)@/g;
const AGENT_PATH = '@agent-path@';
const HEREDOC_END = 'UNDERSTUDY_EMBEDDED_FILE';

/** The absolute program path of a unit's `ExecStart=`, prefixes such as `-` or `!` removed. */
export const execStartPath = (unit: string): string => {
  const line = unit.split('\n').find((l) => /^ExecStart=/.test(l.trim()));
  const program = line
    ?.trim()
    .slice('ExecStart='.length)
    .trim()
    .replace(/^[-@:+!]+/, '')
    .split(/\s+/)[0];
  if (program === undefined || !/^\/[A-Za-z0-9._/-]+$/.test(program)) {
    throw new Error('the readiness agent unit needs an ExecStart= with the absolute path of the agent');
  }
  return program;
};

/**
 * gzip with a fixed header (no time stamp, "Unix" as the OS): the same file gives the same bytes on
 * any machine, and so the same document and component version.
 */
const gzipStable = (text: string): Buffer => {
  const gz = gzipSync(Buffer.from(text, 'utf8'), { level: 9 });
  gz.writeUInt32LE(0, 4);
  gz[9] = 3;
  return gz;
};

const fileOf = (files: Readonly<Record<string, string>>, name: string): string => {
  const content = files[name];
  if (content === undefined) throw new Error(`component embeds "${name}", which was not given`);
  return content;
};

/**
 * The document without its whole-line comments: they are for readers of the repository, and would
 * count against Image Builder's 16,000 characters. Removed before anything is embedded, so embedded
 * files keep theirs byte for byte. A `#` line inside a block scalar of the template would go too; the
 * documents keep none there (a test compares every command before and after).
 */
export const stripCommentLines = (document: string): string =>
  document
    .split('\n')
    .filter((line) => !/^[ \t]*#/.test(line))
    .join('\n');

/**
 * Fills in a component document's markers (see ami/components/readiness-agent.yml): `@embed <file>`
 * lines with the file, every line indented like the marker so it stays inside its YAML block;
 * `@embed-gzip <file>` lines with the file gzipped and base64-encoded, on one line; `@sha256:<file>@` with the
 * file's digest; `@agent-path@` with `agentPath`.
 */
export const renderComponent = (
  document: string,
  files: Readonly<Record<string, string>>,
  agentPath?: string,
): string => {
  const embedded = stripCommentLines(document)
    .replace(EMBED_LINE, (_line, indent: string, gzip: string | undefined, name: string) => {
      const content = fileOf(files, name);
      if (gzip !== undefined) {
        const encoded = gzipStable(content).toString('base64');
        // One line: base64 -d takes any line length, and every extra line would cost its indent
        // against the document's size limit.
        return `${indent}${encoded}`;
      }
      // Image Builder reads {{ ... }} as its own variables, and the heredoc would end at its delimiter.
      if (content.includes('{{')) throw new Error(`${name} contains "{{", which Image Builder would expand`);
      if (content.split('\n').some((l) => l.trim() === HEREDOC_END)) {
        throw new Error(
          `${name} contains a line "${HEREDOC_END}", which would end the heredoc that writes it`,
        );
      }
      // The heredoc ends the file with one newline; a file without it would fail its checksum.
      if (!content.endsWith('\n')) throw new Error(`${name} must end with a newline`);
      const lines = content.slice(0, -1).split('\n');
      return lines.map((l) => (l === '' ? '' : `${indent}${l}`)).join('\n');
    })
    .replace(SHA256, (_marker, name: string) =>
      createHash('sha256').update(fileOf(files, name), 'utf8').digest('hex'),
    );
  if (!embedded.includes(AGENT_PATH)) return embedded;
  if (agentPath === undefined) throw new Error(`component names ${AGENT_PATH} but no agent path was given`);
  return embedded.replaceAll(AGENT_PATH, agentPath);
};

/** The document for a component on a distro: `<name>.<distro>.yml` where it differs, else `<name>.yml`. */
export const componentFile = (name: ComponentName, distro: Distro, dir = COMPONENTS_DIR): string => {
  const specific = join(dir, `${name}.${distro}.yml`);
  if (existsSync(specific)) return specific;
  const shared = join(dir, `${name}.yml`);
  if (existsSync(shared)) return shared;
  throw new Error(`no component document for ${name} on ${distro}: add ${specific} or ${shared}`);
};

/**
 * Debian's AMI has no SSM agent, and Image Builder drives every build step through it, so it must be
 * running before the first component: the user data installs the signed .deb from the regional
 * bucket AWS documents, with the region read through IMDSv2. This replaces Image Builder's own user
 * data, whose agent install knows the distributions it supports, which Debian is not.
 */
const DEBIAN_SSM_AGENT_USER_DATA = [
  '#!/bin/bash',
  'set -euo pipefail',
  'if ! systemctl is-active --quiet amazon-ssm-agent; then',
  "  token=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: bash expands it on the build instance
  '  region=$(curl -fsS -H "X-aws-ec2-metadata-token: ${token}" http://169.254.169.254/latest/meta-data/placement/region)',
  '  arch=$(dpkg --print-architecture)',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: bash expands it on the build instance
  '  curl -fsS -o /tmp/amazon-ssm-agent.deb "https://s3.${region}.amazonaws.com/amazon-ssm-${region}/latest/debian_${arch}/amazon-ssm-agent.deb"',
  // apt waits for the dpkg lock (cloud-init or unattended-upgrades may hold it at first boot); dpkg -i would fail at once.
  '  apt-get -o DPkg::Lock::Timeout=600 install -y /tmp/amazon-ssm-agent.deb',
  '  systemctl enable --now amazon-ssm-agent',
  'fi',
  '',
].join('\n');

export interface GoldenImageProps {
  /** The target whose image this is; it names every resource. */
  readonly target: string;
  readonly build: ImageBuild;
  /** Where the distribution writes each new AMI id (`parameterNames(prefix).image(target)`). */
  readonly parameterName: string;
  /** @default ami/components */
  readonly componentsDir?: string;
  /** Holds the agent script and its two units (`AGENT_FILES`). @default ami/readiness-agent */
  readonly readinessAgentDir?: string;
  /**
   * The Understudy event bus the agent reports to, baked into the image as
   * /etc/understudy/agent.image.env. A name known at synth time: it is part of the component's
   * content, and so of its version.
   */
  readonly eventBusName: string;
}

interface RenderedComponent {
  readonly name: ComponentName;
  readonly file: string;
  readonly data: string;
}

/**
 * An EC2 Image Builder pipeline for one target's golden image: the parent from AWS's public
 * parameter of the configured distro, the components in ami/components, image tests on, and each
 * new AMI id written to the target's image parameter, where preflight resolves it.
 */
export class GoldenImage extends Construct {
  readonly pipeline: imagebuilder.CfnImagePipeline;
  readonly recipe: imagebuilder.CfnImageRecipe;
  readonly components: Readonly<Record<ComponentName, imagebuilder.CfnComponent>>;
  readonly infrastructure: imagebuilder.CfnInfrastructureConfiguration;
  readonly distribution: imagebuilder.CfnDistributionConfiguration;
  readonly instanceRole: iam.Role;
  readonly parameterName: string;
  /** Deletes the target's images, AMIs and snapshots beyond the newest `build.keepImages`. */
  readonly lifecyclePolicy: imagebuilder.CfnLifecyclePolicy;
  /** The role Image Builder runs the lifecycle policy's deletions as. */
  readonly lifecycleRole: iam.Role;

  constructor(scope: Construct, id: string, props: GoldenImageProps) {
    super(scope, id);
    const { target, build } = props;
    const stack = Stack.of(this);
    const baseName = `understudy-${stack.stackName}-${target}`;
    this.parameterName = props.parameterName;

    const agentDir = props.readinessAgentDir ?? READINESS_AGENT_DIR;
    const agentFiles: Record<string, string> = {
      ...readAgentFiles(agentDir),
      [IMAGE_SETTINGS_FILE]: imageSettings(props.eventBusName),
    };
    const agentPath = execStartPath(agentFiles['understudy-readiness.service'] ?? '');
    const progressPath = execStartPath(agentFiles['understudy-readiness-progress.service'] ?? '');
    if (progressPath !== agentPath) {
      throw new Error(
        `the readiness units start different programs (${agentPath} and ${progressPath}); the component installs one`,
      );
    }

    const rendered: RenderedComponent[] = COMPONENT_ORDER.map((name) => {
      const file = componentFile(name, build.parentImage, props.componentsDir);
      const data = renderComponent(readFileSync(file, 'utf8'), agentFiles, agentPath);
      if (data.length > MAX_COMPONENT_DATA) {
        throw new Error(
          `${file} is ${data.length} characters once rendered, over Image Builder's ${MAX_COMPONENT_DATA} for an inline component`,
        );
      }
      return { name, file, data };
    });

    const supportedOsVersions = SUPPORTED_OS_VERSIONS[build.parentImage];
    const components: Partial<Record<ComponentName, imagebuilder.CfnComponent>> = {};
    const recipeParts: string[] = [];
    for (const { name, data } of rendered) {
      const componentName = `${baseName}-${name}`;
      const version = contentVersion(JSON.stringify({ data, platform: 'Linux', supportedOsVersions }));
      components[name] = new imagebuilder.CfnComponent(this, `Component-${name}`, {
        name: componentName,
        version,
        platform: 'Linux',
        ...(supportedOsVersions ? { supportedOsVersions } : {}),
        description: `Understudy ${name} for target ${target}`,
        data,
      });
      recipeParts.push(`${componentName}@${version}`);
    }
    this.components = components as Record<ComponentName, imagebuilder.CfnComponent>;

    const parentImage = `ssm:${parentImageParameter(build.parentImage, build.architecture)}`;
    const additionalInstanceConfiguration: imagebuilder.CfnImageRecipe.AdditionalInstanceConfigurationProperty =
      {
        // Understudy runs commands on every box launched from the image through SSM: the agent stays.
        systemsManagerAgent: { uninstallAfterBuild: false },
        ...(build.parentImage === 'debian-12'
          ? { userDataOverride: Buffer.from(DEBIAN_SSM_AGENT_USER_DATA, 'utf8').toString('base64') }
          : {}),
      };
    const recipeVersion = contentVersion(
      JSON.stringify({ parentImage, components: recipeParts, additionalInstanceConfiguration }),
    );
    this.recipe = new imagebuilder.CfnImageRecipe(this, 'Recipe', {
      name: baseName,
      version: recipeVersion,
      parentImage,
      description: `Understudy golden image for target ${target} (${build.parentImage}, ${build.architecture})`,
      components: COMPONENT_ORDER.map((name) => ({
        componentArn: this.components[name].attrArn,
      })),
      additionalInstanceConfiguration,
    });

    this.instanceRole = new iam.Role(this, 'InstanceRole', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: `Build and test instances of the Understudy golden image for ${target}`,
      managedPolicies: [
        iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore'),
        iam.ManagedPolicy.fromAwsManagedPolicyName('EC2InstanceProfileForImageBuilder'),
      ],
    });
    Validations.of(this.instanceRole).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]',
      reason:
        'Image Builder runs every build and test step through the SSM agent on the instance; this AWS-maintained policy is the documented minimum for the agent to register and take commands, and the role is assumable only by the short-lived build and test instances',
    });
    Validations.of(this.instanceRole).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/EC2InstanceProfileForImageBuilder]',
      reason:
        "Image Builder's documented instance policy: it lets the build instance fetch AWSTOE and this stack's component documents and write build logs; AWS keeps it in step with the service, and only the build and test instances assume the role",
    });
    const profile = new iam.CfnInstanceProfile(this, 'InstanceProfile', {
      roles: [this.instanceRole.roleName],
    });

    this.infrastructure = new imagebuilder.CfnInfrastructureConfiguration(this, 'Infrastructure', {
      name: baseName,
      description: `Build and test instances for the Understudy golden image of ${target}`,
      instanceProfileName: profile.ref,
      instanceTypes: build.instanceTypes ?? DEFAULT_INSTANCE_TYPES[build.architecture],
      // A failed build leaves nothing running (and billing); its logs tell what went wrong.
      terminateInstanceOnFailure: true,
      instanceMetadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 1 },
    });

    this.distribution = new imagebuilder.CfnDistributionConfiguration(this, 'Distribution', {
      name: baseName,
      description: `Publishes the Understudy golden image of ${target} to ${props.parameterName}`,
      distributions: [
        {
          region: stack.region,
          amiDistributionConfiguration: {
            // Each build needs a unique AMI name; Image Builder fills in the build date.
            Name: `understudy-${target}-{{ imagebuilder:buildDate }}`,
            AmiTags: { 'understudy:image-of': target },
          },
          ssmParameterConfigurations: [{ parameterName: props.parameterName, dataType: 'aws:ec2:image' }],
        },
      ],
    });

    this.pipeline = new imagebuilder.CfnImagePipeline(this, 'Pipeline', {
      name: baseName,
      description: `Builds, tests and publishes the Understudy golden image of ${target}`,
      imageRecipeArn: this.recipe.attrArn,
      infrastructureConfigurationArn: this.infrastructure.attrArn,
      distributionConfigurationArn: this.distribution.attrArn,
      imageTestsConfiguration: { imageTestsEnabled: true, timeoutMinutes: 60 },
      enhancedImageMetadataEnabled: true,
      // The lifecycle policy finds this target's images by this tag, whatever recipe version built them.
      imageTags: { [GOLDEN_IMAGE_TAG]: baseName },
      status: 'ENABLED',
      ...(build.scheduleCron
        ? {
            schedule: {
              scheduleExpression: build.scheduleCron,
              // The parent comes from an SSM parameter, which Image Builder does not count as a
              // dependency update; the default condition would then skip every scheduled build.
              pipelineExecutionStartCondition: 'EXPRESSION_MATCH_ONLY',
            },
          }
        : {}),
    });

    this.lifecycleRole = new iam.Role(this, 'LifecycleRole', {
      assumedBy: new iam.ServicePrincipal('imagebuilder.amazonaws.com'),
      description: `Image Builder deletes the old golden images of ${target} as this role`,
      managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName(LIFECYCLE_EXECUTION_POLICY)],
    });
    Validations.of(this.lifecycleRole).acknowledge({
      id: `AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/${LIFECYCLE_EXECUTION_POLICY}]`,
      reason:
        "Image Builder's documented execution policy for lifecycle rules: it may deregister, disable or delete only images and snapshots tagged CreatedBy=EC2 Image Builder, AWS keeps it in step with the service, and only Image Builder can assume the role",
    });

    this.lifecyclePolicy = new imagebuilder.CfnLifecyclePolicy(this, 'Lifecycle', {
      name: baseName,
      description: `Keeps the newest ${build.keepImages} golden images of ${target}, and any launched from in the last ${RECENTLY_LAUNCHED_DAYS} days or tagged ${KEEP_TAG}=true`,
      executionRole: this.lifecycleRole.roleArn,
      resourceType: 'AMI_IMAGE',
      status: 'ENABLED',
      // Every recipe change is a new recipe version (content-derived), so selecting by recipe would
      // leave the images of earlier versions behind; the pipeline tags every image it builds instead.
      resourceSelection: { tagMap: { [GOLDEN_IMAGE_TAG]: baseName } },
      policyDetails: [
        {
          action: { type: 'DELETE', includeResources: { amis: true, snapshots: true } },
          filter: { type: 'COUNT', value: build.keepImages },
          exclusionRules: {
            amis: {
              // A running box does not need its AMI, but one launched from lately is the likeliest to be
              // serving or kept stopped for rollback, and relaunching the same image must stay possible.
              lastLaunched: { unit: 'DAYS', value: RECENTLY_LAUNCHED_DAYS },
              tagMap: { [KEEP_TAG]: 'true' },
            },
          },
        },
      ],
    });
  }
}

/** Tags every image the pipeline builds; its value names the stack and target (`understudy-<stack>-<target>`). */
export const GOLDEN_IMAGE_TAG = 'understudy:golden-image';
/** An AMI tagged `understudy:keep=true` is never deleted by the lifecycle policy. */
export const KEEP_TAG = 'understudy:keep';
/** An AMI an instance was launched from within this many days is never deleted by the lifecycle policy. */
export const RECENTLY_LAUNCHED_DAYS = 30;
/** AWS's managed policy for Image Builder lifecycle actions (a service-role policy, hence the path). */
export const LIFECYCLE_EXECUTION_POLICY = 'service-role/EC2ImageBuilderLifecycleExecutionPolicy';

/** The agent script, the unit that sends the final event and the unit that sends progress meanwhile. */
export const AGENT_FILES = [
  'understudy-readiness',
  'understudy-readiness.service',
  'understudy-readiness-progress.service',
] as const;

/** The component's name for the settings file it bakes as /etc/understudy/agent.image.env. */
export const IMAGE_SETTINGS_FILE = 'agent.image.env';

/** Same rule as the agent's own check, so a name the agent would refuse fails synth instead of boots. */
const EVENT_BUS_NAME = /^[A-Za-z0-9/._:-]{1,1600}$/;

/**
 * The image's agent settings: only the bus. The box's /etc/understudy/agent.env (user data) overrides
 * any key of it and the service's environment overrides both, so a box can still point elsewhere.
 */
export const imageSettings = (eventBusName: string): string => {
  if (Token.isUnresolved(eventBusName)) {
    throw new Error(
      'the golden image bakes the event bus name, so it must be known at synth time (give the bus a name)',
    );
  }
  if (!EVENT_BUS_NAME.test(eventBusName)) throw new Error(`"${eventBusName}" is not an event bus name`);
  return [
    "# Baked into the Understudy golden image (lib/golden-image.ts): the readiness agent's defaults.",
    '# /etc/understudy/agent.env overrides any key of it; the service environment overrides both.',
    `EVENT_BUS_NAME=${eventBusName}`,
    '',
  ].join('\n');
};

const readAgentFiles = (dir: string): Record<string, string> => {
  const files: Record<string, string> = {};
  for (const name of AGENT_FILES) {
    const path = join(dir, name);
    if (!existsSync(path)) {
      throw new Error(`the golden image installs the readiness agent from ${path}, which does not exist`);
    }
    files[name] = readFileSync(path, 'utf8');
  }
  return files;
};
