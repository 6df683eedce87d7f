import type { DescribeStacksCommandInput, Stack } from '@aws-sdk/client-cloudformation';
import type { ModelContext } from './context';
import { errorsFor } from './errors';

const fail = errorsFor('cloudformation');

/**
 * CloudFormation as the CLI reads it: the stacks `cdk deploy` left, with their outputs. A stack that is
 * not there answers ValidationError "Stack with id ... does not exist", as AWS does.
 */
export class CloudFormationModel {
  private readonly stacks = new Map<string, Stack>();

  constructor(private readonly ctx: ModelContext) {}

  putStack(name: string, outputs: Readonly<Record<string, string>>): void {
    this.stacks.set(name, {
      StackName: name,
      StackId: `arn:aws:cloudformation:${this.ctx.region}:${this.ctx.accountId}:stack/${name}/${this.ctx.ids.uuid('stack')}`,
      CreationTime: new Date(this.ctx.clock.now()),
      StackStatus: 'CREATE_COMPLETE',
      Outputs: Object.entries(outputs).map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue })),
    });
  }

  readonly actions = {
    DescribeStacks: (input: DescribeStacksCommandInput) => {
      if (input.StackName === undefined) return { Stacks: [...this.stacks.values()] };
      const stack = [...this.stacks.values()].find(
        (s) => s.StackName === input.StackName || s.StackId === input.StackName,
      );
      if (!stack) throw fail('ValidationError', `Stack with id ${input.StackName} does not exist`);
      return { Stacks: [stack] };
    },
  };
}
