import {
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ResourceNotFoundException,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { createClients } from '../../../lambdas/shared/clients';
import { DynamoTiming, Sandbox } from '../../../sandbox/index';
import { rejectionOf } from './helpers';

const TableName = 'terraform-locks';
const LockID = { S: 'state-bucket/app/terraform.tfstate' };

let sandbox: Sandbox;
let dynamodb: DynamoDBClient;
beforeEach(async () => {
  sandbox = await Sandbox.start();
  sandbox.createTable(TableName, 'LockID');
  dynamodb = createClients().dynamodb;
});
afterEach(async () => {
  await sandbox.stop();
});

const putLock = (info: string) =>
  dynamodb.send(
    new PutItemCommand({
      TableName,
      Item: { LockID, Info: { S: info } },
      ConditionExpression: 'attribute_not_exists(LockID)',
    }),
  );

describe('DynamoDB conditional writes', () => {
  it('refuses a second attribute_not_exists put with the SDK ConditionalCheckFailedException and keeps the first item', async () => {
    await putLock('{"ID":"first"}');

    const error = await rejectionOf(putLock('{"ID":"second"}'));

    expect(error).toBeInstanceOf(ConditionalCheckFailedException);
    expect(error.message).toBe('The conditional request failed');
    expect(error.$metadata).toMatchObject({ httpStatusCode: 400 });
    expect(sandbox.dynamodb.item(TableName, `S:${LockID.S}`)?.Info).toEqual({ S: '{"ID":"first"}' });
  });

  it('returns the item that failed the condition when asked with ReturnValuesOnConditionCheckFailure ALL_OLD', async () => {
    await putLock('{"ID":"holder"}');

    const error = await rejectionOf(
      dynamodb.send(
        new PutItemCommand({
          TableName,
          Item: { LockID, Info: { S: 'x' } },
          ConditionExpression: 'attribute_not_exists(LockID)',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      ),
    );

    expect((error as unknown as ConditionalCheckFailedException).Item).toEqual({
      LockID,
      Info: { S: '{"ID":"holder"}' },
    });
  });

  it('deletes only when `#info = :info` holds, so a release cannot remove a lock someone else took', async () => {
    await putLock('{"ID":"theirs"}');
    const deleteIf = (info: string) =>
      dynamodb.send(
        new DeleteItemCommand({
          TableName,
          Key: { LockID },
          ConditionExpression: '#info = :info',
          ExpressionAttributeNames: { '#info': 'Info' },
          ExpressionAttributeValues: { ':info': { S: info } },
        }),
      );

    const refused = await rejectionOf(deleteIf('{"ID":"mine"}'));
    const present = sandbox.dynamodb.keys(TableName);
    await deleteIf('{"ID":"theirs"}');

    expect(refused.name).toBe('ConditionalCheckFailedException');
    expect(present).toEqual([`S:${LockID.S}`]);
    expect(sandbox.dynamodb.keys(TableName)).toEqual([]);
  });

  it('evaluates AND of attribute_exists and = against the stored item', async () => {
    await putLock('a');
    const put = (expected: string) =>
      dynamodb.send(
        new PutItemCommand({
          TableName,
          Item: { LockID, Info: { S: 'b' } },
          ConditionExpression: 'attribute_exists(LockID) AND (Info = :expected)',
          ExpressionAttributeValues: { ':expected': { S: expected } },
        }),
      );

    const wrong = await rejectionOf(put('z'));
    await put('a');

    expect(wrong.name).toBe('ConditionalCheckFailedException');
    expect(sandbox.dynamodb.item(TableName, `S:${LockID.S}`)?.Info).toEqual({ S: 'b' });
  });

  it('updates with SET and REMOVE, returns ALL_NEW, and refuses to update the key attribute', async () => {
    await putLock('a');

    const updated = await dynamodb.send(
      new UpdateItemCommand({
        TableName,
        Key: { LockID },
        UpdateExpression: 'SET Digest = :d REMOVE Info',
        ExpressionAttributeValues: { ':d': { S: '0123456789abcdef0123456789abcdef' } },
        ReturnValues: 'ALL_NEW',
      }),
    );
    const keyUpdate = await rejectionOf(
      dynamodb.send(
        new UpdateItemCommand({
          TableName,
          Key: { LockID },
          UpdateExpression: 'SET LockID = :v',
          ExpressionAttributeValues: { ':v': { S: 'other' } },
        }),
      ),
    );

    expect(updated.Attributes).toEqual({ LockID, Digest: { S: '0123456789abcdef0123456789abcdef' } });
    expect(keyUpdate.name).toBe('ValidationException');
    expect(keyUpdate.message).toContain('Cannot update attribute LockID');
  });
});

describe('DynamoDB reads', () => {
  it('returns only the projected attributes', async () => {
    await dynamodb.send(
      new PutItemCommand({ TableName, Item: { LockID, Digest: { S: 'abc' }, Extra: { N: '1' } } }),
    );

    const out = await dynamodb.send(
      new GetItemCommand({
        TableName,
        Key: { LockID },
        ConsistentRead: true,
        ProjectionExpression: 'LockID, Digest',
      }),
    );

    expect(out.Item).toEqual({ LockID, Digest: { S: 'abc' } });
  });

  it('may answer an eventually consistent read with the item before the last write, but never a consistent one', async () => {
    await dynamodb.send(new PutItemCommand({ TableName, Item: { LockID, Digest: { S: 'old' } } }));
    await sandbox.clock.sleep(DynamoTiming.staleReadMs);
    await dynamodb.send(new PutItemCommand({ TableName, Item: { LockID, Digest: { S: 'new' } } }));

    const eventual = await dynamodb.send(new GetItemCommand({ TableName, Key: { LockID } }));
    const consistent = await dynamodb.send(
      new GetItemCommand({ TableName, Key: { LockID }, ConsistentRead: true }),
    );
    await sandbox.clock.sleep(DynamoTiming.staleReadMs);
    const later = await dynamodb.send(new GetItemCommand({ TableName, Key: { LockID } }));

    expect(eventual.Item?.Digest).toEqual({ S: 'old' });
    expect(consistent.Item?.Digest).toEqual({ S: 'new' });
    expect(later.Item?.Digest).toEqual({ S: 'new' });
  });

  it('answers an empty result, not an error, for a missing item', async () => {
    const out = await dynamodb.send(new GetItemCommand({ TableName, Key: { LockID }, ConsistentRead: true }));

    expect(out.Item).toBeUndefined();
  });
});

describe('DynamoDB errors', () => {
  it('answers ResourceNotFoundException for a table the account does not have', async () => {
    const error = await rejectionOf(
      dynamodb.send(new GetItemCommand({ TableName: 'no-such-table', Key: { LockID } })),
    );

    expect(error).toBeInstanceOf(ResourceNotFoundException);
    expect(error.$metadata).toMatchObject({ httpStatusCode: 400 });
  });

  it('answers ValidationException for a key that does not match the schema', async () => {
    const error = await rejectionOf(
      dynamodb.send(new GetItemCommand({ TableName, Key: { LockID, Other: { S: 'x' } } })),
    );

    expect(error.name).toBe('ValidationException');
    expect(error.message).toBe('The provided key element does not match the schema');
  });

  it.each([
    [
      'an unused expression value',
      {
        ConditionExpression: 'attribute_not_exists(LockID)',
        ExpressionAttributeValues: { ':x': { S: '1' } },
      },
      'unused in expressions',
    ],
    [
      'an undefined name placeholder',
      { ConditionExpression: 'attribute_not_exists(#missing)' },
      'attribute name: #missing',
    ],
    [
      'an undefined value placeholder',
      { ConditionExpression: 'Info = :missing' },
      'attribute value: :missing',
    ],
    ['a syntax error', { ConditionExpression: 'attribute_not_exists(LockID' }, 'Syntax error'],
    [
      'an operator the sandbox does not model',
      { ConditionExpression: 'attribute_exists(LockID) OR attribute_exists(Info)' },
      'does not model "OR"',
    ],
  ])('answers ValidationException for %s and writes nothing', async (_what, expression, message) => {
    const error = await rejectionOf(
      dynamodb.send(new PutItemCommand({ TableName, Item: { LockID, Info: { S: 'x' } }, ...expression })),
    );

    expect(error.name).toBe('ValidationException');
    expect(error.message).toContain(message);
    expect(sandbox.dynamodb.keys(TableName)).toEqual([]);
  });

  it('fails a DynamoDB call on an injected fault and logs it', async () => {
    sandbox.injectFault({
      service: 'dynamodb',
      action: 'PutItem',
      nth: 1,
      fault: { error: 'AccessDeniedException', message: 'not allowed', httpStatus: 400 },
    });

    const error = await rejectionOf(putLock('x'));

    expect(error.name).toBe('AccessDeniedException');
    expect(sandbox.calls.filter((c) => c.service === 'dynamodb').map((c) => [c.action, c.error])).toEqual([
      ['PutItem', 'AccessDeniedException'],
    ]);
  });
});
