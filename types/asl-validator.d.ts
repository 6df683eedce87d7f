// asl-validator 4 ships no type declarations; this is the part of its API the scripts use.
declare module 'asl-validator' {
  interface AslValidatorResult {
    isValid: boolean;
    errorsText: (separator?: string) => string;
  }
  interface AslValidatorOptions {
    checkArn?: boolean;
    checkPaths?: boolean;
  }
  const validate: (definition: unknown, options?: AslValidatorOptions) => AslValidatorResult;
  export default validate;
}
