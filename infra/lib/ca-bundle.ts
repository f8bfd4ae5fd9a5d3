/**
 * The Amazon RDS CA bundle, shipped in the repository (`certs/rds-global-bundle.pem`)
 * and pinned by its SHA-256, as a Lambda layer that puts it at the same path as the
 * container image does: `/opt/pg-cdc-to-kinesis/rds-global-bundle.pem` (layers unpack
 * under `/opt`; the Dockerfile copies the file there). So `sslrootcert` with that path
 * works in both the streamer and the admin Lambda, and neither build downloads it.
 *
 * Owns the pin and the layer. It never fetches anything: a changed file fails the
 * synth until the pin is updated on purpose.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

/** Where the bundle is in the image and, through the layer, in the Lambda. */
export const RDS_CA_BUNDLE_PATH = '/opt/pg-cdc-to-kinesis/rds-global-bundle.pem';
/** The bundle in the repository, relative to its root. */
export const RDS_CA_BUNDLE_REPO_FILE = 'certs/rds-global-bundle.pem';
/** SHA-256 of that file (see certs/README.md for where it came from). */
export const RDS_CA_BUNDLE_SHA256 = 'fefac91d6800404461cece76724bc0a2383f4f556a1c9beb0813fac6f2e1e49f';

/** The file's SHA-256, hex. */
export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export interface CaBundleLayerProps {
  /** The repository root (where `certs/` is). */
  readonly repoRoot: string;
  readonly architecture: lambda.Architecture;
}

export class CaBundleLayer extends Construct {
  public readonly layer: lambda.LayerVersion;
  /** The layer's content directory, as uploaded (the bundle under `pg-cdc-to-kinesis/`). */
  public readonly contentDir: string;

  constructor(scope: Construct, id: string, props: CaBundleLayerProps) {
    super(scope, id);
    const source = join(props.repoRoot, RDS_CA_BUNDLE_REPO_FILE);
    const actual = sha256File(source);
    if (actual !== RDS_CA_BUNDLE_SHA256) {
      throw new Error(
        `${source}: SHA-256 ${actual}, expected ${RDS_CA_BUNDLE_SHA256}; restore the file (git checkout ${RDS_CA_BUNDLE_REPO_FILE}) or, when replacing it on purpose, update RDS_CA_BUNDLE_SHA256 in infra/lib/ca-bundle.ts and the Dockerfile's check`,
      );
    }
    // A layer's directory tree unpacks under /opt.
    this.contentDir = mkdtempSync(join(tmpdir(), 'pg-cdc-ca-layer-'));
    const target = join(this.contentDir, RDS_CA_BUNDLE_PATH.replace(/^\/opt\//, ''));
    mkdirSync(join(target, '..'), { recursive: true });
    copyFileSync(source, target);
    this.layer = new lambda.LayerVersion(this, 'Layer', {
      description: `Amazon RDS CA bundle at ${RDS_CA_BUNDLE_PATH} (sha256 ${RDS_CA_BUNDLE_SHA256.slice(0, 12)}…)`,
      code: lambda.Code.fromAsset(this.contentDir),
      compatibleArchitectures: [props.architecture],
      compatibleRuntimes: [lambda.Runtime.PROVIDED_AL2023],
    });
  }
}
