/**
 * configs.yml → what the infrastructure needs to know about each slot.
 *
 * Owns reading the streamer's own config file (the same YAML, with `<<:` merge keys and
 * `${VAR:-default}` expansion) and extracting the deploy-relevant facts: slot names, the
 * Kinesis streams each writes to (`kns_stream` and the streams its `tables:` entries
 * route to), the Secrets Manager secrets it reads, where its
 * checkpoint lives, the CA file it trusts, whether it signs in with IAM, and the
 * metrics namespace. It never validates the rest of the file: the streamer does that,
 * with better messages.
 *
 * `${VAR}` is expanded from the environment the stack gives the containers and the
 * Lambda (the `environment` context plus the variables the stack sets itself), not
 * from the shell running `cdk`: that is the environment the streamer will see.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

/** One replication slot, as far as the infrastructure cares. */
export interface SlotSpec {
  /** The PostgreSQL slot's name; also the `Slot` dimension of the metrics. */
  readonly name: string;
  /** The Kinesis stream's name (`kns_stream`). */
  readonly stream: string;
  /** The Secrets Manager secret (name or ARN) holding the credentials, if any. */
  readonly secret?: string;
  /** `kns_stream` as written, before `${VAR}` expansion. */
  readonly streamTemplate: string;
  /** `checkpoint_parameter` when set (expanded); unset means the default under the prefix. */
  readonly checkpointParameter?: string;
  /** `checkpoint` (default true). */
  readonly checkpoint: boolean;
  /** `sslrootcert` (expanded), if any. */
  readonly sslrootcert?: string;
  /** `iam_auth: true`. */
  readonly iamAuth: boolean;
  /** `user` (expanded), if any and expandable. */
  readonly user?: string;
  /**
   * Set when `oversize: s3`, for the slot or any of its `tables:` entries: `oversize_bucket`
   * as written, and `oversize_prefix` (expanded).
   */
  readonly oversize?: { readonly bucketTemplate?: string; readonly prefix: string };
  /** The other streams its `tables:` entries route to (`stream:`), each once. */
  readonly routes: readonly RouteSpec[];
}

/** A stream a `tables:` entry routes to. */
export interface RouteSpec {
  /** The stream's name (expanded). */
  readonly stream: string;
  /** As written, before `${VAR}` expansion. */
  readonly template: string;
}

/** The streamer's default `oversize_prefix`. */
export const DEFAULT_OVERSIZE_PREFIX = 'pg-cdc-to-kinesis/';

/** The deploy-relevant content of one configs.yml. */
export interface CdcConfig {
  /** The file's text, handed as is to the admin Lambda (SSM parameter). */
  readonly text: string;
  readonly slots: readonly SlotSpec[];
  /** Seconds the streamer may spend draining on SIGTERM (`shutdown_timeout_secs`). */
  readonly shutdownTimeoutSecs: number;
  /** `metrics_namespace` (expanded), unset when the file leaves the default. */
  readonly metricsNamespace?: string;
}

/** The streamer's default `shutdown_timeout_secs`. */
export const DEFAULT_SHUTDOWN_TIMEOUT_SECS = 25;

/** `${VAR}` and `${VAR:-default}`, expanded as the streamer does. */
export function expandEnv(value: string, env: Record<string, string | undefined>, where: string): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, def?: string) => {
    const v = env[name];
    if (v !== undefined && v !== '') return v;
    if (def !== undefined) return def;
    throw new Error(`${where}: environment variable ${name} is not set and has no default (write \${${name}:-default})`);
  });
}

/** Parse configs.yml text; `file` names it in errors. */
export function parseConfig(text: string, file: string, env: Record<string, string | undefined> = process.env): CdcConfig {
  const doc: unknown = parse(text, { merge: true });
  if (typeof doc !== 'object' || doc === null) {
    throw new Error(`${file}: expected a mapping with replication_slots`);
  }
  const root = doc as Record<string, unknown>;
  const list = root['replication_slots'];
  if (!Array.isArray(list) || list.length === 0) {
    throw new Error(`${file}: replication_slots must be a non-empty list of "- slot_name: {...}"`);
  }
  const slots: SlotSpec[] = [];
  for (const item of list) {
    if (typeof item !== 'object' || item === null || Object.keys(item).length !== 1) {
      throw new Error(`${file}: every replication_slots entry must be "- slot_name: {...}"`);
    }
    const [name, body] = Object.entries(item as Record<string, unknown>)[0]!;
    const slot = (body ?? {}) as Record<string, unknown>;
    const where = `${file}: replication slot \`${name}\``;
    const streamRaw = slot['kns_stream'];
    if (typeof streamRaw !== 'string' || streamRaw === '') {
      throw new Error(`${where}, key \`kns_stream\`: required, the Kinesis stream's name`);
    }
    const text = (key: string): string | undefined => {
      const raw = slot[key];
      return typeof raw === 'string' && raw !== '' ? expandEnv(raw, env, `${where}, key \`${key}\``) : undefined;
    };
    const flag = (key: string, def: boolean): boolean => {
      const raw = slot[key];
      if (raw === undefined || raw === null) return def;
      if (typeof raw === 'boolean') return raw;
      return /^(true|yes|on|1)$/i.test(String(raw).trim());
    };
    const secret = text('secret');
    const checkpointParameter = text('checkpoint_parameter');
    const sslrootcert = text('sslrootcert');
    let user: string | undefined;
    try {
      user = text('user');
    } catch {
      user = undefined; // a user from the secret or an unset variable: not needed here
    }
    const bucketTemplate = typeof slot['oversize_bucket'] === 'string' ? slot['oversize_bucket'] : undefined;
    const tables = Array.isArray(slot['tables']) ? (slot['tables'] as unknown[]) : [];
    const tableOversize = tables.some((t) => typeof t === 'object' && t !== null && (t as Record<string, unknown>)['oversize'] === 's3');
    const oversize =
      slot['oversize'] === 's3' || tableOversize
        ? { ...(bucketTemplate ? { bucketTemplate } : {}), prefix: text('oversize_prefix') ?? DEFAULT_OVERSIZE_PREFIX }
        : undefined;
    const routes: RouteSpec[] = [];
    tables.forEach((entry, i) => {
      const raw = (entry as Record<string, unknown> | null)?.['stream'];
      if (typeof raw !== 'string' || raw === '') return;
      const stream = expandEnv(raw, env, `${where}, key \`tables\`, entry ${i + 1}, key \`stream\``);
      if (!routes.some((r) => r.stream === stream)) routes.push({ stream, template: raw });
    });
    slots.push({
      name,
      routes,
      ...(oversize ? { oversize } : {}),
      stream: expandEnv(streamRaw, env, `${where}, key \`kns_stream\``),
      streamTemplate: streamRaw,
      checkpoint: flag('checkpoint', true),
      iamAuth: flag('iam_auth', false),
      ...(secret ? { secret } : {}),
      ...(checkpointParameter ? { checkpointParameter } : {}),
      ...(sslrootcert ? { sslrootcert } : {}),
      ...(user ? { user } : {}),
    });
  }
  const names = new Set(slots.map((s) => s.name));
  if (names.size !== slots.length) {
    throw new Error(`${file}: slot names must be unique`);
  }
  const timeout = root['shutdown_timeout_secs'];
  const nsRaw = root['metrics_namespace'];
  const metricsNamespace =
    typeof nsRaw === 'string' && nsRaw !== '' ? expandEnv(nsRaw, env, `${file}: key \`metrics_namespace\``) : undefined;
  return {
    text,
    slots,
    shutdownTimeoutSecs: typeof timeout === 'number' ? timeout : DEFAULT_SHUTDOWN_TIMEOUT_SECS,
    ...(metricsNamespace ? { metricsNamespace } : {}),
  };
}

/** Read and parse a configs.yml file. */
export function loadConfig(path: string, env: Record<string, string | undefined> = process.env): CdcConfig {
  return parseConfig(readFileSync(path, 'utf8'), path, env);
}

/** The distinct stream names, `kns_stream` and routed ones, in first-seen order. */
export function distinctStreams(slots: readonly SlotSpec[]): string[] {
  return [...new Set(slots.flatMap((s) => [s.stream, ...s.routes.map((r) => r.stream)]))];
}

/** The explicit `checkpoint_parameter`s of the slots that checkpoint. */
export function explicitCheckpointParameters(slots: readonly SlotSpec[]): string[] {
  return [...new Set(slots.flatMap((s) => (s.checkpoint && s.checkpointParameter ? [s.checkpointParameter] : [])))];
}

/** The distinct secrets, in first-seen order. */
export function distinctSecrets(slots: readonly SlotSpec[]): string[] {
  return [...new Set(slots.flatMap((s) => (s.secret ? [s.secret] : [])))];
}
