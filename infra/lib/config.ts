/**
 * configs.yml → what the infrastructure needs to know about each slot.
 *
 * Owns reading the streamer's own config file (the same YAML, with `<<:` merge keys and
 * `${VAR:-default}` expansion) and extracting the deploy-relevant facts: slot names, the
 * Kinesis stream each writes to, and the Secrets Manager secrets it reads. It never
 * validates the rest of the file: the streamer does that, with better messages.
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
}

/** The deploy-relevant content of one configs.yml. */
export interface CdcConfig {
  /** The file's text, handed as is to the admin Lambda (SSM parameter). */
  readonly text: string;
  readonly slots: readonly SlotSpec[];
  /** Seconds the streamer may spend draining on SIGTERM (`shutdown_timeout_secs`). */
  readonly shutdownTimeoutSecs: number;
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
    const secretRaw = slot['secret'];
    const secret = typeof secretRaw === 'string' && secretRaw !== '' ? expandEnv(secretRaw, env, `${where}, key \`secret\``) : undefined;
    slots.push({ name, stream: expandEnv(streamRaw, env, `${where}, key \`kns_stream\``), ...(secret ? { secret } : {}) });
  }
  const names = new Set(slots.map((s) => s.name));
  if (names.size !== slots.length) {
    throw new Error(`${file}: slot names must be unique`);
  }
  const timeout = root['shutdown_timeout_secs'];
  return {
    text,
    slots,
    shutdownTimeoutSecs: typeof timeout === 'number' ? timeout : DEFAULT_SHUTDOWN_TIMEOUT_SECS,
  };
}

/** Read and parse a configs.yml file. */
export function loadConfig(path: string, env: Record<string, string | undefined> = process.env): CdcConfig {
  return parseConfig(readFileSync(path, 'utf8'), path, env);
}

/** The distinct stream names, in first-seen order. */
export function distinctStreams(slots: readonly SlotSpec[]): string[] {
  return [...new Set(slots.map((s) => s.stream))];
}

/** The distinct secrets, in first-seen order. */
export function distinctSecrets(slots: readonly SlotSpec[]): string[] {
  return [...new Set(slots.flatMap((s) => (s.secret ? [s.secret] : [])))];
}
