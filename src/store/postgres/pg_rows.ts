/**
 * @module store/postgres/pg_rows
 * A guard around postgres.js 3.4 results. When a query fails while its rows
 * are streaming in (a statement timeout, a cancel), postgres.js does not reset
 * its per-connection row counter, so the next query pipelined on that
 * connection resolves with leading holes before its own rows
 * (porsager/postgres#1119, #1181; seen here when a stalled disk timed out a
 * burst of statements: `Cannot read properties of undefined`, and a
 * `const [row] = …` that reads a hole would see no row at all). The rows after
 * the holes are that query's own, so dropping the holes gives its answer.
 */

/** `rows` without holes (the same array when it has none). */
export function rowsOf<T>(rows: T[]): T[] {
  // Rows are objects: `undefined` can only be a hole.
  return rows.includes(undefined as T) ? rows.filter(() => true) : rows;
}
