/** Plain-text tables for the terminal: columns padded to their widest cell, no trailing spaces. */

/** A column: its heading and whether its cells line up on the right (numbers). */
export interface Column {
  readonly heading: string;
  readonly right?: boolean;
}

/** Renders a heading line and one line per row, columns two spaces apart. */
export function renderTable(columns: readonly Column[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = columns.map((column, i) => Math.max(column.heading.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    columns
      .map((column, i) => {
        const cell = cells[i] ?? '';
        return column.right ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((column) => column.heading)), ...rows.map(line)].join('\n');
}

/**
 * A cell read from Consul, safe to print: text with white space or control characters (a newline could fake a
 * row) is shown as a JSON string instead.
 */
export function safeCell(text: string): string {
  // eslint-disable-next-line no-control-regex
  return /[\s\u0000-\u001f\u007f-\u009f]/.test(text) || text === '' ? JSON.stringify(text) : text;
}
