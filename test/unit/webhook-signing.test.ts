import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateWebhookSecret, signWebhook, verifyWebhookSignature } from '../../pipelines/webhooks/signing.js';

/**
 * Webhook signatures as a receiver checks them: `cellar-signature: t=<unix s>,v1=<hex HMAC-SHA256(secret,
 * "<t>.<raw body>")>`, refused for another body, another secret, a timestamp out of tolerance or a
 * malformed header.
 */
describe('webhook signatures', () => {
  const secret = generateWebhookSecret();
  const body = JSON.stringify({ id: 'e1', type: 'sold_out', region: 'eu', sku: 'wine-1', version: 3, before: 2, after: 0, threshold: null });
  const now = 1_790_000_000;

  it('signs "<t>.<raw body>" with HMAC-SHA256, as documented, and verifies it', () => {
    const header = signWebhook(secret, body, now);
    const hex = createHmac('sha256', secret).update(`${now}.${body}`).digest('hex');
    expect(header).toBe(`t=${now},v1=${hex}`);
    expect(verifyWebhookSignature(secret, header, body, { nowS: now + 10 })).toBe(true);
    expect(verifyWebhookSignature(secret, header, Buffer.from(body), { nowS: now })).toBe(true);
    expect(secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(generateWebhookSecret()).not.toBe(secret);
  });

  it('refuses a tampered body, even by one character or a re-serialization', () => {
    const header = signWebhook(secret, body, now);
    expect(verifyWebhookSignature(secret, header, body.replace('"after":0', '"after":1'), { nowS: now })).toBe(false);
    expect(verifyWebhookSignature(secret, header, `${body} `, { nowS: now })).toBe(false);
    expect(verifyWebhookSignature(secret, header, JSON.stringify(JSON.parse(body), null, 1), { nowS: now })).toBe(false);
  });

  it('refuses another secret', () => {
    const header = signWebhook(secret, body, now);
    expect(verifyWebhookSignature(generateWebhookSecret(), header, body, { nowS: now })).toBe(false);
    expect(verifyWebhookSignature('', header, body, { nowS: now })).toBe(false);
  });

  it('refuses a timestamp older or newer than the tolerance (default 5 minutes), and a timestamp changed after signing', () => {
    const header = signWebhook(secret, body, now);
    expect(verifyWebhookSignature(secret, header, body, { nowS: now + 300 })).toBe(true);
    expect(verifyWebhookSignature(secret, header, body, { nowS: now + 301 })).toBe(false);
    expect(verifyWebhookSignature(secret, header, body, { nowS: now - 301 })).toBe(false);
    expect(verifyWebhookSignature(secret, header, body, { nowS: now + 3_600, toleranceS: 7_200 })).toBe(true);
    expect(verifyWebhookSignature(secret, signWebhook(secret, body), body)).toBe(true);
    // Replaying a captured signature with a fresh timestamp does not work: the time is signed too.
    expect(verifyWebhookSignature(secret, header.replace(`t=${now}`, `t=${now + 1000}`), body, { nowS: now + 1000 })).toBe(false);
  });

  it('refuses a missing or malformed header, and accepts any matching v1 among several', () => {
    const header = signWebhook(secret, body, now);
    const v1 = header.split(',v1=')[1]!;
    for (const bad of [undefined, '', 'v1=' + v1, `t=${now}`, `t=abc,v1=${v1}`, `t=${now},v1=${v1.slice(0, 63)}`, `t=${now},v0=${v1}`, `${v1}`]) {
      expect(verifyWebhookSignature(secret, bad, body, { nowS: now }), String(bad)).toBe(false);
    }
    expect(verifyWebhookSignature(secret, `t=${now},v1=${'0'.repeat(64)},v1=${v1}`, body, { nowS: now })).toBe(true);
    expect(verifyWebhookSignature(secret, [`t=${now}`, `v1=${v1}`], body, { nowS: now })).toBe(true);
  });
});
