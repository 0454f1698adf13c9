/**
 * @module moderation
 * The moderation hook (docs/protocol.md, "Moderation hook"): what the send
 * and edit paths ask of it (`moderator.ts`), its HTTP client
 * (`http_moderator.ts`); its calls are signed as every webhook's (`webhook_signature.ts`).
 */

export type { ModerationOutcome, ModerationRequest, Moderator } from "./moderator.ts";
export {
  DEFAULT_REJECT_REASON,
  type FailureRule,
  HttpModerator,
  type HttpModeratorOptions,
} from "./http_moderator.ts";
export { importSigningKey, signBody } from "../webhook_signature.ts";
