export * from './config.js';
export * from './source.js';
