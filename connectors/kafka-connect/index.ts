export * from './config.js';
export * from './secrets.js';
export * from './generate.js';
export * from './client.js';
export * from './plan.js';
export * from './apply.js';
export * from './status.js';
