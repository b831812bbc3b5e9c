/* Commonwatt pages: charts (Chart.js) and the live parts' glue (htmx).
 * The server sends integers (Wh, µk) in <script type="application/json">
 * blocks; they are scaled to kWh and coins here, for display only. */
(function () {
  "use strict";
  const charts = new Map();
  const kwh = (wh) => wh / 1000;
  const coins = (uk) => uk / 1e6;

  function readData(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function energyConfig(d) {
    return {
      data: {
        labels: d.labels,
        datasets: [
          { type: "bar", label: "Imported kWh", data: d.import_wh.map(kwh), backgroundColor: "#2563eb", yAxisID: "energy" },
          { type: "bar", label: "Exported kWh", data: d.export_wh.map(kwh), backgroundColor: "#e8a013", yAxisID: "energy" },
          { type: "line", label: "Paid (k)", data: d.paid_uk.map(coins), borderColor: "#c2362f", pointRadius: 0, tension: .2, yAxisID: "money" },
          { type: "line", label: "Earned (k)", data: d.earned_uk.map(coins), borderColor: "#0f7b5a", pointRadius: 0, tension: .2, yAxisID: "money" },
        ],
      },
      options: baseOptions("kWh", "coins"),
    };
  }

  function runsConfig(d) {
    return {
      data: {
        labels: d.labels,
        datasets: [
          { type: "bar", label: "Imported kWh", data: d.import_wh.map(kwh), backgroundColor: "#2563eb", yAxisID: "energy" },
          { type: "bar", label: "Exported kWh", data: d.export_wh.map(kwh), backgroundColor: "#e8a013", yAxisID: "energy" },
          { type: "line", label: "Loss kWh", data: d.loss_wh.map(kwh), borderColor: "#7c3aed", pointRadius: 0, tension: .2, yAxisID: "energy" },
          { type: "line", label: "Fee (k)", data: d.fee_uk.map(coins), borderColor: "#0f7b5a", pointRadius: 0, tension: .2, yAxisID: "money" },
        ],
      },
      options: baseOptions("kWh", "coins"),
    };
  }

  function baseOptions(left, right) {
    return {
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      scales: {
        x: { ticks: { maxTicksLimit: 8, autoSkip: true }, grid: { display: false } },
        energy: { position: "left", beginAtZero: true, title: { display: true, text: left } },
        money: { position: "right", beginAtZero: true, title: { display: true, text: right }, grid: { drawOnChartArea: false } },
      },
    };
  }

  const builders = { energy: energyConfig, runs: runsConfig };

  function drawCharts(root) {
    if (typeof window.Chart === "undefined") return;
    root.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
      const data = readData(canvas.dataset.source);
      const build = builders[canvas.dataset.chart];
      if (!data || !build) return;
      const key = canvas.dataset.source;
      const existing = charts.get(key);
      if (existing && existing.canvas === canvas) {
        const fresh = build(data).data;
        existing.data.labels = fresh.labels;
        existing.data.datasets.forEach((set, i) => { set.data = fresh.datasets[i].data; });
        existing.update("none");
        return;
      }
      if (existing) existing.destroy();
      charts.set(key, new window.Chart(canvas, build(data)));
    });
  }

  document.addEventListener("DOMContentLoaded", () => drawCharts(document));
  // Live parts (the grid page) bring fresh numbers: redraw what they hold,
  // and refresh charts outside them whose data they replaced.
  document.addEventListener("htmx:afterSettle", () => drawCharts(document));
})();
