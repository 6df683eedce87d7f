import { z } from 'zod';

/**
 * Reads the environment once, at cold start, against a schema; a missing or malformed variable fails
 * the function's first invocation with a message naming it, instead of a `undefined` deep in a step.
 */
export const readEnv = <S extends z.ZodRawShape>(shape: S, env: NodeJS.ProcessEnv = process.env) => {
  const result = z.object(shape).safeParse(env);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`environment is misconfigured (redeploy the stack): ${problems}`);
  }
  return result.data;
};

/** Memoises a reader so that the environment is parsed once per process. */
export const once = <T>(read: () => T): (() => T) => {
  let value: { v: T } | undefined;
  return () => {
    value ??= { v: read() };
    return value.v;
  };
};
