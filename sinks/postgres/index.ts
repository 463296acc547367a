export * from './config.js';
export * from './sink.js';
export * from './migrate.js';
export * from './pool.js';
