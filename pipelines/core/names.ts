/**
 * Names shared by an implementation and the CLI that declares its commands (choices, help texts) before
 * it loads that implementation: `cellar --help` must not load Kafka, Postgres or HTTP clients, so these
 * live here, with no imports, and the implementations re-export them.
 */

/** The Kafka-runtime worker roles (`cellar run <role>`). */
export const WORKER_ROLES = ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis'] as const;

/** Roles of API keys, each allowed everything the previous one is. */
export const KEY_ROLES = ['supplier', 'reader', 'operator', 'admin'] as const;

/** Default requests per second of a new API key (token bucket with a burst of twice the rate). */
export const DEFAULT_KEY_RATE_LIMIT_PER_S = 100;

/** What became of a dead letter (see schemas/postgres/0014_dead_letter_outcomes.sql). */
export const DEAD_LETTER_STATUSES = ['pending', 'replayed', 'resolved'] as const;
