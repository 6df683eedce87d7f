// JSON.rawJSON / JSON.isRawJSON and the reviver's source text (TC39 "JSON.parse source text access"),
// shipped in Node 22 and the Lambda nodejs22.x/24.x runtimes; TypeScript 5.9's lib does not declare them.
interface RawJSON {
  readonly rawJSON: string;
}

interface JSONReviverContext {
  readonly source?: string;
}

interface JSON {
  rawJSON(text: string): RawJSON;
  isRawJSON(value: unknown): value is RawJSON;
  parse(
    text: string,
    reviver: (this: unknown, key: string, value: unknown, context: JSONReviverContext) => unknown,
  ): unknown;
}
