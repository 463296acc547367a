/** Native MySQL/MariaDB CDC reader: config spec, the binlog source and its batch types. */
export * from './config.js';
export * from './source.js';
