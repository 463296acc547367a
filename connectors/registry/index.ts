export * from './schema.js';
export * from './loader.js';
