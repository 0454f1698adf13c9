/**
 * @module session
 * One WebSocket connection after the upgrade: its state, limits and outgoing
 * buffer, and the dispatch of its frames to the handlers in `handlers/`.
 */

export { Session, type SessionContext, type SessionHooks, type SessionLimits } from "./session.ts";
export { DeadlineQueue } from "./deadline_timer.ts";
export { UserWork } from "./user_work.ts";
export { LoginRates } from "./rate_limit.ts";
export { SendOrder } from "./send_order.ts";
