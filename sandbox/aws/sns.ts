import type { PublishCommandInput } from '@aws-sdk/client-sns';
import type { PublishedMessage } from '../contracts';
import type { ModelContext } from './context';
import { errorsFor } from './errors';

const fail = errorsFor('sns');

/** SNS Publish: every message is kept (topics exist implicitly), attributes flattened to strings. */
export class SnsModel {
  readonly messages: PublishedMessage[] = [];

  constructor(
    private readonly ctx: ModelContext,
    private readonly startedAt: number,
  ) {}

  readonly actions = {
    Publish: (input: PublishCommandInput) => {
      const topicArn = input.TopicArn ?? input.TargetArn;
      if (!topicArn)
        throw fail(
          'InvalidParameterException',
          'Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter',
        );
      if (input.Message === undefined || input.Message === '') {
        throw fail('InvalidParameterException', 'Invalid parameter: Empty message');
      }
      if (input.Subject !== undefined && (input.Subject.length > 100 || /[\r\n]/.test(input.Subject))) {
        throw fail('InvalidParameterException', 'Invalid parameter: Subject');
      }
      const attributes: Record<string, string> = {};
      for (const [name, value] of Object.entries(input.MessageAttributes ?? {})) {
        if (value.StringValue !== undefined) attributes[name] = value.StringValue;
        else if (value.BinaryValue !== undefined)
          attributes[name] = Buffer.from(value.BinaryValue).toString('base64');
      }
      this.messages.push({
        at: this.ctx.clock.now() - this.startedAt,
        topicArn,
        ...(input.Subject !== undefined ? { subject: input.Subject } : {}),
        message: input.Message,
        attributes,
      });
      return { MessageId: this.ctx.ids.uuid('sns') };
    },
  };
}
