/** The answer of {@link RateLimiter.take}. */
export interface RateDecision {
  allowed: boolean;
  /** Whole seconds until one request is allowed again (for `Retry-After`); 0 when allowed. */
  retryAfterS: number;
  /** Tokens left after this request (for `RateLimit-Remaining`). */
  remaining: number;
  /** Bucket size (for `RateLimit-Limit`). */
  limit: number;
}

interface Bucket {
  tokens: number;
  at: number;
  rate: number;
}

/**
 * Per-key token buckets, in process memory: a key with rate r may make r requests per second on
 * average and bursts of up to 2r. Each API instance keeps its own buckets, so behind a load balancer
 * with n instances a key can reach n times its rate; that is accepted because limits protect an
 * instance from one noisy client, not meter usage. Buckets unused for a minute are dropped.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweep = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Takes one token from `key`'s bucket; `ratePerS` 0 means unlimited. */
  take(key: string, ratePerS: number): RateDecision {
    if (ratePerS <= 0) return { allowed: true, retryAfterS: 0, remaining: Number.POSITIVE_INFINITY, limit: 0 };
    const t = this.now();
    const cap = ratePerS * 2;
    let b = this.buckets.get(key);
    if (!b || b.rate !== ratePerS) {
      b = { tokens: cap, at: t, rate: ratePerS };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(cap, b.tokens + ((t - b.at) / 1000) * ratePerS);
      b.at = t;
    }
    if (t - this.lastSweep > 60_000) this.sweep(t);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { allowed: true, retryAfterS: 0, remaining: Math.floor(b.tokens), limit: cap };
    }
    return { allowed: false, retryAfterS: Math.max(1, Math.ceil((1 - b.tokens) / ratePerS)), remaining: 0, limit: cap };
  }

  private sweep(t: number): void {
    this.lastSweep = t;
    for (const [k, b] of this.buckets) if (t - b.at > 60_000) this.buckets.delete(k);
  }
}
