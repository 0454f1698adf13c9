/**
 * @module moderation/moderator
 * What the send path asks of a moderation hook (docs/protocol.md, "Moderation
 * hook"): one review per new message or edit, before anything is stored. A
 * review never rejects: every failure of the hook is already turned into
 * what the failure rule says (`MODERATION_FAIL`).
 */

/** One message to check, as the hook's body carries it. */
export interface ModerationRequest {
  kind: "new" | "edit";
  /** The edited message (edits only). */
  messageId?: number;
  senderUserId: number;
  recipientUserId: number;
  /** The checked, trimmed text as sent. */
  messageText: string;
  clientMessageId?: string;
}

/**
 * What to do with the message: store `text` (the sent one, or the hook's
 * replacement, `moderation: "replaced"`; `"unchecked"` when the hook failed
 * and `MODERATION_FAIL=open`), refuse it `moderated` with `reason`, or refuse
 * it `unavailable` (the hook failed and `MODERATION_FAIL=closed`).
 */
export type ModerationOutcome =
  | { kind: "store"; text: string; moderation?: "replaced" | "unchecked" }
  | { kind: "reject"; reason: string }
  | { kind: "unavailable" };

export interface Moderator {
  review(request: ModerationRequest): Promise<ModerationOutcome>;
}
