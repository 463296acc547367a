export * from './config.js';
export * from './sink.js';
export * from '../../pipelines/core/pg.js';
