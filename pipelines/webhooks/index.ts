/**
 * Webhooks: subscriptions to stock events (URL, filter, secret), deliveries signed with HMAC-SHA256,
 * retried with backoff, at least once with the event id, dead after max attempts and redelivered on
 * request. The README ("Webhooks") describes them for users.
 */
export { startWebhookDispatcher, WebhookDispatcherSpec, type WebhookDispatcher, type WebhookDispatcherOptions, type WebhookDispatcherSettings } from './dispatcher.js';
export { DEFAULT_TOLERANCE_S, generateWebhookSecret, SIGNATURE_HEADER, signWebhook, verifyWebhookSignature, type VerifyOptions } from './signing.js';
export {
  createWebhook, deleteWebhook, getWebhook, listWebhooks, updateWebhook, NewWebhookSpec, WebhookFilterSpec, WebhookPatchSpec, WEBHOOK_ID,
  type NewWebhook, type WebhookPatch, type WebhookSubscription, type WebhookSummary, type LastDelivery,
} from './store.js';
export { DELIVERY_STATUSES, listDeliveries, redeliver, type DeliveryStatus, type WebhookDelivery, type WebhookPayload } from './deliveries.js';
export { WEBHOOK_USER_AGENT } from './sender.js';
