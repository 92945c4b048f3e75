/**
 * A small SVG line and bar plotter for the benchmark report.
 *
 * Written here rather than taken from a charting library: the report needs two chart kinds with
 * log axes and a legend, as static files checked into docs/, and every charting package on npm
 * either wants a DOM (d3, chart.js, vega via a headless browser) or brings tens of megabytes of
 * dependencies for what is ~200 lines of string building. Output is deterministic (same data,
 * same bytes), so regenerated plots only show up in a diff when the numbers changed.
 */

export interface PlotLine {
  name: string;
  points: [number, number][];
}

export interface PlotSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  lines: PlotLine[];
  /** `line` (default): x is numeric. `bar`: grouped bars, one group per distinct x, one bar per line. */
  kind?: 'line' | 'bar';
}

const WIDTH = 720;
const HEIGHT = 400;
const MARGIN = { left: 72, right: 24, top: 44, bottom: 96 };
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#17becf', '#bcbd22'];

/** More than two decades between the smallest and largest positive value: plot on a log scale. */
export function wantsLogScale(values: number[]): boolean {
  const positive = values.filter((v) => Number.isFinite(v) && v > 0);
  if (positive.length < 2 || positive.length < values.filter(Number.isFinite).length) return false;
  return Math.max(...positive) / Math.min(...positive) > 100;
}

interface Axis {
  log: boolean;
  min: number;
  max: number;
  ticks: number[];
}

function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

function axisFor(values: number[], { fromZero }: { fromZero: boolean }): Axis {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return { log: false, min: 0, max: 1, ticks: [0, 1] };
  if (wantsLogScale(finite)) {
    const lo = Math.floor(Math.log10(Math.min(...finite)));
    const hi = Math.ceil(Math.log10(Math.max(...finite)));
    const decades = Math.max(1, hi - lo);
    const ticks: number[] = [];
    for (let e = lo; e <= hi; e++) for (const m of decades <= 3 ? [1, 2, 5] : [1]) if (e < hi || m === 1) ticks.push(m * 10 ** e);
    return { log: true, min: 10 ** lo, max: 10 ** (lo + decades), ticks };
  }
  let min = Math.min(...finite);
  let max = Math.max(...finite);
  if (fromZero) min = Math.min(0, min);
  if (min === max) max = min + (min === 0 ? 1 : Math.abs(min));
  const step = niceStep(max - min, 5);
  min = Math.floor(min / step) * step;
  max = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let t = min; t <= max + step / 2; t += step) ticks.push(Number(t.toPrecision(12)));
  return { log: false, min, max, ticks };
}

function scale(axis: Axis, value: number, from: number, to: number): number {
  const at = axis.log ? (Math.log10(value) - Math.log10(axis.min)) / (Math.log10(axis.max) - Math.log10(axis.min)) : (value - axis.min) / (axis.max - axis.min);
  return from + at * (to - from);
}

/** 1,500 → "1.5k", 0.25 → "0.25", 12345678 → "12.3M": short tick and bar labels. */
export function formatTick(value: number): string {
  const abs = Math.abs(value);
  const trim = (v: number) => String(Number(v.toPrecision(3)));
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e3) return `${trim(value / 1e3)}k`;
  return trim(value);
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const r1 = (v: number) => Math.round(v * 10) / 10;

/** Renders the plot as a standalone SVG document. */
export function renderPlot(spec: PlotSpec): string {
  const kind = spec.kind ?? 'line';
  const lines = spec.lines.map((line) => ({ ...line, points: line.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)) }));
  const plotLeft = MARGIN.left;
  const plotRight = WIDTH - MARGIN.right;
  const plotTop = MARGIN.top;
  const plotBottom = HEIGHT - MARGIN.bottom;
  const ys = lines.flatMap((l) => l.points.map(([, y]) => y));
  const yAxis = axisFor(ys, { fromZero: kind === 'bar' || !wantsLogScale(ys) });
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${HEIGHT}" width="${WIDTH}" height="${HEIGHT}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="15" font-weight="600">${escapeXml(spec.title)}</text>`,
  );
  // y grid and ticks
  for (const tick of yAxis.ticks) {
    const y = r1(scale(yAxis, tick, plotBottom, plotTop));
    out.push(`<line x1="${plotLeft}" x2="${plotRight}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${plotLeft - 6}" y="${y + 4}" text-anchor="end" fill="#444">${escapeXml(formatTick(tick))}</text>`);
  }
  const yTitle = `${spec.yLabel}${yAxis.log ? ' (log scale)' : ''}`;
  out.push(`<text transform="translate(18 ${(plotTop + plotBottom) / 2}) rotate(-90)" text-anchor="middle" fill="#222">${escapeXml(yTitle)}</text>`);

  if (kind === 'bar') {
    const categories = [...new Set(lines.flatMap((l) => l.points.map(([x]) => x)))].sort((a, b) => a - b);
    const groupWidth = (plotRight - plotLeft) / Math.max(1, categories.length);
    const barWidth = (groupWidth * 0.8) / Math.max(1, lines.length);
    const base = yAxis.log ? plotBottom : scale(yAxis, Math.max(0, yAxis.min), plotBottom, plotTop);
    for (const [c, category] of categories.entries()) {
      const groupLeft = plotLeft + c * groupWidth + groupWidth * 0.1;
      out.push(`<text x="${r1(plotLeft + (c + 0.5) * groupWidth)}" y="${plotBottom + 16}" text-anchor="middle" fill="#444">${escapeXml(formatTick(category))}</text>`);
      for (const [i, line] of lines.entries()) {
        const point = line.points.find(([x]) => x === category);
        if (!point) continue;
        const top = scale(yAxis, point[1], plotBottom, plotTop);
        const x = r1(groupLeft + i * barWidth);
        out.push(
          `<rect x="${x}" y="${r1(Math.min(top, base))}" width="${r1(barWidth * 0.92)}" height="${r1(Math.abs(base - top))}" fill="${PALETTE[i % PALETTE.length]}"><title>${escapeXml(`${line.name}: ${formatTick(point[1])}`)}</title></rect>`,
        );
      }
    }
    out.push(`<text x="${(plotLeft + plotRight) / 2}" y="${plotBottom + 36}" text-anchor="middle" fill="#222">${escapeXml(spec.xLabel)}</text>`);
  } else {
    const xs = lines.flatMap((l) => l.points.map(([x]) => x));
    const xAxis = axisFor(xs, { fromZero: false });
    // With few distinct x values, tick exactly those (1, 10, 50 replicas) rather than round numbers.
    const distinct = [...new Set(xs)].sort((a, b) => a - b);
    const xTicks = distinct.length > 0 && distinct.length <= 8 ? distinct : xAxis.ticks;
    const xAt = (x: number) => (distinct.length === 1 ? (plotLeft + plotRight) / 2 : scale(xAxis.log ? xAxis : { ...xAxis, min: Math.min(...distinct), max: Math.max(...distinct) }, x, plotLeft + 12, plotRight - 12));
    for (const tick of xTicks) {
      const x = r1(xAt(tick));
      out.push(`<line x1="${x}" x2="${x}" y1="${plotTop}" y2="${plotBottom}" stroke="#f0f0f0"/>`);
      out.push(`<text x="${x}" y="${plotBottom + 16}" text-anchor="middle" fill="#444">${escapeXml(formatTick(tick))}</text>`);
    }
    const xTitle = `${spec.xLabel}${xAxis.log ? ' (log scale)' : ''}`;
    out.push(`<text x="${(plotLeft + plotRight) / 2}" y="${plotBottom + 36}" text-anchor="middle" fill="#222">${escapeXml(xTitle)}</text>`);
    for (const [i, line] of lines.entries()) {
      const color = PALETTE[i % PALETTE.length];
      const sorted = [...line.points].sort((a, b) => a[0] - b[0]);
      const coords = sorted.map(([x, y]) => `${r1(xAt(x))},${r1(scale(yAxis, y, plotBottom, plotTop))}`);
      if (coords.length > 1) out.push(`<polyline points="${coords.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
      for (const [j, [x, y]] of sorted.entries()) {
        const [cx, cy] = coords[j]!.split(',');
        out.push(`<circle cx="${cx}" cy="${cy}" r="3.5" fill="${color}"><title>${escapeXml(`${line.name}: x=${formatTick(x)}, y=${formatTick(y)}`)}</title></circle>`);
      }
    }
  }
  out.push(`<rect x="${plotLeft}" y="${plotTop}" width="${plotRight - plotLeft}" height="${plotBottom - plotTop}" fill="none" stroke="#999"/>`);
  // Legend: below the x-axis title, wrapping onto a second row when the names are long.
  let legendX = plotLeft;
  let legendY = plotBottom + 58;
  for (const [i, line] of lines.entries()) {
    const width = 24 + line.name.length * 6.6;
    if (legendX + width > plotRight && legendX > plotLeft) {
      legendX = plotLeft;
      legendY += 18;
    }
    const color = PALETTE[i % PALETTE.length];
    out.push(`<rect x="${r1(legendX)}" y="${legendY - 9}" width="14" height="10" fill="${color}"/>`);
    out.push(`<text x="${r1(legendX + 19)}" y="${legendY}" fill="#222">${escapeXml(line.name)}</text>`);
    legendX += width + 14;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
