/**
 * @module moderation
 * The moderation hook (docs/protocol.md, "Moderation hook"): what the send
 * and edit paths ask of it (`moderator.ts`), its HTTP client
 * (`http_moderator.ts`) and the signature of its calls (`signature.ts`).
 */

export type { ModerationOutcome, ModerationRequest, Moderator } from "./moderator.ts";
export {
  DEFAULT_REJECT_REASON,
  type FailureRule,
  HttpModerator,
  type HttpModeratorOptions,
} from "./http_moderator.ts";
export { importSigningKey, signBody } from "./signature.ts";
