/**
 * The admin Lambda's code: the `bootstrap` that `scripts/build-lambda` writes, or,
 * when there is none, a clearly marked placeholder so that `cdk synth` and `cdk diff`
 * need no Rust build.
 *
 * Owns the rule that only `cdk deploy` needs the real build: a stack synthesized with
 * the placeholder carries a CloudFormation rule that fails before any resource is
 * touched, naming the command to run. It also refuses a build for the wrong CPU.
 */
import { closeSync, mkdirSync, openSync, readSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Annotations, CfnRule, Fn, Stack } from 'aws-cdk-lib';

/** The CPU the task and the Lambda run on. */
export type CpuArchitecture = 'arm64' | 'x86_64';

/** The command that builds the admin Lambda for `arch`. */
export function buildCommand(arch: CpuArchitecture): string {
  return arch === 'arm64' ? 'scripts/build-lambda' : 'scripts/build-lambda --arch x86_64';
}

/** What the function's asset is. */
export interface LambdaCode {
  readonly dir: string;
  /** True when no build was found and the placeholder stands in. */
  readonly placeholder: boolean;
}

/** The placeholder's `bootstrap`: it fails every invocation, saying why. */
export const PLACEHOLDER_MARK = 'PLACEHOLDER: pg-cdc-admin was not built';

/** The ELF machine of `path`, or undefined when it is not an ELF file we know. */
export function elfArchitecture(path: string): CpuArchitecture | undefined {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(20);
    if (readSync(fd, head, 0, 20, 0) < 20 || head.readUInt32BE(0) !== 0x7f454c46) return undefined;
    const machine = head[5] === 2 ? head.readUInt16BE(18) : head.readUInt16LE(18);
    return machine === 0xb7 ? 'arm64' : machine === 0x3e ? 'x86_64' : undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * The build in `dir` (its `bootstrap`), checked against `arch`; without a directory,
 * the placeholder (written to a temporary directory).
 */
export function resolveLambdaCode(dir: string | undefined, arch: CpuArchitecture): LambdaCode {
  if (dir !== undefined) {
    const built = elfArchitecture(join(dir, 'bootstrap'));
    if (built && built !== arch) {
      throw new Error(
        `${dir}/bootstrap is built for ${built} but the stack runs the Lambda on ${arch}: run ${buildCommand(arch)}` +
          (arch === 'arm64' ? ' (or deploy with -c architecture=x86_64)' : ''),
      );
    }
    return { dir, placeholder: false };
  }
  const placeholder = join(tmpdir(), 'pg-cdc-admin-placeholder');
  mkdirSync(placeholder, { recursive: true });
  writeFileSync(
    join(placeholder, 'bootstrap'),
    `#!/bin/sh\n# ${PLACEHOLDER_MARK}: synthesized without scripts/build-lambda; never deployed.\necho "${PLACEHOLDER_MARK}; run ${buildCommand(arch)} and deploy again" >&2\nexit 1\n`,
    { mode: 0o755 },
  );
  return { dir: placeholder, placeholder: true };
}

/**
 * With the placeholder, a warning at synth and a CloudFormation rule that makes
 * `cdk deploy` fail before anything is created or changed (`cdk diff` falls back to
 * comparing templates when its change set is refused).
 */
export function refuseDeployWithPlaceholder(stack: Stack, arch: CpuArchitecture): void {
  const message = `The admin Lambda was synthesized with a placeholder (no target/lambda/pg-cdc-admin/bootstrap): run ${buildCommand(arch)}, then cdk deploy again`;
  Annotations.of(stack).addWarningV2('pg-cdc:lambda-placeholder', message);
  new CfnRule(stack, 'AdminLambdaIsBuilt', {
    assertions: [{ assert: Fn.conditionEquals('placeholder', 'built'), assertDescription: message }],
  });
}
