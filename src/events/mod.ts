/**
 * @module events
 * The events webhook (docs/protocol.md, "Events webhook"): `message.unseen` and
 * `report.created` derived from committed rows into an outbox table, sent in
 * signed batches by one node each, retried with backoff, then dropped.
 */

export {
  type EventsMetrics,
  type EventsOptions,
  type EventsWebhook,
  startEventsWebhook,
} from "./webhook.ts";
