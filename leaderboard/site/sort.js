// ccbench leaderboard: sort a table.sortable by the clicked column (numbers numerically, '-' last).
"use strict";
function ccbenchSortKey(row, col) {
  var cell = row.cells[col];
  var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  var num = Number(raw);
  return {missing: raw === "" || raw === "-", num: raw !== "" && isFinite(num) ? num : null, text: raw};
}
function ccbenchSort(table, col, th) {
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var ascending = th.getAttribute("aria-sort") !== "ascending";
  rows.sort(function (a, b) {
    var x = ccbenchSortKey(a, col), y = ccbenchSortKey(b, col);
    if (x.missing !== y.missing) { return x.missing ? 1 : -1; }
    var d = (x.num !== null && y.num !== null) ? x.num - y.num : x.text.localeCompare(y.text);
    return ascending ? d : -d;
  });
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  rows.forEach(function (r) { body.appendChild(r); });
}
document.addEventListener("DOMContentLoaded", function () {
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = "sort";
      th.addEventListener("click", function () { ccbenchSort(table, col, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { ccbenchSort(table, col, th); } });
    });
  });
});
