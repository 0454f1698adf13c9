/**
 * @module explain
 * The plan of what a repository query function sends, with the parameters it
 * sends: the call runs in a transaction that is rolled back, its last
 * statement is captured, then EXPLAINed (rolled back too, so an EXPLAIN
 * ANALYZE of a write changes nothing). Used by the plan tests and by
 * `bench/mailbox_plans.ts`.
 */

import postgres, { type Sql } from "postgres";

export interface Explainer {
  /** A client of the database explained (two connections). */
  sql: Sql;
  /** The plan lines of the last statement `call` sends, under `EXPLAIN (options)`. */
  plan(call: (q: Sql) => Promise<unknown>, options?: string): Promise<string[]>;
  end(): Promise<void>;
}

/** Thrown to roll a transaction back on purpose. */
class RollBack extends Error {}

/** `settings`: the connection parameters of the client whose plans are wanted. */
export function explainer(url: string, settings: Record<string, string> = {}): Explainer {
  let last: { query: string; parameters: unknown[] } | undefined;
  const sql = postgres(url, {
    max: 2,
    onnotice: () => {},
    connection: settings,
    debug: (_connection, query, parameters) => {
      last = { query, parameters };
    },
  });
  const rolledBack = async (work: (tx: Sql) => Promise<void>) => {
    await sql.begin(async (tx) => {
      await work(tx as unknown as Sql);
      throw new RollBack();
    }).catch((err) => {
      if (!(err instanceof RollBack)) throw err;
    });
  };
  return {
    sql,
    async plan(call, options = "analyze, costs off") {
      let captured: typeof last;
      await rolledBack(async (tx) => {
        await call(tx);
        captured = last;
      });
      let plan: string[] = [];
      await rolledBack(async (tx) => {
        const rows = await tx.unsafe<{ "QUERY PLAN": string }[]>(
          `explain (${options}) ${captured!.query}`,
          captured!.parameters as never[],
        );
        plan = rows.map((row) => row["QUERY PLAN"]);
      });
      return plan;
    },
    end: () => sql.end(),
  };
}
