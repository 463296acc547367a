/**
 * Names the CLI needs to declare its commands (choices, help texts) before it loads what implements them:
 * `cellar --help` and `cellar --version` must not load Kafka, Postgres or HTTP clients. Each is a copy of
 * the implementation's own constant; test/cli/names.test.ts fails when a copy and its original differ.
 */

/** The Kafka runtime's worker roles (pipelines/runtime/kafka-runtime.ts, WORKER_ROLES). */
export const WORKER_ROLES = ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis'] as const;

/** Roles of API keys (pipelines/api/keys-store.ts, ROLES). */
export const KEY_ROLES = ['reader', 'operator', 'admin'] as const;

/** Requests per second of a new API key (pipelines/api/keys-store.ts, DEFAULT_RATE_LIMIT_PER_S). */
export const DEFAULT_KEY_RATE_LIMIT_PER_S = 100;

/** States of a dead letter (pipelines/state/dead-letters.ts, DEAD_LETTER_STATUSES). */
export const DEAD_LETTER_STATUSES = ['pending', 'replayed', 'resolved'] as const;
