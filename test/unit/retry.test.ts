import { describe, expect, it } from 'vitest';
import { CellarError, fromPgError, fromRedisError, fromKafkaError } from '../../pipelines/core/errors.js';
import { withRetry } from '../../pipelines/core/retry.js';

describe('withRetry', () => {
  it('retries retriable errors until success', async () => {
    let n = 0;
    const out = await withRetry(async () => {
      if (++n < 4) throw new CellarError('x', 'down', { retriable: true });
      return n;
    }, { minDelayMs: 1, maxDelayMs: 2 });
    expect(out).toBe(4);
  });

  it('never retries programming or non-retriable errors', async () => {
    let n = 0;
    await expect(withRetry(async () => { n++; throw new TypeError('bug'); }, { minDelayMs: 1 })).rejects.toThrow('bug');
    await expect(withRetry(async () => { n++; throw new CellarError('x', 'bad input'); }, { minDelayMs: 1 })).rejects.toThrow('bad input');
    expect(n).toBe(2);
  });

  it('gives up after `retries` and throws the last error', async () => {
    let n = 0;
    await expect(withRetry(async () => { n++; throw new CellarError('x', `try ${n}`, { retriable: true }); }, { retries: 2, minDelayMs: 1 })).rejects.toThrow('try 3');
  });
});

describe('error conversion', () => {
  it('classifies pg, Redis and kafkajs errors', () => {
    expect(fromPgError(Object.assign(new Error('conn'), { code: 'ECONNREFUSED' }), 'q').retriable).toBe(true);
    expect(fromPgError(Object.assign(new Error('shutdown'), { code: '57P01' }), 'q').retriable).toBe(true);
    expect(fromPgError(Object.assign(new Error('dup'), { code: '23505' }), 'q').retriable).toBe(false);
    expect(fromRedisError(new Error('Connection is closed.'), 'r').retriable).toBe(true);
    expect(fromRedisError(new Error('ERR wrong number of arguments'), 'r').retriable).toBe(false);
    expect(fromKafkaError(Object.assign(new Error('x'), { name: 'KafkaJSConnectionError' }), 'k').retriable).toBe(true);
    const wrapped = fromPgError(new Error('inner'), 'ctx');
    expect(wrapped.cause).toBeInstanceOf(Error);
    expect(wrapped.message).toBe('ctx: inner');
  });
});
