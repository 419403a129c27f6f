// Charts with uPlot (served from /console/vendor, pinned). Without it, a chart says so and the tables remain.
import { el } from "./ui.js";

const COLORS = ["#0b5cad", "#b3261e", "#116329", "#7a4b00"];

/**
 * A time-series chart. `series`: [{label, values, step?, scale?}], `times`: seconds since the epoch.
 * Returns a figure element; the chart is drawn once the element is in the page.
 */
export function timeChart(title, times, series, { description } = {}) {
  const figure = el("figure", { class: "card", "aria-label": title },
    el("figcaption", {}, el("strong", {}, title), description ? el("span", { class: "muted" }, ` ${description}`) : null));
  const box = el("div", { class: "chart", role: "img", "aria-label": `${title}: ${series.map((s) => s.label).join(", ")} over time` });
  figure.append(box);
  if (!window.uPlot) {
    box.append(el("p", { class: "muted" }, "Charts are unavailable (the chart library was not loaded); the table below has the same figures."));
    return figure;
  }
  if (times.length === 0) {
    box.append(el("p", { class: "muted" }, "No data yet."));
    return figure;
  }
  // A few seconds of data would fill the axis with sub-second ticks: show at least two minutes.
  const scales = { x: { time: true, range: (u, min, max) => (max - min < 120 ? [min - 60, max + 60] : [min, max]) } };
  if (times.length === 1) scales.x = { time: true, auto: false, range: () => [times[0] - 3600, times[0] + 3600] };
  const axes = [{}];
  const uSeries = [{}];
  series.forEach((s, i) => {
    const scale = s.scale || "y";
    if (!scales[scale]) {
      scales[scale] = { auto: true };
      axes.push({ scale, side: axes.length === 1 ? 3 : 1, grid: { show: axes.length === 1 }, label: s.axisLabel || s.label, size: 70 });
    }
    uSeries.push({
      label: s.label,
      scale,
      stroke: COLORS[i % COLORS.length],
      width: 2,
      points: { show: times.length < 60 },
      paths: s.step && window.uPlot.paths.stepped ? window.uPlot.paths.stepped({ align: 1 }) : undefined,
    });
  });
  const data = [times, ...series.map((s) => s.values)];
  const draw = () => {
    const width = Math.max(280, box.clientWidth || 600);
    // eslint-disable-next-line no-new
    const plot = new window.uPlot({ width, height: 240, scales, axes, series: uSeries }, data, box);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, box.clientWidth), height: 240 }));
    resize.observe(box);
  };
  requestAnimationFrame(() => (figure.isConnected ? draw() : setTimeout(draw, 50)));
  return figure;
}

export const seconds = (iso) => new Date(iso).getTime() / 1000;
